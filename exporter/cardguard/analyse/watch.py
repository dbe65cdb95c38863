"""The one builder of a :class:`~cardguard.analyse.view.TargetView`, for every way of watching.

Pure and stateful: one :class:`ViewBuilder` per target. ``serve`` and
``/probe`` (through the scheduler's per-target worker), ``cardguard report``
(live or from saved snapshots) and fleet mode all hand it what they parsed
and ask it for the view detection reads, so that the same inputs give the
same offenders, with the same stacks and file:line, wherever they are shown.

What it keeps, oldest first and bounded:

* a :class:`MetricsPoint` per /metrics page (its analysis condensed, with the
  churn report and the page's runtime and traffic samples);
* a :class:`HeapPoint` per heap profile;
* a :class:`GoroutinePoint` per goroutine profile, grouped once here; when
  the profile came in proto form (``debug=0``) it is also kept as the view's
  ``goroutine_profile``, which gives stacks their hidden runtime frames;
* the groups of the latest goroutineleak profile.

Each history is cut to a time window (the oldest two points always stay, as
a baseline) and then to a number of points, thinning from the old end so the
oldest point stays and recent points stay dense.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from cardguard.analyse.cardinality import PageAnalysis
from cardguard.analyse.churn import ChurnReport
from cardguard.analyse.view import (
    GoroutinePoint,
    HeapPoint,
    MetricsPoint,
    MetricValues,
    TargetView,
    metrics_point,
)
from cardguard.pprof.goroutines import GoroutineGroup, GoroutineSnapshot, group
from cardguard.pprof.model import Profile

T = TypeVar("T")


@dataclass(frozen=True)
class Bounds:
    """How much history one target keeps: a window in seconds and points per kind."""

    window_seconds: float = float("inf")
    metrics_points: int = 1_000_000
    heap_points: int = 1_000_000
    goroutine_points: int = 1_000_000


def bounded_append(
    items: list[T], item: T, at: Callable[[T], float], max_n: int, window: float
) -> None:
    """Append, drop points older than the window (keep two), then thin from the old end.

    Thinning removes the second-oldest point so the oldest stays as a baseline
    and recent points stay dense.
    """
    items.append(item)
    now = at(item)
    while len(items) > 2 and now - at(items[0]) > window:
        items.pop(0)
    while len(items) > max_n:
        items.pop(1)


@dataclass
class ViewBuilder:
    """What one target showed, as points, and the :class:`TargetView` built from them."""

    target: str
    bounds: Bounds = field(default_factory=Bounds)
    metrics: list[MetricsPoint] = field(default_factory=list)
    heaps: list[HeapPoint] = field(default_factory=list)
    goroutines: list[GoroutinePoint] = field(default_factory=list)
    leaks: tuple[GoroutineGroup, ...] | None = None
    goroutine_profile: Profile | None = None

    def add_metrics(
        self,
        at: float,
        analysis: PageAnalysis,
        values: MetricValues | None = None,
        churn: ChurnReport | None = None,
    ) -> MetricsPoint:
        """Add one /metrics page's analysis, taken at ``at`` (unix seconds)."""
        return self.add_metrics_point(metrics_point(analysis, at, values, churn))

    def add_metrics_point(self, point: MetricsPoint) -> MetricsPoint:
        """Add a point built elsewhere: fleet's TSDB status, a container's memory reading."""
        b = self.bounds
        bounded_append(self.metrics, point, _at, b.metrics_points, b.window_seconds)
        return point

    def add_heap(self, at: float, profile: Profile) -> HeapPoint:
        """Add one decoded heap profile."""
        point = HeapPoint(at, profile)
        b = self.bounds
        bounded_append(self.heaps, point, _at, b.heap_points, b.window_seconds)
        return point

    def add_goroutines(
        self,
        at: float,
        snapshot: GoroutineSnapshot,
        groups: Sequence[GoroutineGroup] | None = None,
        proto: Profile | None = None,
    ) -> GoroutinePoint:
        """Add one goroutine profile (any format), grouped here unless ``groups`` are given.

        ``proto`` is the same profile decoded from its proto form (``debug=0``),
        when that is what was read.
        """
        grouped = tuple(groups) if groups is not None else tuple(group(snapshot))
        point = GoroutinePoint(at=at, total=snapshot.total, groups=grouped)
        b = self.bounds
        bounded_append(self.goroutines, point, _at, b.goroutine_points, b.window_seconds)
        if proto is not None:
            self.goroutine_profile = proto
        return point

    def set_leaks(self, groups: Sequence[GoroutineGroup] | None) -> None:
        """The groups of the latest goroutineleak profile (``None``: the target serves none)."""
        self.leaks = tuple(groups) if groups is not None else None

    def view(self) -> TargetView:
        return TargetView(
            target=self.target,
            metrics=tuple(self.metrics),
            heaps=tuple(self.heaps),
            goroutines=tuple(self.goroutines),
            leaks=self.leaks,
            goroutine_profile=self.goroutine_profile,
        )


def _at(point: MetricsPoint | HeapPoint | GoroutinePoint) -> float:
    return point.at
