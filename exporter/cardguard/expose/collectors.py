"""prometheus_client collectors that turn the scheduler's target snapshots into cardguard_* series.

Each collector is handed a callable returning the current
:class:`~cardguard.run.snapshot.TargetSnapshot` objects and builds fresh metric
families on every ``collect()``; nothing here keeps state between scrapes.
Which families, labels, heap owners and goroutine groups appear was decided
by the scheduler (sticky, capped per target); everything else is folded into
one ``__other__`` series, so a target with a million families still yields a
few hundred series here.
"""

# ruff: noqa: E501  (docstring examples are verbatim exposition lines)

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from cardguard.parse.overflow import OTHER
from cardguard.run.scheduler import ScheduleView
from cardguard.run.snapshot import ENDPOINTS, OUTPUT_KINDS, TargetSnapshot
from cardguard.settings.rules import SEVERITIES
from cardguard.version import BuildInfo

Snapshots = Callable[[], Sequence[TargetSnapshot]]


def _gauge(name: str, doc: str, labels: Sequence[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class ScrapeHealthCollector(Collector):
    """Per-target, per-endpoint fetch health. Only endpoints cardguard has tried appear.

    Example::

        cardguard_scrape_success{target="api",endpoint="metrics"} 1.0
        cardguard_scrape_duration_seconds{target="api",endpoint="heap"} 0.012
        cardguard_scrape_failures_total{target="api",endpoint="metrics",reason="timeout"} 3.0
        cardguard_last_scrape_success_timestamp_seconds{target="api",endpoint="metrics"} 1.7e9
        cardguard_scrape_body_bytes{target="api",endpoint="metrics"} 48211.0
        cardguard_scrapes_skipped_total{target="api",endpoint="heap",reason="late"} 2.0
    """

    def __init__(self, snapshots: Snapshots) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        labels = ("target", "endpoint")
        success = _gauge(
            "cardguard_scrape_success",
            "1 if cardguard's last fetch of this endpoint of the target succeeded "
            "(fetched within the size and time limits and parsed), else 0.",
            labels,
        )
        duration = _gauge(
            "cardguard_scrape_duration_seconds",
            "Wall time of cardguard's last fetch of this endpoint, measured by cardguard.",
            labels,
        )
        failures = CounterMetricFamily(
            "cardguard_scrape_failures",
            "Failed fetches of this endpoint by cardguard since it started, by bounded reason.",
            labels=[*labels, "reason"],
        )
        last_ok = _gauge(
            "cardguard_last_scrape_success_timestamp_seconds",
            "Unix time of cardguard's last successful fetch of this endpoint.",
            labels,
        )
        body = _gauge(
            "cardguard_scrape_body_bytes",
            "Decompressed size of the last successfully fetched body of this endpoint.",
            labels,
        )
        skipped = CounterMetricFamily(
            "cardguard_scrapes_skipped",
            "Scheduled runs of this endpoint's job cardguard skipped: late (no free fetch "
            "thread within one interval: cardguard is overloaded) or overrun (the previous "
            "run was still going).",
            labels=[*labels, "reason"],
        )
        for snap in self._snapshots():
            for endpoint in ENDPOINTS:
                h = snap.health.get(endpoint)
                if h is None:
                    continue
                for reason, n in sorted(h.skipped.items()):
                    skipped.add_metric([snap.target, endpoint, reason], float(n))
                if not h.attempted:
                    continue
                lv = [snap.target, endpoint]
                success.add_metric(lv, 1.0 if h.success else 0.0)
                duration.add_metric(lv, h.duration)
                for reason, n in sorted(h.failures.items()):
                    failures.add_metric([*lv, reason], float(n))
                if h.last_success is not None:
                    last_ok.add_metric(lv, h.last_success)
                    body.add_metric(lv, float(h.body_bytes))
        yield from (success, duration, failures, last_ok, body, skipped)


class CardinalityCollector(Collector):
    """Series per family and distinct values per label, from each target's last /metrics page.

    Example::

        cardguard_target_series{target="api"} 52113.0
        cardguard_family_series{target="api",family="api_latency",metric_type="summary"} 50000.0
        cardguard_label_distinct_values{target="api",family="api_latency",label="start_point"} 10000.0
        cardguard_label_values_growth_per_second{target="api",family="api_latency",label="start_point"} 1.0
        cardguard_family_series_added_total{target="api",family="api_latency"} 1250.0
        cardguard_output_capped{target="api",kind="family"} 0.0
    """

    def __init__(self, snapshots: Snapshots) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        src = "counted by cardguard on the target's last successfully parsed /metrics page"
        total = _gauge("cardguard_target_series", f"Series (sample lines) {src}.", ["target"])
        fam_count = _gauge("cardguard_target_families", f"Metric families {src}.", ["target"])
        fam_series = _gauge(
            "cardguard_family_series",
            f"Series per metric family {src}; families appear once past "
            "global.thresholds.min_family_series and stay; past the cap they are summed "
            "into family=__other__.",
            ["target", "family", "metric_type"],
        )
        lab_labels = ["target", "family", "label"]
        distinct = _gauge(
            "cardguard_label_distinct_values",
            f"Distinct values of a label within a family {src} (exact up to "
            "global.exact_count_cap, then a HyperLogLog estimate); family=__other__ holds the "
            "largest count among labels folded past the cap.",
            lab_labels,
        )
        estimated = _gauge(
            "cardguard_label_distinct_values_estimated",
            "1 if cardguard_label_distinct_values is an estimate (past the exact-count cap).",
            lab_labels,
        )
        growth = _gauge(
            "cardguard_label_values_growth_per_second",
            "Least-squares slope of the label's distinct values over cardguard's last hour of "
            "/metrics scrapes, in values per second.",
            lab_labels,
        )
        added = CounterMetricFamily(
            "cardguard_family_series_added",
            "Series that appeared on the target's /metrics page between cardguard's scrapes "
            "(families not shown are summed into family=__other__).",
            labels=["target", "family"],
        )
        removed = CounterMetricFamily(
            "cardguard_family_series_removed",
            "Series that disappeared from the target's /metrics page between cardguard's "
            "scrapes (families not shown are summed into family=__other__).",
            labels=["target", "family"],
        )
        capped = _gauge(
            "cardguard_output_capped",
            "1 once cardguard has folded entries of this kind for the target into __other__ "
            "because a per-target cap in global.caps was reached.",
            ["target", "kind"],
        )
        for snap in self._snapshots():
            name = snap.target
            for kind in OUTPUT_KINDS:
                folded = kind in snap.visible.capped or (
                    kind == "offender" and snap.offenders_capped
                )
                capped.add_metric([name, kind], 1.0 if folded else 0.0)
            for fam, n in sorted(snap.series_added.items()):
                added.add_metric([name, fam], float(n))
            for fam, n in sorted(snap.series_removed.items()):
                removed.add_metric([name, fam], float(n))
            page = snap.analysis
            if page is None:
                continue
            total.add_metric([name], float(page.total_series))
            real = [f for f in page.families if f.name != OTHER]
            fam_count.add_metric([name], float(len(real) + page.other_families))
            vis = snap.visible
            other_series = 0
            seen: set[str] = set()
            th_other = 0
            for f in page.families:
                if f.name == OTHER:
                    th_other += f.series
                elif f.name in vis.families and f.name not in seen:
                    seen.add(f.name)
                    fam_series.add_metric([name, f.name, f.type], float(f.series))
                elif f.name not in vis.families:
                    other_series += f.series
            if "family" in vis.capped:
                fam_series.add_metric([name, OTHER, "mixed"], float(other_series + th_other))
            churn = snap.churn
            growth_of = {(c.family, c.label): c for c in churn.labels} if churn else {}
            folded_max = 0
            emitted: set[tuple[str, str]] = set()
            for f in real:
                for lab in f.labels:
                    if (f.name, lab.name) not in vis.labels:
                        folded_max = max(folded_max, lab.distinct_values)
                        continue
                    if (f.name, lab.name) in emitted:
                        # OpenMetrics pages may repeat a family name with another type;
                        # one series per label set (Prometheus rejects duplicates).
                        continue
                    emitted.add((f.name, lab.name))
                    lv = [name, f.name, lab.name]
                    distinct.add_metric(lv, float(lab.distinct_values))
                    estimated.add_metric(lv, 1.0 if lab.estimated else 0.0)
                    lc = growth_of.get((f.name, lab.name))
                    if lc is not None:
                        growth.add_metric(lv, lc.growth_per_hour / 3600.0)
            if "label" in vis.capped:
                distinct.add_metric([name, OTHER, OTHER], float(folded_max))
        yield from (total, fam_count, fam_series, distinct, estimated, growth, added, removed)
        yield capped


class ProfileCollector(Collector):
    """Heap owners and goroutine groups from each target's last pprof profiles.

    Example::

        cardguard_heap_inuse_bytes{target="api"} 9.4e7
        cardguard_heap_owner_inuse_bytes{target="api",function="github.com/beorn7/perks/quantile.newStream"} 7.1e7
        cardguard_heap_owner_inuse_bytes_delta{target="api",function="main.(*cache).put"} 2097152.0
        cardguard_goroutines{target="api"} 2051.0
        cardguard_goroutine_group_goroutines{target="api",group="3f9a1c2b",function="main.subscribe.func1",created_by="main.subscribe"} 2000.0
        cardguard_goroutine_group_leaked{target="api",group="3f9a1c2b",function="main.subscribe.func1",created_by="main.subscribe"} 2000.0
        cardguard_goroutineleak_supported{target="api"} 1.0
    """

    def __init__(self, snapshots: Snapshots) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        heap_src = "parsed from /debug/pprof/heap"
        inuse_bytes = _gauge(
            "cardguard_heap_inuse_bytes",
            f"In-use heap bytes, {heap_src} (inuse_space).",
            ["target"],
        )
        inuse_objects = _gauge(
            "cardguard_heap_inuse_objects",
            f"In-use heap objects, {heap_src} (inuse_objects).",
            ["target"],
        )
        fl = ["target", "function"]
        owner_bytes = _gauge(
            "cardguard_heap_owner_inuse_bytes",
            f"In-use bytes allocated directly by this function, {heap_src} (inuse_space, flat); "
            "functions not shown are summed into function=__other__.",
            fl,
        )
        owner_objects = _gauge(
            "cardguard_heap_owner_inuse_objects",
            f"In-use objects allocated directly by this function, {heap_src} "
            "(inuse_objects, flat).",
            fl,
        )
        owner_delta = _gauge(
            "cardguard_heap_owner_inuse_bytes_delta",
            "Change of the function's flat in-use bytes between the two latest heap profiles "
            "cardguard took (as go tool pprof -base computes it).",
            fl,
        )
        gsrc = "parsed from /debug/pprof/goroutine"
        total_g = _gauge(
            "cardguard_goroutines", f"Goroutines in the last snapshot {gsrc}.", ["target"]
        )
        gl = ["target", "group", "function", "created_by"]
        group_n = _gauge(
            "cardguard_goroutine_group_goroutines",
            f"Goroutines sharing one stack (group = hash of the normalised stack), {gsrc}; "
            "function is the top non-runtime frame, created_by the creator (from debug=2).",
            gl,
        )
        group_wait = _gauge(
            "cardguard_goroutine_group_max_wait_seconds",
            f"Longest wait of a goroutine of the group, {gsrc}?debug=2 (full dumps only; "
            "Go reports whole minutes, so this is a multiple of 60).",
            ["target", "group"],
        )
        group_leaked = _gauge(
            "cardguard_goroutine_group_leaked",
            "Goroutines of the group confirmed leaked, parsed from /debug/pprof/goroutineleak "
            "or the (leaked) markers of a debug=2 dump.",
            gl,
        )
        leak_supported = _gauge(
            "cardguard_goroutineleak_supported",
            "1 if the target serves /debug/pprof/goroutineleak (Go 1.26+ with the experiment, "
            "1.27+), 0 if it answered 404.",
            ["target"],
        )
        for snap in self._snapshots():
            self._heap(snap, inuse_bytes, inuse_objects, owner_bytes, owner_objects, owner_delta)
            self._goroutines(snap, total_g, group_n, group_wait, group_leaked, leak_supported)
        yield from (inuse_bytes, inuse_objects, owner_bytes, owner_objects, owner_delta)
        yield from (total_g, group_n, group_wait, group_leaked, leak_supported)

    @staticmethod
    def _heap(
        snap: TargetSnapshot,
        inuse_bytes: GaugeMetricFamily,
        inuse_objects: GaugeMetricFamily,
        owner_bytes: GaugeMetricFamily,
        owner_objects: GaugeMetricFamily,
        owner_delta: GaugeMetricFamily,
    ) -> None:
        heap = snap.heap
        if heap is None:
            return
        name = snap.target
        shown = snap.visible.heap_owners
        inuse_bytes.add_metric([name], float(heap.inuse_bytes.total))
        inuse_objects.add_metric([name], float(heap.inuse_objects.total))
        for report, family in (
            (heap.inuse_bytes, owner_bytes),
            (heap.inuse_objects, owner_objects),
        ):
            rest = report.total
            for f in report.functions:
                if f.name in shown:
                    family.add_metric([name, f.name], float(f.flat))
                    rest -= f.flat
            family.add_metric([name, OTHER], float(rest))
        if heap.delta_bytes is not None:
            rest = heap.delta_bytes.total_delta
            for d in heap.delta_bytes.functions:
                if d.name in shown:
                    owner_delta.add_metric([name, d.name], float(d.flat_delta))
                    rest -= d.flat_delta
            owner_delta.add_metric([name, OTHER], float(rest))

    @staticmethod
    def _goroutines(
        snap: TargetSnapshot,
        total_g: GaugeMetricFamily,
        group_n: GaugeMetricFamily,
        group_wait: GaugeMetricFamily,
        group_leaked: GaugeMetricFamily,
        leak_supported: GaugeMetricFamily,
    ) -> None:
        name = snap.target
        shown = snap.visible.groups
        creators = snap.group_creators
        if snap.goroutineleak_supported is not None:
            leak_supported.add_metric([name], 1.0 if snap.goroutineleak_supported else 0.0)

        def labels(gid: str, function: str, created_by: str | None) -> list[str]:
            return [name, gid, function, creators.get(gid) or created_by or ""]

        leaked: dict[str, tuple[list[str], int]] = {}
        state = snap.goroutines
        if state is not None:
            total_g.add_metric([name], float(state.total))
            rest = state.total
            for g in state.groups:
                if g.id not in shown:
                    continue
                lv = labels(g.id, g.function, g.created_by)
                group_n.add_metric(lv, float(g.count))
                rest -= g.count
                if state.format == "debug2":
                    if g.max_wait_minutes is not None:
                        group_wait.add_metric([name, g.id], 60.0 * g.max_wait_minutes)
                    if g.leaked:
                        leaked[g.id] = (lv, g.leaked)
            group_n.add_metric([name, OTHER, OTHER, OTHER], float(rest))
        for lg in snap.leaks or ():
            if lg.id in shown:
                # In a goroutineleak profile's debug=1 form every goroutine is a confirmed leak.
                n = lg.leaked if lg.leaked is not None else lg.count
                lv = labels(lg.id, lg.function, lg.created_by)
                leaked[lg.id] = (lv, max(n, leaked.get(lg.id, (lv, 0))[1]))
        for lv, n in leaked.values():
            group_leaked.add_metric(lv, float(n))


class TargetInfoCollector(Collector):
    """Which address each target name stands for, so rules can join the two.

    Prometheus labels a Go service's own series with its ``instance`` (host:port);
    cardguard's carry ``target``. Go-runtime rules join on this to name the target.

    Example::

        cardguard_target_info{target="api",address="10.0.0.7:8080"} 1.0
    """

    def __init__(self, snapshots: Snapshots) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        info = _gauge(
            "cardguard_target_info",
            "A target cardguard watches (always 1): its name and the host:port of its URL, "
            "as in the configuration.",
            ["target", "address"],
        )
        for snap in self._snapshots():
            info.add_metric([snap.target, urlsplit(snap.url).netloc], 1.0)
        yield info


class OffenderCollector(Collector):
    """The offenders detected for each target, worst first, capped per target.

    Example::

        cardguard_offender_info{target="api",id="le-1a2b3c4d",kind="label_explosion",severity="critical",family="api_latency",label="start_point",function=""} 1.0
        cardguard_offenders{target="api",severity="critical"} 1.0
    """

    def __init__(self, snapshots: Snapshots, cap: Callable[[], int]) -> None:
        self._snapshots = snapshots
        self._cap = cap

    def collect(self) -> Iterator[Metric]:
        info = _gauge(
            "cardguard_offender_info",
            "An offender found by cardguard's rules from the target's /metrics and pprof "
            "data (always 1); see /report for evidence and fix. At most global.caps.offenders "
            "per target, worst first.",
            ["target", "id", "kind", "severity", "family", "label", "function"],
        )
        counts = _gauge(
            "cardguard_offenders",
            "Offenders currently found by cardguard for the target, by severity.",
            ["target", "severity"],
        )
        cap = self._cap()
        for snap in self._snapshots():
            by_sev = dict.fromkeys(SEVERITIES, 0)
            shown: set[tuple[str, ...]] = set()
            for o in snap.offenders:
                by_sev[o.severity] = by_sev.get(o.severity, 0) + 1
                lv = (snap.target, o.id, o.kind, o.severity, o.family, o.label, o.function)
                if len(shown) < cap and lv not in shown:
                    shown.add(lv)
                    info.add_metric(list(lv), 1.0)
            for sev, n in by_sev.items():
                counts.add_metric([snap.target, sev], float(n))
        yield from (info, counts)


@dataclass
class ReloadStatus:
    """Outcome of the last config (re)load, shared by the server and its collector."""

    successful: bool = True
    success_timestamp: float = 0.0
    last_error: str | None = None


class ReloadCollector(Collector):
    """Whether the last configuration reload worked.

    Example::

        cardguard_config_last_reload_successful 1.0
        cardguard_config_last_reload_success_timestamp_seconds 1.7e9
    """

    def __init__(self, status: ReloadStatus) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily(
            "cardguard_config_last_reload_successful",
            "1 if the last load of cardguard's configuration file succeeded "
            "(an invalid file keeps the previous configuration running).",
            value=1.0 if self._status.successful else 0.0,
        )
        ts = GaugeMetricFamily(
            "cardguard_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of cardguard's configuration file.",
            value=self._status.success_timestamp,
        )
        yield from (ok, ts)


class BuildInfoCollector(Collector):
    """Which build of cardguard runs, as Prometheus' own ``prometheus_build_info``.

    Example::

        cardguard_build_info{branch="main",platform="linux/x86_64",protobuf_version="5.29.3",python_implementation="CPython",python_version="3.11.2",revision="d81f5cc0...",version="0.1.0"} 1.0
    """

    def __init__(self, info: BuildInfo) -> None:
        self._labels = info.labels()

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "cardguard_build_info",
            "A metric with a constant '1' value labeled by version, revision, branch, "
            "python_version, python_implementation, protobuf_version and platform from "
            "which cardguard was built and on which it runs.",
            labels=list(self._labels),
        )
        g.add_metric(list(self._labels.values()), 1.0)
        yield g


class ScheduleCollector(Collector):
    """How the schedule keeps up: lateness of runs, busy fetch threads, analysis reuse.

    Example::

        cardguard_scrape_lateness_seconds_bucket{endpoint="metrics",le="0.01"} 1180.0
        cardguard_scrape_lateness_seconds_count{endpoint="metrics"} 1200.0
        cardguard_scrape_workers 32.0
        cardguard_scrape_workers_busy 3.0
        cardguard_scrape_jobs_waiting 0.0
        cardguard_targets 1000.0
        cardguard_analysis_families_total{result="reused"} 35120.0
    """

    def __init__(self, view: Callable[[], ScheduleView]) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        v = self._view()
        late = HistogramMetricFamily(
            "cardguard_scrape_lateness_seconds",
            "How long after its scheduled time each run of a job started (the time it "
            "waited for a free fetch thread), by endpoint, measured by cardguard.",
            labels=["endpoint"],
        )
        for endpoint, (counts, total) in sorted(v.lateness.items()):
            bounds = [floatToGoString(b) for b in v.buckets] + ["+Inf"]
            late.add_metric(
                [endpoint], list(zip(bounds, (float(c) for c in counts), strict=True)), total
            )
        yield late
        yield GaugeMetricFamily(
            "cardguard_scrape_workers",
            "Threads that fetch from targets (serve --scrape.concurrency).",
            value=v.threads,
        )
        yield GaugeMetricFamily(
            "cardguard_scrape_workers_busy",
            "Fetch threads running a job right now (fetching, or waiting for its analysis).",
            value=v.busy,
        )
        yield GaugeMetricFamily(
            "cardguard_scrape_jobs_waiting",
            "Jobs that are due and wait for a free fetch thread.",
            value=v.waiting,
        )
        yield GaugeMetricFamily(
            "cardguard_targets",
            "Targets cardguard schedules (config and target files).",
            value=v.targets,
        )
        fams = CounterMetricFamily(
            "cardguard_analysis_families",
            "Metric families of scraped pages, by whether their analysis was reused (their "
            "series had not changed since the previous page) or analysed afresh.",
            labels=["result"],
        )
        fams.add_metric(["reused"], float(v.families_reused))
        fams.add_metric(["analysed"], float(v.families_analysed))
        yield fams
        yield CounterMetricFamily(
            "cardguard_analysis_cpu_seconds",
            "CPU time spent analysing /metrics pages, wherever it ran (worker processes).",
            value=v.analysis_seconds,
        )


def target_collectors(snapshots: Snapshots, offender_cap: Callable[[], int]) -> list[Collector]:
    """All collectors that read target snapshots, in exposition order."""
    return [
        ScrapeHealthCollector(snapshots),
        TargetInfoCollector(snapshots),
        CardinalityCollector(snapshots),
        ProfileCollector(snapshots),
        OffenderCollector(snapshots, offender_cap),
    ]
