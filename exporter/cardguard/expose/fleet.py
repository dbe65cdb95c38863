"""Fleet mode: poll central Prometheus servers' ``/api/v1/status/tsdb`` and re-export it, bounded.

A Prometheus server sees the cardinality of every service it scrapes; this
mode reads its TSDB status (``?limit=N``) on an interval, keeps a bounded,
sticky selection of its lists (:mod:`cardguard.parse.tsdb`) and runs the same
offender rules as direct targets on it (``detect`` on a
``MetricsPoint`` built from the status). Fetching uses :mod:`cardguard.run.fetch`
with the server's auth and TLS, so the size and time limits hold.

The ``fleet:`` section of the config is read by :mod:`cardguard.settings.fleet`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cardguard.analyse.view import MetricsPoint, MetricValues, metrics_point_of_tsdb
from cardguard.analyse.watch import Bounds, ViewBuilder
from cardguard.detect import container
from cardguard.detect.detectors import detect
from cardguard.detect.offender import Offender
from cardguard.errors import FetchError, ParseError
from cardguard.parse import tsdb
from cardguard.run.fetch import Fetcher
from cardguard.settings.config import (
    GlobalConfig,
)
from cardguard.settings.fleet import FleetServer
from cardguard.settings.rules import SEVERITIES, Rules

log = logging.getLogger("cardguard.expose.fleet")

MAX_POINTS = 60
RSS = "process_resident_memory_bytes"
HEAP = "go_memstats_heap_inuse_bytes"


@dataclass(frozen=True)
class FleetSnapshot:
    """What the last polls of one server gave; replaced whole, never mutated."""

    server: str
    rows: dict[str, tuple[list[tuple[str, int]], bool]] = field(default_factory=dict)
    head: tsdb.HeadStats | None = None
    success: bool = False
    last_success: float | None = None
    duration: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)
    offenders: tuple[Offender, ...] = ()


class FleetPoller:
    """Polls one server on its interval in its own thread."""

    def __init__(
        self,
        server: FleetServer,
        settings: Callable[[], tuple[GlobalConfig, Rules]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server = server
        self._settings = settings
        self._clock = clock
        self._fetcher = Fetcher(server.target_config())
        g, _ = settings()
        self._view = tsdb.TSDBView.new(
            server.cap, g.thresholds.min_family_series, g.thresholds.min_label_values
        )
        self._watch = ViewBuilder(server.name, Bounds(metrics_points=MAX_POINTS))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.snapshot = FleetSnapshot(server=server.name)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"cardguard-fleet-{self.server.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.server.timeout + 1)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:
                log.exception(
                    "internal error while polling",
                    extra={"target": self.server.name, "endpoint": "tsdb", "reason": "other"},
                )
            self._stop.wait(self.server.interval)

    def _fail(self, reason: str, message: str, duration: float) -> None:
        failures = dict(self.snapshot.failures)
        failures[reason] = failures.get(reason, 0) + 1
        log.warning(
            "%s", message, extra={"target": self.server.name, "endpoint": "tsdb", "reason": reason}
        )
        self.snapshot = FleetSnapshot(
            server=self.server.name,
            rows=self.snapshot.rows,  # keep the last good data
            head=self.snapshot.head,
            success=False,
            last_success=self.snapshot.last_success,
            duration=duration,
            failures=failures,
            offenders=self.snapshot.offenders,
        )

    def _query(self, expr: str) -> float | None:
        """One instant query; the largest value of its result, None when empty or failing."""
        s = self.server
        url = f"{s.url.rstrip('/')}/api/v1/query?" + urlencode({"query": expr})
        try:
            res = self._fetcher.get(url, accept="application/json", timeout=s.timeout)
            doc = json.loads(res.body)
            values = [float(r["value"][1]) for r in doc["data"]["result"]]
        except FetchError as exc:
            log.warning(
                "%s", exc, extra={"target": s.name, "endpoint": "query", "reason": exc.reason}
            )
            return None
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning(
                "unreadable query answer: %s",
                exc,
                extra={"target": s.name, "endpoint": "query", "reason": "parse"},
            )
            return None
        return max(values) if values else None

    def _containers(self, now: float, rules: Rules) -> list[Offender]:
        """misleading_memory for each configured container, from cAdvisor's series."""
        out: list[Offender] = []
        for c in self.server.containers:
            got = {m: self._query(f"max({m}{c.cadvisor})") for m in container.CADVISOR}
            values = {m: v for m, v in got.items() if v is not None}
            reading = container.from_cadvisor(values, f"cadvisor via {self.server.name}")
            if reading is None:
                continue
            memory: dict[str, float] = {}
            for m in (RSS, HEAP) if c.process else ():
                v = self._query(f"max({m}{c.process})")
                if v is not None:
                    memory[m] = v
            point = MetricsPoint(
                at=now,
                values=MetricValues(memory=memory, container_memory_bytes=reading.usage_bytes),
            )
            one = ViewBuilder(f"{self.server.name}/{c.name}")
            one.add_metrics_point(point)
            found = [o for o in detect(one.view(), rules) if o.kind == "misleading_memory"]
            out += container.refine(found, [(now, reading)], memory.get(RSS), memory.get(HEAP))
        return out

    def poll(self) -> FleetSnapshot:
        """Fetch and parse the status once, update the bounded view and offenders."""
        start = time.monotonic()
        s = self.server
        try:
            res = self._fetcher.get(s.status_url, accept="application/json", timeout=s.timeout)
            status = tsdb.parse(res.body, f"{s.name} {res.url}", limit=s.limit)
        except FetchError as exc:
            self._fail(exc.reason, str(exc), time.monotonic() - start)
            return self.snapshot
        except ParseError as exc:
            self._fail("parse", str(exc), time.monotonic() - start)
            return self.snapshot
        now = self._clock()
        _, rules = self._settings()
        self._watch.add_metrics_point(metrics_point_of_tsdb(status, now))
        found = tuple(detect(self._watch.view(), rules)) + tuple(self._containers(now, rules))
        self.snapshot = FleetSnapshot(
            server=s.name,
            rows=self._view.rows(status),
            head=status.head,
            success=True,
            last_success=now,
            duration=time.monotonic() - start,
            failures=dict(self.snapshot.failures),
            offenders=found,
        )
        return self.snapshot


class FleetCollector(Collector):
    """The bounded TSDB status of each fleet server, and the offenders found in it.

    Example::

        cardguard_tsdb_head_series{target="central"} 48213.0
        cardguard_tsdb_family_series{family="http_requests_total",target="central"} 9120.0
        cardguard_tsdb_label_distinct_values{label="path",target="central"} 3012.0
        cardguard_tsdb_label_memory_bytes{label="path",target="central"} 120480.0
        cardguard_tsdb_label_pair_series{label="job",target="central",value="api"} 20112.0
        cardguard_fleet_offender{id="3f2a...",kind="label_explosion",label="path",...} 1.0
    """

    def __init__(self, pollers: Callable[[], Sequence[FleetPoller]]) -> None:
        self._pollers = pollers

    def collect(self) -> Iterator[Metric]:
        snaps = [p.snapshot for p in self._pollers()]
        head = {
            "series": GaugeMetricFamily(
                "cardguard_tsdb_head_series",
                "headStats.numSeries from the server's /api/v1/status/tsdb.",
                labels=["target"],
            ),
            "chunks": GaugeMetricFamily(
                "cardguard_tsdb_head_chunks",
                "headStats.chunkCount from the server's /api/v1/status/tsdb.",
                labels=["target"],
            ),
            "pairs": GaugeMetricFamily(
                "cardguard_tsdb_head_label_pairs",
                "headStats.numLabelPairs from the server's /api/v1/status/tsdb.",
                labels=["target"],
            ),
        }
        success = GaugeMetricFamily(
            "cardguard_tsdb_scrape_success",
            "1 if cardguard's last read of the server's /api/v1/status/tsdb succeeded.",
            labels=["target"],
        )
        failures = CounterMetricFamily(
            "cardguard_tsdb_scrape_failures",
            "Failed reads of the server's /api/v1/status/tsdb, by bounded reason.",
            labels=["target", "reason"],
        )
        lists = {
            "seriesCountByMetricName": GaugeMetricFamily(
                "cardguard_tsdb_family_series",
                "seriesCountByMetricName from /api/v1/status/tsdb (sticky, capped; "
                "the rest summed in __other__).",
                labels=["target", "family"],
            ),
            "labelValueCountByLabelName": GaugeMetricFamily(
                "cardguard_tsdb_label_distinct_values",
                "labelValueCountByLabelName from /api/v1/status/tsdb (sticky, capped).",
                labels=["target", "label"],
            ),
            "memoryInBytesByLabelName": GaugeMetricFamily(
                "cardguard_tsdb_label_memory_bytes",
                "memoryInBytesByLabelName from /api/v1/status/tsdb, for the labels shown.",
                labels=["target", "label"],
            ),
        }
        pairs = GaugeMetricFamily(
            "cardguard_tsdb_label_pair_series",
            "seriesCountByLabelValuePair from /api/v1/status/tsdb (sticky, capped).",
            labels=["target", "label", "value"],
        )
        capped = GaugeMetricFamily(
            "cardguard_tsdb_output_capped",
            "1 if cardguard folded entries of this list into __other__.",
            labels=["target", "list"],
        )
        offender = GaugeMetricFamily(
            "cardguard_fleet_offender",
            "An offender found in the server's TSDB status by the same rules as for targets.",
            labels=["target", "id", "kind", "severity", "label"],
        )
        counts = GaugeMetricFamily(
            "cardguard_fleet_offenders",
            "Offenders found in the server's TSDB status, by severity.",
            labels=["target", "severity"],
        )
        for s in snaps:
            success.add_metric([s.server], 1.0 if s.success else 0.0)
            for reason, n in sorted(s.failures.items()):
                failures.add_metric([s.server, reason], n)
            if s.head is not None:
                head["series"].add_metric([s.server], s.head.num_series)
                head["chunks"].add_metric([s.server], s.head.chunk_count)
                head["pairs"].add_metric([s.server], s.head.num_label_pairs)
            for key, fam in lists.items():
                rows, was_capped = s.rows.get(key, ([], False))
                for name, value in rows:
                    fam.add_metric([s.server, name], value)
                if key != "memoryInBytesByLabelName":
                    capped.add_metric([s.server, key], 1.0 if was_capped else 0.0)
            prow, pcapped = s.rows.get("seriesCountByLabelValuePair", ([], False))
            for name, value in prow:
                label, val = tsdb.split_pair(name) if name != tsdb.OTHER else (tsdb.OTHER, "")
                pairs.add_metric([s.server, label, val], value)
            capped.add_metric([s.server, "seriesCountByLabelValuePair"], 1.0 if pcapped else 0.0)
            for o in s.offenders[:50]:
                offender.add_metric([s.server, o.id, o.kind, o.severity, o.label], 1.0)
            for sev in SEVERITIES:
                counts.add_metric([s.server, sev], sum(1 for o in s.offenders if o.severity == sev))
        yield from head.values()
        yield success
        yield failures
        yield from lists.values()
        yield pairs
        yield capped
        yield offender
        yield counts


class Fleet:
    """All fleet pollers; follows config reloads."""

    def __init__(self, settings: Callable[[], tuple[GlobalConfig, Rules]]) -> None:
        self._settings = settings
        self._pollers: dict[str, FleetPoller] = {}
        self._lock = threading.Lock()

    def pollers(self) -> list[FleetPoller]:
        return list(self._pollers.values())

    def apply(self, servers: Sequence[FleetServer]) -> None:
        with self._lock:
            wanted = {s.name: s for s in servers}
            for name in list(self._pollers):
                if name not in wanted or self._pollers[name].server != wanted[name]:
                    self._pollers.pop(name).stop()
            for name, s in wanted.items():
                if name not in self._pollers:
                    p = FleetPoller(s, self._settings)
                    self._pollers[name] = p
                    p.start()

    def stop(self) -> None:
        with self._lock:
            for p in self._pollers.values():
                p.stop()
            self._pollers.clear()


def install(app: Any) -> Fleet:
    """Start polling ``app.config.fleet`` and add the fleet collector to ``app.registry``.

    The poller list follows config reloads: it is re-applied whenever the
    config object changes (checked at every collection of /metrics).
    """
    fleet = Fleet(app.scheduler.settings)
    seen: list[Any] = [None]

    def servers() -> list[FleetPoller]:
        cfg = app.config
        if cfg is not seen[0]:
            seen[0] = cfg
            fleet.apply(tuple(getattr(cfg, "fleet", ()) or ()))
        return fleet.pollers()

    servers()
    app.registry.register(FleetCollector(servers))
    return fleet


__all__ = ["Fleet", "install"]
