"""Per-target scrape and profile loops that keep an immutable snapshot of what each target showed.

Each target gets two threads of its own: one scrapes ``/metrics`` every
``interval``, the other reads ``net/http/pprof`` every ``profiles.interval``.
Fetches are bounded in time and size (:mod:`cardguard.fetch`), so a slow or
dead target only ever delays itself.

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
  ``profiles.goroutine_full_max``; otherwise the counted ``debug=1`` form is used;
* ``goroutineleak`` in ``auto`` mode is probed once; a 404 is remembered and
  the endpoint is asked again only after :data:`LEAK_REPROBE_SECONDS`.

Bounded output: which families, labels, heap owners and goroutine groups
appear in cardguard's own series is decided here with sticky sets (an entry
that passes its threshold stays), capped per target; what does not fit is
folded into ``__other__`` by the collectors and ``capped`` records it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from cardguard import cardinality, exposition, fetch, offenders
from cardguard.cardinality import Limits, PageAnalysis
from cardguard.churn import ChurnReport, ChurnTracker
from cardguard.config import Config, GlobalConfig, TargetConfig
from cardguard.errors import FetchError, ParseError, ProfileError
from cardguard.fetch import Fetcher, FetchResult, HTTPStatusError
from cardguard.offenders import HeapPoint
from cardguard.pprof import goroutines as gr
from cardguard.pprof import heap as hp
from cardguard.pprof import profile as prof
from cardguard.rules import DEFAULT_RULES, Rules

log = logging.getLogger("cardguard.scheduler")

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
# /report offers each target's last heap and goroutine profile for download; a body
# larger than this is not kept (the bound on what serve holds is targets x 2 x this).
MAX_KEPT_PROFILE_BYTES = 16 * 1024 * 1024
SERIES_FINGERPRINTS = 512

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
class Visible:
    """What cardguard's own series show for one target (sticky, capped), and what got folded."""

    families: frozenset[str] = frozenset()
    labels: frozenset[tuple[str, str]] = frozenset()
    heap_owners: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    capped: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RawProfile:
    """A profile body as the target served it, kept for download from /report."""

    at: float
    body: bytes
    content_type: str
    url: str


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
    offenders: tuple[offenders.Offender, ...] = ()
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


def _bounded_append(items: list[T], item: T, at: Callable[[T], float], max_n: int) -> None:
    """Append, drop points older than the window (keep two), then thin from the old end.

    Thinning removes the second-oldest point so the oldest stays as a baseline
    and recent points stay dense.
    """
    items.append(item)
    now = at(item)
    while len(items) > 2 and now - at(items[0]) > HISTORY_WINDOW:
        items.pop(0)
    while len(items) > max_n:
        items.pop(1)


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


_GO_GOROUTINES = re.compile(
    rb"^go_goroutines(?:\{\})?[ \t]+([0-9.eE+]+)[ \t]*(?:[0-9.]+)?\r?$", re.M
)


def goroutines_from_page(data: bytes) -> int | None:
    """Return the value of client_golang's ``go_goroutines`` gauge on a page, if present.

    One C-level regex search instead of another parse of the page: the gauge is
    unlabelled, so its line has one fixed shape in both exposition formats.
    """
    m = _GO_GOROUTINES.search(data)
    if m is None:
        return None
    try:
        return int(float(m.group(1)))
    except ValueError:
        return None


# --- one target -------------------------------------------------------------------


class TargetWorker:
    """Scrapes one target on its schedules and publishes :class:`TargetSnapshot` objects."""

    def __init__(
        self,
        target: TargetConfig,
        settings: Callable[[], tuple[GlobalConfig, Rules]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self._settings = settings
        self._clock = clock
        self._fetcher = Fetcher(target)
        self._lock = threading.Lock()  # serialises builders; readers never take it
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.snapshot = TargetSnapshot(target=target.name, url=target.url)
        # Mutable state behind the snapshot, touched only under _lock.
        self._churn = ChurnTracker(window=HISTORY_WINDOW)
        self._metrics_points: list[offenders.MetricsPoint] = []
        self._heap_points: list[offenders.HeapPoint] = []
        self._goroutine_points: list[offenders.GoroutinePoint] = []
        self._last_goroutines: int | None = None
        self._leak_404_at: float | None = None
        self._started_at = clock()
        # The endpoint each thread is collecting right now, so _guard can blame the right one.
        self._current = threading.local()
        # Told about every fetch while set: /probe?debug=true sets it for one probe.
        self.trace: Callable[[FetchTrace], None] | None = None
        # Set once each loop finished its first round (fetch attempted, success or not):
        # what /-/ready waits for. A loop this target does not run counts as done.
        self._first_round = {"metrics": threading.Event(), "profiles": threading.Event()}
        if target.tls.insecure_skip_verify:
            log.warning(
                "TLS certificate verification is off for this target",
                extra={"target": target.name},
            )

    # -- lifecycle

    def start(self) -> None:
        loops: list[tuple[str, Callable[[], float], Callable[[], None]]] = [
            ("metrics", lambda: self.target.interval, self.scrape_metrics)
        ]
        p = self.target.profiles
        if p.enabled and (p.heap or p.goroutine or p.goroutineleak != "false"):
            loops.append(("profiles", lambda: self.target.profiles.interval, self.collect_profiles))
        for name, event in self._first_round.items():
            if name not in (n for n, _, _ in loops):
                event.set()
        for name, interval, work in loops:
            t = threading.Thread(
                target=self._loop,
                args=(name, interval, work),
                name=f"cardguard-{self.target.name}-{name}",
                daemon=True,
            )
            self._threads.append(t)
            t.start()

    def stop(self, wait: float | None = None) -> None:
        self._stop.set()
        limit = self.target.timeout + self.target.profiles.interval if wait is None else wait
        for t in self._threads:
            t.join(timeout=limit)

    def first_round_done(self) -> bool:
        """True once the metrics loop and the profiles loop (if any) each ran once."""
        return all(e.is_set() for e in self._first_round.values())

    def _loop(self, name: str, interval: Callable[[], float], work: Callable[[], None]) -> None:
        next_run = time.monotonic()
        while not self._stop.is_set():
            try:
                work()
            except Exception:
                # Not reached: every step runs under _guard. Should recording a failure
                # itself fail, the loop must still carry on.
                log.exception(
                    "internal error while collecting",
                    extra={"target": self.target.name, "endpoint": name, "reason": INTERNAL},
                )
            self._first_round[name].set()
            step = interval()
            next_run += step
            now = time.monotonic()
            if next_run < now:  # overran: skip the missed runs rather than bunching up
                next_run = now + step
            self._stop.wait(next_run - now)

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
        timeout = (
            self.target.timeout
            if endpoint == "metrics"
            else (self.target.profiles.timeout or self.target.timeout)
        )
        self._collecting(endpoint)
        try:
            return self._get(endpoint, url, accept=accept, timeout=timeout)
        except FetchError as exc:
            self._fail(endpoint, exc.reason, str(exc), time.monotonic() - start)
            return None

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
            redacted = fetch.redact_url(url)
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
        try:
            fmt = exposition.detect_format(res.content_type, res.body)
            page = cardinality.analyse(
                res.body, content_type=res.content_type, source=source, limits=limits, fmt=fmt
            )
            traffic = rules.for_target(t.name).heap_growth.traffic_metric
            values = offenders.values_from_page(res.body, fmt, source, traffic)
        except ParseError as exc:
            self._fail("metrics", "parse", str(exc), res.duration)
            return
        goroutines = goroutines_from_page(res.body)
        with self._lock:
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
            point = offenders.metrics_point(page, at, values, churn)
            _bounded_append(self._metrics_points, point, lambda p: p.at, MAX_METRICS_POINTS)
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
            self._guard("heap", self._collect_heap)
        if p.goroutine:
            self._guard("goroutine", self._collect_goroutines)
        if p.goroutineleak != "false":
            self._guard("goroutineleak", self._collect_leaks)

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
            prev = self._heap_points[-1].profile if self._heap_points else None
            delta = hp.diff(prev, profile, "inuse_space") if prev is not None else None
        except ProfileError as exc:
            self._fail("heap", "parse", str(exc), res.duration)
            return
        g, rules = self._settings()
        with self._lock:
            _bounded_append(
                self._heap_points, offenders.HeapPoint(at, profile), lambda h: h.at, MAX_HEAP_POINTS
            )
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
                heap_window=(self._heap_points[0], self._heap_points[-1]),
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
            # First round: the count was unknown, so the cheap debug=1 form was read
            # first. Now that it is known to be under the limit, take the full dump at
            # once, so groups are first published with their creators and their
            # created_by label does not change on the next round.
            fetched = self._fetch_goroutines(True) or fetched
        endpoint, snap, res = fetched
        self._collecting(endpoint)  # the dump being processed, whichever was fetched last
        at = self._clock()
        groups = gr.group(snap)
        g, rules = self._settings()
        with self._lock:
            self._last_goroutines = snap.total
            prev_points = self._goroutine_points
            base = prev_points[-1].groups if prev_points else ()
            growth = gr.growth(base, groups) if prev_points else []
            point = offenders.GoroutinePoint(at=at, total=snap.total, groups=tuple(groups))
            _bounded_append(self._goroutine_points, point, lambda p: p.at, MAX_GOROUTINE_POINTS)
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
                # group's labels do not change when the next round reads debug=1.
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
        """Fetch and parse the goroutine profile, as a full dump (debug=2) or counted (debug=1)."""
        t = self.target
        endpoint = "goroutine_full" if full else "goroutine"
        url = t.pprof_url("goroutine") + ("?debug=2" if full else "?debug=1")
        res = self._fetch(endpoint, url)
        if res is None:
            return None
        try:
            snap = gr.parse(res.body, f"{t.name} {res.url}", fmt="debug2" if full else "debug1")
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
            res = self._get(
                "goroutineleak",
                t.pprof_url("goroutineleak") + "?debug=1",
                timeout=t.profiles.timeout or t.timeout,
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

    def view(self) -> offenders.TargetView:
        return offenders.TargetView(
            target=self.target.name,
            metrics=tuple(self._metrics_points),
            heaps=tuple(self._heap_points),
            goroutines=tuple(self._goroutine_points),
            leaks=self.snapshot.leaks,
        )

    def _detect(self, rules: Rules, endpoint: str) -> tuple[dict[str, Any], str | None]:
        """Run offender detection on the history; called with ``_lock`` held.

        Returns the snapshot changes and, when detection failed, the error.
        """
        view = self.view()
        points = [p.at for p in view.metrics] + [h.at for h in view.heaps]
        window = max(points) - min(points) if points else 0.0
        try:
            found = offenders.detect(view, rules)
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
            self._metrics_points = list(old._metrics_points)
            self._heap_points = list(old._heap_points)
            self._goroutine_points = list(old._goroutine_points)
            self._last_goroutines = old._last_goroutines
            self._leak_404_at = old._leak_404_at
            self.snapshot = dataclasses.replace(old.snapshot, url=self.target.url)


def _internal_message(exc: BaseException, what: str = "internal error while collecting") -> str:
    """A bounded one-line description of an unexpected exception, for health and logs."""
    text = f"{what}: {type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


# --- all targets --------------------------------------------------------------------


class Scheduler:
    """Runs one :class:`TargetWorker` per configured target; applies new configs in place."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._config = config
        self._workers: dict[str, TargetWorker] = {}
        self._lock = threading.Lock()
        self._started = False
        self._ready = False

    @property
    def config(self) -> Config:
        return self._config

    def settings(self) -> tuple[GlobalConfig, Rules]:
        cfg = self._config
        return cfg.global_, cfg.rules if cfg.rules is not None else DEFAULT_RULES

    def start(self) -> None:
        with self._lock:
            self._started = True
            for t in self._config.targets:
                self._spawn(t, None)

    def _spawn(self, target: TargetConfig, old: TargetWorker | None) -> None:
        w = TargetWorker(target, self.settings, self._clock)
        if old is not None and old.target.url == target.url:
            w.adopt(old)
        self._workers[target.name] = w
        w.start()

    def apply(self, config: Config) -> None:
        """Switch to ``config``: unchanged targets keep running, others restart or stop.

        The new workers are built before any running one is touched, so should that
        fail, the previous config is still the one running, whole.
        """
        with self._lock:
            if not self._started:
                self._config = config
                return
            wanted = {t.name: t for t in config.targets}
            fresh = {
                name: TargetWorker(t, self.settings, self._clock)
                for name, t in wanted.items()
                if name not in self._workers or self._workers[name].target != t
            }
            self._config = config
            for name in list(self._workers):
                if name not in wanted:
                    self._workers.pop(name).stop(wait=0)
            for name, w in fresh.items():
                old = self._workers.get(name)
                if old is not None:
                    old.stop(wait=0)
                    if old.target.url == w.target.url:
                        w.adopt(old)
                self._workers[name] = w
                w.start()

    def stop(self, wait: float = 2.0) -> None:
        """Stop every worker; wait at most ``wait`` seconds in all for fetches in flight.

        Worker threads are daemons and every fetch has a deadline, so one that is
        still running after ``wait`` ends with the process or on its own.
        """
        with self._lock:
            workers = list(self._workers.values())
            self._workers = {}
            self._started = False
        for w in workers:
            w._stop.set()
        deadline = time.monotonic() + wait
        for w in workers:
            w.stop(wait=max(0.0, deadline - time.monotonic()))

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
            for t in self._config.targets
            if t.name not in workers or not workers[t.name].first_round_done()
        ]

    def snapshots(self) -> list[TargetSnapshot]:
        """The current snapshot of every target, in config order."""
        workers = dict(self._workers)
        return [workers[t.name].snapshot for t in self._config.targets if t.name in workers]

    def worker(self, name: str) -> TargetWorker | None:
        return self._workers.get(name)

    def __iter__(self) -> Iterator[TargetSnapshot]:
        return iter(self.snapshots())
