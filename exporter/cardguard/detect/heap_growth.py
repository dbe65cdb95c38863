"""``heap_growth``: a function whose in-use heap keeps growing while traffic does not.

Pure. Judged on the heap profiles Go published during the watch, owner by
owner, against the request rate and the connected clients.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from cardguard.analyse.heap_sites import MAX_STACK, frame_site, is_library, owners, short_name
from cardguard.analyse.view import HeapPoint, TargetView
from cardguard.detect.load import STEADY_TRAFFIC, clients_change, per_second, traffic_change
from cardguard.detect.offender import (
    MAX_PER_KIND,
    Offender,
    hours,
    human_bytes,
    keeps_growing,
    make_offender,
    monotonic,
    trend,
)
from cardguard.pprof.model import Frame
from cardguard.pprof.stacks import site as source_site
from cardguard.settings.rules import Severity, TargetRules


def published(heaps: Sequence[HeapPoint]) -> list[HeapPoint]:
    """The heap points whose profile changed since the one before.

    Go rewrites the heap profile only when a garbage collection completes, so a
    profile equal to the previous one says nothing about its interval: not that
    the heap stopped growing (a leaking heap doubles its GC goal each cycle, and
    the gaps between collections grow with it). The first of equal ones is kept.
    """
    out: list[HeapPoint] = []
    seen: tuple[int, ...] | None = None
    for h in heaps:
        key = tuple(h.profile.total(st.type) for st in h.profile.sample_types)
        if key != seen:
            out.append(h)
        seen = key
    return out


def detect(view: TargetView, rules: TargetRules) -> list[Offender]:
    """Name the heap owners that keep growing while traffic and clients do not."""
    heaps = published(view.heaps)
    if len(heaps) < 2:
        return []
    rule = rules.heap_growth
    series = [owners(h.profile) for h in heaps]
    first, last = series[0].inuse, series[-1].inuse
    span = heaps[-1].at - heaps[0].at
    change, rates, fams = traffic_change(view)
    clients = clients_change(view, heaps[0].at, heaps[-1].at)
    out: list[Offender] = []
    for owner, now in last.items():
        if is_library(owner) or 2 * series[-1].via_library.get(owner, 0) > now:
            # Held for the client library's vector children or a scrape in flight:
            # children_heap_cost and label_explosion judge those.
            continue
        before = first.get(owner, 0)
        grown = now - before
        if grown < rule.min_growth_bytes:
            continue
        if before > 0 and grown / before < rule.min_growth_ratio:
            continue
        values = [float(s.inuse.get(owner, 0)) for s in series]
        if not monotonic(values):
            continue
        judged = values
        if values[0] == 0 and len(values) > 2:
            # Absent from the first profile, it appeared during the watch: a start-up
            # allocation reaches heap profiles up to two GC cycles late, so a table
            # made once looks like growth from zero. Growth counts from where it shows.
            judged = values[next(i for i, v in enumerate(values) if v > 0) :]
            if now - judged[0] < rule.min_growth_bytes:
                continue
        steps = [b - a for a, b in itertools.pairwise(judged)]
        if len(steps) >= 2 and not keeps_growing(steps):
            # One step up, then flat: a one-off allocation (a start-up table, a pool
            # sized once), not something that keeps growing.
            continue
        severity: Severity = rule.severity if len(steps) >= 2 else "info"
        phrase = None  # the summary's short form of ``traffic``
        if change is None:
            traffic = (
                "traffic unknown (no request counter on /metrics)"
                if not fams
                else "traffic trend unknown (need three /metrics scrapes)"
            )
        elif math.isinf(change):
            traffic = "requests started during the watch: the growth may follow load"
            severity = "info"
        elif change > rule.traffic_tolerance:
            traffic = f"request rate rose {change:.0%}: the growth may follow load"
            severity = "info"
        else:
            # Within the tolerance: say which way it went; a falling rate under a growing
            # heap is the strongest sign that the growth is not load.
            moved = f"{per_second(rates[0])} -> {per_second(rates[-1])}"
            if abs(change) < STEADY_TRAFFIC:
                traffic = f"request rate steady ({moved})"
                phrase = "the request rate held steady"
            elif change < 0:
                traffic = f"request rate fell {-change:.0%} ({moved})"
                phrase = f"the request rate fell {-change:.0%}"
            else:
                traffic = (
                    f"request rate rose {change:.0%} ({moved}), within the "
                    f"{rule.traffic_tolerance:.0%} the rules allow"
                )
                phrase = f"the request rate rose only {change:.0%}"
        if clients is not None and severity != "info":
            # Heap that grows with connected clients (buffers, watchers, per-stream
            # state) ends with them; say so rather than call it a leak.
            traffic = f"{clients}: the growth may follow them"
            phrase = clients
            severity = "info"
        rate_h = grown / hours(span) if span > 0 else 0.0
        frames = series[-1].stacks.get(owner, [])
        caller = series[-1].call_sites.get(owner)
        evidence: dict[str, Any] = {
            "function": owner,
            "inuse_bytes": now,
            "base_inuse_bytes": before,
            "growth_bytes": grown,
            "growth_per_hour_bytes": round(rate_h),
            "window_seconds": round(span, 1),
            "traffic": traffic,
            "traffic_families": list(fams),
            "traffic_rates_per_second": [round(r, 3) for r in rates],
            "call_site": frame_site(caller) if caller is not None else None,
            "stack": [frame_site(f) for f in frames[:MAX_STACK]],
            "trend": trend(
                f"in-use heap owned by {short_name(owner)}",
                "bytes",
                [(h.at, v) for h, v in zip(heaps, values, strict=True)],
            ),
        }
        summary = summary_text(
            owner, frames, caller, now, grown, span, phrase or traffic.split(":")[0]
        )
        fix = fix_text(owner, caller)
        out.append(
            make_offender(
                "heap_growth",
                view.target,
                owner,
                severity,
                summary,
                evidence,
                fix,
                score=float(grown),
            )
        )
    out.sort(key=lambda o: -o.score)
    return out[:MAX_PER_KIND]


def summary_text(
    owner: str,
    frames: Sequence[Frame],
    caller: Frame | None,
    now: float,
    grown: float,
    span: float,
    traffic: str,
) -> str:
    """One sentence: who holds the heap, from which line of the service, and the traffic."""
    held = next((f for f in frames if f.function == owner), None)
    where = f" ({source_site(held.filename, held.line)})" if held is not None else ""
    via = ""
    if caller is not None and caller.function != owner:
        via = f", allocated from {frame_site(caller)}"
    return (
        f"{owner}{where} holds {human_bytes(now)} of heap{via}, up {human_bytes(grown)} "
        f"in {span:.0f}s while {traffic}; what it allocates is never freed"
    )


def fix_text(owner: str, caller: Frame | None) -> str:
    """What to change: bound what the service's own code keeps."""
    who = caller.function if caller is not None else owner
    return (
        f"Bound what {who} keeps: give the map or slice it fills an eviction policy "
        "(size limit, LRU or TTL) or delete entries when their work ends. Compare two heap "
        "profiles with `go tool pprof -base` to confirm the growth continues."
    )
