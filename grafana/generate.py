#!/usr/bin/env python3
"""Generate cardguard's Grafana dashboards (grafana/dashboards/*.json) from one description.

Panels are built by a few helpers so every panel gets the same datasource
variable, units and layout. Run after editing:

    python3 grafana/generate.py          # rewrite the JSON files
    python3 grafana/generate.py --check  # exit 1 if they are stale

tests/test_dashboards.py runs the --check form and sends every query to a live
Prometheus. Queries use fixed range windows (no Grafana-only macros) so that
the same text runs in Grafana and against the Prometheus API.
"""

# ruff: noqa: E501  (PromQL and panel descriptions read better unbroken)

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
WIDTH = 24

Panel = dict[str, Any]


class Layout:
    """Place panels left to right, wrapping at Grafana's 24 columns."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, panel: Panel, w: int, h: int) -> Panel:
        if self.x + w > WIDTH:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        panel["id"] = self.next_id
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel

    def row(self, title: str) -> Panel:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel = {"type": "row", "title": title, "collapsed": False, "panels": []}
        panel = self.place(panel, WIDTH, 1)
        self.x, self.y, self.row_h = 0, self.y + 1, 0
        return panel


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend}
    if instant:
        t.update(instant=True, range=False, format="table")
    else:
        t.update(range=True)
    return t


def timeseries(
    title: str,
    queries: list[tuple[str, str]],
    unit: str = "short",
    description: str = "",
    stack: bool = False,
) -> Panel:
    refs = "ABCDEFGHIJ"
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(e, legend, refs[i]) for i, (e, legend) in enumerate(queries)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {
                    "lineWidth": 1,
                    "fillOpacity": 10,
                    "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(title: str, expr: str, unit: str = "short", description: str = "") -> Panel:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                },
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
        },
    }


def plain_stat(title: str, expr: str, unit: str = "short", description: str = "") -> Panel:
    panel = stat(title, expr, unit, description)
    panel["fieldConfig"]["defaults"]["thresholds"]["steps"] = [{"color": "blue", "value": None}]
    return panel


def table(title: str, expr: str, description: str = "", hide: tuple[str, ...] = ()) -> Panel:
    excluded = {name: True for name in ("Time", "__name__", *hide)}
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, instant=True)],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
        "transformations": [{"id": "organize", "options": {"excludeByName": excluded}}],
    }


def datasource_var() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "refresh": 1,
        "current": {},
        "hide": 0,
    }


def query_var(name: str, query: str, multi: bool = False, label: str = "") -> dict[str, Any]:
    var: dict[str, Any] = {
        "name": name,
        "label": label or name,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "hide": 0,
    }
    if multi:
        var["allValue"] = ".*"
    return var


def dashboard(
    uid: str, title: str, variables: list[dict[str, Any]], panels: list[Panel]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["cardguard"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "links": [
            {
                "type": "dashboards",
                "title": "cardguard",
                "tags": ["cardguard"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                {
                    "datasource": DS,
                    "enable": True,
                    "iconColor": "red",
                    "name": "cardguard alerts",
                    "expr": 'ALERTS{alertname=~"Cardguard.*", alertstate="firing"}',
                    "titleFormat": "{{alertname}}",
                    "textFormat": "{{target}} {{family}} {{label}} {{function}}",
                    "step": "60s",
                },
            ]
        },
        "templating": {"list": [datasource_var(), *variables]},
        "panels": panels,
    }


def fleet() -> dict[str, Any]:
    t = 'target=~"$target"'
    lay = Layout()
    p = [
        lay.place(
            plain_stat(
                "Targets",
                f"count(cardguard_target_series{{{t}}})",
                description="Go services cardguard watches.",
            ),
            4,
            4,
        ),
        lay.place(
            stat(
                "Targets failing",
                f'count(cardguard_scrape_success{{{t}, endpoint="metrics"}} == 0) or vector(0)',
                description="Targets whose /metrics cardguard could not read on the last try.",
            ),
            4,
            4,
        ),
        lay.place(
            stat(
                "Critical offenders",
                f'sum(cardguard_offenders{{{t}, severity="critical"}}) or vector(0)',
            ),
            4,
            4,
        ),
        lay.place(
            stat(
                "Warning offenders",
                f'sum(cardguard_offenders{{{t}, severity="warning"}}) or vector(0)',
            ),
            4,
            4,
        ),
        lay.place(
            stat(
                "Leaked goroutines",
                f"sum(cardguard_goroutine_group_leaked{{{t}}}) or vector(0)",
                description="Goroutines the Go runtime reports as leaked (Go 1.26+).",
            ),
            4,
            4,
        ),
        lay.place(
            stat(
                "Firing cardguard alerts",
                'count(ALERTS{alertname=~"Cardguard.*", alertstate="firing"}) or vector(0)',
            ),
            4,
            4,
        ),
        lay.row("Targets"),
        lay.place(
            timeseries(
                "Series per target",
                [(f"cardguard_target_series{{{t}}}", "{{target}}")],
                description="Series on each target's /metrics page.",
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Goroutines per target",
                [(f"cardguard_goroutines{{{t}}}", "{{target}}")],
                description="From each target's goroutine profile.",
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Heap in use per target",
                [(f"cardguard_heap_inuse_bytes{{{t}}}", "{{target}}")],
                unit="bytes",
                description="Sum of inuse_space in each target's heap profile.",
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Offenders per target",
                [
                    (
                        f"sum by (target, severity) (cardguard_offenders{{{t}}})",
                        "{{target}} {{severity}}",
                    )
                ],
                stack=True,
            ),
            12,
            8,
        ),
        lay.row("Offenders and leaks"),
        lay.place(
            table(
                "Offenders",
                f"cardguard_offender{{{t}}}",
                description="Evidence and the fix for each offender are on cardguard's /report page.",
                hide=("Value", "job", "instance"),
            ),
            24,
            8,
        ),
        lay.place(
            table(
                "Leaking goroutine groups",
                f"cardguard_goroutine_group_leaked{{{t}}} > 0",
                description="Groups with goroutines the Go runtime reports as leaked.",
                hide=("job", "instance"),
            ),
            12,
            8,
        ),
        lay.place(
            table(
                "Fastest-growing goroutine groups (per hour)",
                f"topk(10, deriv(cardguard_goroutine_group_goroutines{{{t}}}[30m]) * 3600 > 0)",
                hide=("job", "instance"),
            ),
            12,
            8,
        ),
        lay.place(
            table(
                "Labels with the most values",
                f"topk(15, cardguard_label_distinct_values{{{t}}})",
                hide=("job", "instance"),
            ),
            12,
            8,
        ),
        lay.place(
            table(
                "Firing cardguard alerts",
                'ALERTS{alertname=~"Cardguard.*", alertstate="firing"}',
                hide=("Value", "alertstate"),
            ),
            12,
            8,
        ),
        lay.row("cardguard health"),
        lay.place(
            timeseries(
                "Scrape success",
                [(f"cardguard_scrape_success{{{t}}}", "{{target}} {{endpoint}}")],
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Scrape duration",
                [(f"cardguard_scrape_duration_seconds{{{t}}}", "{{target}} {{endpoint}}")],
                unit="s",
            ),
            12,
            8,
        ),
    ]
    variables = [
        query_var("target", "label_values(cardguard_target_series, target)", multi=True),
    ]
    return dashboard("cardguard-fleet", "cardguard / Fleet", variables, p)


def target_dashboard() -> dict[str, Any]:
    t = 'target="$target"'
    go = 'job="$job", instance="$instance"'
    lay = Layout()
    p = [
        lay.place(plain_stat("Series", f"cardguard_target_series{{{t}}}"), 4, 4),
        lay.place(plain_stat("Families", f"cardguard_target_families{{{t}}}"), 4, 4),
        lay.place(plain_stat("Goroutines", f"cardguard_goroutines{{{t}}}"), 4, 4),
        lay.place(plain_stat("Heap in use", f"cardguard_heap_inuse_bytes{{{t}}}", "bytes"), 4, 4),
        lay.place(
            stat(
                "Offenders (warning and worse)",
                f'sum(cardguard_offenders{{{t}, severity=~"critical|warning"}}) or vector(0)',
            ),
            4,
            4,
        ),
        lay.place(
            plain_stat(
                "goroutineleak profile",
                f"cardguard_goroutineleak_supported{{{t}}}",
                description="1 when the target serves /debug/pprof/goroutineleak (Go 1.26+).",
            ),
            4,
            4,
        ),
        lay.row("Families and labels"),
        lay.place(
            timeseries(
                "Series per family",
                [(f'cardguard_family_series{{{t}, family=~"$family"}}', "{{family}}")],
            ),
            12,
            9,
        ),
        lay.place(
            timeseries(
                "Distinct values per label",
                [
                    (
                        f'cardguard_label_distinct_values{{{t}, family=~"$family"}}',
                        "{{family}} / {{label}}",
                    )
                ],
            ),
            12,
            9,
        ),
        lay.place(
            timeseries(
                "New label values per hour",
                [
                    (
                        f'cardguard_label_values_growth_per_hour{{{t}, family=~"$family"}}',
                        "{{family}} / {{label}}",
                    )
                ],
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Series added and removed per second",
                [
                    (
                        f'sum by (family) (rate(cardguard_family_series_added_total{{{t}, family=~"$family"}}[5m]))',
                        "+ {{family}}",
                    ),
                    (
                        f'-sum by (family) (rate(cardguard_family_series_removed_total{{{t}, family=~"$family"}}[5m]))',
                        "- {{family}}",
                    ),
                ],
                description="Added above zero, removed below. Only ever added means series that are never deleted.",
            ),
            12,
            8,
        ),
        lay.row("Goroutines"),
        lay.place(
            timeseries(
                "Goroutines per group (top 10)",
                [
                    (
                        f"topk(10, cardguard_goroutine_group_goroutines{{{t}}})",
                        "{{function}} ({{group}})",
                    )
                ],
            ),
            12,
            9,
        ),
        lay.place(
            timeseries(
                "Leaked goroutines per group",
                [(f"cardguard_goroutine_group_leaked{{{t}}}", "{{function}} ({{group}})")],
                description="Confirmed by the goroutineleak profile or (leaked) markers (Go 1.26+).",
            ),
            12,
            9,
        ),
        lay.place(
            table(
                "Goroutine groups",
                f"cardguard_goroutine_group_goroutines{{{t}}}",
                hide=("job", "instance", "target"),
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Longest wait per group",
                [(f"cardguard_goroutine_group_max_wait_seconds{{{t}}}", "{{group}}")],
                unit="s",
                description="From full goroutine dumps, taken only under the configured goroutine count.",
            ),
            12,
            8,
        ),
        lay.row("Heap owners"),
        lay.place(
            timeseries(
                "In-use bytes per function (top 10, flat)",
                [(f"topk(10, cardguard_heap_owner_inuse_bytes{{{t}}})", "{{function}}")],
                unit="bytes",
            ),
            12,
            9,
        ),
        lay.place(
            timeseries(
                "Heap owner growth per hour (top 10)",
                [
                    (
                        f"topk(10, deriv(cardguard_heap_owner_inuse_bytes{{{t}}}[30m]) * 3600)",
                        "{{function}}",
                    )
                ],
                unit="bytes",
                description="Linear fit over 30 minutes. Steady growth is what CardguardHeapOwnerGrowing alerts on.",
            ),
            12,
            9,
        ),
        lay.place(
            timeseries(
                "In-use objects per function (top 10)",
                [(f"topk(10, cardguard_heap_owner_inuse_objects{{{t}}})", "{{function}}")],
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Change since the previous heap profile (top 10)",
                [(f"topk(10, cardguard_heap_owner_inuse_bytes_delta{{{t}}})", "{{function}}")],
                unit="bytes",
            ),
            12,
            8,
        ),
        lay.row("Go runtime memory (the service's own /metrics, scraped by Prometheus)"),
        lay.place(
            timeseries(
                "RSS against the Go heap",
                [
                    (f"process_resident_memory_bytes{{{go}}}", "RSS"),
                    (f"go_memstats_heap_inuse_bytes{{{go}}}", "heap in use"),
                    (
                        f"go_memstats_heap_idle_bytes{{{go}}} - go_memstats_heap_released_bytes{{{go}}}",
                        "heap idle, kept by Go",
                    ),
                    (f"go_memstats_heap_released_bytes{{{go}}}", "heap released to the OS"),
                    (f"go_memstats_stack_inuse_bytes{{{go}}}", "goroutine stacks"),
                ],
                unit="bytes",
                description=(
                    "A leak shows as heap in use rising with RSS. RSS well above heap in use "
                    "is idle heap Go keeps, released memory the kernel has not reclaimed yet, "
                    "stacks or non-Go memory; container usage may also count page cache."
                ),
            ),
            12,
            9,
        ),
        lay.place(
            timeseries(
                "RSS not explained by heap in use and stacks",
                [
                    (
                        f"process_resident_memory_bytes{{{go}}} - go_memstats_heap_inuse_bytes{{{go}}} - go_memstats_stack_inuse_bytes{{{go}}}",
                        "RSS - heap in use - stacks",
                    ),
                    (
                        f"go_memstats_sys_bytes{{{go}}} - go_memstats_heap_released_bytes{{{go}}}",
                        "obtained from OS - released",
                    ),
                ],
                unit="bytes",
                description=(
                    "Memory the process holds beyond live heap and stacks: idle spans, runtime "
                    "metadata, memory released with MADV_FREE that still counts in RSS. Its growth "
                    "alone is not a leak."
                ),
            ),
            12,
            9,
        ),
        lay.place(
            timeseries(
                "Live heap objects against request rate",
                [
                    (f"go_memstats_heap_objects{{{go}}}", "heap objects"),
                    (f'sum(rate({{__name__=~".*http_requests_total", {go}}}[5m]))', "requests/s"),
                ],
                description="Objects growing while requests stay flat is what CardguardGoHeapObjectsGrowing alerts on.",
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Goroutines and GC",
                [
                    (f"go_goroutines{{{go}}}", "goroutines"),
                    (
                        f"rate(go_gc_duration_seconds_count{{{go}}}[5m]) * 60",
                        "GC cycles per minute",
                    ),
                ],
            ),
            12,
            8,
        ),
        lay.row("Offenders and scrape health"),
        lay.place(
            table(
                "Offenders",
                f"cardguard_offender{{{t}}}",
                description="Evidence and the fix for each are on cardguard's /report page.",
                hide=("Value", "job", "instance", "target"),
            ),
            24,
            7,
        ),
        lay.place(
            timeseries(
                "Scrape success per endpoint",
                [(f"cardguard_scrape_success{{{t}}}", "{{endpoint}}")],
            ),
            8,
            8,
        ),
        lay.place(
            timeseries(
                "Scrape failures per reason",
                [
                    (
                        f"sum by (endpoint, reason) (increase(cardguard_scrape_failures_total{{{t}}}[10m]))",
                        "{{endpoint}} {{reason}}",
                    )
                ],
            ),
            8,
            8,
        ),
        lay.place(
            timeseries(
                "Body size per endpoint",
                [(f"cardguard_scrape_body_bytes{{{t}}}", "{{endpoint}}")],
                unit="bytes",
            ),
            8,
            8,
        ),
    ]
    variables = [
        query_var("target", "label_values(cardguard_target_series, target)"),
        query_var(
            "family",
            'label_values(cardguard_family_series{target="$target"}, family)',
            multi=True,
        ),
        query_var("job", "label_values(go_goroutines, job)", label="Go job"),
        query_var(
            "instance", 'label_values(go_goroutines{job="$job"}, instance)', label="Go instance"
        ),
    ]
    return dashboard("cardguard-target", "cardguard / Target", variables, p)


DASHBOARDS = {
    "cardguard-fleet.json": fleet,
    "cardguard-target.json": target_dashboard,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args()
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
