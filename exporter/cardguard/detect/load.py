"""Whether growth follows load: the request rate and the connected clients over a watch.

Pure. Heap or goroutines that grow with traffic or with connected clients end
with them; the detectors ask these before calling growth a leak.
"""

from __future__ import annotations

import itertools
import math

from cardguard.analyse.view import GoroutinePoint, TargetView
from cardguard.detect.goroutine_leak import LIVE_STATES, live_frames


def traffic_change(view: TargetView) -> tuple[float | None, list[float], tuple[str, ...]]:
    """Return (relative change of the request rate, first to last interval; rates; families)."""
    pts = [p for p in view.metrics if p.values.traffic is not None]
    rates: list[float] = []
    for a, b in itertools.pairwise(pts):
        dt = b.at - a.at
        if dt > 0 and a.values.traffic is not None and b.values.traffic is not None:
            rates.append(max(0.0, b.values.traffic - a.values.traffic) / dt)
    fams = pts[-1].values.traffic_families if pts else ()
    if len(rates) < 2:
        return None, rates, fams
    if rates[0] == 0:
        return (math.inf if rates[-1] > 0 else 0.0), rates, fams
    return rates[-1] / rates[0] - 1.0, rates, fams


# A request rate that moved less than this (relative) between the first and last interval.
STEADY_TRAFFIC = 0.1


def per_second(rate: float) -> str:
    return f"{rate:,.1f}/s" if rate < 10 else f"{rate:,.0f}/s"


def live_goroutines(point: GoroutinePoint) -> int:
    """Goroutines of a snapshot that serve connected clients (network reads, connections)."""
    return sum(
        g.count for g in point.groups if live_frames(g.frames) is not None or g.state in LIVE_STATES
    )


def clients_change(view: TargetView, start: float, end: float) -> str | None:
    """Say how connected clients grew over [start, end], when they grew markedly."""
    points = [p for p in view.goroutines if start - 1 <= p.at <= end + 1] or list(view.goroutines)
    if len(points) < 2:
        return None
    before, after = live_goroutines(points[0]), live_goroutines(points[-1])
    if after - before >= CLIENT_GROWTH_MIN and after >= (1 + CLIENT_GROWTH_RATIO) * before:
        return f"goroutines serving connected clients grew from {before} to {after}"
    return None


# Growth of goroutines serving clients that makes heap growth over the same window "may
# follow load": at least this many more, and this much more than before.
CLIENT_GROWTH_MIN = 50


CLIENT_GROWTH_RATIO = 0.2
