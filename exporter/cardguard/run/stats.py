"""What the schedule did: how late each job ran, what it skipped, what analysis cost.

Read by serve's own series (``cardguard_scrape_lateness_seconds``,
``cardguard_scrapes_skipped_total`` and the analysis counters).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

# The jobs of one target, by the endpoint they collect ("goroutine" may read goroutine_full).
JOB_ENDPOINTS = ("metrics", "heap", "goroutine", "goroutineleak")
PROFILE_JOBS = JOB_ENDPOINTS[1:]
# Why a run was skipped: the values of cardguard_scrapes_skipped_total{reason}.
SKIP_REASONS = ("late", "overrun")
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class SchedulerStats:
    """Counters of the whole schedule, for cardguard's own /metrics."""

    def __init__(self, buckets: Sequence[float] = LATENESS_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self._lock = threading.Lock()
        self._lateness = {e: [0] * (len(self.buckets) + 1) for e in JOB_ENDPOINTS}
        self._lateness_sum = dict.fromkeys(JOB_ENDPOINTS, 0.0)
        self.busy = 0
        self.families_reused = 0
        self.families_analysed = 0
        self.analysis_seconds = 0.0

    def late(self, endpoint: str, seconds: float) -> None:
        i = 0
        for i, bound in enumerate(self.buckets):  # noqa: B007 - i is used after the loop
            if seconds <= bound:
                break
        else:
            i = len(self.buckets)
        with self._lock:
            self._lateness[endpoint][i] += 1
            self._lateness_sum[endpoint] += seconds

    def analysed(self, reused: int, analysed: int, seconds: float) -> None:
        with self._lock:
            self.families_reused += reused
            self.families_analysed += analysed
            self.analysis_seconds += seconds

    def running(self, delta: int) -> None:
        with self._lock:
            self.busy += delta

    def lateness(self) -> dict[str, tuple[list[int], float]]:
        """Per endpoint: cumulative counts per bucket (the last is +Inf) and the sum."""
        with self._lock:
            out = {}
            for e, counts in self._lateness.items():
                acc, total = [], 0
                for c in counts:
                    total += c
                    acc.append(total)
                out[e] = (acc, self._lateness_sum[e])
            return out
