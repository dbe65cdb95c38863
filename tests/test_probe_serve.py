"""/probe through a real ``cardguard serve``, and horizontal scale-out with real Prometheus shards.

The sharding test runs the relabelling of deploy/prometheus-sharded.yml as
shipped (only the shard number, cardguard's address, the file_sd path and the
intervals are filled in): two cardguard replicas, two Prometheus shards and
an HA twin of shard 0, over five real Go services; every service must be
probed by exactly one replica, the one its hash picks.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from promstack import prometheus, query
from support import REPO, Process, cardguard_argv, running_cardguard, wait_for

DEPLOY = REPO / "deploy" / "prometheus-sharded.yml"
K8S = REPO / "deploy" / "kubernetes" / "cardguard-sharded.yaml"


def hashmod(value: str, modulus: int) -> int:
    """Prometheus' hashmod: the low 8 bytes of the MD5 of the value, big-endian, mod N."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


@contextlib.contextmanager
def cardguard(tmp: Path, name: str, config: str) -> Iterator[Process]:
    d = tmp / name
    d.mkdir()
    (d / "cardguard.yml").write_text(config)
    argv = cardguard_argv(
        "serve",
        f"--config.file={d / 'cardguard.yml'}",
        "--web.listen-address=127.0.0.1:0",
    )
    with running_cardguard(argv, d / "cardguard.log") as proc:
        yield proc


def metric_sum(proc: Process, family: str) -> float:
    """Sum every sample of ``family`` on the replica's /metrics."""
    text = requests.get(f"{proc.base_url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((family + " ", family + "{"))
    )


def metric(proc: Process, name: str) -> float:
    text = requests.get(f"{proc.base_url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def test_probe_endpoint_refuses_with_4xx_and_counts(tmp_path: Path, leaky_demo: Process) -> None:
    with cardguard(tmp_path, "cg", "probe:\n  allow: ['127.0.0.1']\n") as cg:
        ok = requests.get(
            f"{cg.base_url}/probe", params={"target": f"127.0.0.1:{leaky_demo.port}"}, timeout=30
        )
        assert ok.status_code == 200
        assert f'target="127.0.0.1:{leaky_demo.port}"' in ok.text
        assert "cardguard_target_series{" in ok.text
        for target, status, reason in (
            ("169.254.169.254:80", 403, "not_allowed"),
            ("gopher://127.0.0.1:70", 400, "scheme"),
            ("http://u:p@127.0.0.1:1", 403, "userinfo"),
        ):
            r = requests.get(f"{cg.base_url}/probe", params={"target": target}, timeout=10)
            assert (r.status_code, f"({reason})") == (status, f"({reason})"), r.text
            assert reason in r.text
        assert requests.get(f"{cg.base_url}/probe", timeout=10).status_code == 400
        assert metric(cg, 'cardguard_probe_refused_total{reason="not_allowed"}') == 1
        assert metric(cg, 'cardguard_probe_refused_total{reason="missing_target"}') == 1
        assert metric(cg, "cardguard_probe_targets") == 1
        logs = cg.logs()
        assert "reason=not_allowed" in logs and "endpoint=probe" in logs
        assert "u:p@" not in logs


def test_debug_probe_shows_each_fetch_and_the_exposition(
    tmp_path: Path, leaky_demo: Process
) -> None:
    """``/probe?target=...&debug=true``, as blackbox_exporter's: log lines, then the series."""
    config = "probe:\n  allow: ['127.0.0.1']\n  cache_ttl: 1h\n  profiles: {interval: 1h}\n"
    with cardguard(tmp_path, "cg", config) as cg:
        target = f"127.0.0.1:{leaky_demo.port}"

        def debug(t: str) -> requests.Response:
            params = {"target": t, "debug": "true"}
            return requests.get(f"{cg.base_url}/probe", params=params, timeout=60)

        r = debug(target)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
        logs, _, rest = r.text.partition("\nMetrics that would have been returned:\n")
        exposition, _, settings = rest.partition("\nProbe configuration:\n")
        lines = logs.splitlines()
        assert lines[0] == "Logs for the probe:"
        assert f'msg="Beginning probe" target={target} url=http://{target}' in lines[1]
        fetched = {
            m["endpoint"]: m
            for m in (dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line)) for line in lines[1:] if line)
            if m.get("msg") == "Fetched"
        }
        assert set(fetched) >= {"metrics", "heap", "goroutine_full", "goroutineleak"}, logs
        metrics = fetched["metrics"]
        assert metrics["url"] == f"http://{target}/metrics" and metrics["status"] == "200"
        assert int(metrics["bytes"]) > 1000 and float(metrics["duration_seconds"]) > 0
        assert f"url=http://{target}/debug/pprof/heap status=200" in logs
        assert 'msg="Endpoint ok" endpoint=heap' in logs and 'msg="Probe done"' in logs
        # The exposition is what the probe returns without debug.
        assert f'cardguard_target_series{{target="{target}"}}' in exposition
        assert "cardguard_heap_owner_inuse_bytes{" in exposition
        assert yaml.safe_load(settings)["profiles"]["interval"] == "1h"

        # Debug bypasses the result cache (cache_ttl 1h) but not profiles.interval.
        again = debug(target).text.partition("\nMetrics that")[0]
        assert "msg=Fetched endpoint=metrics" in again and "endpoint=heap" not in again
        assert 'msg="Profiles not read" reason=interval' in again
        plain = requests.get(f"{cg.base_url}/probe", params={"target": target}, timeout=30)
        assert plain.text.startswith("# HELP") and "Logs for the probe" not in plain.text

        # A failing fetch says why; a refused target says so and is not fetched.
        dead = debug("127.0.0.1:9")
        assert dead.status_code == 200, dead.text
        assert re.search(
            r'msg="Fetch failed" endpoint=metrics url=http://127\.0\.0\.1:9/metrics status=- '
            r"bytes=0 wire_bytes=0 duration_seconds=\S+ reason=connect error=",
            dead.text,
        ), dead.text
        refused = debug("169.254.169.254:80")
        assert refused.status_code == 403
        assert 'msg="Probe refused" reason=not_allowed' in refused.text
        assert "none, the probe was refused" in refused.text
        assert metric(cg, 'cardguard_probe_refused_total{reason="not_allowed"}') == 1


def test_refused_targets_are_logged_escaped_and_rate_limited(tmp_path: Path) -> None:
    """A client's target reaches the log as escaped text, and a loop of refusals cannot flood it.

    ``target=%00`` once put a raw NUL byte into the logfmt line; ESC could colour or
    clear the terminal of whoever tails the log, CR could forge a line.
    """
    from cardguard.expose.server import ClientLog

    with cardguard(tmp_path, "cg", "probe:\n  allow: ['127.0.0.1']\n") as cg:
        n = 40
        for i in range(n):
            target = f"\x00\x1b[2J\r\nlevel=error msg=forged\u2028{i}"
            r = requests.get(f"{cg.base_url}/probe", params={"target": target}, timeout=10)
            assert r.status_code == 400, r.text
        assert metric(cg, 'cardguard_probe_refused_total{reason="invalid_target"}') == n
        raw = cg.log.read_bytes()
        for byte in (b"\x00", b"\x1b", b"\r", "\u2028".encode()):
            assert byte not in raw, byte
        refused = [line for line in raw.decode().splitlines() if "probe refused" in line]
        assert all(line.startswith("ts=") for line in refused), refused
        assert 'target="\\x00\\x1b[2J\\r\\nlevel=error msg=forged\\u20280"' in refused[0]
        # The default budget of warnings (one more may refill on a slow machine), then
        # debug lines, which the default info level does not show.
        assert ClientLog().burst <= len(refused) < n // 2, refused


def shard_config(
    base: dict[str, Any], shard: int, shards: int, cardguard_addr: str, sd_file: Path
) -> dict[str, Any]:
    """Fill one shard's values into the shipped config, checking the parts we rely on."""
    cfg = copy.deepcopy(base)
    cfg["global"].update(scrape_interval="1s", scrape_timeout="1s")
    probe_job, self_job = cfg["scrape_configs"]
    assert probe_job["metrics_path"] == "/probe"
    probe_job["file_sd_configs"] = [{"files": [str(sd_file)], "refresh_interval": "1s"}]
    rel = probe_job["relabel_configs"]
    assert [r.get("action", "replace") for r in rel] == ["hashmod", "keep"] + ["replace"] * 3
    assert rel[0]["source_labels"] == ["__address__"] and rel[2]["target_label"] == "__param_target"
    rel[0]["modulus"] = shards
    rel[1]["regex"] = str(shard)
    assert rel[4]["target_label"] == "__address__"
    rel[4]["replacement"] = cardguard_addr
    cfg["global"]["external_labels"]["shard"] = str(shard)
    self_job["static_configs"] = [{"targets": [cardguard_addr]}]
    return cfg


def probed_instances(prom: Process) -> set[str]:
    got = query(prom, 'cardguard_target_series{job="cardguard-probe"}')
    return {str(r["metric"]["instance"]) for r in got}  # type: ignore[index]


def test_hashmod_shards_probe_each_target_exactly_once(
    tmp_path: Path, demo_service: Callable[..., AbstractContextManager[Process]]
) -> None:
    shards = 2
    base = yaml.safe_load(DEPLOY.read_text())
    with contextlib.ExitStack() as stack:
        services = [stack.enter_context(demo_service("current", "-healthy")) for _ in range(5)]
        addrs = [f"127.0.0.1:{s.port}" for s in services]
        expected = {i: {a for a in addrs if hashmod(a, shards) == i} for i in range(shards)}
        sd = tmp_path / "go-services.json"
        sd.write_text(json.dumps([{"targets": addrs, "labels": {"team": "shop"}}]))
        config = "probe:\n  allow: ['127.0.0.1']\n  cache_ttl: 5s\n"
        replicas = [
            stack.enter_context(cardguard(tmp_path, f"cg{i}", config)) for i in range(shards)
        ]
        proms = [
            stack.enter_context(
                prometheus(
                    tmp_path,
                    shard_config(base, i, shards, f"127.0.0.1:{replicas[i].port}", sd),
                    name=f"prom{i}",
                )
            )
            for i in range(shards)
        ]
        # An HA twin of shard 0: same config, same replica; the cache absorbs it.
        twin = stack.enter_context(
            prometheus(
                tmp_path,
                shard_config(base, 0, shards, f"127.0.0.1:{replicas[0].port}", sd),
                name="prom0-twin",
            )
        )
        for i, prom in enumerate(proms):
            wait_for(
                lambda prom=prom, i=i: probed_instances(prom) == expected[i],  # type: ignore[misc]
                90,
                f"shard {i} to probe {sorted(expected[i])}",
                step=0.5,
            )
        seen = [probed_instances(p) for p in proms]
        assert set().union(*seen) == set(addrs)
        assert not seen[0] & seen[1]
        # Each replica holds state for exactly its shard's targets.
        for i, cg in enumerate(replicas):
            assert metric(cg, "cardguard_probe_targets") == len(expected[i])
            assert metric_sum(cg, "cardguard_probe_refused_total") == 0
        wait_for(lambda: probed_instances(twin) == expected[0], 90, "the HA twin", step=0.5)
        wait_for(
            lambda: metric(replicas[0], "cardguard_probe_cache_hits_total") > 0,
            60,
            "the HA twin to be answered from the cache",
            step=0.5,
        )
        # The derived series come back labelled with the service as target and instance.
        got = query(proms[0], 'cardguard_scrape_success{job="cardguard-probe",endpoint="metrics"}')
        for r in got:
            m = r["metric"]  # type: ignore[index]
            assert m["target"] == m["instance"] and float(r["value"][1]) == 1  # type: ignore[index]


def test_kubernetes_manifest_matches_the_sharded_config() -> None:
    docs = [d for d in yaml.safe_load_all(K8S.read_text()) if d]
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    cg = by_kind[("StatefulSet", "cardguard-sharded")]
    prom = by_kind[("StatefulSet", "prometheus-shard")]
    assert cg["spec"]["replicas"] == prom["spec"]["replicas"]
    assert cg["spec"]["serviceName"] == "cardguard-sharded"
    assert by_kind[("Service", "cardguard-sharded")]["spec"]["clusterIP"] == "None"
    init = prom["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e.get("value") for e in init["env"]}
    assert int(env["SHARDS"]) == prom["spec"]["replicas"]
    template = by_kind[("ConfigMap", "prometheus-shard-template")]["data"]["prometheus.yml"]
    rendered = yaml.safe_load(template.replace("__SHARDS__", "2").replace("__SHARD__", "1"))
    rel = rendered["scrape_configs"][0]["relabel_configs"]
    shipped = yaml.safe_load(DEPLOY.read_text())["scrape_configs"][0]["relabel_configs"]
    # Same sharding and probe relabelling as deploy/prometheus-sharded.yml (after the
    # Kubernetes-only annotation filter).
    assert [r.get("action", "replace") for r in rel[1:]] == [
        r.get("action", "replace") for r in shipped
    ]
    assert rel[2]["regex"] == "1"
    assert rel[-1]["replacement"].startswith("cardguard-sharded-1.cardguard-sharded.")
    # The replica's config parses with cardguard's own loader.
    from cardguard.settings.config import parse_config

    cm = by_kind[("ConfigMap", "cardguard-sharded-config")]["data"]["cardguard.yml"]
    parsed = parse_config(cm, "cardguard-sharded.yaml")
    assert parsed.probe is not None and parsed.probe.cache_ttl == 10


@pytest.mark.parametrize("path", [DEPLOY])
def test_sharded_prometheus_config_is_valid(path: Path, tmp_path: Path) -> None:
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: run scripts/bootstrap.sh")
    r = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
