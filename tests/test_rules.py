"""Alert and recording rules in rules/: promtool checks, unit tests and conventions."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from support import REPO

RULES = REPO / "rules"
RULE_FILES = sorted(RULES.glob("*.rules.yml"))
TEST_FILES = sorted((RULES / "tests").glob("*.yml"))
RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/cardguard/cardguard/blob/main/docs/runbook.md#"
SEVERITIES = {"critical", "warning", "info"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run scripts/bootstrap.sh (Debian package prometheus)")
    return path


def alerts() -> list[dict[str, Any]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(rule for rule in group["rules"] if "alert" in rule)
    return found


def test_rule_files_exist() -> None:
    names = {p.name for p in RULE_FILES}
    assert {"cardguard.rules.yml", "go-runtime.rules.yml"} <= names
    assert TEST_FILES, "no promtool unit tests under rules/tests/"


def test_promtool_check_rules() -> None:
    proc = subprocess.run(
        [promtool(), "check", "rules", *map(str, RULE_FILES)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_test_rules() -> None:
    proc = subprocess.run(
        [promtool(), "test", "rules", *map(str, TEST_FILES)],
        capture_output=True,
        text=True,
        cwd=RULES / "tests",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(TEST_FILES), proc.stdout


def test_unit_tests_load_every_rule_file() -> None:
    loaded = set()
    for path in TEST_FILES:
        for rel in yaml.safe_load(path.read_text())["rule_files"]:
            loaded.add((path.parent / rel).resolve())
    assert loaded == {p.resolve() for p in RULE_FILES}


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested staying silent"
    assert (firing | silent) - names == set(), "tests name alerts that do not exist"


def test_every_firing_case_checks_annotations() -> None:
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                for exp in check.get("exp_alerts") or []:
                    assert set(exp.get("exp_annotations", {})) == {
                        "summary",
                        "description",
                        "runbook_url",
                    }, f"{path.name}: {check['alertname']} at {check['eval_time']}"


def anchors(markdown: str) -> set[str]:
    """Return GitHub-style anchors of the markdown headings."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return out


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_alert_conventions(alert: dict[str, Any]) -> None:
    name = alert["alert"]
    assert re.fullmatch(r"Cardguard(?:[A-Z][a-z0-9]+)+", name), name
    assert alert["labels"]["severity"] in SEVERITIES
    annotations = alert["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert annotations["runbook_url"] == RUNBOOK_URL + name.lower()
    assert name.lower() in anchors(RUNBOOK.read_text()), f"docs/runbook.md lacks ## {name}"
    assert "for" in alert, "every alert needs a for: duration so one bad sample cannot page"


def test_runbook_has_no_sections_for_missing_alerts() -> None:
    names = {a["alert"] for a in alerts()}
    sections = re.findall(r"^## (Cardguard\w+)$", RUNBOOK.read_text(), re.M)
    assert set(sections) == names
    assert len(sections) == len(set(sections))


def test_no_allocation_churn_as_leak_signal() -> None:
    # rate(go_memstats_alloc_bytes_total) measures churn, not retained memory.
    for path in RULE_FILES:
        text = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        assert "go_memstats_alloc_bytes_total" not in text, path.name


def test_trend_alerts_have_level_guard() -> None:
    for alert in alerts():
        expr = alert["expr"]
        if "deriv(" in expr or "predict_linear(" in expr:
            assert re.search(r"\band\b", expr), f"{alert['alert']}: trend without a level guard"
