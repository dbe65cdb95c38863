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
import dataclasses
import gc
import hashlib
import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from cardguard.analyse import cardinality
from cardguard.analyse.cardinality import Limits, PageAnalysis
from cardguard.analyse.churn import ChurnReport, ChurnTracker
from cardguard.analyse.view import (
    HeapPoint,
    TargetView,
)
from cardguard.analyse.watch import Bounds, ViewBuilder
from cardguard.detect.detectors import detect
from cardguard.detect.offender import Offender
from cardguard.errors import FetchError, ParseError, ProfileError
from cardguard.parse import exposition
from cardguard.pprof import goroutines as gr
from cardguard.pprof import heap as hp
from cardguard.pprof import profile as prof
from cardguard.run import fetch, targetfiles, urls
from cardguard.run.analysis import (
    Analyser,
    AnalysisError,
    InlineAnalyser,
    PageRequest,
    goroutines_from_page,
)
from cardguard.run.fetch import Fetcher, FetchResult, HTTPStatusError
from cardguard.run.targetfiles import TargetFileWatcher
from cardguard.settings.config import Config, GlobalConfig
from cardguard.settings.rules import DEFAULT_RULES, Rules
from cardguard.settings.targets import TargetConfig

log = logging.getLogger("cardguard.run.scheduler")

ENDPOINTS = ("metrics", "heap", "goroutine", "goroutine_full", "goroutineleak")
# An exception cardguard did not expect while collecting: a bug, reported as a failure.
INTERNAL = "internal"
# Every fetch reason, plus what can go wrong after a body arrived ("other" stays last).
FAILURE_REASONS = (
    *(r for r in fetch.REASONS if r != "other"),
    "parse",
    "refused_by_limit",
    INTERNAL,
    "other",
)
MAX_ERROR_CHARS = 300
OTHER = cardinality.OTHER
OUTPUT_KINDS = ("family", "label", "heap_owner", "goroutine_group", "offender")

LEAK_REPROBE_SECONDS = 3600.0
HISTORY_WINDOW = 3600.0
MAX_METRICS_POINTS = 60
MAX_HEAP_POINTS = 6
MAX_GOROUTINE_POINTS = 60
HISTORY = Bounds(HISTORY_WINDOW, MAX_METRICS_POINTS, MAX_HEAP_POINTS, MAX_GOROUTINE_POINTS)
# /report offers each target's last heap and goroutine profile for download; a body
# larger than this is not kept (the bound on what serve holds is targets x 2 x this).
MAX_KEPT_PROFILE_BYTES = 16 * 1024 * 1024
SERIES_FINGERPRINTS = 512

# The jobs of one target, by the endpoint they collect ("goroutine" may read goroutine_full).
JOB_ENDPOINTS = ("metrics", "heap", "goroutine", "goroutineleak")
PROFILE_JOBS = JOB_ENDPOINTS[1:]
# Why a run was skipped: the values of cardguard_scrapes_skipped_total{reason}.
SKIP_REASONS = ("late", "overrun")
# First runs start at no more than START_RATE jobs a second (a job's first run is at most
# one interval away), over at least FIRST_RUN_SPREAD seconds: a small fleet starts at once,
# ten thousand targets over their interval.
FIRST_RUN_SPREAD = 1.0
START_RATE = 100.0
DEFAULT_CONCURRENCY = 32
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Fetches that may not be open at the same time for one target.
_EXCLUSIVE = {"metrics": frozenset({"heap"}), "heap": frozenset({"metrics"})}

__all__ = ["goroutines_from_page"]  # re-exported: it moved to cardguard.run.analysis

T = TypeVar("T")


# --- the snapshot -------------------------------------------------------------


@dataclass(frozen=True)
class EndpointHealth:
    """How the last fetches of one endpoint of one target went."""

    success: bool = False
    attempted: bool = False
    duration: float = 0.0
    last_attempt: float = 0.0
    last_success: float | None = None
    body_bytes: int = 0
    failures: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    last_error: str | None = None
    last_reason: str | None = None
    skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Runs of this endpoint's job the scheduler skipped, by reason (:data:`SKIP_REASONS`)."""


@dataclass(frozen=True)
class FetchTrace:
    """One fetch a worker made, as ``/probe?debug=true`` lists it."""

    at: float
    endpoint: str
    url: str  # redacted
    duration: float
    status: int | None = None
    body_bytes: int = 0  # decompressed
    wire_bytes: int = 0
    reason: str | None = None  # why it failed; None when it succeeded
    error: str | None = None


@dataclass(frozen=True)
class HeapState:
    """The latest heap profile's owners and the change since the one before."""

    at: float
    inuse_bytes: hp.HeapReport
    inuse_objects: hp.HeapReport
    delta_bytes: hp.HeapDiff | None


@dataclass(frozen=True)
class GoroutineState:
    """The latest goroutine snapshot's groups and their growth since the previous one."""

    at: float
    total: int
    format: str
    groups: tuple[gr.GoroutineGroup, ...]
    growth: tuple[gr.GroupGrowth, ...]


@dataclass(frozen=True)
class RawProfile:
    """A profile body as the target served it, kept for download from /report."""

    at: float
    body: bytes
    content_type: str
    url: str


@dataclass(frozen=True)
class Visible:
    """What cardguard's own series show for one target (sticky, capped), and what got folded."""

    families: frozenset[str] = frozenset()
    labels: frozenset[tuple[str, str]] = frozenset()
    heap_owners: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    capped: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TargetSnapshot:
    """Everything known about one target at one moment; never mutated after it is published."""

    target: str
    url: str
    updated: float = 0.0
    health: Mapping[str, EndpointHealth] = field(
        default_factory=lambda: MappingProxyType({e: EndpointHealth() for e in ENDPOINTS})
    )
    analysis: PageAnalysis | None = None
    analysis_at: float | None = None
    churn: ChurnReport | None = None
    series_added: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    series_removed: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    heap: HeapState | None = None
    goroutines: GoroutineState | None = None
    leaks: tuple[gr.GoroutineGroup, ...] | None = None
    goroutineleak_supported: bool | None = None
    group_creators: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    offenders: tuple[Offender, ...] = ()
    offenders_error: str | None = None
    offenders_capped: bool = False  # more offenders than global.caps.offenders
    visible: Visible = field(default_factory=Visible)
    window_seconds: float = 0.0
    snapshots: int = 0
    notes: tuple[str, ...] = ()
    # The first and the latest heap profile of the window (what /report's flame graphs
    # compare), and the last bodies of "heap" and "goroutine" for download.
    heap_window: tuple[HeapPoint, ...] = ()
    raw_profiles: Mapping[str, RawProfile] = field(default_factory=lambda: MappingProxyType({}))


# --- bounded history ------------------------------------------------------------


def _sticky(current: frozenset[T], candidates: Iterable[T], cap: int) -> tuple[frozenset[T], bool]:
    """Add ``candidates`` (best first) to ``current`` up to ``cap``; True when some did not fit."""
    out = set(current)
    folded = False
    for c in candidates:
        if c in out:
            continue
        if len(out) < cap:
            out.add(c)
        else:
            folded = True
    return frozenset(out), folded


# --- one target -------------------------------------------------------------------

# The in-flight guard's lock, shared by all targets (held only to note a fetch's start
# and end), and what each thread collects right now (see TargetWorker._guard).
_IO = threading.Condition()
_CURRENT = threading.local()
# One thread at a time does CPU work in a job (parsing, decoding, publishing); waits for
# the network or an analysis worker are done off it. The GIL lets one thread compute
# anyway: the lane only spares the threads that wait for little (a scrape of cardguard's
# own /metrics, /-/healthy) from queueing for the GIL behind dozens of computing ones.
CPU_LANE = threading.Lock()


@contextlib.contextmanager
def _on_lane() -> Iterator[None]:
    if getattr(_CURRENT, "lane", False):
        yield  # already on it (a job within a job)
        return
    with CPU_LANE:
        _CURRENT.lane = True
        try:
            yield
        finally:
            _CURRENT.lane = False


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextlib.contextmanager
def _off_lane() -> Iterator[None]:
    """Leave the lane while this thread waits (a fetch, an analysis in a worker process)."""
    if not getattr(_CURRENT, "lane", False):
        yield
        return
    CPU_LANE.release()
    _CURRENT.lane = False
    try:
        yield
    finally:
        CPU_LANE.acquire()
        _CURRENT.lane = True


class Flag:
    """A set-once flag read without locks (a ten-thousand-target fleet has one per target)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class TargetWorker:
    """Scrapes one target on its schedules and publishes :class:`TargetSnapshot` objects."""

    def __init__(
        self,
        target: TargetConfig,
        settings: Callable[[], tuple[GlobalConfig, Rules]],
        clock: Callable[[], float] = time.time,
        analyser: Analyser | None = None,
        stats: SchedulerStats | None = None,
    ) -> None:
        self.target = target
        self._settings = settings
        self._clock = clock
        self._fetcher = Fetcher(target)
        self._analyser: Analyser = analyser if analyser is not None else InlineAnalyser(1)
        self._stats = stats
        self._lock = threading.Lock()  # serialises builders; readers never take it
        # Set once the worker is retired (removed or replaced): its jobs stop being run.
        self._stop = Flag()
        # The in-flight guard: endpoints being fetched right now (see _EXCLUSIVE).
        self._open: set[str] = set()
        # While set (monotonic seconds), no fetch waits or runs past it: /probe's deadline.
        self.deadline: float | None = None
        self._page_token: int | None = None  # names the analysis in snapshot.analysis
        self.snapshot = TargetSnapshot(target=target.name, url=target.url)
        # Mutable state behind the snapshot, touched only under _lock.
        self._churn = ChurnTracker(window=HISTORY_WINDOW)
        self._view = ViewBuilder(target.name, HISTORY)
        self._last_goroutines: int | None = None
        self._leak_404_at: float | None = None
        self._started_at = clock()
        # The endpoint each thread is collecting right now, so _guard can blame the right one
        # (a thread runs one job of one worker at a time, so one thread-local serves all).
        self._current = _CURRENT
        # Told about every fetch while set: /probe?debug=true sets it for one probe.
        self.trace: Callable[[FetchTrace], None] | None = None
        # The jobs that have not finished their first run yet (fetch attempted, success
        # or not): what /-/ready waits for.
        self._first_round = set(self.jobs())
        if target.tls.insecure_skip_verify:
            log.warning(
                "TLS certificate verification is off for this target",
                extra={"target": target.name},
            )

    # -- lifecycle

    def jobs(self) -> dict[str, float]:
        """The jobs this target runs, with their intervals."""
        t = self.target
        p = t.profiles
        out = {"metrics": t.interval}
        if p.enabled:
            if p.heap:
                out["heap"] = p.interval
            if p.goroutine:
                out["goroutine"] = p.interval
            if p.goroutineleak != "false":
                out["goroutineleak"] = p.interval
        return out

    def run(self, job: str) -> None:
        """Run one job once (``metrics``, ``heap``, ``goroutine`` or ``goroutineleak``)."""
        try:
            with _on_lane():
                if job == "metrics":
                    self.scrape_metrics()
                else:
                    self.collect(job)
        except Exception:
            # Not reached: every step runs under _guard. Should recording a failure
            # itself fail, the schedule must still carry on.
            log.exception(
                "internal error while collecting",
                extra={"target": self.target.name, "endpoint": job, "reason": INTERNAL},
            )
        finally:
            self._first_round.discard(job)

    def retire(self) -> None:
        """Stop running this worker's jobs (a fetch in flight finishes on its own)."""
        self._stop.set()

    def first_round_done(self) -> bool:
        """True once every job of this target (metrics and each profile) ran once."""
        return not self._first_round

    def cut_short(self, job: str, duration: float) -> None:
        """Record that ``job`` was still running when its caller had to answer (``timeout``).

        ``/probe`` answers within Prometheus' scrape timeout; an endpoint whose fetch
        or analysis had not finished by then shows as failed in that answer rather
        than with its previous health.
        """
        endpoint = job
        known, full_max = self._last_goroutines, self.target.profiles.goroutine_full_max
        if job == "goroutine" and known is not None and known < full_max:
            endpoint = "goroutine_full"
        self._fail(
            endpoint,
            "timeout",
            f"{self.target.name}: {endpoint} was still being fetched when the answer was due, "
            f"after {duration:.3g}s",
            duration,
        )

    def skipped(self, job: str, reason: str, n: int = 1) -> None:
        """Count ``n`` runs of ``job`` the scheduler skipped for ``reason``."""
        with self._lock:
            health = dict(self.snapshot.health)
            old = health.get(job, EndpointHealth())
            counts = dict(old.skipped)
            counts[reason] = counts.get(reason, 0) + n
            health[job] = dataclasses.replace(old, skipped=MappingProxyType(counts))
            self._publish(health=MappingProxyType(health))

    def _guard(self, endpoint: str, step: Callable[[], None]) -> None:
        """Run one collection step; an exception it did not expect fails the endpoint it was on.

        Expected failures (fetch, parse) are handled inside the step with their own
        reason. Anything else is a bug: the endpoint the step was fetching or
        processing gets success 0 and a failure with reason ``internal``, one log
        line carries the traceback, and what earlier rounds published stays.
        """
        self._current.endpoint = endpoint
        start = time.monotonic()
        try:
            step()
        except Exception as exc:
            where: str = getattr(self._current, "endpoint", endpoint)
            message = _internal_message(exc)
            log.exception(
                "%s",
                message,
                extra={"target": self.target.name, "endpoint": where, "reason": INTERNAL},
            )
            self._fail(where, INTERNAL, message, time.monotonic() - start, logged=True)

    def _collecting(self, endpoint: str) -> None:
        """Note the endpoint this thread works on from now on (see :meth:`_guard`)."""
        self._current.endpoint = endpoint

    # -- snapshot plumbing

    def _publish(self, **changes: Any) -> TargetSnapshot:
        snap = dataclasses.replace(self.snapshot, updated=self._clock(), **changes)
        self.snapshot = snap  # one reference swap: readers see old or new, never a mix
        return snap

    def _health(
        self,
        endpoint: str,
        *,
        result: FetchResult | None = None,
        reason: str | None = None,
        error: str | None = None,
        duration: float = 0.0,
        logged: bool = False,
    ) -> dict[str, EndpointHealth]:
        now = self._clock()
        health = dict(self.snapshot.health)
        old = health.get(endpoint, EndpointHealth())
        if reason is None:
            health[endpoint] = dataclasses.replace(
                old,
                success=True,
                attempted=True,
                duration=result.duration if result else duration,
                last_attempt=now,
                last_success=now,
                body_bytes=len(result.body) if result else old.body_bytes,
                last_error=None,
                last_reason=None,
            )
        else:
            failures = dict(old.failures)
            failures[reason] = failures.get(reason, 0) + 1
            health[endpoint] = dataclasses.replace(
                old,
                success=False,
                attempted=True,
                duration=duration,
                last_attempt=now,
                failures=MappingProxyType(failures),
                last_error=error,
                last_reason=reason,
            )
            if not logged:
                log.warning(
                    "%s",
                    error,
                    extra={"target": self.target.name, "endpoint": endpoint, "reason": reason},
                )
        return health

    def _fail(
        self, endpoint: str, reason: str, error: str, duration: float, logged: bool = False
    ) -> None:
        with self._lock:
            health = self._health(
                endpoint, reason=reason, error=error, duration=duration, logged=logged
            )
            self._publish(health=MappingProxyType(health))

    def _publish_round(self, endpoint: str, res: FetchResult, rules: Rules, **changes: Any) -> None:
        """Publish what one fetch brought, offenders re-detected; called with ``_lock`` held.

        Should detection fail (a bug), the fresh data is still published, but the
        endpoint says so (success 0, reason ``internal``) instead of looking healthy.
        """
        detected, error = self._detect(rules, endpoint)
        if error is None:
            health = self._health(endpoint, result=res)
        else:
            health = self._health(
                endpoint, reason=INTERNAL, error=error, duration=res.duration, logged=True
            )
        self._publish(health=MappingProxyType(health), **changes, **detected)

    def _fetch(self, endpoint: str, url: str, accept: str | None = None) -> FetchResult | None:
        start = time.monotonic()
        self._collecting(endpoint)
        try:
            with self._opening(endpoint) as timeout:
                return self._get(endpoint, url, accept=accept, timeout=timeout)
        except FetchError as exc:
            self._fail(endpoint, exc.reason, str(exc), time.monotonic() - start)
            return None

    @contextlib.contextmanager
    def _opening(self, endpoint: str) -> Iterator[float]:
        """Hold ``endpoint`` open for one fetch; yield its timeout.

        Waits while a fetch this one excludes is open (heap and /metrics of one
        target never overlap), never past :attr:`deadline`, which also cuts the
        timeout.

        Raises:
            FetchError: reason ``timeout`` when the deadline passed before the fetch began.
        """
        with _off_lane():
            with self._opened(endpoint) as timeout:
                yield timeout

    @contextlib.contextmanager
    def _opened(self, endpoint: str) -> Iterator[float]:
        t = self.target
        timeout = t.timeout if endpoint == "metrics" else (t.profiles.timeout or t.timeout)
        excluded = _EXCLUSIVE.get(endpoint, frozenset())
        with _IO:
            while True:
                left = None if self.deadline is None else self.deadline - time.monotonic()
                if left is not None and left <= 0.05:
                    raise FetchError(
                        t.name,
                        "timeout",
                        f"{endpoint}: the caller's deadline passed before the fetch could start",
                    )
                if not self._open & excluded:
                    break
                _IO.wait(left if left is not None else 1.0)
            self._open.add(endpoint)
        try:
            yield timeout if left is None else min(timeout, left)
        finally:
            with _IO:
                self._open.discard(endpoint)
                _IO.notify_all()

    def _get(
        self, endpoint: str, url: str, *, timeout: float, accept: str | None = None
    ) -> FetchResult:
        """Fetch ``url`` for ``endpoint`` and tell :attr:`trace`, if set, how it went."""
        trace = self.trace
        if trace is None:
            return self._fetcher.get(url, accept=accept, timeout=timeout)
        at, start = self._clock(), time.monotonic()
        try:
            res = self._fetcher.get(url, accept=accept, timeout=timeout)
        except FetchError as exc:
            status = exc.status if isinstance(exc, HTTPStatusError) else None
            took = time.monotonic() - start
            redacted = urls.redact_url(url)
            trace(
                FetchTrace(at, endpoint, redacted, took, status, reason=exc.reason, error=str(exc))
            )
            raise
        trace(
            FetchTrace(
                at, endpoint, res.url, res.duration, res.status, len(res.body), res.wire_bytes
            )
        )
        return res

    # -- /metrics

    def scrape_metrics(self) -> None:
        """Fetch and analyse /metrics once; on failure keep the last good analysis."""
        self._guard("metrics", self._scrape_metrics)

    def _scrape_metrics(self) -> None:
        g, rules = self._settings()
        t = self.target
        accept = exposition.accept_header(t.native_histograms)
        res = self._fetch("metrics", t.metrics_url, accept=accept)
        if res is None:
            return
        at = self._clock()
        limits = Limits(
            exact_value_cap=g.exact_count_cap,
            max_families=max(1000, g.caps.families * 5),
            series_fingerprints=SERIES_FINGERPRINTS,
        )
        source = f"{t.name} {res.url}"
        traffic = rules.for_target(t.name).heap_growth.traffic_metric
        with self._lock:
            held, token = self.snapshot.analysis, self._page_token
        req = PageRequest(t.name, token, res.body, res.content_type, source, limits, traffic)
        try:
            with _off_lane() if not isinstance(self._analyser, InlineAnalyser) else _nothing():
                result = self._analyser.analyse(req, held)
        except ParseError as exc:
            self._fail("metrics", "parse", str(exc), res.duration)
            return
        except AnalysisError as exc:
            if self._stop.is_set():
                return  # stopping: the analysis processes are gone
            raise RuntimeError(str(exc)) from None
        page = result.analysis if result.analysis is not None else held
        if page is None:
            raise RuntimeError("the analyser reused an analysis this worker does not hold")
        values, goroutines = result.values, result.goroutines
        if self._stats is not None:
            self._stats.analysed(result.reused, result.analysed, result.cpu_seconds)
        with self._lock:
            self._page_token = result.token
            churn = self._churn.update(page, at)
            prev = self.snapshot
            added = dict(prev.series_added)
            removed = dict(prev.series_removed)
            visible, capped = self._visible_metrics(prev.visible, page, g)
            if not churn.baseline:
                # Counters start at 0 for every shown family (and the overflow), so
                # rate() works before the first change; the keys are bounded by the caps.
                for key in (*visible.families, OTHER):
                    added.setdefault(key, 0)
                    removed.setdefault(key, 0)
                for fc in churn.families:
                    key = fc.name if fc.name in visible.families else OTHER
                    if fc.series_added:
                        added[key] = added.get(key, 0) + fc.series_added
                    if fc.series_removed:
                        removed[key] = removed.get(key, 0) + fc.series_removed
            if goroutines is not None:
                self._last_goroutines = goroutines
            self._view.add_metrics(at, page, values, churn)
            self._publish_round(
                "metrics",
                res,
                rules,
                analysis=page,
                analysis_at=at,
                churn=churn,
                series_added=MappingProxyType(added),
                series_removed=MappingProxyType(removed),
                visible=dataclasses.replace(visible, capped=capped),
                snapshots=prev.snapshots + 1,
            )

    def _visible_metrics(
        self, vis: Visible, page: PageAnalysis, g: GlobalConfig
    ) -> tuple[Visible, frozenset[str]]:
        th, caps = g.thresholds, g.caps
        fams = sorted(
            (f for f in page.families if f.name != OTHER and f.series >= th.min_family_series),
            key=lambda f: (-f.series, f.name),
        )
        families, fam_folded = _sticky(vis.families, (f.name for f in fams), caps.families)
        labs = sorted(
            (
                (lab.distinct_values, f.name, lab.name)
                for f in page.families
                if f.name != OTHER
                for lab in f.labels
                if lab.distinct_values >= th.min_label_values
            ),
            key=lambda x: (-x[0], x[1], x[2]),
        )
        labels, lab_folded = _sticky(vis.labels, ((f, lab) for _, f, lab in labs), caps.labels)
        capped = set(vis.capped)
        if fam_folded or page.other_families:
            capped.add("family")
        if lab_folded:
            capped.add("label")
        return dataclasses.replace(vis, families=families, labels=labels), frozenset(capped)

    # -- profiles

    def collect_profiles(self) -> None:
        """Read heap, goroutine and goroutineleak profiles once, as configured."""
        p = self.target.profiles
        if p.heap:
            self.collect("heap")
        if p.goroutine:
            self.collect("goroutine")
        if p.goroutineleak != "false":
            self.collect("goroutineleak")

    def collect(self, endpoint: str) -> None:
        """Read one profile endpoint once: ``heap``, ``goroutine`` or ``goroutineleak``."""
        step = {
            "heap": self._collect_heap,
            "goroutine": self._collect_goroutines,
            "goroutineleak": self._collect_leaks,
        }[endpoint]
        self._guard(endpoint, step)

    def _collect_heap(self) -> None:
        t = self.target
        res = self._fetch("heap", t.pprof_url("heap"))
        if res is None:
            return
        at = self._clock()
        try:
            profile = prof.decode(res.body, f"{t.name} {res.url}", max_bytes=t.body_size_limit)
            inuse = hp.owners(profile, "inuse_space")
            objects = hp.owners(profile, "inuse_objects")
            prev = self._view.heaps[-1].profile if self._view.heaps else None
            delta = hp.diff(prev, profile, "inuse_space") if prev is not None else None
        except ProfileError as exc:
            self._fail("heap", "parse", str(exc), res.duration)
            return
        g, rules = self._settings()
        with self._lock:
            self._view.add_heap(at, profile)
            vis = self.snapshot.visible
            floor = inuse.total * g.thresholds.min_heap_owner_share
            owners = [f.name for f in inuse.functions if f.flat > 0 and f.flat >= floor]
            names, folded = _sticky(vis.heap_owners, owners, g.caps.heap_owners)
            capped = vis.capped | ({"heap_owner"} if folded else set())
            self._publish_round(
                "heap",
                res,
                rules,
                heap=HeapState(at, inuse, objects, delta),
                visible=dataclasses.replace(vis, heap_owners=names, capped=frozenset(capped)),
                heap_window=(self._view.heaps[0], self._view.heaps[-1]),
                raw_profiles=self._kept("heap", at, res),
            )

    def _collect_goroutines(self) -> None:
        t = self.target
        full_max = t.profiles.goroutine_full_max
        known = self._last_goroutines
        full = known is not None and known < full_max
        fetched = self._fetch_goroutines(full)
        if fetched is None:
            return
        if known is None and not full and fetched[1].total < full_max:
            # First round: the count was unknown, so the cheap counted form was read
            # first. Now that it is known to be under the limit, take the full dump at
            # once, so groups are first published with their creators and their
            # created_by label does not change on the next round.
            fetched = self._fetch_goroutines(True) or fetched
        endpoint, snap, res = fetched
        proto = None
        if snap.format == "proto":
            # The proto form (debug=0) keeps what grouping drops: the runtime frames a
            # wait parks in, with file:line. Decoded again here, it is small (one
            # sample per distinct stack).
            try:
                proto = prof.decode(res.body, f"{self.target.name} {res.url}")
            except ProfileError as exc:
                self._fail(endpoint, "parse", str(exc), res.duration)
                return
        self._collecting(endpoint)  # the dump being processed, whichever was fetched last
        at = self._clock()
        groups = gr.group(snap)
        g, rules = self._settings()
        with self._lock:
            self._last_goroutines = snap.total
            prev_points = self._view.goroutines
            base = prev_points[-1].groups if prev_points else ()
            growth = gr.growth(base, groups) if prev_points else []
            self._view.add_goroutines(at, snap, groups, proto)
            cur = self.snapshot
            creators = dict(cur.group_creators)
            vis = cur.visible
            wanted = [
                grp.id
                for grp in groups
                if grp.count >= g.thresholds.min_goroutine_group or (grp.leaked or 0) > 0
            ]
            ids, folded = _sticky(vis.groups, wanted, g.caps.goroutine_groups)
            for grp in groups:
                # A group's creator is known only from full dumps; remember it so the
                # group's labels do not change when the next round reads the counted form.
                if grp.id in ids and grp.created_by and grp.id not in creators:
                    creators[grp.id] = grp.created_by
            capped = vis.capped | ({"goroutine_group"} if folded else set())
            self._publish_round(
                endpoint,
                res,
                rules,
                goroutines=GoroutineState(
                    at, snap.total, snap.format, tuple(groups), tuple(growth)
                ),
                group_creators=MappingProxyType(creators),
                visible=dataclasses.replace(vis, groups=ids, capped=frozenset(capped)),
                raw_profiles=self._kept("goroutine", at, res),
            )

    def _kept(self, name: str, at: float, res: FetchResult) -> Mapping[str, RawProfile]:
        """The raw profiles to publish with ``res`` as the latest ``name``; called under _lock."""
        kept = dict(self.snapshot.raw_profiles)
        if len(res.body) <= MAX_KEPT_PROFILE_BYTES:
            kept[name] = RawProfile(at, res.body, res.content_type or "", res.url)
        else:
            kept.pop(name, None)
        return MappingProxyType(kept)

    def _fetch_goroutines(self, full: bool) -> tuple[str, gr.GoroutineSnapshot, FetchResult] | None:
        """Fetch and parse the goroutine profile, as a full dump (debug=2) or counted (debug=0).

        The counted form is read as profile.proto (``debug=0``): the same counts
        per stack as ``debug=1``, with file:line, runtime frames and labels, and
        about 1 ms more of the target's CPU per fetch on 1,000 goroutines
        (docs/performance.md, target cost).
        """
        t = self.target
        endpoint = "goroutine_full" if full else "goroutine"
        url = t.pprof_url("goroutine") + ("?debug=2" if full else "?debug=0")
        res = self._fetch(endpoint, url)
        if res is None:
            return None
        try:
            snap = gr.parse(res.body, f"{t.name} {res.url}", fmt="debug2" if full else None)
        except ProfileError as exc:
            self._fail(endpoint, "parse", str(exc), res.duration)
            return None
        return endpoint, snap, res

    def _collect_leaks(self) -> None:
        t = self.target
        mode = t.profiles.goroutineleak
        now = self._clock()
        if (
            mode == "auto"
            and self._leak_404_at is not None
            and now - self._leak_404_at < LEAK_REPROBE_SECONDS
        ):
            return
        start = time.monotonic()
        self._collecting("goroutineleak")
        try:
            with self._opening("goroutineleak") as timeout:
                res = self._get(
                    "goroutineleak", t.pprof_url("goroutineleak") + "?debug=1", timeout=timeout
                )
        except FetchError as exc:
            if mode == "auto" and isinstance(exc, HTTPStatusError) and exc.status == 404:
                with self._lock:
                    self._leak_404_at = now
                    if self.snapshot.goroutineleak_supported is not False:
                        log.info(
                            "target does not serve goroutineleak; asking again in %ds",
                            LEAK_REPROBE_SECONDS,
                            extra={"target": t.name, "endpoint": "goroutineleak"},
                        )
                    self._view.set_leaks(None)
                    self._publish(goroutineleak_supported=False, leaks=None)
                return
            self._fail("goroutineleak", exc.reason, str(exc), time.monotonic() - start)
            return
        try:
            snap = gr.parse(res.body, f"{t.name} {res.url}", kind="goroutineleak")
        except ProfileError as exc:
            self._fail("goroutineleak", "parse", str(exc), res.duration)
            return
        leaks = tuple(gr.group(snap))
        g, rules = self._settings()
        with self._lock:
            self._leak_404_at = None
            self._view.set_leaks(leaks)
            vis = self.snapshot.visible
            ids, folded = _sticky(vis.groups, (lg.id for lg in leaks), g.caps.goroutine_groups)
            capped = vis.capped | ({"goroutine_group"} if folded else set())
            self._publish_round(
                "goroutineleak",
                res,
                rules,
                leaks=leaks,
                goroutineleak_supported=True,
                visible=dataclasses.replace(vis, groups=ids, capped=frozenset(capped)),
            )

    # -- offenders

    def view(self) -> TargetView:
        return self._view.view()

    def _detect(self, rules: Rules, endpoint: str) -> tuple[dict[str, Any], str | None]:
        """Run offender detection on the history; called with ``_lock`` held.

        Returns the snapshot changes and, when detection failed, the error.
        """
        view = self.view()
        points = [p.at for p in view.metrics] + [h.at for h in view.heaps]
        window = max(points) - min(points) if points else 0.0
        try:
            found = detect(view, rules)
        except Exception as exc:
            # Detection is pure code over data we hold; a failure is a bug. Keep the
            # fresh data and the last offenders, record the error and log the traceback.
            error = _internal_message(exc, "offender detection failed")
            log.exception(
                "%s",
                error,
                extra={"target": self.target.name, "endpoint": endpoint, "reason": INTERNAL},
            )
            return {"offenders_error": error, "window_seconds": window}, error
        g, _ = self._settings()
        changes = {
            "offenders": tuple(found),
            "offenders_error": None,
            "offenders_capped": len(found) > g.caps.offenders,
            "window_seconds": window,
        }
        return changes, None

    def adopt(self, old: TargetWorker) -> None:
        """Carry history and snapshot over from the worker this one replaces (same URL)."""
        with old._lock:
            self._churn = old._churn
            # The old worker's thread may still finish a fetch in flight; let it update a
            # throwaway tracker rather than the one this worker now owns.
            old._churn = ChurnTracker(window=HISTORY_WINDOW)
            self._view = old._view
            old._view = ViewBuilder(old.target.name, HISTORY)
            self._last_goroutines = old._last_goroutines
            self._leak_404_at = old._leak_404_at
            self._page_token = old._page_token
            self.snapshot = dataclasses.replace(old.snapshot, url=self.target.url)


def _internal_message(exc: BaseException, what: str = "internal error while collecting") -> str:
    """A bounded one-line description of an unexpected exception, for health and logs."""
    text = f"{what}: {type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


# --- the schedule ---------------------------------------------------------------------


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
        self, worker: TargetWorker, endpoint: str, interval: float, now: float, spread: float
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


# --- all targets --------------------------------------------------------------------


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
        return TargetWorker(target, self.settings, self._clock, self._analyser, self.stats)

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
        with self._lock:
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
