"""usage: which rules and dashboards use a label, from the repository's own files and a rule file
that uses the demo's exploding label; promtool checks the same rule files' syntax.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from cardguard.analyse import usage
from cardguard.run import usagefiles
from cardguard.settings.usage import UsageConfig
from support import REPO, TESTDATA, cardguard_argv, running_cardguard_serve, wait_for

RULES = sorted((REPO / "rules").glob("*.rules.yml"))
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
FAMILY = "demo_http_request_duration_seconds"

USES_START_POINT = """\
groups:
  - name: demo-latency
    rules:
      - record: start_point:demo_http_request_duration_seconds:rate5m
        expr: sum by (start_point) (rate(demo_http_request_duration_seconds_count[5m]))
      - alert: DemoOrdersSlow
        expr: >-
          demo_http_request_duration_seconds{quantile="0.99", start_point=~"/api/v1/users/.*"}
          > 1
      - record: route:demo_http_request_duration_seconds_count:rate5m
        expr: |
          sum by (route) (label_replace(rate(demo_http_request_duration_seconds_count[5m]),
            "route", "$1", "start_point", "(/api/v1/[^/]+).*"))
      - alert: DemoRequestsFailing
        expr: sum by (code) (rate(demo_http_requests_total[5m])) > 0
"""


def read(paths: list[Path]) -> list[tuple[str, str]]:
    return [(str(p.relative_to(REPO)), p.read_text()) for p in paths]


def test_repository_rules_and_dashboards_parse_and_index() -> None:
    idx = usage.index(read(RULES), read(DASHBOARDS))
    assert not idx.problems, idx.problems
    targets = sum(p.read_text().count('"expr"') for p in DASHBOARDS)
    rules = sum(len(usage.rule_exprs(t, s)) for s, t in read(RULES))
    variables = sum(1 for s, t in read(DASHBOARDS) for e in usage.dashboard_exprs(t, s)
                    if ": variable " in e.source)  # fmt: skip
    # every "expr" of the JSON (targets and annotations) is read
    assert idx.expressions == targets + rules + variables
    # what the repository's alerts group by is found, on the families they read
    by = {(u.label, u.how) for e, u in idx.uses if "cardguard.rules.yml" in e.source}
    assert ("target", "by") in by and ("instance", "by") in by
    goroutines = idx.of("go_goroutines", "job")
    assert any("go-runtime.rules.yml" in u.source for u in goroutines)
    assert any('panel "' in u.source and u.how == "matcher" for u in goroutines)
    # the demo's exploding label appears in none of them
    assert idx.of(FAMILY, "start_point") == []


def test_promtool_agrees_on_the_rule_files(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: run scripts/bootstrap.sh")
    f = tmp_path / "uses.rules.yml"
    f.write_text(USES_START_POINT)
    for path in [*RULES, f]:
        proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = tmp_path / "bad.rules.yml"
    bad.write_text("groups: [{name: g, rules: [{record: r, expr: 'sum by (a) (x'}]}]\n")
    assert subprocess.run([promtool, "check", "rules", str(bad)], capture_output=True).returncode
    idx = usage.index([(str(bad), bad.read_text())], [])
    assert idx.problems and "cannot parse" in idx.problems[0]


def test_rule_file_using_the_exploding_label() -> None:
    idx = usage.index([("uses.rules.yml", USES_START_POINT)], [])
    found = {(u.source, u.how) for u in idx.of(FAMILY, "start_point")}
    assert found == {
        ("uses.rules.yml: demo-latency/record start_point:demo_http_request_duration_seconds"
         ":rate5m", "by"),
        ("uses.rules.yml: demo-latency/alert DemoOrdersSlow", "matcher"),
        ("uses.rules.yml: demo-latency/record route:demo_http_request_duration_seconds_count"
         ":rate5m", "label_replace"),
    }  # fmt: skip
    # a rule on another family that groups by another label is not a use
    assert idx.of("demo_http_requests_total", "start_point") == []


def test_grafana_variables_are_substituted_before_parsing() -> None:
    board = {
        "panels": [
            {
                "title": "Row",
                "panels": [
                    {
                        "title": "p99 by route",
                        "targets": [
                            {
                                "expr": "histogram_quantile(0.99, sum by (le, start_point) "
                                '(rate(demo_x_bucket{job="$job", instance=~"${instance:regex}"}'
                                "[$__rate_interval])))"
                            },
                            {"expr": 'max_over_time(demo_x_count{job=~"[[job]]"}[$w:$__interval])'},
                        ],
                    }
                ],
            }
        ],
        "templating": {"list": [{"name": "job", "query": "label_values(demo_x_count, job)"}]},
    }
    exprs = usage.dashboard_exprs(json.dumps(board), "d.json")
    assert [e.source for e in exprs] == [
        'd.json: panel "p99 by route"',
        'd.json: panel "p99 by route"',
        'd.json: variable "job"',
    ]
    idx = usage.index([], [("d.json", json.dumps(board))])
    assert not idx.problems, idx.problems
    assert {u.how for u in idx.of("demo_x", "start_point")} == {"by"}
    assert {u.how for u in idx.of("demo_x", "job")} == {"matcher"}


def test_report_names_what_dropping_the_label_breaks(tmp_path: Path) -> None:
    f = tmp_path / "uses.rules.yml"
    f.write_text(USES_START_POINT)
    argv = cardguard_argv(
        "report", "--from", str(TESTDATA / "report" / "demo-current"), "--format", "json",
        "--usage-rules", str(f), "--usage-rules", str(REPO / "rules" / "*.rules.yml"),
        "--usage-dashboards", str(REPO / "grafana" / "dashboards" / "*.json"),
    )  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    o = next(
        o
        for o in json.loads(proc.stdout)["offenders"]
        if o["kind"] == "label_explosion" and o["evidence"]["label"] == "start_point"
    )
    assert {u["how"] for u in o["evidence"]["used_by"]} == {"by", "matcher", "label_replace"}
    assert "Dropping or rewriting start_point breaks what uses it: " in o["fix"]
    assert "DemoOrdersSlow (matcher)" in o["fix"]
    # only the repository's own files: nothing uses the label
    cfg = UsageConfig(("rules/*.rules.yml",), ("grafana/dashboards/*.json",), REPO)
    assert usagefiles.read(cfg).of(FAMILY, "start_point") == []


def test_serve_names_what_dropping_the_label_breaks(tmp_path: Path, leaky_demo: Any) -> None:
    """The config's ``usage:`` section: serve's fixes name the rules that use the label, and a
    reload re-reads the files."""
    (tmp_path / "uses.rules.yml").write_text(USES_START_POINT)
    (tmp_path / "cardguard.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"targets:\n  - name: demo\n    url: {leaky_demo.base_url}\n"
        "    profiles: {enabled: false}\n"
        "usage:\n  rule_files: [uses.rules.yml]\n"
    )

    def seed(base: str) -> dict[str, Any] | None:
        doc = requests.get(f"{base}/report", params={"format": "json"}, timeout=30).json()
        (target,) = doc["targets"]
        found = [
            o
            for o in target["offenders"]
            if o["kind"] == "label_explosion" and o["evidence"]["label"] == "start_point"
        ]
        return found[0] if found else None

    with running_cardguard_serve(
        tmp_path / "serve.log", f"--config.file={tmp_path / 'cardguard.yml'}"
    ) as cg:
        wait_for(lambda: seed(cg.base_url) is not None, 60, "the seed explosion")
        o = seed(cg.base_url)
        assert o is not None
        assert {u["how"] for u in o["evidence"]["used_by"]} == {"by", "matcher", "label_replace"}
        assert "DemoOrdersSlow (matcher)" in o["fix"]
        # The rule is rewritten without the label; a reload re-reads the file.
        (tmp_path / "uses.rules.yml").write_text(USES_START_POINT.replace("start_point", "route"))
        cg.popen.send_signal(signal.SIGHUP)

        def unused() -> bool:
            got = seed(cg.base_url)
            return got is not None and got["evidence"].get("used_by") == []

        wait_for(unused, 60, "the reloaded rules to be read")
        assert "Traceback" not in cg.logs()
