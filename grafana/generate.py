#!/usr/bin/env python3
"""Generate cardguard's Grafana dashboards (grafana/dashboards/*.json) from one description.

Panels are built by a few helpers so every panel gets the same datasource
variable, units, layout and a description. Job selectors, the cluster label and
cardguard's URL come from rules/settings.yml, the file the alert rules are
generated from too (rules/generate.py), so the two never disagree. Run after
editing this file or the settings:

    python3 grafana/generate.py          # rewrite the JSON files
    python3 grafana/generate.py --check  # exit 1 if they are stale

tests/test_dashboards.py runs the --check form, sends every query to a live
Prometheus (with ``$__rate_interval`` replaced as Grafana would) and
round-trips both dashboards through Grafana's own models
(grafana-foundation-sdk) to prove no field is one Grafana would drop.
"""

# ruff: noqa: E501  (PromQL and panel descriptions read better unbroken)

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "rules"))
import settings as settings_file  # noqa: E402  (rules/settings.py, shared with the rules)

OUT = HERE / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
WIDTH = 24
TARGET_UID = "cardguard-target"

Panel = dict[str, Any]
Settings = settings_file.Settings


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


class Selectors:
    """The label matchers every query starts with, from rules/settings.yml."""

    def __init__(self, s: Settings) -> None:
        cluster = f'{s.cluster_label}="$cluster", ' if s.show_multi_cluster else ""
        self.cluster = cluster
        self.cardguard = f"{cluster}{s.cardguard_selector}"
        self.go = f"{cluster}{s.go_selector}"
        # ALERTS carries the alert's own labels; the cluster label is there in a global view.
        self.alerts = f'{cluster}alertname=~"Cardguard.*", alertstate="firing"'


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
    description: str,
    unit: str = "short",
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
            "legend": {
                "displayMode": "table",
                "placement": "right",
                "calcs": ["lastNotNull"],
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(title: str, expr: str, description: str, unit: str = "short") -> Panel:
    """A stat that turns red from 1: a count of things that should be zero."""
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


def plain_stat(title: str, expr: str, description: str, unit: str = "short") -> Panel:
    panel = stat(title, expr, description, unit)
    panel["fieldConfig"]["defaults"]["thresholds"]["steps"] = [{"color": "blue", "value": None}]
    return panel


def table(
    title: str,
    expr: str,
    description: str,
    hide: tuple[str, ...] = (),
    links: list[dict[str, Any]] | None = None,
) -> Panel:
    excluded = {name: True for name in ("Time", "__name__", *hide)}
    defaults: dict[str, Any] = {"links": links} if links else {}
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, instant=True)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"showHeader": True},
        "transformations": [{"id": "organize", "options": {"excludeByName": excluded}}],
    }


def target_dashboard_link(s: Settings, target_ref: str) -> dict[str, Any]:
    """A data link to the per-target dashboard for ``target_ref`` (a row field or variable)."""
    params = "${datasource:queryparam}"
    if s.show_multi_cluster:
        params += "&${cluster:queryparam}"
    return {
        "title": f"cardguard / Target: {target_ref}",
        "url": f"/d/{TARGET_UID}/cardguard-target?{params}&var-target={target_ref}&${{__url_time_range}}",
    }


def report_link() -> dict[str, Any]:
    """A data link to the row's offender on cardguard's /report page (anchor ``o-<id>``)."""
    return {
        "title": "Evidence and fix on cardguard's /report",
        "url": "${cardguard_url}/report#o-${__data.fields.id}",
        "targetBlank": True,
    }


def datasource_var() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "description": "The Prometheus that scrapes cardguard and the Go services.",
        "type": "datasource",
        "query": "prometheus",
        "refresh": 1,
        "current": {},
        "hide": 0,
    }


def query_var(
    name: str,
    query: str,
    description: str,
    multi: bool = False,
    label: str = "",
) -> dict[str, Any]:
    var: dict[str, Any] = {
        "name": name,
        "label": label or name,
        "description": description,
        "type": "query",
        "datasource": DS,
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


def cluster_vars(s: Settings, sel: Selectors) -> list[dict[str, Any]]:
    if not s.show_multi_cluster:
        return []
    return [
        query_var(
            "cluster",
            f"label_values(cardguard_target_series{{{s.cardguard_selector}}}, {s.cluster_label})",
            f"Value of the {s.cluster_label} label (rules/settings.yml: cluster_label).",
        )
    ]


def cardguard_url_var(s: Settings) -> dict[str, Any]:
    return {
        "name": "cardguard_url",
        "label": "cardguard URL",
        "description": (
            "Where your browser reaches cardguard, for the links to its /report page "
            "(default from rules/settings.yml: cardguard_url)."
        ),
        "type": "textbox",
        "query": s.cardguard_url,
        "current": {"text": s.cardguard_url, "value": s.cardguard_url},
        "hide": 0,
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[dict[str, Any]],
    panels: list[Panel],
    sel: Selectors,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
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
                    # Only `expr`: Grafana's dashboard schema has no titleFormat/textFormat,
                    # so the alert's label values (alertname, target, family, ...) are the
                    # annotation's tags instead.
                    "datasource": DS,
                    "enable": True,
                    "iconColor": "red",
                    "name": "cardguard alerts",
                    "expr": f"ALERTS{{{sel.alerts}}}",
                },
            ]
        },
        "templating": {"list": [datasource_var(), *variables]},
        "panels": panels,
    }


def fleet(s: Settings) -> dict[str, Any]:
    sel = Selectors(s)
    t = f'{sel.cardguard}, target=~"$target"'
    lay = Layout()
    to_target = [target_dashboard_link(s, "${__data.fields.target}")]
    p = [
        lay.place(
            plain_stat(
                "Targets",
                f"count(cardguard_target_series{{{t}}})",
                "Go services cardguard reads a /metrics page of, configured or probed for Prometheus.",
            ),
            4,
            4,
        ),
        lay.place(
            stat(
                "Targets failing",
                f'count(cardguard_scrape_success{{{t}, endpoint="metrics"}} == 0) or vector(0)',
                "Targets whose /metrics cardguard could not read on the last try. The reason is on the Target dashboard's 'Scrape failures per reason' panel and in cardguard's log.",
            ),
            4,
            4,
        ),
        lay.place(
            stat(
                "Critical offenders",
                f'sum(cardguard_offenders{{{t}, severity="critical"}}) or vector(0)',
                "Offenders of severity critical across the chosen targets: act now (CardguardOffenderCritical pages after 10 minutes).",
            ),
            4,
            4,
        ),
        lay.place(
            stat(
                "Warning offenders",
                f'sum(cardguard_offenders{{{t}, severity="warning"}}) or vector(0)',
                "Offenders of severity warning: a leak under way, to fix within working hours.",
            ),
            4,
            4,
        ),
        lay.place(
            stat(
                "Leaked goroutines",
                f"sum(cardguard_goroutine_group_leaked{{{t}}}) or vector(0)",
                "Goroutines the Go runtime itself reports as leaked (goroutineleak profile or (leaked) markers, Go 1.26+); they can never exit.",
            ),
            4,
            4,
        ),
        lay.place(
            stat(
                "Firing cardguard alerts",
                f"count(ALERTS{{{sel.alerts}}}) or vector(0)",
                "Alerts from rules/ (all named Cardguard*) firing in this Prometheus now.",
            ),
            4,
            4,
        ),
        lay.row("Targets"),
        lay.place(
            timeseries(
                "Series per target",
                [(f"cardguard_target_series{{{t}}}", "{{target}}")],
                "Series on each target's /metrics page. A line that only goes up is a label explosion on its way; the Target dashboard shows which family.",
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Goroutines per target",
                [(f"cardguard_goroutines{{{t}}}", "{{target}}")],
                "Goroutines in each target's goroutine profile. Steady growth without more load is a goroutine leak.",
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Heap in use per target",
                [(f"cardguard_heap_inuse_bytes{{{t}}}", "{{target}}")],
                "Sum of inuse_space in each target's heap profile: live heap as Go sampled it, without idle or released memory.",
                unit="bytes",
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
                "Offenders cardguard names per target and severity, stacked.",
                stack=True,
            ),
            12,
            8,
        ),
        lay.row("Offenders and leaks"),
        lay.place(
            table(
                "Offenders",
                f"cardguard_offender_info{{{t}}}",
                "One row per offender. Click a row for the target's dashboard or for the offender's evidence and fix on cardguard's /report page (targets cardguard probes for Prometheus are not on /report; set the cardguard URL variable to where your browser reaches cardguard).",
                hide=("Value", "job", "instance"),
                links=[*to_target, report_link()],
            ),
            24,
            8,
        ),
        lay.place(
            table(
                "Leaking goroutine groups",
                f"cardguard_goroutine_group_leaked{{{t}}} > 0",
                "Goroutine groups (same stack and creator) with goroutines the Go runtime reports as leaked; the value is how many. Click a row for the target's dashboard.",
                hide=("job", "instance"),
                links=to_target,
            ),
            12,
            8,
        ),
        lay.place(
            table(
                "Fastest-growing goroutine groups (per hour)",
                f"topk(10, deriv(cardguard_goroutine_group_goroutines{{{t}}}[30m]) * 3600 > 0)",
                "Goroutines added per hour per group, from a linear fit over the last 30 minutes, so bursts that drain do not count. Click a row for the target's dashboard.",
                hide=("job", "instance"),
                links=to_target,
            ),
            12,
            8,
        ),
        lay.place(
            table(
                "Labels with the most values",
                f"topk(15, cardguard_label_distinct_values{{{t}}})",
                "Distinct values per label across targets (shown once past thresholds.min_label_values). Thousands of values in a label like path or user_id is the usual explosion. Click a row for the target's dashboard.",
                hide=("job", "instance"),
                links=to_target,
            ),
            12,
            8,
        ),
        lay.place(
            table(
                "Firing cardguard alerts",
                f"ALERTS{{{sel.alerts}}}",
                "Alerts from rules/ firing now, with their labels; each alert's runbook_url says what to do.",
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
                "1 when cardguard's last fetch of that target's endpoint (metrics, heap, goroutine, ...) worked, 0 when it failed.",
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Scrape duration",
                [(f"cardguard_scrape_duration_seconds{{{t}}}", "{{target}} {{endpoint}}")],
                "How long cardguard's last fetch of each endpoint took, body included. Close to the timeout means the next one may fail.",
                unit="s",
            ),
            12,
            8,
        ),
    ]
    variables = [
        *cluster_vars(s, sel),
        query_var(
            "target",
            f"label_values(cardguard_target_series{{{sel.cardguard}}}, target)",
            "cardguard targets: a configured target's name, or the address of a probed one.",
            multi=True,
        ),
        cardguard_url_var(s),
    ]
    return dashboard(
        "cardguard-fleet",
        "cardguard / Fleet",
        "Every Go service cardguard watches: series, goroutines, heap, offenders and cardguard's own health.",
        variables,
        p,
        sel,
    )


def target_dashboard(s: Settings) -> dict[str, Any]:
    sel = Selectors(s)
    t = f'{sel.cardguard}, target="$target"'
    go = f'{sel.cluster}job="$job", instance="$instance"'
    lay = Layout()
    p = [
        lay.place(
            plain_stat(
                "Series",
                f"cardguard_target_series{{{t}}}",
                "Series on the target's /metrics page at cardguard's last scrape.",
            ),
            4,
            4,
        ),
        lay.place(
            plain_stat(
                "Families",
                f"cardguard_target_families{{{t}}}",
                "Metric families (names with HELP/TYPE) on the target's /metrics page.",
            ),
            4,
            4,
        ),
        lay.place(
            plain_stat(
                "Goroutines",
                f"cardguard_goroutines{{{t}}}",
                "Goroutines in the target's last goroutine profile.",
            ),
            4,
            4,
        ),
        lay.place(
            plain_stat(
                "Heap in use",
                f"cardguard_heap_inuse_bytes{{{t}}}",
                "Sum of inuse_space in the target's last heap profile.",
                "bytes",
            ),
            4,
            4,
        ),
        lay.place(
            stat(
                "Offenders (warning and worse)",
                f'sum(cardguard_offenders{{{t}, severity=~"critical|warning"}}) or vector(0)',
                "Offenders of severity warning or critical on this target; the Offenders table below lists them.",
            ),
            4,
            4,
        ),
        lay.place(
            plain_stat(
                "goroutineleak profile",
                f"cardguard_goroutineleak_supported{{{t}}}",
                "1 when the target serves /debug/pprof/goroutineleak (Go 1.26+ with the experiment, 1.27+), so leaks are confirmed by the runtime rather than inferred from growth.",
            ),
            4,
            4,
        ),
        lay.row("Families and labels"),
        lay.place(
            timeseries(
                "Series per family",
                [(f'cardguard_family_series{{{t}, family=~"$family"}}', "{{family}}")],
                "Series per metric family (families past thresholds.min_family_series). The family whose line climbs is the one with an unbounded label.",
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
                "Distinct values of each label per family (labels past thresholds.min_label_values). Past global.exact_count_cap the count is a HyperLogLog estimate.",
            ),
            12,
            9,
        ),
        lay.place(
            timeseries(
                "New label values per hour",
                [
                    (
                        f'cardguard_label_values_growth_per_second{{{t}, family=~"$family"}} * 3600',
                        "{{family}} / {{label}}",
                    )
                ],
                "New distinct values each label gains per hour (cardguard_label_values_growth_per_second times 3600). Sustained growth on a label that already has many values is what CardguardLabelExplosion alerts on.",
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Series added and removed per second",
                [
                    (
                        f'sum by (family) (rate(cardguard_family_series_added_total{{{t}, family=~"$family"}}[$__rate_interval]))',
                        "+ {{family}}",
                    ),
                    (
                        f'-sum by (family) (rate(cardguard_family_series_removed_total{{{t}, family=~"$family"}}[$__rate_interval]))',
                        "- {{family}}",
                    ),
                ],
                "Added above zero, removed below. Only ever added means series that are never deleted.",
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
                "The ten largest goroutine groups (same stack and creator), named by the function they wait in.",
            ),
            12,
            9,
        ),
        lay.place(
            timeseries(
                "Leaked goroutines per group",
                [(f"cardguard_goroutine_group_leaked{{{t}}}", "{{function}} ({{group}})")],
                "Confirmed by the goroutineleak profile or (leaked) markers (Go 1.26+).",
            ),
            12,
            9,
        ),
        lay.place(
            table(
                "Goroutine groups",
                f"cardguard_goroutine_group_goroutines{{{t}}}",
                "Every group cardguard shows for this target (past thresholds.min_goroutine_group): the function it waits in, who created it, and how many goroutines it has now.",
                hide=("job", "instance", "target"),
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Longest wait per group",
                [(f"cardguard_goroutine_group_max_wait_seconds{{{t}}}", "{{group}}")],
                "From full goroutine dumps, taken only under the configured goroutine count.",
                unit="s",
            ),
            12,
            8,
        ),
        lay.row("Heap owners"),
        lay.place(
            timeseries(
                "In-use bytes per function (top 10, flat)",
                [(f"topk(10, cardguard_heap_owner_inuse_bytes{{{t}}})", "{{function}}")],
                "Heap held by the function that allocated it (flat inuse_space), as `go tool pprof -top` shows; standard-library frames are skipped for the caller that owns them.",
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
                "Linear fit over 30 minutes. Steady growth is what CardguardHeapOwnerGrowing alerts on.",
                unit="bytes",
            ),
            12,
            9,
        ),
        lay.place(
            timeseries(
                "In-use objects per function (top 10)",
                [(f"topk(10, cardguard_heap_owner_inuse_objects{{{t}}})", "{{function}}")],
                "Live objects per allocating function (flat inuse_objects). Many small objects growing is a map or slice that is never emptied.",
            ),
            12,
            8,
        ),
        lay.place(
            timeseries(
                "Change since the previous heap profile (top 10)",
                [(f"topk(10, cardguard_heap_owner_inuse_bytes_delta{{{t}}})", "{{function}}")],
                "In-use bytes each function gained since cardguard's previous heap profile, as `go tool pprof -base` shows.",
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
                "A leak shows as heap in use rising with RSS. RSS well above heap in use is idle heap Go keeps, released memory the kernel has not reclaimed yet, stacks or non-Go memory; container usage may also count page cache.",
                unit="bytes",
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
                "Memory the process holds beyond live heap and stacks: idle spans, runtime metadata, memory released with MADV_FREE that still counts in RSS. Its growth alone is not a leak.",
                unit="bytes",
            ),
            12,
            9,
        ),
        lay.place(
            timeseries(
                "Live heap objects against request rate",
                [
                    (f"go_memstats_heap_objects{{{go}}}", "heap objects"),
                    (
                        f'sum(rate({{__name__=~".*http_requests_total", {go}}}[$__rate_interval]))',
                        "requests/s",
                    ),
                ],
                "Objects growing while requests stay flat is what CardguardGoHeapObjectsGrowing alerts on.",
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
                        f"rate(go_gc_duration_seconds_count{{{go}}}[$__rate_interval]) * 60",
                        "GC cycles per minute",
                    ),
                ],
                "The service's own goroutine count and garbage collections per minute. More GC at the same load means more live heap to scan.",
            ),
            12,
            8,
        ),
        lay.row("Offenders and scrape health"),
        lay.place(
            table(
                "Offenders",
                f"cardguard_offender_info{{{t}}}",
                "Offenders on this target. Click a row for its evidence and fix on cardguard's /report page (set the cardguard URL variable to where your browser reaches cardguard; probed targets are not on /report).",
                hide=("Value", "job", "instance", "target"),
                links=[report_link()],
            ),
            24,
            7,
        ),
        lay.place(
            timeseries(
                "Scrape success per endpoint",
                [(f"cardguard_scrape_success{{{t}}}", "{{endpoint}}")],
                "1 when cardguard's last fetch of the endpoint worked. heap and goroutine at 0 leave the leak panels above empty.",
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
                "Failed fetches in the ten minutes before each point, by endpoint and reason (timeout, connect, http_status, too_large, ...). docs/runbook.md says what each reason means.",
            ),
            8,
            8,
        ),
        lay.place(
            timeseries(
                "Body size per endpoint",
                [(f"cardguard_scrape_body_bytes{{{t}}}", "{{endpoint}}")],
                "Decompressed size of the last response per endpoint. A /metrics page that keeps growing is the explosion itself; near body_size_limit, fetches start failing with too_large.",
                unit="bytes",
            ),
            8,
            8,
        ),
    ]
    variables = [
        *cluster_vars(s, sel),
        query_var(
            "target",
            f"label_values(cardguard_target_series{{{sel.cardguard}}}, target)",
            "A cardguard target: a configured target's name, or the address of a probed one.",
        ),
        query_var(
            "family",
            f'label_values(cardguard_family_series{{{sel.cardguard}, target="$target"}}, family)',
            "Metric families of the target that cardguard shows (past thresholds.min_family_series).",
            multi=True,
        ),
        # The Go runtime panels read the service's own series, which Prometheus scrapes
        # directly: follow the target by address. A probed target is named by its address
        # (instance); a configured one matches when it is named after its host (demo ->
        # demo:6060).
        query_var(
            "instance",
            f'label_values(go_goroutines{{{sel.go}, instance=~"${{target}}(:[0-9]+)?"}}, instance)',
            "The Go service's instance for the Go runtime panels: the one whose address is the target's name, with or without a port.",
            label="Go instance",
        ),
        query_var(
            "job",
            f'label_values(go_goroutines{{{sel.go}, instance="$instance"}}, job)',
            "The Prometheus job that scrapes that instance's own /metrics.",
            label="Go job",
        ),
        cardguard_url_var(s),
    ]
    return dashboard(
        TARGET_UID,
        "cardguard / Target",
        "One Go service: its families and labels, goroutine groups, heap owners, runtime memory and offenders.",
        variables,
        p,
        sel,
    )


DASHBOARDS = {
    "cardguard-fleet.json": fleet,
    "cardguard-target.json": target_dashboard,
}


def render(build: Any, s: Settings) -> str:
    return json.dumps(build(s), indent=2, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--settings", type=Path, default=settings_file.PATH)
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the JSON files")
    args = parser.parse_args()
    try:
        s = settings_file.load(args.settings)
    except settings_file.SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    stale = []
    for name, build in DASHBOARDS.items():
        path = args.out / name
        text = render(build, s)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
