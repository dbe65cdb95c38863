"""Grafana dashboards in grafana/: structure, provisioning, and every query against live data.

The live test runs the leaky demo service, ``cardguard serve`` watching it and a
real Prometheus scraping both, then sends every panel query (template
variables substituted) and every variable query to Prometheus' HTTP API.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from demo_support import DEMO_FAST_FLAGS
from opsstack import address, cardguard_serve, prometheus, query, shortened_rules
from support import REPO, wait_for

GRAFANA = REPO / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PROVISIONING = GRAFANA / "provisioning"
COMPOSE = REPO / "deploy" / "docker-compose.yml"


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel."""
    return [(title, expr) for title, _, expr in query_refs(dashboard)]


def query_refs(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) for every query of every panel."""
    return [
        (p["title"], t["refId"], t["expr"])
        for p in panels(dashboard)
        if p["type"] != "row"
        for t in p["targets"]
    ]


def test_generated_dashboards_are_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in DASHBOARDS} == {"cardguard-fleet.json", "cardguard-target.json"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    d = load(path)
    assert "__inputs" not in d and "${DS_" not in path.read_text()
    assert d["uid"] and d["title"].startswith("cardguard / ") and "cardguard" in d["tags"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids))
    for p in panels(d):
        pos = p["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}" and t["expr"].strip()
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${datasource}"
    # Every $variable a query uses is defined.
    texts = [e for _, e in queries(d)] + [
        v["definition"] for v in variables.values() if v["type"] == "query"
    ]
    used = {m for e in texts for m in re.findall(r"\$(\w+)", e)}
    assert used <= set(variables), used - set(variables)


def cells(p: dict[str, Any]) -> set[tuple[int, int]]:
    g = p["gridPos"]
    return {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_do_not_overlap(path: Path) -> None:
    taken: set[tuple[int, int]] = set()
    for p in panels(load(path)):
        mine = cells(p)
        assert not (mine & taken), p["title"]
        taken |= mine


def titles(name: str) -> str:
    return " | ".join(p["title"] for p in panels(load(GRAFANA / "dashboards" / name))).lower()


def test_fleet_dashboard_shows_what_the_issue_asks() -> None:
    t = titles("cardguard-fleet.json")
    for needed in ("targets", "series per target", "offenders", "leaking goroutine groups"):
        assert needed in t, needed


def test_target_dashboard_shows_what_the_issue_asks() -> None:
    t = titles("cardguard-target.json")
    for needed in (
        "series per family",
        "distinct values per label",
        "goroutines per group",
        "in-use bytes per function",
        "heap owner growth",
        "rss against the go heap",
    ):
        assert needed in t, needed
    exprs = " ".join(e for _, e in queries(load(GRAFANA / "dashboards" / "cardguard-target.json")))
    for series in (
        "process_resident_memory_bytes",
        "go_memstats_heap_inuse_bytes",
        "go_memstats_heap_released_bytes",
        "go_memstats_heap_idle_bytes",
    ):
        assert series in exprs, series


def test_provisioning_matches_compose() -> None:
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "cardguard.yml").read_text())
    (provider,) = providers["providers"]
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    binds = [v.split(":") for v in grafana["volumes"] if v.startswith(".")]
    mounts = {target: (COMPOSE.parent / source).resolve() for source, target, *_ in binds}
    assert mounts[provider["options"]["path"]] == GRAFANA / "dashboards"
    assert mounts["/etc/grafana/provisioning"] == PROVISIONING
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"])
    assert (GRAFANA / "dashboards" / Path(home).name).exists()
    (ds,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    assert "prometheus" in yaml.safe_load(COMPOSE.read_text())["services"]


# --- live: every query against Prometheus scraping cardguard and the demo -------

# Queries (dashboard, panel title, refId) that may legitimately return nothing
# against the leaky demo, and why. They must still parse and run.
ALLOWED_EMPTY = {
    ("cardguard-target.json", "Scrape failures per reason", "A"): (
        "cardguard_scrape_failures_total only has series once a scrape failed; "
        "nothing fails against a local demo"
    ),
    ("cardguard-target.json", "Longest wait per group", "A"): (
        "max wait comes only from debug=2 dumps, which cardguard skips once the demo's "
        "leaking goroutines pass profiles.goroutine_full_max (gentle on targets)"
    ),
    ("cardguard-target.json", "Series added and removed per second", "B"): (
        "cardguard_family_series_removed_total only has series for families that lost "
        "series; the leaky demo only ever adds them"
    ),
}


def resolve_variable(prom: Any, definition: str, values: dict[str, str]) -> list[str]:
    """Evaluate a Grafana ``label_values(selector, label)`` against Prometheus' series API."""
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition)
    assert m, definition
    selector = substitute(m.group(1), values)
    r = requests.get(f"{prom.base_url}/api/v1/series", params={"match[]": selector}, timeout=10)
    body = r.json()
    assert body["status"] == "success", f"{definition}: {body.get('error')}"
    return sorted({s[m.group(2)] for s in body["data"] if m.group(2) in s})


def substitute(expr: str, values: dict[str, str]) -> str:
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    return expr


def variable_values(prom: Any, d: dict[str, Any], wanted: dict[str, str]) -> dict[str, str]:
    """Resolve the template variables in order, as Grafana does, choosing ``wanted`` values."""
    values: dict[str, str] = {}
    for var in d["templating"]["list"]:
        if var["type"] != "query":
            continue
        name, definition = var["name"], var["definition"]
        wait_for(
            lambda: bool(resolve_variable(prom, definition, values)),  # noqa: B023
            120,
            f"{d['uid']}: values of ${name}",
        )
        options = resolve_variable(prom, definition, values)
        if name in wanted:
            assert wanted[name] in options, (name, options)
            values[name] = wanted[name]
        else:
            values[name] = var.get("allValue") or options[0]
    return values


def check_live(prom: Any, path: Path, wanted: dict[str, str]) -> None:
    """Every panel query of ``path`` parses and, unless ALLOWED_EMPTY, returns data."""
    d = load(path)
    values = variable_values(prom, d, wanted)
    pending = {
        (title, substitute(expr, values))
        for title, ref, expr in query_refs(d)
        if (path.name, title, ref) not in ALLOWED_EMPTY
    }

    def all_have_data() -> bool:
        for item in sorted(pending):
            if query(prom, item[1]):
                pending.discard(item)
        return not pending

    try:
        wait_for(all_have_data, 150, f"{path.name}: data for every panel", step=1)
    except TimeoutError:
        pytest.fail(f"{path.name}: panels without data: {sorted(pending)}")
    # The allowed-empty ones must still parse and run.
    for title, ref, expr in query_refs(d):
        if (path.name, title, ref) in ALLOWED_EMPTY:
            query(prom, substitute(expr, values))


def test_allowed_empty_names_real_queries() -> None:
    refs = {(p.name, title, ref) for p in DASHBOARDS for title, ref, _ in query_refs(load(p))}
    assert set(ALLOWED_EMPTY) <= refs


@pytest.mark.needs_go
def test_every_query_returns_live_data(tmp_path: Path, demo_service: Any) -> None:
    rules = shortened_rules(tmp_path / "rules")  # so ALERTS panels have alerts to show
    with (
        demo_service("current", *DEMO_FAST_FLAGS) as demo,
        cardguard_serve(tmp_path, {"demo": demo.base_url}) as cg,
        prometheus(tmp_path, {"cardguard": address(cg), "demo": address(demo)}, rules) as prom,
    ):
        wanted = {"target": "demo", "job": "demo", "instance": address(demo)}
        for path in DASHBOARDS:
            check_live(prom, path, wanted)


def test_runbook_names_panels_that_exist() -> None:
    runbook = (REPO / "docs" / "runbook.md").read_text()
    named = re.findall(
        r'"([^"]+)"(?= panel| and "[^"]+" panels)|(?<=and )"([^"]+)" panels', runbook
    )
    names = {a or b for a, b in named}
    assert len(names) >= 5, names
    all_titles = [p["title"] for path in DASHBOARDS for p in panels(load(path))]
    for name in names:
        assert any(t.startswith(name) for t in all_titles), (
            f"runbook names a missing panel {name!r}"
        )
