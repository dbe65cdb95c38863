"""Deployment files in deploy/: compose stack, images, Prometheus config, Kubernetes, systemd.

No Docker engine or cluster runs here, so the compose stack and the manifests
are checked statically (they parse, and every name, port, path and file they
refer to is consistent). Whatever can run for real does: promtool on the
Prometheus config laid out as the compose volumes mount it, a real Prometheus
doing the /probe relabelling, cardguard check-config on every shipped
configuration, systemd-analyze on the unit, and the PrometheusRule generator.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml

from kustomize import render
from support import REPO, cardguard_argv, running, running_on_port_0, wait_for

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "kubernetes"
UNIT = DEPLOY / "systemd" / "cardguard.service"
PORT = 10180  # cardguard's listen port in every deployment file


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run scripts/bootstrap.sh")
    return path


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cardguard_argv("check-config", str(path)), capture_output=True, text=True)


# --- Dockerfiles --------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def copy_sources(dockerfile: Path) -> list[str]:
    found = []
    for word, rest in instructions(dockerfile):
        if word == "COPY" and not rest.startswith("--from"):
            found.extend(shlex.split(rest)[:-1])
    return found


@pytest.mark.parametrize("name", ["Dockerfile", "demo.Dockerfile"])
def test_dockerfile_copies_files_that_exist(name: str) -> None:
    dockerfile = DEPLOY / name
    sources = copy_sources(dockerfile)
    assert sources, f"{name} copies nothing"
    for src in sources:
        # Both images are built with the repository root as context (see compose).
        assert (REPO / src).exists(), f"{name}: COPY {src}: no such path in the build context"
    stages = [rest for word, rest in instructions(dockerfile) if word == "FROM"]
    assert all(":" in s.split()[0] for s in stages), f"{name}: pin every base image tag"
    assert instructions(dockerfile)[-1][0] in {"CMD", "ENTRYPOINT"}


def test_cardguard_image_has_what_the_wheel_build_needs() -> None:
    """setup.py copies cardguard.shipped.FILES into the package; the image must have them."""
    from cardguard import shipped

    sources = copy_sources(DEPLOY / "Dockerfile")
    assert {"setup.py", "MANIFEST.in", "pyproject.toml", "exporter"} <= set(sources)
    for rel in shipped.files(REPO):
        assert any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in sources), rel


def test_cardguard_image_runs_the_console_script_on_the_agreed_port() -> None:
    steps = instructions(DEPLOY / "Dockerfile")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    entry = next(yaml.safe_load(rest) for word, rest in steps if word == "ENTRYPOINT")
    assert entry == ["cardguard"] and "cardguard" in scripts
    cmd = next(yaml.safe_load(rest) for word, rest in steps if word == "CMD")
    assert cmd[0] == "serve" and f"--web.listen-address=:{PORT}" in cmd
    assert ("EXPOSE", str(PORT)) in steps
    health = next(rest for word, rest in steps if word == "HEALTHCHECK")
    assert f"127.0.0.1:{PORT}/-/healthy" in health
    assert any(word == "USER" and not rest.startswith("0") for word, rest in steps)


# --- docker-compose -----------------------------------------------------------


def test_compose_services_and_images() -> None:
    services = compose()["services"]
    assert {"demo", "cardguard", "prometheus", "alertmanager", "grafana"} <= set(services)
    for name, svc in services.items():
        image = svc.get("image", "")
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: image {image!r} needs a tag"
        assert not image.endswith(":latest") or "build" in svc, f"{name}: pin {image}"
        build = svc.get("build")
        if build:
            context = (COMPOSE.parent / build["context"]).resolve()
            assert context == REPO
            assert (context / build["dockerfile"]).is_file(), f"{name}: no {build['dockerfile']}"
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_compose_volumes_exist() -> None:
    doc = compose()
    named = set(doc.get("volumes", {}))
    for name, svc in doc["services"].items():
        for spec in svc.get("volumes", []):
            source, target, *_ = spec.split(":")
            assert target.startswith("/"), f"{name}: {spec}"
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).exists(), f"{name}: mounts missing {source}"
            else:
                assert source in named, f"{name}: undeclared volume {source}"


def compose_ports() -> dict[str, set[int]]:
    """Container ports each compose service listens on, from ports/expose."""
    out: dict[str, set[int]] = {}
    for name, svc in compose()["services"].items():
        ports = {int(str(p).split(":")[-1]) for p in svc.get("ports", [])}
        ports |= {int(p) for p in svc.get("expose", [])}
        out[name] = ports
    return out


def test_compose_addresses_match_services() -> None:
    ports = compose_ports()
    prom = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    targets = (DEPLOY / "prometheus" / "targets" / "go-services.yml").read_text()
    am = (DEPLOY / "alertmanager" / "alertmanager.yml").read_text()
    addresses = re.findall(r"\b([a-z][a-z-]*):(\d{4})\b", prom + targets + am)
    assert addresses
    for host, port in addresses:
        assert host in ports, f"{host}:{port} is not a compose service"
        assert int(port) in ports[host], f"{host} does not listen on {port}"
    cardguard = compose()["services"]["cardguard"]
    assert f"--web.listen-address=:{PORT}" in cardguard["command"]
    assert PORT in ports["cardguard"]


def container_layout(
    service: str, root: Path, rewrite: dict[str, str] | None = None
) -> tuple[Path, list[str]]:
    """Recreate ``service``'s container files from the compose bind mounts under ``root``.

    Files are copied (a symlink would make cardguard resolve relative paths against
    the repository), with each key of ``rewrite`` replaced by its value: addresses
    only. Returns the root and the service's command with container paths moved
    under ``root``.
    """
    svc = compose()["services"][service]
    for spec in svc["volumes"]:
        source, target, *_ = spec.split(":")
        if not source.startswith("."):
            continue
        src = (COMPOSE.parent / source).resolve()
        dest = root / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        for path in [src] if src.is_file() else sorted(src.rglob("*")):
            if path.is_dir():
                continue
            out = dest / path.relative_to(src) if src.is_dir() else dest
            out.parent.mkdir(parents=True, exist_ok=True)
            text = path.read_text()
            for old, new in (rewrite or {}).items():
                text = text.replace(old, new)
            out.write_text(text)
    command = [
        re.sub(r"^(--[\w.]+=)(/etc/.*)$", lambda m: m.group(1) + str(root) + m.group(2), arg)
        for arg in svc["command"]
    ]
    return root, command


def flag(command: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in command if a.startswith(f"--{name}="))


def test_compose_cardguard_config_is_valid(tmp_path: Path) -> None:
    _, command = container_layout("cardguard", tmp_path / "container")
    config = Path(flag(command, "config.file"))
    proc = check_config(config)
    assert proc.returncode == 0, proc.stderr
    assert "demo" in proc.stdout
    assert "http://demo:6060" in config.read_text()


def compose_probe_targets(root: Path) -> list[str]:
    """Addresses Prometheus' cardguard-probe job sends to /probe, as its container has them."""
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "cardguard-probe")
    (sd,) = job["file_sd_configs"]
    found = []
    for pattern in sd["files"]:
        # Relative to the config file, /etc/prometheus, where compose mounts targets/.
        for path in sorted((root / "etc" / "prometheus").glob(pattern)):
            for group in yaml.safe_load(path.read_text()):
                found.extend(group["targets"])
    return found


_CARDGUARD_LISTENING = re.compile(r'msg="cardguard listening" address=(\S+):(\d+)')


@pytest.mark.needs_go
def test_compose_probe_job_gets_cardguard_series(tmp_path: Path, demo_service: Any) -> None:
    """cardguard run as compose runs it answers the cardguard-probe job's scrapes with 200.

    The compose files are used as they are, with only addresses rewritten: the demo
    service's to a real demo on port 0, cardguard's listen address to port 0.
    """
    with demo_service("current") as demo:
        rewrite = {"demo:6060": f"127.0.0.1:{demo.port}"}
        _, command = container_layout("cardguard", tmp_path / "cardguard", rewrite)
        container_layout("prometheus", tmp_path / "prometheus", rewrite)
        targets = compose_probe_targets(tmp_path / "prometheus")
        assert targets == [f"127.0.0.1:{demo.port}"]
        assert flag(command, "web.listen-address") == f":{PORT}"
        command = [
            "--web.listen-address=127.0.0.1:0" if a.startswith("--web.listen-address=") else a
            for a in command
        ]
        with running(cardguard_argv(*command), tmp_path / "cardguard.log") as cg:

            def listening() -> bool:
                if cg.popen.poll() is not None:
                    raise RuntimeError(f"cardguard exited:\n{cg.logs()[-3000:]}")
                m = _CARDGUARD_LISTENING.search(cg.logs())
                if m:
                    cg.port = int(m.group(2))
                return m is not None

            wait_for(listening, 30, "cardguard to log its address")
            for target in targets:
                r = requests.get(f"{cg.base_url}/probe", params={"target": target}, timeout=30)
                assert r.status_code == 200, r.text
                assert f'cardguard_target_series{{target="{target}"}}' in r.text
                ok = f'cardguard_scrape_success{{endpoint="metrics",target="{target}"}} 1.0'
                assert ok in r.text
            # Still deny by default: an address Prometheus does not list is refused.
            r = requests.get(f"{cg.base_url}/probe", params={"target": "127.0.0.1:1"}, timeout=10)
            assert r.status_code == 403 and "not_allowed" in r.text


def prometheus_container_layout(tmp_path: Path) -> Path:
    """Recreate the prometheus container's files; return its config file's path."""
    _, command = container_layout("prometheus", tmp_path / "container")
    return Path(flag(command, "config.file"))


def test_promtool_check_config_as_mounted(tmp_path: Path) -> None:
    config = prometheus_container_layout(tmp_path)
    proc = subprocess.run(
        [binary("promtool"), "check", "config", str(config)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 rule files found" in proc.stdout


def test_prometheus_relabels_probe_targets(tmp_path: Path) -> None:
    """A real Prometheus turns each discovered Go service into a cardguard /probe scrape."""
    config = prometheus_container_layout(tmp_path)
    argv = [
        binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        "--web.listen-address=127.0.0.1:0",
    ]
    with running_on_port_0(argv, tmp_path / "prometheus.log", ready_path="/-/ready") as prom:
        base = prom.base_url

        def targets() -> list[dict[str, Any]]:
            got = requests.get(f"{base}/api/v1/targets", timeout=5).json()["data"]
            return list(got["activeTargets"])

        wait_for(lambda: len(targets()) == 3, 30, "three active targets")
        by_job = {t["labels"]["job"]: t for t in targets()}
        probe = by_job["cardguard-probe"]
        url = urlsplit(probe["scrapeUrl"])
        assert (url.netloc, url.path) == (f"cardguard:{PORT}", "/probe")
        assert parse_qs(url.query) == {"target": ["demo:6060"]}
        assert probe["labels"]["instance"] == "demo:6060"
        assert probe["labels"]["service"] == "demo"
        assert by_job["cardguard"]["scrapeUrl"] == f"http://cardguard:{PORT}/metrics"
        assert by_job["go-services"]["scrapeUrl"] == "http://demo:6060/metrics"


# --- Kubernetes -----------------------------------------------------------------


def manifests() -> dict[str, dict[str, Any]]:
    """The objects kustomize renders, by kind (the cardguard ConfigMap under "ConfigMap")."""
    docs = {}
    for doc in render(K8S):
        if doc["metadata"]["name"] != "cardguard-dashboards":  # see tests/test_kubernetes.py
            docs[doc["kind"]] = doc
    return docs


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed <= on_disk
    # Anything else here is a standalone manifest (e.g. the sharded scale-out,
    # applied with kubectl apply -f): it must still be well-formed objects.
    for name in on_disk - listed:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], name
    assert set(manifests()) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "Probe",
        "ScrapeConfig",
    }


def test_kubernetes_objects_are_wired_together(tmp_path: Path) -> None:
    m = manifests()
    deploy, svc, mon, cm = m["Deployment"], m["Service"], m["ServiceMonitor"], m["ConfigMap"]
    pod = deploy["spec"]["template"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_names == {"http-metrics": PORT}
    assert f"--web.listen-address=:{PORT}" in container["args"]
    assert {p["name"] for p in svc["spec"]["ports"]} == {"http-metrics"}
    assert svc["spec"]["ports"][0]["targetPort"] in port_names
    assert [e["port"] for e in mon["spec"]["endpoints"]] == ["http-metrics"]
    # CardguardDown matches up{job="cardguard"}; the operator names the job after the Service.
    assert svc["metadata"]["name"] == "cardguard" and "jobLabel" not in mon["spec"]
    # The config flag points into the mounted ConfigMap, at a key it has.
    flag = next(a for a in container["args"] if a.startswith("--config.file="))
    path = Path(flag.split("=", 1)[1])
    (mount,) = container["volumeMounts"]
    (volume,) = pod["spec"]["volumes"]
    assert mount["name"] == volume["name"] and volume["configMap"]["name"] == cm["metadata"]["name"]
    assert str(path.parent) == mount["mountPath"] and path.name in cm["data"]
    config = tmp_path / path.name
    config.write_text(cm["data"][path.name])
    proc = check_config(config)
    assert proc.returncode == 0, proc.stderr
    # Ready only once every target had its first round; alive as long as it answers.
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"


GENERATOR = K8S / "generate.py"


def test_prometheusrule_is_generated_from_rules() -> None:
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    groups = []
    for path in sorted((REPO / "rules").glob("*.rules.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    assert manifests()["PrometheusRule"]["spec"]["groups"] == groups


def test_prometheusrule_check_detects_drift(tmp_path: Path) -> None:
    # Run the generator on a copy of the repository layout with one rule changed.
    (tmp_path / "deploy" / "kubernetes").mkdir(parents=True)
    for name in ("generate.py", "prometheusrule.yaml", "grafana-dashboards.yaml"):
        shutil.copy(K8S / name, tmp_path / "deploy" / "kubernetes")
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    shutil.copytree(REPO / "grafana" / "dashboards", tmp_path / "grafana" / "dashboards")
    rules = tmp_path / "rules" / "cardguard.rules.yml"
    rules.write_text(rules.read_text().replace("for: 30m", "for: 31m", 1))
    script = tmp_path / "deploy" / "kubernetes" / "generate.py"
    proc = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert proc.returncode == 1 and "out of date: prometheusrule.yaml" in proc.stderr


def test_prometheusrule_passes_promtool(tmp_path: Path) -> None:
    spec = manifests()["PrometheusRule"]["spec"]
    rules = tmp_path / "from-prometheusrule.yml"
    rules.write_text(yaml.safe_dump(spec))
    proc = subprocess.run(
        [binary("promtool"), "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kubectl_kustomize_matches_the_test_renderer() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (tests/kustomize.py renders it for every other test)")
    proc = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    def key(d: dict[str, Any]) -> tuple[str, str]:
        return d["kind"], d["metadata"]["name"]

    assert sorted(yaml.safe_load_all(proc.stdout), key=key) == sorted(render(K8S), key=key)


# --- systemd --------------------------------------------------------------------


def unit_lines() -> dict[str, str]:
    text = re.sub(r"\\\n\s*", " ", UNIT.read_text())
    return dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] not in "#;"
    )


def test_systemd_unit_static() -> None:
    unit = unit_lines()
    argv = shlex.split(unit["ExecStart"])
    assert argv[1] == "serve" and f"--web.listen-address=:{PORT}" in argv
    assert "--config.file=/etc/cardguard/cardguard.yml" in argv
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert shlex.split(unit["ExecStartPre"])[1:] == ["check-config", "/etc/cardguard/cardguard.yml"]
    assert unit["DynamicUser"] == "yes" and unit["NoNewPrivileges"] == "yes"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed; test_systemd_unit_static still runs")
    # verify insists the ExecStart binary exists: use this checkout's cardguard script.
    cardguard = Path(sys.executable).parent / "cardguard"
    assert cardguard.exists()
    unit = tmp_path / "cardguard.service"
    unit.write_text(UNIT.read_text().replace("/opt/cardguard/bin/cardguard", str(cardguard)))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    # Unknown keys and bad values are only warnings, so any output is a failure.
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


def test_compose_alert_receiver_prints_notifications(tmp_path: Path) -> None:
    # It prints no address: its port is read from /proc.
    argv = [sys.executable, "-u", str(DEPLOY / "alert-receiver.py"), "0"]
    with running_on_port_0(argv, tmp_path / "receiver.log") as proc:
        body = {
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "CardguardLabelExplosion", "severity": "warning",
                               "target": "demo"},
                    "annotations": {"summary": "Label start_point keeps gaining new values."},
                }
            ]
        }  # fmt: skip

        def post() -> bool:
            return requests.post(f"{proc.base_url}/chat", json=body, timeout=2).status_code == 200

        wait_for(post, 30, "alert-receiver to accept a notification")
        wait_for(lambda: "CardguardLabelExplosion" in proc.logs(), 10, "the printed alert")
        assert (
            "/chat firing CardguardLabelExplosion severity=warning target=demo: "
            "Label start_point keeps gaining new values." in proc.logs()
        )
