"""Alertmanager config: amtool check-config, routing cases, inhibition in a real Alertmanager."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from support import REPO, running_on_port_0, wait_for

CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
RULE_FILES = sorted((REPO / "rules").glob("*.rules.yml"))


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run scripts/bootstrap.sh (Debian prometheus-alertmanager)")
    return path


def test_amtool_check_config() -> None:
    proc = subprocess.run(
        [tool("amtool"), "check-config", str(CONFIG)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


# (labels of an alert, receivers it must reach, in order)
ROUTES = [
    ({"alertname": "CardguardLabelCardinalityHigh", "severity": "critical", "target": "demo"},
     "pager,team-chat"),
    ({"alertname": "CardguardGoResidentMemoryWillCrossLimit", "severity": "critical",
      "job": "demo", "instance": "10.0.0.1:8080"}, "pager,team-chat"),
    ({"alertname": "CardguardLabelExplosion", "severity": "warning", "target": "demo"},
     "team-chat"),
    ({"alertname": "CardguardGoroutineLeakConfirmed", "severity": "warning", "target": "demo"},
     "team-chat"),
    ({"alertname": "CardguardOutputCapped", "severity": "info", "target": "demo"}, "tickets"),
    ({"alertname": "CardguardAbsent", "severity": "critical", "job": "cardguard"},
     "pager,team-chat"),
    ({"alertname": "CardguardTargetDown", "severity": "warning", "target": "demo"}, "team-chat"),
    ({"alertname": "CardguardGoServiceDown", "severity": "warning", "target": "demo",
      "job": "demo", "instance": "10.0.0.1:8080"}, "team-chat"),
    # An alert without a known severity still reaches people.
    ({"alertname": "SomethingElse"}, "team-chat"),
    ({"alertname": "SomethingElse", "severity": "page"}, "team-chat"),
]  # fmt: skip


@pytest.mark.parametrize(("labels", "receivers"), ROUTES, ids=lambda v: str(v))
def test_amtool_routes(labels: dict[str, str], receivers: str) -> None:
    argv = [
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receivers}",
        *(f"{k}={v}" for k, v in labels.items()),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, f"routed to {proc.stdout.strip()!r}, expected {receivers!r}"


def test_amtool_routes_detects_a_wrong_expectation() -> None:
    # Guards the test above: --verify.receivers must really compare.
    argv = [
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        "--verify.receivers=tickets",
        "severity=critical",
    ]
    assert subprocess.run(argv, capture_output=True, text=True).returncode != 0


def test_every_rule_severity_is_routed() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    routed = " ".join(m for r in config["route"]["routes"] for m in r["matchers"])
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["labels"]["severity"] in routed, rule["alert"]


def test_inhibit_rules_name_real_alerts() -> None:
    names = {
        rule["alert"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    for inhibit in yaml.safe_load(CONFIG.read_text())["inhibit_rules"]:
        for side in ("source_matchers", "target_matchers"):
            first = inhibit[side][0]
            assert first.startswith(('alertname="', 'alertname=~"')), first
            for name in first.split('"')[1].split("|"):
                assert name in names, first


def post_alerts(base: str, alerts: list[dict[str, str]]) -> None:
    body = [{"labels": labels, "annotations": {"summary": "test"}} for labels in alerts]
    requests.post(f"{base}/api/v2/alerts", json=body, timeout=5).raise_for_status()


def test_inhibition_in_real_alertmanager(tmp_path: Path) -> None:
    argv = [
        tool("prometheus-alertmanager"),
        f"--config.file={CONFIG}",
        f"--storage.path={tmp_path / 'data'}",
        "--web.listen-address=127.0.0.1:0",
        "--cluster.listen-address=",
    ]
    with running_on_port_0(argv, tmp_path / "alertmanager.log", ready_path="/-/ready") as am:
        base = am.base_url
        label = {"target": "demo", "family": "http_request_duration_seconds"}
        post_alerts(
            base,
            [
                {"alertname": "CardguardLabelCardinalityHigh", "severity": "critical",
                 "label": "start_point", **label},
                # Same target/family/label: inhibited.
                {"alertname": "CardguardLabelExplosion", "severity": "warning",
                 "label": "start_point", **label},
                # Another label of the same family: not inhibited.
                {"alertname": "CardguardLabelExplosion", "severity": "warning",
                 "label": "user_id", **label},
                {"alertname": "CardguardGoroutineLeakConfirmed", "severity": "warning",
                 "target": "demo", "group": "9f2c41d0"},
                {"alertname": "CardguardGoroutineGroupGrowing", "severity": "warning",
                 "target": "demo", "group": "9f2c41d0"},
                {"alertname": "CardguardGoroutineGroupGrowing", "severity": "warning",
                 "target": "other", "group": "9f2c41d0"},
            ],
        )  # fmt: skip
        # One alert per cause: an offender alert holds back the threshold and Go-runtime
        # alerts about the same target and subject; critical holds back warning.
        offender = {
            "target": "api",
            "id": "a1b2c3",
            "kind": "goroutine_leak",
            "function": "main.subscribe.func1",
        }
        explosion = {
            "target": "api",
            "kind": "label_explosion",
            "id": "d4e5f6",
            "family": "api_latency",
            "label": "path",
        }
        post_alerts(
            base,
            [
                {"alertname": "CardguardOffenderCritical", "severity": "critical", **offender},
                {"alertname": "CardguardOffenderWarning", "severity": "warning", **offender},
                {"alertname": "CardguardGoGoroutinesTrendingUp", "severity": "warning",
                 "target": "api", "job": "api", "instance": "10.0.0.9:8080"},
                {"alertname": "CardguardGoroutineGroupGrowing", "severity": "warning",
                 "target": "api", "group": "77aa"},
                {"alertname": "CardguardOffenderWarning", "severity": "warning", **explosion},
                {"alertname": "CardguardLabelExplosion", "severity": "warning",
                 "target": "api", "family": "api_latency", "label": "path"},
                {"alertname": "CardguardTargetSeriesGrowing", "severity": "warning",
                 "target": "api"},
                # No heap offender on api: its heap trend alert goes through.
                {"alertname": "CardguardGoResidentMemoryWillCrossLimit", "severity": "critical",
                 "target": "api", "job": "api", "instance": "10.0.0.9:8080"},
                # The same trend on a service cardguard does not watch: not held back.
                {"alertname": "CardguardGoGoroutinesTrendingUp", "severity": "warning",
                 "job": "web", "instance": "10.0.0.8:8080"},
                # One outage: Prometheus' alert holds back cardguard's.
                {"alertname": "CardguardGoServiceDown", "severity": "warning",
                 "target": "db", "job": "db", "instance": "10.0.0.7:5432"},
                {"alertname": "CardguardTargetDown", "severity": "warning", "target": "db"},
                {"alertname": "CardguardTargetScrapeFailing", "severity": "warning",
                 "target": "db"},
            ],
        )  # fmt: skip

        def states() -> dict[tuple[str, str], str]:
            got = requests.get(f"{base}/api/v2/alerts", timeout=5).json()
            out = {}
            for a in got:
                lab = a["labels"]
                what = lab.get("label") or lab.get("target") or lab["job"]
                if lab.get("target") == "api":
                    what = lab.get("id", "api")
                out[(lab["alertname"], what)] = a["status"]["state"]
            return out

        wait_for(lambda: len(states()) == 18, 10, "alerts to be accepted")
        assert states() == {
            ("CardguardOffenderCritical", "a1b2c3"): "active",
            ("CardguardOffenderWarning", "a1b2c3"): "suppressed",
            ("CardguardGoGoroutinesTrendingUp", "api"): "suppressed",
            ("CardguardGoroutineGroupGrowing", "api"): "suppressed",
            ("CardguardOffenderWarning", "d4e5f6"): "active",
            ("CardguardLabelExplosion", "api"): "suppressed",
            ("CardguardTargetSeriesGrowing", "api"): "suppressed",
            ("CardguardGoResidentMemoryWillCrossLimit", "api"): "active",
            ("CardguardGoGoroutinesTrendingUp", "web"): "active",
            ("CardguardGoServiceDown", "db"): "active",
            ("CardguardTargetDown", "db"): "suppressed",
            ("CardguardTargetScrapeFailing", "db"): "suppressed",
            ("CardguardLabelCardinalityHigh", "start_point"): "active",
            ("CardguardLabelExplosion", "start_point"): "suppressed",
            ("CardguardLabelExplosion", "user_id"): "active",
            ("CardguardGoroutineLeakConfirmed", "demo"): "active",
            ("CardguardGoroutineGroupGrowing", "demo"): "suppressed",
            ("CardguardGoroutineGroupGrowing", "other"): "active",
        }
