"""Scrape and profile schedules for every target, keeping an immutable snapshot of what each showed.

No thread per target: one :class:`Scheduler` runs every target's jobs
(``metrics`` every ``interval``; ``heap``, ``goroutine`` and ``goroutineleak``
every ``profiles.interval``) on a fixed pool of I/O threads fed by a due-time
queue (:class:`DueQueue`, a heap of next-run times). Each job runs on a grid
``phase + k * interval`` whose phase is a hash of the target's name and the
endpoint, so a fleet's scrapes are spread over their interval instead of
starting together. First runs are spread too, at no more than
:data:`START_RATE` jobs a second and never more than one interval away, so a
small fleet starts at once and ten thousand targets over their interval.
Start-up only fills the heap, so it does not grow with threads, and memory
per target is its state only (docs/performance.md states it).

Overload is visible and graceful: every run's lateness goes into
``cardguard_scrape_lateness_seconds{endpoint}``; a run that could not start
within one interval of its time is skipped (``reason="late"``), as are the
runs that fell due while the previous one was still running
(``reason="overrun"``), counted in
``cardguard_scrapes_skipped_total{target,endpoint,reason}``. Due ``/metrics``
runs always go before due profiles, so profiles yield first. Fetches are
bounded in time and size (:mod:`cardguard.run.fetch`), so a slow or dead target
only ever holds one pool thread for its timeout. Page analysis runs where the
:class:`~cardguard.run.analysis.Analyser` runs it (worker processes in ``serve``),
off the I/O threads.

A target's heap profile is never fetched while a ``/metrics`` fetch of the
same target is open, nor the other way round (the heap profile would hold
the target's own exposition buffers): a per-target in-flight guard.

After every fetch the worker builds a new :class:`TargetSnapshot` and swaps
it in with one reference assignment, so collectors and the report page read
a consistent view without locks. A failed fetch keeps the last good data and
only updates the endpoint's health (success 0, a failure counted by reason,
one log line with ``target``, ``endpoint`` and ``reason``).

Every collection step runs under :meth:`TargetWorker._guard`: an exception
nobody expected (a bug in the fetch, the parsers or the analysis) is a failure
of the endpoint being collected with reason ``internal``, logged once with its
traceback, never an endpoint that goes on looking healthy, and never the end of
the target's loop or anyone else's.

Being gentle on targets:

* the ``debug=2`` goroutine dump stops the world, so it is taken only when
  the last known goroutine count (from the previous profile round or the
  ``go_goroutines`` gauge of the last /metrics page) is under
  ``profiles.goroutine_full_max``; otherwise the counted ``debug=0`` form is used;
* ``goroutineleak`` in ``auto`` mode is probed once; a 404 is remembered and
  the endpoint is asked again only after :data:`LEAK_REPROBE_SECONDS`.

Bounded output: which families, labels, heap owners and goroutine groups
appear in cardguard's own series is decided here with sticky sets (an entry
that passes its threshold stays), capped per target; what does not fit is
folded into ``__other__`` by the collectors and ``capped`` records it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from cardguard.analyse import usage
from cardguard.run import targetfiles, usagefiles
from cardguard.run.analysis import (
    Analyser,
    InlineAnalyser,
)
from cardguard.run.due import DueQueue, Job, first_run_spread
from cardguard.run.snapshot import INTERNAL, TargetSnapshot
from cardguard.run.stats import JOB_ENDPOINTS, SchedulerStats
from cardguard.run.target_worker import TargetWorker
from cardguard.run.targetfiles import TargetFileWatcher
from cardguard.settings.config import Config, GlobalConfig
from cardguard.settings.rules import DEFAULT_RULES, Rules
from cardguard.settings.targets import TargetConfig

log = logging.getLogger("cardguard.run.scheduler")


DEFAULT_CONCURRENCY = 32


@dataclass(frozen=True)
class ScheduleView:
    """What cardguard's own /metrics shows of the schedule at one moment."""

    threads: int
    busy: int
    waiting: int
    targets: int
    lateness: Mapping[str, tuple[list[int], float]]
    buckets: tuple[float, ...]
    families_reused: int
    families_analysed: int
    analysis_seconds: float


class Scheduler:
    """Runs every target's jobs on a fixed pool of threads; applies new configs in place.

    Args:
        config: the targets (plus those of ``config.target_files``) and settings.
        concurrency: pool threads, the most fetches in flight at once.
        analyser: where pages are analysed (default: in the pool threads).
    """

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.time,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        analyser: Analyser | None = None,
    ) -> None:
        self._clock = clock
        self._config = config
        self._concurrency = max(1, concurrency)
        self._analyser: Analyser = analyser if analyser is not None else InlineAnalyser()
        self._workers: dict[str, TargetWorker] = {}
        self._jobs: dict[str, list[Job]] = {}
        self._file_targets: tuple[TargetConfig, ...] = ()
        self._targets: tuple[TargetConfig, ...] = config.targets
        self._lock = threading.Lock()
        self._started = False
        self._stopping = False
        self._ready = False
        self._queue = DueQueue()
        self._threads: list[threading.Thread] = []
        self.stats = SchedulerStats()
        self._watcher: TargetFileWatcher | None = None
        self._quit = threading.Event()
        self._uses = read_uses(config)

    @property
    def config(self) -> Config:
        return self._config

    @property
    def targets(self) -> tuple[TargetConfig, ...]:
        """Every scheduled target: the config's, then those from target files."""
        return self._targets

    def settings(self) -> tuple[GlobalConfig, Rules]:
        cfg = self._config
        return cfg.global_, cfg.rules if cfg.rules is not None else DEFAULT_RULES

    def uses(self) -> usage.Index | None:
        """Label uses in the rules and dashboards of the config's ``usage:`` section."""
        return self._uses

    def start(self) -> None:
        """Read the target files, schedule every target, start the threads; returns at once."""
        files = self._file_targets
        if self._config.target_files is not None:
            self._watcher = TargetFileWatcher(self._config.target_files)
            files = self._watcher.poll() or ()
        with self._lock, _no_gc():
            self._started = True
            self._file_targets = files
            self._targets = merge_targets(self._config.targets, files)
            for t in self._targets:
                self._spawn(t, None)
            threads = [
                threading.Thread(target=self._queue.dispatch, name="cardguard-due"),
                threading.Thread(target=self._watch_files, name="cardguard-target-files"),
            ]
            threads += [
                threading.Thread(target=self._work, name=f"cardguard-fetch-{i}")
                for i in range(self._concurrency)
            ]
            for th in threads:
                th.daemon = True
                th.start()
            self._threads = threads

    def _new_worker(self, target: TargetConfig) -> TargetWorker:
        return TargetWorker(
            target, self.settings, self._clock, self._analyser, self.stats, uses=self.uses
        )

    def _spawn(
        self, target: TargetConfig, old: TargetWorker | None, w: TargetWorker | None = None
    ) -> None:
        w = w if w is not None else self._new_worker(target)
        if old is not None:
            self._retire(target.name)
            if old.target.url == target.url:
                w.adopt(old)
        self._workers[target.name] = w
        now = time.monotonic()
        spread = first_run_spread(len(self._targets) * len(JOB_ENDPOINTS))
        jobs = [Job(w, e, interval, now, spread) for e, interval in w.jobs().items()]
        self._jobs[target.name] = jobs
        for job in jobs:
            self._queue.push(job)

    def _retire(self, name: str) -> None:
        w = self._workers.pop(name, None)
        for job in self._jobs.pop(name, ()):
            job.active = False
        if w is not None:
            w.retire()

    def _watch_files(self) -> None:
        """Re-read the target files when they change, until the scheduler stops."""
        while not self._quit.wait(targetfiles.REFRESH_SECONDS):
            watcher = self._watcher
            if watcher is None:
                continue
            try:
                found = watcher.poll()
                if found is not None and watcher is self._watcher:
                    self.set_file_targets(found)
            except Exception:  # a bug: logged; the targets running stay
                log.exception("reading target files failed", extra={"reason": INTERNAL})

    def _work(self) -> None:
        """A pool thread: run due jobs until the scheduler stops."""
        while True:
            job = self._queue.take()
            if job is None:
                return
            w = job.worker
            now = time.monotonic()
            due, late = job.catch_up(now)
            if late:
                w.skipped(job.endpoint, "late", late)
            self.stats.late(job.endpoint, max(0.0, now - due))
            self.stats.running(1)
            try:
                if job.active and not self._stopping:
                    w.run(job.endpoint)
            finally:
                self.stats.running(-1)
            if not job.active or self._stopping:
                continue
            job.due, missed = job.after(due, time.monotonic())
            if missed:
                w.skipped(job.endpoint, "overrun", missed)
            self._queue.push(job)

    def apply(self, config: Config, file_targets: Sequence[TargetConfig] | None = None) -> None:
        """Switch to ``config``: unchanged targets keep running, others restart or stop.

        ``file_targets`` (when given) replace the targets read from target files. The
        new workers are built before any running one is touched, so should that fail,
        the previous config is still the one running, whole.
        """
        if file_targets is None and config.target_files != self._config.target_files:
            # Another target_files setting: read its files now, before anything changes.
            watcher = TargetFileWatcher(config.target_files) if config.target_files else None
            file_targets = (watcher.poll() or ()) if watcher is not None else ()
            self._watcher = watcher
        # The rule files and dashboards are re-read with every new config (a reload), not
        # when only the target files changed (set_file_targets passes the running config).
        uses = read_uses(config) if config is not self._config else self._uses
        with self._lock:
            self._uses = uses
            files = tuple(file_targets) if file_targets is not None else self._file_targets
            targets = merge_targets(config.targets, files)
            if not self._started:
                self._config, self._file_targets, self._targets = config, files, targets
                return
            wanted = {t.name: t for t in targets}
            fresh = {
                name: self._new_worker(t)
                for name, t in wanted.items()
                if name not in self._workers or self._workers[name].target != t
            }
            self._config, self._file_targets, self._targets = config, files, targets
            for name in [n for n in self._workers if n not in wanted]:
                self._retire(name)
                self._analyser.forget(name)
            for name, w in fresh.items():
                self._spawn(w.target, self._workers.get(name), w)

    def set_file_targets(self, targets: Sequence[TargetConfig]) -> None:
        """Replace the targets read from target files (the config's stay)."""
        self.apply(self._config, targets)

    def stop(self, wait: float = 2.0) -> None:
        """Stop every job; wait at most ``wait`` seconds in all for fetches in flight.

        Pool threads are daemons and every fetch has a deadline, so one still
        running after ``wait`` is abandoned: it ends with the process (its socket
        closed by the exit) or on its own. The analysis processes are killed.
        """
        self._quit.set()
        with self._lock:
            self._stopping = True
            for name in list(self._workers):
                self._retire(name)
            self._started = False
            threads, self._threads = self._threads, []
        self._queue.stop()
        self._analyser.close()
        deadline = time.monotonic() + wait
        for th in threads:
            th.join(timeout=max(0.0, deadline - time.monotonic()))

    def ready(self) -> bool:
        """True once every target of the started config finished its first round.

        Latched, as Prometheus' readiness: a reload that adds targets later does not
        take a running cardguard out of its Service while they start.
        """
        if not self._ready:
            with self._lock:
                self._ready = self._started and all(
                    w.first_round_done() for w in self._workers.values()
                )
        return self._ready

    def waiting_for(self) -> list[str]:
        """The targets whose first round is not done yet, in config order."""
        workers = dict(self._workers)
        return [
            t.name
            for t in self._targets
            if t.name not in workers or not workers[t.name].first_round_done()
        ]

    def snapshots(self) -> list[TargetSnapshot]:
        """The current snapshot of every target, in config order (then target files)."""
        workers = dict(self._workers)
        return [workers[t.name].snapshot for t in self._targets if t.name in workers]

    def worker(self, name: str) -> TargetWorker | None:
        return self._workers.get(name)

    def view(self) -> ScheduleView:
        st = self.stats
        return ScheduleView(
            threads=self._concurrency if self._threads else 0,
            busy=st.busy,
            waiting=self._queue.waiting(),
            targets=len(self._workers),
            lateness=st.lateness(),
            buckets=st.buckets,
            families_reused=st.families_reused,
            families_analysed=st.families_analysed,
            analysis_seconds=st.analysis_seconds,
        )

    def __iter__(self) -> Iterator[TargetSnapshot]:
        return iter(self.snapshots())


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a fleet's long-lived state is built.

    Building ten thousand workers allocates millions of objects that all live on;
    the collections they would trigger find nothing and cost more than the building.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def read_uses(config: Config) -> usage.Index | None:
    """Read the rule files and dashboards of ``usage:``; None without the section.

    A file that cannot be read or parsed is logged and left out; the others count.
    """
    if config.usage is None or not (config.usage.rule_files or config.usage.dashboards):
        return None
    idx = usagefiles.read(config.usage)
    for problem in idx.problems:
        log.warning("usage: %s", problem, extra={"endpoint": "usage", "reason": "unreadable"})
    return idx


def merge_targets(
    configured: Sequence[TargetConfig], from_files: Sequence[TargetConfig]
) -> tuple[TargetConfig, ...]:
    """The config's targets, then file targets whose names are not taken (first one wins)."""
    seen = {t.name for t in configured}
    out = list(configured)
    for t in from_files:
        if t.name not in seen:
            seen.add(t.name)
            out.append(t)
    return tuple(out)
