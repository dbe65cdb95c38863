"""The due-time queue: when each target's jobs run, and how late they ran.

Each job runs on a grid ``phase + k * interval`` whose phase is a hash of the
target's name and the endpoint, so a fleet's scrapes spread over their
interval. :class:`DueQueue` is a heap of next-run times feeding a fixed pool of
threads; due ``/metrics`` runs go before due profiles. :class:`SchedulerStats`
counts lateness, skips and analysis work for cardguard's own series.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import threading
import time

from cardguard.run.worker import WorkerBase

# First runs start at no more than START_RATE jobs a second (a job's first run is at most
# one interval away), over at least FIRST_RUN_SPREAD seconds: a small fleet starts at once,
# ten thousand targets over their interval.
FIRST_RUN_SPREAD = 1.0


START_RATE = 100.0


def phase(name: str, endpoint: str) -> float:
    """Where in its interval a job runs, in [0, 1): a hash of the target name and endpoint."""
    digest = hashlib.blake2b(f"{name}\0{endpoint}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def first_run_spread(jobs: int) -> float:
    """How long the first runs of ``jobs`` jobs are spread over (capped by each interval)."""
    return max(FIRST_RUN_SPREAD, jobs / START_RATE)


class Job:
    """One endpoint of one target on its grid: runs at ``base + k * interval``."""

    __slots__ = ("active", "base", "due", "endpoint", "interval", "worker")

    def __init__(
        self, worker: WorkerBase, endpoint: str, interval: float, now: float, spread: float
    ) -> None:
        self.worker = worker
        self.endpoint = endpoint
        self.interval = interval
        ph = phase(worker.target.name, endpoint)
        self.base = now + ph * interval
        # The first run comes within ``spread`` (at most the interval); the grid follows.
        self.due = now + ph * min(interval, spread)
        self.active = True

    def index(self, t: float) -> int:
        """The grid point at or before ``t`` (-1 before the first one)."""
        return math.floor((t - self.base) / self.interval + 1e-9)

    def at(self, k: int) -> float:
        return self.base + k * self.interval

    def catch_up(self, now: float) -> tuple[float, int]:
        """The time of the run to start at ``now``, and how many runs to skip as ``late``.

        A run that could not start within one interval of its time is skipped, with
        the grid points passed since; the latest one is run instead.
        """
        if now - self.due < self.interval:
            return self.due, 0
        k = self.index(now)
        return self.at(k), k - self.index(self.due)

    def after(self, due: float, end: float) -> tuple[float, int]:
        """When to run next after the run of time ``due`` ended at ``end``; runs overrun.

        The first grid point after ``end`` and at least half an interval after
        ``due`` (the first run is off the grid, so the second never comes right
        after it); grid points passed while the run went on are skipped.
        """
        k_end = self.index(end)
        k_min = math.ceil((due + self.interval / 2 - self.base) / self.interval - 1e-9)
        return self.at(max(k_min, k_end + 1)), max(0, k_end + 1 - k_min)


class DueQueue:
    """Jobs waiting for their time (a heap), and those due waiting for a free thread.

    One dispatcher thread moves jobs from the heap to the ready queues when they
    fall due; pool threads take ready jobs, every due ``metrics`` job before
    any due profile job.
    """

    def __init__(self) -> None:
        lock = threading.Lock()
        self._timer = threading.Condition(lock)
        self._ready_cv = threading.Condition(lock)
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = 0
        self._ready: tuple[list[Job], list[Job]] = ([], [])
        self._heads = [0, 0]
        self._stopped = False

    def push(self, job: Job) -> None:
        with self._timer:
            self._seq += 1
            heapq.heappush(self._heap, (job.due, self._seq, job))
            if self._heap[0][2] is job:
                self._timer.notify()

    def dispatch(self) -> None:
        """Move jobs to the ready queues as they fall due, until :meth:`stop`."""
        with self._timer:
            while not self._stopped:
                now = time.monotonic()
                heap = self._heap
                moved = 0
                while heap and heap[0][0] <= now:
                    job = heapq.heappop(heap)[2]
                    if job.active and not job.worker._stop.is_set():
                        self._ready[0 if job.endpoint == "metrics" else 1].append(job)
                        moved += 1
                if moved:
                    self._ready_cv.notify(moved)
                self._timer.wait(heap[0][0] - now if heap else None)

    def take(self) -> Job | None:
        """The next ready job (metrics first), waiting for one; None once stopped."""
        with self._ready_cv:
            while not self._stopped:
                for i in (0, 1):
                    q = self._ready[i]
                    if self._heads[i] < len(q):
                        job = q[self._heads[i]]
                        self._heads[i] += 1
                        if self._heads[i] > 1024 and self._heads[i] * 2 > len(q):
                            del q[: self._heads[i]]
                            self._heads[i] = 0
                        return job
                self._ready_cv.wait()
            return None

    def waiting(self) -> int:
        """Jobs that are due and wait for a free thread."""
        with self._timer:
            return sum(len(q) - h for q, h in zip(self._ready, self._heads, strict=True))

    def __len__(self) -> int:
        with self._timer:
            return len(self._heap)

    def stop(self) -> None:
        with self._timer:
            self._stopped = True
            self._timer.notify_all()
            self._ready_cv.notify_all()
