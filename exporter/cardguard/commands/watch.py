"""What ``cardguard report`` saw of a target, turned into a report: offenders, fixes, verdicts.

A :class:`Watch` adds snapshots as they arrive (live or saved), hands what it
parsed to the one view builder (:mod:`cardguard.analyse.watch`, the one serve
uses too), and at the end runs detection, refines the fixes from the pages it
kept, and judges before and after a fix or a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cardguard.analyse import usage
from cardguard.analyse.cardinality import analyse
from cardguard.analyse.churn import ChurnTracker
from cardguard.analyse.view import (
    HeapPoint,
    MetricsPoint,
    TargetView,
    values_from_page,
)
from cardguard.analyse.watch import ViewBuilder
from cardguard.commands.snapshots import Snapshot
from cardguard.detect import container, remedies, verdict
from cardguard.detect.findings import Findings
from cardguard.detect.offender import Offender
from cardguard.errors import ParseError, ProfileError
from cardguard.expose import flamegraph
from cardguard.expose.render.report import TargetReport
from cardguard.gunzip import MAGIC
from cardguard.parse.exposition import detect_format
from cardguard.pprof import goroutines as gr
from cardguard.pprof import profile as prof
from cardguard.pprof.goroutines.proto import snapshot_of
from cardguard.settings.rules import Rules


@dataclass
class Watch:
    """Turns snapshots into a ``TargetView`` as they arrive, keeping only what detection needs."""

    name: str
    rules: Rules
    notes: list[str] = field(default_factory=list)
    churn: ChurnTracker = field(
        default_factory=lambda: ChurnTracker(window=24 * 3600.0, points_per_window=1_000_000)
    )
    snapshots: int = 0
    uses: usage.Index | None = None
    """Label uses in the rules and dashboards given (--usage-rules, --usage-dashboards)."""
    baseline: int | None = None
    """Metrics points read from --baseline: the watch is judged as before/after a fix."""
    last: remedies.Page | None = None
    """The latest /metrics page (remedies read its series)."""

    builder: ViewBuilder = field(init=False)
    """The points of the watch: the builder serve, /probe and fleet use too."""

    findings: Findings = field(init=False)
    """Identities, the first page and container readings: what judges and refines offenders."""

    def __post_init__(self) -> None:
        self.builder = ViewBuilder(self.name)
        self.findings = Findings(uses=self.uses)

    @property
    def metrics(self) -> list[MetricsPoint]:
        return self.builder.metrics

    @property
    def heaps(self) -> list[HeapPoint]:
        return self.builder.heaps

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def add(self, snap: Snapshot, where: str) -> dict[str, str]:
        """Analyse one snapshot; problems become notes. Return a few figures for progress."""
        self.snapshots += 1
        shown: dict[str, str] = {}
        traffic = self.rules.for_target(self.name).heap_growth.traffic_metric
        reading = self.add_container(snap)
        if snap.metrics is not None:
            try:
                fmt = detect_format(snap.content_type, snap.metrics)
                page = analyse(snap.metrics, content_type=snap.content_type, source=where, fmt=fmt)
                usage = reading.usage_bytes if reading is not None else None
                values = values_from_page(snap.metrics, fmt, where, traffic, usage)
                report = self.churn.update(page, snap.at)
                self.builder.add_metrics(snap.at, page, values, report)
                self.last = remedies.Page(snap.metrics, fmt, where, snap.at)
                if self.findings.first is None:
                    self.findings.first = self.last
                self.findings.saw(snap.at, verdict.identity(snap.metrics, fmt, where))
                shown["series"] = f"{page.total_series:,} series"
            except ParseError as exc:
                self.note(f"/metrics at {where}: {exc}")
        if snap.heap is not None:
            try:
                heap = self.builder.add_heap(snap.at, prof.decode(snap.heap, f"{where} heap"))
                total = heap.profile.total("inuse_space")
                shown["heap"] = f"heap {total / 1048576:.1f} MiB"
            except ProfileError as exc:
                self.note(str(exc))
        proto = None
        if snap.goroutine is not None and snap.goroutine.startswith(MAGIC):
            # The proto form keeps file:line and the runtime frames a wait parks in.
            try:
                proto = prof.decode(snap.goroutine, f"{where} goroutine", keep_labels=True)
            except ProfileError as exc:
                self.note(str(exc))
        body = snap.goroutine_full if snap.goroutine_full is not None else snap.goroutine
        if body is not None:
            try:
                if body is snap.goroutine and proto is not None:
                    s = snapshot_of(proto, f"{where} goroutine")  # decoded once, above
                else:
                    s = gr.parse(body, f"{where} goroutine")
                self.builder.add_goroutines(snap.at, s, proto=proto)
                shown["goroutines"] = f"{s.total:,} goroutines"
            except ProfileError as exc:
                self.note(str(exc))
        if snap.goroutineleak is not None:
            try:
                s = gr.parse(snap.goroutineleak, f"{where} goroutineleak", kind="goroutineleak")
                self.builder.set_leaks(gr.group(s))
            except ProfileError as exc:
                self.note(str(exc))
        return shown

    def view(self) -> TargetView:
        return self.builder.view()

    def add_container(self, snap: Snapshot) -> container.ContainerMemory | None:
        """Keep the snapshot's container memory reading, if it has one."""
        if snap.cgroup_memory is None:
            return None
        fields = {k: v for k, v in snap.cgroup_memory.items() if k != "reclaimable_bytes"}
        try:
            reading = container.ContainerMemory(**fields)
        except TypeError as exc:
            self.note(f"container reading: {exc}")
            return None
        self.findings.saw(snap.at, reading=reading)
        return reading

    def add_baseline(self, snaps: Sequence[tuple[Snapshot, str]]) -> None:
        """Read snapshots saved before a fix (--baseline); what follows is judged against them."""
        for snap, where in snaps:
            self.add(snap, where)
        if snaps:
            self.baseline = len(self.metrics)

    def detect(self, view: TargetView) -> list[Offender]:
        """Offenders of the watch; across a fix (the end of --baseline, else the last
        restart), each open one judged fixed or not; fixes rebuilt from the first and
        latest pages; container memory explained (cardguard.detect.findings)."""
        f = self.findings
        if self.baseline is not None and self.baseline < len(self.metrics):
            f.baseline_at = self.metrics[self.baseline].at
        found = f.offenders(view, self.rules, self.last)
        for text in f.notes:
            self.note(text)
        return found

    def report(self, url: str | None, grafana_url: str | None = None) -> TargetReport:
        view = self.view()
        found = self.detect(view)
        times = [p.at for p in view.metrics] + [h.at for h in view.heaps]
        times += [g.at for g in view.goroutines]
        notes = list(self.notes)
        if not view.heaps:
            notes.append("no heap profile: heap growth and children cost were not checked")
        if not view.goroutines:
            notes.append("no goroutine profile: goroutine leaks were not checked")
        if not view.metrics:
            notes.append(
                "no /metrics page: label explosions, children cost and memory were not checked"
            )
        if len(view.metrics) < 2 and len(view.heaps) < 2:
            notes.append("one snapshot only: nothing about growth can be said")
        return TargetReport(
            target=self.name,
            url=url,
            offenders=tuple(found),
            window_seconds=(max(times) - min(times)) if times else 0.0,
            snapshots=self.snapshots,
            notes=tuple(notes),
            flames=flamegraph.for_view(view),
            grafana_url=grafana_url,
        )
