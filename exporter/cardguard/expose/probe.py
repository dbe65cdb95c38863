"""``/probe?target=...``: Prometheus picks the targets, cardguard analyses each on request.

This is the blackbox_exporter pattern. Prometheus' service discovery finds the
Go services; relabelling moves each address into ``__param_target`` and
points ``__address__`` at cardguard; every scrape of ``/probe`` fetches that
one target and answers with its derived series (the same ones ``/metrics``
shows for configured targets, with the same ``target`` label scheme).

What makes it safe and cheap:

* **Allow-list, deny by default** (:mod:`cardguard.settings.allowlist`): hosts,
  globs, CIDRs (checked on every address a name resolves to) and a file_sd
  file re-read when it changes. Refusals answer 403 (400 for a malformed
  target) with the reason in the body, and count in
  ``cardguard_probe_refused_total{reason}``. The fetch connects only to the
  addresses this probe's check approved (the Host header and TLS keep the
  name), so a name cannot be re-pointed between the check and the fetch.
* **State between probes**: each target keeps a
  :class:`~cardguard.run.target_worker.TargetWorker` (baselines, churn, heap base,
  goroutine growth) in a bounded LRU (``max_targets``); a target not probed
  for ``state_ttl`` is forgotten.
* **A short result cache** (``cache_ttl``): an HA pair of Prometheus servers
  probing the same target within the TTL costs the target one fetch; a
  probe that arrives while another is fetching waits for that fetch.
* **Profiles on their own interval**: heap and goroutine profiles are read
  at most every ``profiles.interval`` whatever the probe rate.

``/probe?target=...&debug=true`` answers, as blackbox_exporter's does, with a
plain-text page instead of the series: the probe's log lines (every fetch with
its endpoint, redacted URL, status, bytes, duration and failure reason), the
exposition it produced and the probe settings it ran with. A debug probe always
fetches (it bypasses the result cache) but keeps to ``profiles.interval`` and to
the allow-list like any other.

The ``probe:`` section of the config is read by :mod:`cardguard.settings.probe`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cardguard import logfmt
from cardguard.errors import ConfigError
from cardguard.expose import collectors
from cardguard.expose.server import ClientLog, Response
from cardguard.quantities import format_duration
from cardguard.run import session, urls
from cardguard.run.snapshot import FetchTrace, TargetSnapshot
from cardguard.run.target_worker import TargetWorker
from cardguard.settings import allowlist
from cardguard.settings.allowlist import Refusal, Resolver
from cardguard.settings.config import GlobalConfig
from cardguard.settings.probe import ProbeConfig
from cardguard.settings.rules import Rules
from cardguard.settings.targets import TargetConfig

log = logging.getLogger("cardguard.expose.probe")


@dataclass(frozen=True)
class ProbeResponse:
    """What the HTTP layer sends back for one /probe request."""

    status: int
    body: bytes
    content_type: str = "text/plain; version=0.0.4; charset=utf-8"
    reason: str | None = None  # the refusal reason, for refused probes


Render = Callable[[Sequence[TargetSnapshot], GlobalConfig], bytes]


def render_snapshots(snapshots: Sequence[TargetSnapshot], g: GlobalConfig) -> bytes:
    """Render snapshots with the same collectors ``/metrics`` uses, as text exposition."""
    registry = CollectorRegistry(auto_describe=False)
    for c in collectors.target_collectors(lambda: snapshots, lambda: g.caps.offenders):
        registry.register(c)
    return generate_latest(registry)


# --- /probe?debug=true --------------------------------------------------------

DEBUG_CONTENT_TYPE = "text/plain; charset=utf-8"


def _event(at: float, level: str, msg: str, **fields: object) -> dict[str, object]:
    return {"ts": logfmt.timestamp(at), "level": level, "msg": msg, **fields}


def _refused(refusal: Refusal) -> dict[str, object]:
    return {"reason": refusal.reason, "error": refusal.message}


def _begin(
    at: float, t: allowlist.Target, target: TargetConfig, budget: float | None
) -> dict[str, object]:
    fields: dict[str, object] = {"target": f"{t.host}:{t.port}", "url": urls.redact_url(t.url)}
    if t.addresses:
        fields["addresses"] = ",".join(t.addresses)
    fields["timeout_seconds"] = target.timeout
    if budget is not None:
        fields["cut_to_fit_scrape_timeout"] = "true"
    return _event(at, "info", "Beginning probe", **fields)


def _fetched(t: FetchTrace) -> dict[str, object]:
    fields: dict[str, object] = {"endpoint": t.endpoint, "url": t.url}
    fields["status"] = t.status if t.status is not None else "-"
    fields.update(bytes=t.body_bytes, wire_bytes=t.wire_bytes)
    fields["duration_seconds"] = f"{t.duration:.6f}"
    if t.reason is None:
        return _event(t.at, "info", "Fetched", **fields)
    return _event(t.at, "warn", "Fetch failed", **fields, reason=t.reason, error=t.error)


def _profiles_skipped(
    at: float, target: TargetConfig, in_time: bool, entry: _Entry
) -> dict[str, object]:
    p = target.profiles
    if not p.enabled:
        return _event(at, "info", "Profiles not read", reason="disabled")
    if not in_time:
        return _event(at, "info", "Profiles not read", reason="metrics_took_half_the_timeout")
    ago = at - (entry.profiles_at or at)
    return _event(
        at,
        "info",
        "Profiles not read",
        reason="interval",
        last_read_seconds_ago=f"{ago:.1f}",
        interval_seconds=p.interval,
    )


def _results(snap: TargetSnapshot, since: float) -> list[dict[str, object]]:
    """What each endpoint fetched in this probe came to, parsing and analysis included."""
    out = []
    for endpoint, h in snap.health.items():
        if not h.attempted or h.last_attempt < since:
            continue
        if h.success:
            out.append(_event(h.last_attempt, "info", "Endpoint ok", endpoint=endpoint))
        else:
            fields = {"endpoint": endpoint, "reason": h.last_reason, "error": h.last_error}
            out.append(_event(h.last_attempt, "warn", "Endpoint failed", **fields))
    return out


def debug_page(
    lines: Sequence[Mapping[str, object]], body: bytes | None, cfg: ProbeConfig
) -> bytes:
    """The ``/probe?debug=true`` page: log lines, the exposition, the probe settings."""
    settings = {
        "metrics_path": cfg.metrics_path,
        "pprof_path": cfg.pprof_path,
        "timeout": format_duration(cfg.timeout),
        "cache_ttl": format_duration(cfg.cache_ttl),
        "body_size_limit": cfg.body_size_limit,
        "profiles": {
            "enabled": cfg.profiles.enabled,
            "interval": format_duration(cfg.profiles.interval),
            "heap": cfg.profiles.heap,
            "goroutine": cfg.profiles.goroutine,
            "goroutineleak": cfg.profiles.goroutineleak,
        },
    }
    out = ["Logs for the probe:", *(logfmt.line(fields) for fields in lines), ""]
    if body is None:
        out += ["Metrics that would have been returned: none, the probe was refused.", ""]
    else:
        out += ["Metrics that would have been returned:", body.decode("utf-8", "replace")]
    out += ["Probe configuration:", yaml.safe_dump(settings, sort_keys=False)]
    return "\n".join(out).encode()


# Fetches end this long before Prometheus' scrape timeout, and the answer goes out at
# the latest this long before it (what is still running by then is reported as timed out).
FETCH_MARGIN = 0.5
ANSWER_MARGIN = 0.25


def run_concurrently(worker: TargetWorker, jobs: Sequence[str], until: float | None) -> list[str]:
    """Run ``jobs`` of ``worker`` at once, each in its own thread; wait until ``until``.

    Returns the jobs still running then. Their threads are daemons, and every
    fetch has the worker's deadline, so they end shortly on their own (and
    publish what they got into the worker's state, for the next probe).
    """
    threads = []
    for job in jobs:
        th = threading.Thread(
            target=worker.run, args=(job,), name=f"cardguard-probe-{job}", daemon=True
        )
        th.start()
        threads.append((job, th))
    for _, th in threads:
        th.join(None if until is None else max(0.0, until - time.monotonic()))
    return [job for job, th in threads if th.is_alive()]


class _Entry:
    """One probed target: its worker (state between probes) and the cached answer."""

    def __init__(self, worker: TargetWorker) -> None:
        self.worker = worker
        self.base_target = worker.target  # the configured limits; a probe may cut them
        self.lock = threading.Lock()  # one fetch at a time per target
        self.last_probe = 0.0
        self.cached: bytes | None = None
        self.cached_at = 0.0
        self.profiles_at: float | None = None


class Prober:
    """Answers /probe requests; thread-safe (the HTTP server calls it from many threads)."""

    def __init__(
        self,
        config: ProbeConfig,
        settings: Callable[[], tuple[GlobalConfig, Rules]],
        render: Render = render_snapshots,
        *,
        resolve: Resolver = session.resolve_host,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._settings = settings
        self._render = render
        self._resolve = resolve
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._refused = dict.fromkeys(allowlist.REASONS, 0)
        self._cache_hits = 0
        self._fetches = 0
        self._evicted = 0
        self._sd_stat: tuple[int, int] | None = None
        self._sd_targets: frozenset[tuple[str, int]] = frozenset()
        self._refusals = ClientLog(logger=log)
        self._reload_file_sd()

    # -- configuration

    @property
    def config(self) -> ProbeConfig:
        return self._config

    def apply(self, config: ProbeConfig) -> None:
        """Switch to a new probe config; targets no longer allowed are dropped at next probe."""
        with self._lock:
            self._config = config
            self._sd_stat = None
        self._reload_file_sd()

    def _reload_file_sd(self) -> None:
        path = self._config.allow_file_sd
        if path is None:
            self._sd_targets = frozenset()
            return
        try:
            st = os.stat(path)
        except OSError as exc:
            log.error(
                "cannot stat allow_file_sd; keeping the previous list",
                extra={"target": str(path), "endpoint": "probe", "reason": type(exc).__name__},
            )
            return
        key = (st.st_mtime_ns, st.st_size)
        if key == self._sd_stat:
            return
        try:
            targets = allowlist.parse_file_sd(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError, ConfigError) as exc:
            # A half-written file must not empty the allow-list: keep the old one.
            log.error(
                "cannot read allow_file_sd; keeping the previous list: %s",
                exc,
                extra={"target": str(path), "endpoint": "probe", "reason": "parse"},
            )
            return
        self._sd_stat = key
        self._sd_targets = targets
        log.info(
            "allow_file_sd loaded with %d targets",
            len(targets),
            extra={"target": str(path), "endpoint": "probe"},
        )

    # -- the endpoint

    def probe(
        self, raw_target: str | None, timeout_hint: float | None = None, debug: bool = False
    ) -> ProbeResponse:
        """Answer one /probe request for ``raw_target`` (the ``target`` query parameter).

        ``timeout_hint`` is the caller's own deadline in seconds (Prometheus sends
        ``X-Prometheus-Scrape-Timeout-Seconds``); fetches are cut to fit inside
        it, so a slow target shows as a failed fetch rather than a lost scrape.
        ``debug`` answers with the probe's log lines and its output as plain text.
        """
        log_lines: list[dict[str, object]] | None = [] if debug else None
        self._reload_file_sd()
        allow = self._config.allow.with_file_sd(self._sd_targets)
        decision = allowlist.check(allow, raw_target, self._resolve)
        if isinstance(decision, Refusal):
            refused = self._refuse(decision, raw_target)
            if log_lines is None:
                return refused
            log_lines.append(_event(self._clock(), "warn", "Probe refused", **_refused(decision)))
            page = debug_page(log_lines, None, self._config)
            return ProbeResponse(refused.status, page, DEBUG_CONTENT_TYPE, refused.reason)
        now = self._clock()
        entry = self._entry(decision, now)
        with entry.lock:
            entry.last_probe = now
            if decision.addresses != entry.base_target.addresses:
                # Connect to what this check approved, never to what an earlier one did.
                self._repin(entry, decision.addresses)
            fresh = entry.cached is not None and now - entry.cached_at < self._config.cache_ttl
            if fresh and log_lines is None:
                with self._lock:
                    self._cache_hits += 1
                return ProbeResponse(200, entry.cached or b"")
            worker = entry.worker
            budget = self._budget(timeout_hint)
            base = entry.base_target
            worker.target = (
                base
                if budget is None
                else replace(base, timeout=budget, profiles=replace(base.profiles, timeout=budget))
            )
            if log_lines is not None:
                log_lines.append(_begin(now, decision, worker.target, budget))
                worker.trace = lambda t: log_lines.append(_fetched(t))
            started = time.monotonic()
            try:
                interval = worker.target.profiles.interval
                due = entry.profiles_at is None or now - entry.profiles_at >= interval
                jobs = ["metrics"]
                if worker.target.profiles.enabled and due:
                    entry.profiles_at = now
                    jobs += [j for j in worker.jobs() if j != "metrics"]
                elif log_lines is not None:
                    log_lines.append(_profiles_skipped(now, worker.target, True, entry))
                if budget is not None:
                    worker.deadline = started + budget
                answer_by = None if timeout_hint is None else started + timeout_hint - ANSWER_MARGIN
                for job in run_concurrently(worker, jobs, answer_by):
                    # Still fetching when the answer is due: say so instead of old health.
                    worker.cut_short(job, time.monotonic() - started)
            finally:
                worker.trace = None
                worker.deadline = None
            g, _ = self._settings()
            body = self._render([worker.snapshot], g)
            entry.cached, entry.cached_at = body, self._clock()
            with self._lock:
                self._fetches += 1
            if log_lines is not None:
                # Each endpoint's outcome (parsing included) next to its fetch, in time order.
                log_lines.extend(_results(worker.snapshot, now))
                log_lines.sort(key=lambda fields: str(fields["ts"]))
                took = f"{time.monotonic() - started:.6f}"
                log_lines.append(_event(self._clock(), "info", "Probe done", duration_seconds=took))
                return ProbeResponse(
                    200, debug_page(log_lines, body, self._config), DEBUG_CONTENT_TYPE
                )
        return ProbeResponse(200, body)

    def _budget(self, hint: float | None) -> float | None:
        """The fetch timeout for one probe: the configured one, cut to fit the caller's deadline."""
        c = self._config
        if hint is None or hint <= 0:
            return None
        # Leave half a second for analysis and the answer, as blackbox_exporter does.
        return max(0.25, min(c.timeout, c.profiles.timeout or c.timeout, hint - FETCH_MARGIN))

    def _refuse(self, refusal: Refusal, raw_target: str | None) -> ProbeResponse:
        with self._lock:
            self._refused[refusal.reason] += 1
        # The target is the client's text: bounded here, escaped by the log formatters.
        # A client sending refused targets in a loop gets a few warnings, then debug
        # lines (the counter above still counts every one).
        target = (raw_target or "")[:200]
        if refusal.reason == "userinfo":
            target = "<redacted>"  # the target itself holds the credentials
        self._refusals.log(
            f"probe refused: {refusal.message}",
            target=target,
            endpoint="probe",
            reason=refusal.reason,
        )
        status = 400 if refusal.reason in ("missing_target", "invalid_target", "scheme") else 403
        body = f"probe refused ({refusal.reason}): {refusal.message}\n".encode()
        return ProbeResponse(status, body, "text/plain; charset=utf-8", refusal.reason)

    def _target_config(self, t: allowlist.Target) -> TargetConfig:
        c = self._config
        return TargetConfig(
            name=f"{t.host}:{t.port}"[:64],
            url=t.url.rstrip("/"),
            metrics_path=c.metrics_path,
            pprof_path=c.pprof_path,
            interval=max(c.cache_ttl, 1.0),
            timeout=c.timeout,
            body_size_limit=c.body_size_limit,
            profiles=c.profiles,
            # The fetcher connects to these and nothing else (empty for targets allowed by
            # name, which it resolves itself, once per fetch).
            addresses=t.addresses,
        )

    def _repin(self, entry: _Entry, addresses: tuple[str, ...]) -> None:
        """Point ``entry`` at newly approved addresses, keeping its state between probes."""
        base = replace(entry.base_target, addresses=addresses)
        worker = TargetWorker(base, self._settings, self._clock)
        worker.adopt(entry.worker)
        entry.worker, entry.base_target = worker, base

    def _entry(self, t: allowlist.Target, now: float) -> _Entry:
        key = t.url
        with self._lock:
            self._expire(now)
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            entry = _Entry(TargetWorker(self._target_config(t), self._settings, self._clock))
            entry.last_probe = now
            self._entries[key] = entry
            while len(self._entries) > self._config.max_targets:
                old_key, _ = self._entries.popitem(last=False)
                self._evicted += 1
                log.info(
                    "probe state evicted (max_targets reached)",
                    extra={"target": old_key, "endpoint": "probe"},
                )
            return entry

    def _expire(self, now: float) -> None:
        ttl = self._config.state_ttl
        for key in [k for k, e in self._entries.items() if now - e.last_probe > ttl]:
            del self._entries[key]
            self._evicted += 1

    # -- self metrics

    def stats(self) -> ProbeStats:
        """Counters for cardguard's own /metrics."""
        with self._lock:
            self._expire(self._clock())
            return ProbeStats(
                refused=MappingProxyType(dict(self._refused)),
                targets=len(self._entries),
                cache_hits=self._cache_hits,
                fetches=self._fetches,
                evicted=self._evicted,
                target_names=tuple(e.worker.target.name for e in self._entries.values()),
            )


@dataclass(frozen=True)
class ProbeStats:
    refused: MappingProxyType[str, int]
    targets: int
    cache_hits: int
    fetches: int
    evicted: int
    target_names: tuple[str, ...] = ()


class ProbeCollector(Collector):
    """cardguard's own /probe figures, for its /metrics.

    Example::

        cardguard_probe_refused_total{reason="address_not_allowed"} 3.0
        cardguard_probe_targets 12.0
        cardguard_probe_fetches_total 480.0
        cardguard_probe_cache_hits_total 470.0
        cardguard_probe_state_evictions_total 2.0
    """

    def __init__(self, prober: Prober) -> None:
        self._prober = prober

    def collect(self) -> Iterator[Metric]:
        s = self._prober.stats()
        refused = CounterMetricFamily(
            "cardguard_probe_refused",
            "/probe requests cardguard refused, by reason (allow-list, scheme, credentials, DNS).",
            labels=["reason"],
        )
        for reason in allowlist.REASONS:
            refused.add_metric([reason], s.refused.get(reason, 0))
        yield refused
        yield GaugeMetricFamily(
            "cardguard_probe_targets",
            "Targets whose /probe state (baselines, churn, profiles) cardguard currently keeps.",
            value=s.targets,
        )
        yield CounterMetricFamily(
            "cardguard_probe_fetches",
            "/probe requests that fetched the target (cache misses).",
            value=s.fetches,
        )
        yield CounterMetricFamily(
            "cardguard_probe_cache_hits",
            "/probe requests answered from the result cache (e.g. the second of an HA pair).",
            value=s.cache_hits,
        )
        yield CounterMetricFamily(
            "cardguard_probe_state_evictions",
            "Probe targets forgotten: not probed for state_ttl, or the LRU was full.",
            value=s.evicted,
        )


def install(app: Any) -> Prober:
    """Add ``GET /probe`` and the probe collector to an ``app.App``.

    The probe settings are read from ``app.config.probe`` on every request, so
    a config reload applies to /probe as it does to configured targets.
    """

    def current() -> ProbeConfig:
        cfg = getattr(app.config, "probe", None)
        return cfg if isinstance(cfg, ProbeConfig) else ProbeConfig()

    prober = Prober(current(), app.scheduler.settings)

    def route(_app: Any, req: Any) -> Any:
        cfg = current()
        if cfg is not prober.config:
            prober.apply(cfg)
        targets = req.query.get("target") or [None]
        try:
            hint: float | None = float(req.headers.get("x-prometheus-scrape-timeout-seconds", ""))
        except ValueError:
            hint = None
        debug = (req.query.get("debug") or [""])[0] == "true"  # as blackbox_exporter
        r = prober.probe(targets[0], timeout_hint=hint, debug=debug)
        return Response(r.status, r.body, r.content_type)

    app.routes[("GET", "/probe")] = route
    app.registry.register(ProbeCollector(prober))
    return prober
