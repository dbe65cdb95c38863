"""Close the evidence chain: after a fix is deployed, say whether each offender is fixed.

Pure. A target that restarts shows it on /metrics: ``process_start_time_seconds``
changes, and with a new build ``go_info{version}`` or a ``*_build_info``
metric's labels change too (``identity``). ``split`` cuts a watch at the
last restart; ``judge`` re-measures each offender found before it on its own
quantity after it:

- ``label_explosion``: distinct values of the label on the family;
- ``goroutine_leak``: goroutines in the group (same normalised stack, same id);
- ``heap_growth``: in-use bytes the owner holds (the heap profile's owner).

Each gets ``fixed`` (the quantity no longer grows: its slope after the
restart is at most ``FIXED_SHARE`` of the slope before, and below the rule's
growth threshold) or ``still growing``, with both slopes per hour; with
fewer than two points after the restart, ``not enough data``. Bounded: one
verdict per offender, which ``detect`` already caps.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cardguard.analyse.heap_sites import owners
from cardguard.analyse.view import GoroutinePoint, HeapPoint, MetricsPoint, TargetView
from cardguard.detect.offender import Offender, slope_per_hour
from cardguard.detect.relabel import parse_key
from cardguard.parse.exposition import scan
from cardguard.parse.model import Format, Sample, SampleBlock
from cardguard.settings.rules import Severity

FIXED = "fixed"
STILL_GROWING = "still growing"
UNKNOWN = "not enough data"
# The slope after the fix, as a share of the slope before, at or under which it is fixed.
FIXED_SHARE = 0.1
_BUILD_FAMILIES = ("go_info",)


@dataclass(frozen=True)
class Identity:
    """Which process and build served a page: start time, and build labels when shown."""

    start_time: float | None = None
    build: tuple[tuple[str, str], ...] = ()

    def restarted(self, other: Identity) -> bool:
        """Whether ``other`` (a later page) came from another process or build."""
        if self.start_time is not None and other.start_time is not None:
            if self.start_time != other.start_time:
                return True
        return bool(self.build and other.build and self.build != other.build)

    def describe(self) -> str:
        build = ", ".join(f"{k}={v}" for k, v in self.build) or "build unknown"
        return build


def identity_family(family: str) -> bool:
    """Whether :func:`identity` reads ``family``: the start time, ``go_info``, build info."""
    return (
        family == "process_start_time_seconds"
        or family in _BUILD_FAMILIES
        or family.endswith("_build_info")
        or family.endswith("_build")  # OpenMetrics names an info family without _info
    )


def identity(data: bytes, fmt: Format, source: str) -> Identity:
    """Read ``process_start_time_seconds``, ``go_info`` and ``*_build_info`` from a page.

    Raises:
        ParseError: the page is malformed.
    """
    start: float | None = None
    build: dict[str, str] = {}
    wanted = identity_family

    def take(name: str, labels: Iterable[tuple[str, str]], value: float) -> None:
        nonlocal start
        if name == "process_start_time_seconds":
            start = value
        else:
            for k, v in labels:
                if k != "__name__":
                    build[f"{name}.{k}"] = v

    for event in scan(data, fmt, source):
        if isinstance(event, SampleBlock) and wanted(event.family):
            text = event.data[event.start : event.end].decode("utf-8", "replace")
            for line in text.split("\n"):
                if line:
                    end = line.rfind("}")
                    key = line[: end + 1] if end >= 0 else line.split(" ", 1)[0]
                    labels = parse_key(key)
                    take(dict(labels)["__name__"], labels, float(line[len(key) :].split()[0]))
        elif isinstance(event, Sample) and wanted(event.family):
            take(event.name, event.labels, event.value)
    return Identity(start, tuple(sorted(build.items())))


def restart_index(ids: Sequence[tuple[float, Identity]]) -> int | None:
    """Return the index of the first point after the last restart, or None without one."""
    last = None
    for i, (a, b) in enumerate(itertools.pairwise(ids), 1):
        if a[1].restarted(b[1]):
            last = i
    return last


def restart_cut(
    ids: Sequence[tuple[float, Identity]], baseline_at: float | None = None
) -> tuple[float, dict[str, Any]] | None:
    """Where a watch splits into before and after a fix, with what changed.

    The split is ``baseline_at`` (the end of snapshots saved before a fix) when
    given, else the last restart among ``ids`` (``(unix seconds, identity)`` of
    each page, oldest first); None when there is neither.
    """
    at: float | None = None
    i = restart_index(ids)
    if baseline_at is not None:
        at = baseline_at
        i = next((k for k, (t, _) in enumerate(ids) if t >= at), i)
    elif i is not None:
        at = ids[i][0]
    if at is None:
        return None
    info: dict[str, Any] = {"at": round(at, 3)}
    if i is not None and i > 0:
        old, new = ids[i - 1][1], ids[i][1]
        info["restarted"] = old.restarted(new)
        info["build_before"], info["build_after"] = old.describe(), new.describe()
        info["start_time_before"], info["start_time_after"] = old.start_time, new.start_time
    return at, info


def split(view: TargetView, at: float) -> tuple[TargetView, TargetView]:
    """Cut a view at time ``at``: points before it, and points at or after it."""

    def cut(points: Sequence[Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return tuple(p for p in points if p.at < at), tuple(p for p in points if p.at >= at)

    m0, m1 = cut(view.metrics)
    h0, h1 = cut(view.heaps)
    g0, g1 = cut(view.goroutines)
    before = dataclasses.replace(view, metrics=m0, heaps=h0, goroutines=g0, leaks=None)
    after = dataclasses.replace(view, metrics=m1, heaps=h1, goroutines=g1)
    return before, after


# --- quantities -------------------------------------------------------------------------------


def _label_points(
    metrics: Sequence[MetricsPoint], family: str, label: str
) -> list[tuple[float, float]]:
    out = []
    for p in metrics:
        n = next(
            (s.distinct_values for s in p.labels if s.family == family and s.label == label), 0
        )
        out.append((p.at, float(n)))
    return out


def _group_points(points: Sequence[GoroutinePoint], gid: str) -> list[tuple[float, float]]:
    return [(p.at, float(sum(g.count for g in p.groups if g.id == gid))) for p in points]


def _owner_points(heaps: Sequence[HeapPoint], owner: str) -> list[tuple[float, float]]:
    return [(h.at, float(owners(h.profile).inuse.get(owner, 0))) for h in heaps]


def quantity(o: Offender, view: TargetView) -> tuple[str, str, list[tuple[float, float]]] | None:
    """Return (what is measured, unit, points) for an offender over a view, or None."""
    ev = o.evidence
    if o.kind == "label_explosion":
        fam, lab = str(ev["family"]), str(ev["label"])
        return (f"distinct {lab} values on {fam}", "", _label_points(view.metrics, fam, lab))
    if o.kind == "goroutine_leak" and ev.get("group"):
        gid = str(ev["group"])
        return (f"goroutines in {o.function}", "", _group_points(view.goroutines, gid))
    if o.kind == "heap_growth" and o.function:
        return (f"in-use heap held by {o.function}", "bytes", _owner_points(view.heaps, o.function))
    return None


# --- verdicts ---------------------------------------------------------------------------------


def _fmt(x: float, unit: str) -> str:
    if unit == "bytes":
        for u in ("B", "KiB", "MiB", "GiB"):
            if abs(x) < 1024 or u == "GiB":
                return f"{x:,.0f} {u}" if u == "B" else f"{x:,.1f} {u}"
            x /= 1024
    return f"{x:,.0f}"


def judge(
    open_offenders: Sequence[Offender],
    before: TargetView,
    after: TargetView,
    *,
    restart: Mapping[str, Any] | None = None,
    min_growth_per_hour: Mapping[str, float] | None = None,
) -> list[Offender]:
    """Re-judge offenders found ``before`` on their own quantity ``after``; worst kept first.

    Args:
        restart: what is known of the restart (``at``, ``from``, ``to``), shown in evidence.
        min_growth_per_hour: per kind, growth under which the quantity is not growing.
    """
    out = []
    floors = min_growth_per_hour or {}
    for o in open_offenders:
        q0 = quantity(o, before)
        q1 = quantity(o, after)
        if q0 is None or q1 is None:
            continue
        what, unit, pts0 = q0
        _, _, pts1 = q1
        s0 = slope_per_hour(pts0)
        s1 = slope_per_hour(pts1)
        if s1 is None:
            status = UNKNOWN
        elif s1 <= max(FIXED_SHARE * max(s0 or 0.0, 0.0), floors.get(o.kind, 0.0)):
            status = FIXED
        else:
            status = STILL_GROWING
        verdict: dict[str, Any] = {
            "status": status,
            "quantity": what,
            "unit": unit,
            "slope_before_per_hour": None if s0 is None else round(s0, 1),
            "slope_after_per_hour": None if s1 is None else round(s1, 1),
            "before": [pts0[0][1], pts0[-1][1]] if pts0 else [],
            "after": [pts1[0][1], pts1[-1][1]] if pts1 else [],
            "points_after": len(pts1),
        }
        if restart:
            verdict["restart"] = dict(restart)
        if o.kind == "heap_growth":
            verdict["compare"] = (
                "go tool pprof -base <heap before the fix> <heap after it> shows what still grows"
            )
        ev = dict(o.evidence)
        ev["verdict"] = verdict
        per_h = f"/hour{' ' + unit if unit else ''}"
        slopes = f"{what} grew {_fmt(s0 or 0.0, unit)}{per_h} before the fix and " + (
            "has too few points after it" if s1 is None else f"{_fmt(s1, unit)}{per_h} after it"
        )
        severity: Severity
        if status == FIXED:
            summary = f"fixed: {slopes} ({o.summary})"
            severity = "info"
        elif status == STILL_GROWING:
            summary = f"still growing: {slopes}; {o.summary}"
            severity = o.severity
        else:
            summary = f"not yet judged: {slopes}; {o.summary}"
            severity = o.severity
        out.append(dataclasses.replace(o, evidence=ev, summary=summary, severity=severity))
    return out


def merge(judged: Sequence[Offender], found_after: Sequence[Offender]) -> list[Offender]:
    """The report after a fix: verdicts first for what was open, then what is new since."""
    seen = {(o.kind, _subject(o)) for o in judged}
    return list(judged) + [o for o in found_after if (o.kind, _subject(o)) not in seen]


def _subject(o: Offender) -> str:
    ev = o.evidence
    return f"{ev.get('family', '')}\0{ev.get('label', '')}\0{ev.get('group') or o.function}"
