"""deploy/kubernetes rendered as kustomize would, then checked against the real schemas.

No cluster and no kubectl here: tests/kustomize.py renders the kustomization
(namespace, labels, images, replacements), Kubernetes' own JSON schemas (the
kubernetes-validate package, strict: unknown fields are errors) check the
built-in kinds, and the prometheus-operator CRDs copied into
tests/testdata/prometheus-operator-crds check the Probe, ScrapeConfig,
ServiceMonitor and PrometheusRule, with unknown fields refused as well (the API
server would prune them silently). Each validator is also shown a broken
object, so a check that accepts everything cannot pass.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cardguard import __version__
from cardguard.settings import allowlist
from kustomize import Doc, KustomizeError, render
from opsstack import seconds
from support import REPO, TESTDATA

K8S = REPO / "deploy" / "kubernetes"
CRDS = TESTDATA / "prometheus-operator-crds"
KUBERNETES_VERSIONS = ("1.29", "1.33")  # an older supported release and a current one
PORT = 10180


@cache
def rendered() -> tuple[Doc, ...]:
    return tuple(render(K8S))


def docs() -> list[Doc]:
    return copy.deepcopy(list(rendered()))


def one(kind: str, name: str | None = None) -> Doc:
    (doc,) = [d for d in docs() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


# --- rendering --------------------------------------------------------------------


def test_kustomization_renders_every_object_in_one_namespace() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs())
    assert kinds == [
        ("ConfigMap", "cardguard-config"),
        ("ConfigMap", "cardguard-dashboards"),
        ("Deployment", "cardguard"),
        ("Probe", "cardguard"),
        ("PrometheusRule", "cardguard"),
        ("ScrapeConfig", "cardguard-pods"),
        ("Service", "cardguard"),
        ("ServiceMonitor", "cardguard"),
    ]
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert {d["metadata"]["namespace"] for d in docs()} == {k["namespace"]}


def test_namespace_release_label_and_image_are_set_once() -> None:
    # The manifests themselves carry none of the three; kustomization.yaml sets them.
    for name in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]:
        text = (K8S / name).read_text()
        for doc in yaml.safe_load_all(text):
            assert "namespace" not in doc["metadata"], name
            assert "release" not in doc["metadata"].get("labels", {}), name
        assert "monitoring.svc" not in text and "release: prometheus" not in text, name
    for d in docs():
        assert d["metadata"]["labels"]["release"] == "prometheus", d["kind"]
    deploy = one("Deployment")
    # Not in the selector or the pod template: changing it must not re-create pods.
    assert "release" not in deploy["spec"]["selector"]["matchLabels"]
    assert "release" not in deploy["spec"]["template"]["metadata"]["labels"]
    assert "release" not in one("Service")["spec"]["selector"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"cardguard:{__version__}"


def service_address() -> str:
    svc = one("Service", "cardguard")
    (port,) = svc["spec"]["ports"]
    return f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc:{port['port']}"


def test_probe_and_scrapeconfig_reach_cardguard_service() -> None:
    probe = one("Probe")
    assert probe["spec"]["prober"] == {"url": service_address(), "path": "/probe"}
    scrape = one("ScrapeConfig")
    assert scrape["spec"]["metricsPath"] == "/probe"
    (address,) = [r for r in scrape["spec"]["relabelings"] if r.get("targetLabel") == "__address__"]
    assert address["replacement"] == service_address()
    # The alert rules and dashboards select these jobs (rules/settings.yml).
    selector = yaml.safe_load((REPO / "rules" / "settings.yml").read_text())["cardguard_selector"]
    m = re.fullmatch(r'job=~"(.*)"', selector)
    assert m, selector
    for job in (probe["spec"]["jobName"], scrape["spec"]["jobName"]):
        assert re.fullmatch(m.group(1), job), (job, selector)
    # cardguard answers the operator's scrape before Prometheus gives up on it.
    assert seconds(probe["spec"]["scrapeTimeout"]) < seconds(probe["spec"]["interval"])
    assert seconds(scrape["spec"]["scrapeTimeout"]) < seconds(scrape["spec"]["scrapeInterval"])


def test_replacements_follow_a_changed_namespace(tmp_path: Path) -> None:
    for path in K8S.glob("*.yaml"):
        shutil.copy(path, tmp_path)
    k = tmp_path / "kustomization.yaml"
    k.write_text(k.read_text().replace("namespace: monitoring", "namespace: observability"))
    objects = render(tmp_path)
    probe = next(d for d in objects if d["kind"] == "Probe")
    assert probe["spec"]["prober"]["url"] == "cardguard.observability.svc:10180"
    # And the renderer refuses what it does not implement instead of ignoring it.
    k.write_text(k.read_text() + "namePrefix: team-\n")
    with pytest.raises(KustomizeError, match="namePrefix"):
        render(tmp_path)


def test_probe_targets_are_on_cardguards_allow_list() -> None:
    config = yaml.safe_load(one("ConfigMap", "cardguard-config")["data"]["cardguard.yml"])
    allow = allowlist.build(config["probe"]["allow"], source="configmap.yaml")
    resolved = {
        "checkout.shop.svc": ["10.96.14.2"],
        "metadata.google.internal": ["169.254.169.254"],
    }

    def resolve(host: str, port: int) -> list[str]:
        return resolved.get(host, [host])

    static = one("Probe")["spec"]["targets"]["staticConfig"]["static"]
    pod = "10.244.1.7:6060"  # what the ScrapeConfig's pod discovery hands over
    for target in [*static, pod]:
        decision = allowlist.check(allow, target, resolve)
        assert isinstance(decision, allowlist.Target), (target, decision)
    for target in ("metadata.google.internal:80", "192.168.1.1:6060"):
        decision = allowlist.check(allow, target, resolve)
        assert isinstance(decision, allowlist.Refusal), target


# --- Kubernetes' own schemas --------------------------------------------------------

BUILT_IN = ("ConfigMap", "Deployment", "Service")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_built_in_kinds_match_kubernetes_schemas(version: str) -> None:
    checked = 0
    for doc in docs():
        if doc["kind"] in BUILT_IN:
            kubernetes_validate.validate(doc, version, strict=True)
            checked += 1
    assert checked == 4
    broken = one("Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError, match="paht"):
        kubernetes_validate.validate(broken, version, strict=True)


# --- prometheus-operator CRDs -------------------------------------------------------


def strict(schema: Any) -> Any:
    """Refuse fields a structural schema does not list, as ``kubectl --validate=strict`` does."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict openAPIV3Schema of each served CRD version."""
    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version["served"]:
                schema = strict(version["schema"]["openAPIV3Schema"])
                out[f"{group}/{version['name']}", kind] = schema
    return out


def crd_errors(doc: Doc) -> list[str]:
    schema = crd_schemas()[doc["apiVersion"], doc["kind"]]
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def test_crds_are_copied_with_their_licence() -> None:
    assert (CRDS / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert "v0.93.0" in (CRDS / "README.md").read_text()
    kinds = {kind for _, kind in crd_schemas()}
    assert kinds == {"Probe", "PrometheusRule", "ScrapeConfig", "ServiceMonitor"}


@pytest.mark.parametrize("kind", ["Probe", "PrometheusRule", "ScrapeConfig", "ServiceMonitor"])
def test_operator_objects_match_their_crds(kind: str) -> None:
    doc = one(kind)
    assert crd_errors(doc) == []


def test_crd_validation_refuses_typos_and_bad_values() -> None:
    probe = one("Probe")
    probe["spec"]["prober"]["urll"] = probe["spec"]["prober"].pop("url")
    assert any("'urll' was unexpected" in e for e in crd_errors(probe))
    scrape = one("ScrapeConfig")
    scrape["spec"]["kubernetesSDConfigs"][0]["role"] = "pods"
    assert any("kubernetesSDConfigs.0.role" in e for e in crd_errors(scrape))
    monitor = one("ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    assert any("endpoints.0.interval" in e for e in crd_errors(monitor))


# --- the Grafana dashboards ConfigMap -------------------------------------------------


def test_generated_manifests_are_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(K8S / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_dashboards_configmap_carries_every_dashboard_for_the_sidecar() -> None:
    cm = one("ConfigMap", "cardguard-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
    assert sorted(cm["data"]) == [p.name for p in files]
    for path in files:
        assert cm["data"][path.name] == path.read_text()
        assert json.loads(cm["data"][path.name])["uid"]
    # kubectl apply keeps the whole object in an annotation limited to 256 KiB.
    assert len(json.dumps(cm)) < 256 * 1024


def test_dashboards_configmap_check_detects_drift(tmp_path: Path) -> None:
    (tmp_path / "deploy" / "kubernetes").mkdir(parents=True)
    for name in ("generate.py", "prometheusrule.yaml", "grafana-dashboards.yaml"):
        shutil.copy(K8S / name, tmp_path / "deploy" / "kubernetes")
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    shutil.copytree(REPO / "grafana" / "dashboards", tmp_path / "grafana" / "dashboards")
    script = tmp_path / "deploy" / "kubernetes" / "generate.py"
    run = [sys.executable, str(script), "--check"]
    assert subprocess.run(run, capture_output=True, text=True).returncode == 0
    fleet = tmp_path / "grafana" / "dashboards" / "cardguard-fleet.json"
    fleet.write_text(fleet.read_text().replace('"refresh": "30s"', '"refresh": "1m"'))
    proc = subprocess.run(run, capture_output=True, text=True)
    assert proc.returncode == 1 and "grafana-dashboards.yaml" in proc.stderr
