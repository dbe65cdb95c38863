"""Grafana dashboards in grafana/: structure, links, Grafana's own models, and live queries.

The live test runs the leaky demo service, ``cardguard serve`` watching it and a
real Prometheus scraping both (and a Pushgateway, a second Go service the
dashboards must not mix up with the target), then sends every panel query
(template variables and ``$__rate_interval`` substituted as Grafana does) and
every variable query to Prometheus' HTTP API, and follows the offender links to
cardguard's /report page. No Grafana server runs here: the dashboards are
round-tripped through grafana-foundation-sdk's models of the Grafana the compose
stack runs instead.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml

from demo_support import DEMO_FAST_FLAGS
from opsstack import address, cardguard_serve, prometheus, query, shortened_rules
from promstack import pushgateway
from support import REPO, wait_for

GRAFANA = REPO / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PROVISIONING = GRAFANA / "provisioning"
COMPOSE = REPO / "deploy" / "docker-compose.yml"
SETTINGS = yaml.safe_load((REPO / "rules" / "settings.yml").read_text())
# What Grafana puts for $__rate_interval with its default 15s datasource scrape interval:
# max(4 * 15s, interval + 15s).
RATE_INTERVAL = "1m"


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
        assert p.get("description", "").strip(), f"{p['title']}: no description"
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${datasource}"
        assert v.get("description", "").strip(), f"${v['name']}: no description"
    # Every $variable a query or link uses is defined ($__name are Grafana's own).
    texts = [e for _, e in queries(d)] + [var_query(v) for v in query_vars(d)]
    texts += [link["url"] for p in panels(d) for link in data_links(p)]
    used = {m for e in texts for m in re.findall(r"\$\{?(\w+)", e)}
    used = {u for u in used if not u.startswith("__")}
    assert used <= set(variables), used - set(variables)


def query_vars(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in d["templating"]["list"] if v["type"] == "query"]


def var_query(var: dict[str, Any]) -> str:
    return str(var["query"]["query"])


def data_links(panel: dict[str, Any]) -> list[dict[str, Any]]:
    return list(panel.get("fieldConfig", {}).get("defaults", {}).get("links", []))


METRIC = re.compile(r"\b((?:cardguard|go|process)_\w+)\{([^}]*)\}")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_queries_use_the_settings_selectors_and_rate_interval(path: Path) -> None:
    """Selectors come from rules/settings.yml; rate windows follow Grafana's step."""
    d = load(path)
    texts = [e for _, e in queries(d)] + [var_query(v) for v in query_vars(d)]
    seen = 0
    for text in texts:
        for metric, matchers in METRIC.findall(text):
            seen += 1
            if metric.startswith("cardguard_"):
                assert SETTINGS["cardguard_selector"] in matchers, text
            else:
                # The Go service's own series: the instance chosen for the target.
                assert 'instance="$instance"' in matchers or (
                    SETTINGS["go_selector"] in matchers and "instance=~" in matchers
                ), text
        assert "[5m]" not in text, f"fixed rate window in {text}"
        for window in re.findall(r"\b(?:rate|increase)\([^\[]*\[([^\]]+)\]", text):
            assert window in {"$__rate_interval", "10m"}, text
    assert seen >= 10


def test_go_instance_follows_the_target() -> None:
    d = load(GRAFANA / "dashboards" / "cardguard-target.json")
    names = [v["name"] for v in d["templating"]["list"]]
    # Grafana resolves variables in order: target, then the instance named after it, then its job.
    assert names.index("target") < names.index("instance") < names.index("job")
    variables = {v["name"]: v for v in query_vars(d)}
    assert "${target}" in var_query(variables["instance"])
    assert 'instance="$instance"' in var_query(variables["job"])
    rates = [e for _, e in queries(d) if "rate(" in e]
    assert len(rates) >= 3 and all("[$__rate_interval]" in e for e in rates), rates


def test_offender_rows_link_to_the_target_dashboard_and_the_report() -> None:
    fleet = load(GRAFANA / "dashboards" / "cardguard-fleet.json")
    target = load(GRAFANA / "dashboards" / "cardguard-target.json")
    offenders = next(p for p in panels(fleet) if p["title"] == "Offenders")
    to_target, to_report = data_links(offenders)
    url = urlsplit(to_target["url"])
    assert url.path.startswith(f"/d/{target['uid']}/")
    params = parse_qs(url.query.replace("${datasource:queryparam}", "var-datasource=x"))
    assert params["var-target"] == ["${__data.fields.target}"]
    assert "${__url_time_range}" in url.query
    assert {v["name"] for v in target["templating"]["list"]} >= {"datasource", "target"}
    assert to_report["url"] == REPORT_LINK
    target_offenders = next(p for p in panels(target) if p["title"] == "Offenders")
    assert [link["url"] for link in data_links(target_offenders)] == [REPORT_LINK]
    # The row field the links read is a column the table keeps.
    for panel in (offenders, target_offenders):
        (organize,) = panel["transformations"]
        assert "id" not in organize["options"]["excludeByName"]
    assert "target" not in offenders["transformations"][0]["options"]["excludeByName"]
    url_var = next(v for v in fleet["templating"]["list"] if v["name"] == "cardguard_url")
    assert url_var["type"] == "textbox" and url_var["query"] == SETTINGS["cardguard_url"]


REPORT_LINK = "${cardguard_url}/report#o-${__data.fields.id}"


def grafana_sdk_version() -> str:
    try:
        return importlib.metadata.version("grafana-foundation-sdk")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("grafana-foundation-sdk missing: run scripts/bootstrap.sh (dev extra)")


def lost(original: Any, back: Any, path: str = "") -> list[str]:
    """Fields of ``original`` missing or changed in ``back`` (fields only ``back`` has are fine)."""
    if isinstance(original, dict):
        if not isinstance(back, dict):
            return [f"{path}: became {type(back).__name__}"]
        out = []
        for key, value in original.items():
            if key not in back:
                out.append(f"{path}.{key}")
            else:
                out.extend(lost(value, back[key], f"{path}.{key}"))
        return out
    if isinstance(original, list):
        if not isinstance(back, list) or len(back) != len(original):
            return [f"{path}: list changed"]
        return [
            m
            for i, (a, b) in enumerate(zip(original, back, strict=True))
            for m in lost(a, b, f"{path}[{i}]")
        ]
    return [] if original == back else [f"{path}: {original!r} became {back!r}"]


def test_grafana_sdk_is_the_grafana_compose_runs() -> None:
    image = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["image"]
    # Epoch-numbered builds: "<epoch>!<grafana version>"; the version must be compose's.
    assert grafana_sdk_version().split("!")[-1] == image.split(":")[1]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_round_trips_through_grafana_models(path: Path) -> None:
    """Grafana's own schema, as grafana-foundation-sdk models it, keeps every field we write."""
    grafana_sdk_version()
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    original = load(path)
    model = Dashboard.from_json(original)
    back = json.loads(JSONEncoder(sort_keys=True).encode(model))
    assert lost(original, back) == []
    # Typed, not passed through: panels and queries went through their plugins' models.
    assert {type(p).__name__ for p in model.panels or []} >= {"Panel", "RowPanel"}
    first = next(p for p in model.panels or [] if type(p).__name__ == "Panel")
    assert type(first.targets[0]).__module__.endswith("models.prometheus")


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
    values = {"__rate_interval": RATE_INTERVAL, **values}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    return expr


def variable_values(prom: Any, d: dict[str, Any], wanted: dict[str, str]) -> dict[str, str]:
    """Resolve the template variables in order, as Grafana does, choosing ``wanted`` values."""
    values: dict[str, str] = {}
    for var in query_vars(d):
        name, definition = var["name"], var_query(var)
        wait_for(
            lambda: bool(resolve_variable(prom, definition, values)),  # noqa: B023
            120,
            f"{d['uid']}: values of ${name}",
        )
        options = resolve_variable(prom, definition, values)
        if name in wanted:
            assert options == [wanted[name]] if name in ONLY else wanted[name] in options, (
                name,
                options,
            )
            values[name] = wanted[name]
        else:
            values[name] = var.get("allValue") or options[0]
    return values


# Variables whose only option must be the wanted one: the Go instance and job follow the
# target, so the Pushgateway (another Go service Prometheus scrapes) must not be offered.
ONLY = {"instance", "job"}


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
        pushgateway(tmp_path) as pgw,
        # Named by its address, as a probed target is, so the Go panels can follow it.
        cardguard_serve(tmp_path, {address(demo): demo.base_url}) as cg,
        prometheus(
            tmp_path,
            {"cardguard": address(cg), "demo": address(demo), "pushgateway": address(pgw)},
            rules,
        ) as prom,
    ):
        wanted = {"target": address(demo), "job": "demo", "instance": address(demo)}
        for path in DASHBOARDS:
            check_live(prom, path, wanted)
        check_report_links(prom, cg.base_url, address(demo))


def check_report_links(prom: Any, cardguard_url: str, target: str) -> None:
    """Each offender row's /report link lands on that offender's section of the page."""
    rows = query(prom, f'cardguard_offender_info{{target="{target}"}}')
    assert rows, "no offenders for the leaky demo"
    page = requests.get(f"{cardguard_url}/report", timeout=10).text
    for row in rows:
        link = REPORT_LINK.replace("${cardguard_url}", cardguard_url)
        link = link.replace("${__data.fields.id}", row["metric"]["id"])
        anchor = urlsplit(link).fragment
        assert f'id="{anchor}"' in page, f"{link}: no such anchor on /report"


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
