"""A target's worker, the machinery: bounded fetches, health, publishing, detection.

Every collection step runs under :meth:`WorkerBase._guard`: an exception nobody
expected is a failure of the endpoint being collected with reason ``internal``,
logged once with its traceback, never an endpoint that goes on looking healthy.
A target's heap profile is never fetched while its ``/metrics`` fetch is open,
nor the other way round. After every round the worker runs detection over the
one view builder (:mod:`cardguard.analyse.watch`), judged, refined and explained
as ``cardguard report`` does (:mod:`cardguard.detect.findings`: verdicts across
a restart, fixes proven safe on the latest page, container memory), and
publishes a new snapshot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

from cardguard.analyse import usage
from cardguard.analyse.churn import ChurnTracker
from cardguard.analyse.view import (
    TargetView,
)
from cardguard.analyse.watch import Bounds, ViewBuilder
from cardguard.detect import remedies
from cardguard.detect.findings import Findings
from cardguard.errors import FetchError
from cardguard.run import urls
from cardguard.run.analysis import (
    Analyser,
    InlineAnalyser,
)
from cardguard.run.fetch import Fetcher, FetchResult, HTTPStatusError
from cardguard.run.lanes import CURRENT, IO, Flag, off_lane, on_lane
from cardguard.run.snapshot import (
    FAILURE_REASONS,
    HEAP_OWNER_KINDS,
    INTERNAL,
    MAX_ERROR_CHARS,
    EndpointHealth,
    FetchTrace,
    TargetSnapshot,
    Visible,
)
from cardguard.run.stats import SchedulerStats
from cardguard.settings.config import GlobalConfig
from cardguard.settings.rules import Rules
from cardguard.settings.targets import TargetConfig

log = logging.getLogger("cardguard.run.worker")


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


# Series of an exploding family read to prove a relabel fix safe (a family past the cap gets
# no rewrite), the children kept from the round it first exploded (a sample, for stale
# children), and the least time between two such readings of one target's page: only
# targets with a label explosion pay it, and what a worker keeps between rounds is the
# children cap.
FIX_SERIES_CAP = 2_000
FIX_CHILDREN_CAP = 1_000
FIX_REFRESH_SECONDS = 600.0


# Fetches that may not be open at the same time for one target.
_EXCLUSIVE = {"metrics": frozenset({"heap"}), "heap": frozenset({"metrics"})}


class WorkerBase:
    """Scrapes one target on its schedules and publishes :class:`TargetSnapshot` objects."""

    def __init__(
        self,
        target: TargetConfig,
        settings: Callable[[], tuple[GlobalConfig, Rules]],
        clock: Callable[[], float] = time.time,
        analyser: Analyser | None = None,
        stats: SchedulerStats | None = None,
        uses: Callable[[], usage.Index | None] | None = None,
    ) -> None:
        self.target = target
        self._uses = uses
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
        self._findings = _findings()
        self._last_goroutines: int | None = None
        self._leak_404_at: float | None = None
        self._started_at = clock()
        # The endpoint each thread is collecting right now, so _guard can blame the right one
        # (a thread runs one job of one worker at a time, so one thread-local serves all).
        self._current = CURRENT
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
            with on_lane():
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

    def scrape_metrics(self) -> None:
        """Fetch and analyse /metrics once (:class:`~cardguard.run.target_worker.TargetWorker`)."""
        raise NotImplementedError

    def collect(self, endpoint: str) -> None:
        """Read one profile endpoint once (:class:`~cardguard.run.target_worker.TargetWorker`)."""
        raise NotImplementedError

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
            if reason not in FAILURE_REASONS:
                reason = "other"  # the reason label keeps to its fixed set
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

    def _publish_round(
        self,
        endpoint: str,
        res: FetchResult,
        rules: Rules,
        page: remedies.Page | None = None,
        **changes: Any,
    ) -> None:
        """Publish what one fetch brought, offenders re-detected; called with ``_lock`` held.

        ``page``: the /metrics page of this round, from which fixes are rebuilt.
        Should detection fail (a bug), the fresh data is still published, but the
        endpoint says so (success 0, reason ``internal``) instead of looking healthy.
        """
        detected, error = self._detect(rules, endpoint, page)
        named = {o.function for o in detected.get("offenders", ()) if o.kind in HEAP_OWNER_KINDS}
        vis: Visible = changes.get("visible", self.snapshot.visible)
        if not named <= vis.heap_owners:
            # Every heap owner an offender names has its own series, whatever the top list
            # and the share floor say (offenders are capped, so this stays bounded).
            changes["visible"] = dataclasses.replace(vis, heap_owners=vis.heap_owners | named)
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
        with off_lane():
            with self._opened(endpoint) as timeout:
                yield timeout

    @contextlib.contextmanager
    def _opened(self, endpoint: str) -> Iterator[float]:
        t = self.target
        timeout = t.timeout if endpoint == "metrics" else (t.profiles.timeout or t.timeout)
        excluded = _EXCLUSIVE.get(endpoint, frozenset())
        with IO:
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
                IO.wait(left if left is not None else 1.0)
            self._open.add(endpoint)
        try:
            yield timeout if left is None else min(timeout, left)
        finally:
            with IO:
                self._open.discard(endpoint)
                IO.notify_all()

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

    def view(self) -> TargetView:
        return self._view.view()

    def _detect(
        self, rules: Rules, endpoint: str, page: remedies.Page | None = None
    ) -> tuple[dict[str, Any], str | None]:
        """Run offender detection on the history; called with ``_lock`` held.

        Returns the snapshot changes and, when detection failed, the error.
        """
        view = self.view()
        points = [p.at for p in view.metrics] + [h.at for h in view.heaps]
        window = max(points) - min(points) if points else 0.0
        try:
            self._findings.uses = self._uses() if self._uses is not None else None
            found = self._findings.offenders(view, rules, page)
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

    def adopt(self, old: WorkerBase) -> None:
        """Carry history and snapshot over from the worker this one replaces (same URL)."""
        with old._lock:
            self._churn = old._churn
            # The old worker's thread may still finish a fetch in flight; let it update a
            # throwaway tracker rather than the one this worker now owns.
            old._churn = ChurnTracker(window=HISTORY_WINDOW)
            self._view = old._view
            old._view = ViewBuilder(old.target.name, HISTORY)
            self._findings = old._findings
            old._findings = _findings()
            self._last_goroutines = old._last_goroutines
            self._leak_404_at = old._leak_404_at
            self._page_token = old._page_token
            self.snapshot = dataclasses.replace(old.snapshot, url=self.target.url)


def _findings() -> Findings:
    """A worker's findings: bounded like its history (see FIX_SERIES_CAP)."""
    return Findings(
        max_points=MAX_METRICS_POINTS,
        series_cap=FIX_SERIES_CAP,
        children_cap=FIX_CHILDREN_CAP,
        refine_seconds=FIX_REFRESH_SECONDS,
    )


def _internal_message(exc: BaseException, what: str = "internal error while collecting") -> str:
    """A bounded one-line description of an unexpected exception, for health and logs."""
    text = f"{what}: {type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
