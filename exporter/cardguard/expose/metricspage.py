"""cardguard's own ``/metrics`` with the per-target series prebuilt, so it answers fast under load.

Rendering a thousand targets' series through prometheus_client on every
scrape costs hundreds of milliseconds of CPU and holds the GIL the fetch
threads need. Instead each target's series are rendered once per new
snapshot, by the same collectors (:func:`collectors.target_collectors`) and
the same exposition code, and kept as one block of sample lines per metric
family. A builder thread (every :data:`REBUILD_SECONDS`) re-renders the
targets whose snapshot changed and joins the blocks, family by family, into
one page; ``/metrics`` sends that page after the few live series (process,
build info, reload, schedule, probe, fleet), as text or OpenMetrics, gzipped
when asked.

A format is built once it was asked for and kept built while it is asked for
within :data:`FORMAT_IDLE_SECONDS`. The gzipped body is two gzip members
(the live part, then the cached target part), which every gzip reader
decompresses as one stream (RFC 1952, Go's ``gzip.Reader`` included).
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder
from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OM_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as om_latest
from prometheus_client.registry import Collector

from cardguard.expose import collectors
from cardguard.run.snapshot import TargetSnapshot

log = logging.getLogger("cardguard.expose.metricspage")

REBUILD_SECONDS = 1.0
# Rendering time per rebuild; what does not fit waits for the next one (see build).
BUILD_BUDGET_SECONDS = 0.25
# A format not asked for this long is no longer rebuilt (Prometheus asks for OpenMetrics,
# curl for text); the next request for it builds it again, once.
FORMAT_IDLE_SECONDS = 120.0
_EOF = b"# EOF\n"
FORMATS = ("text", "openmetrics")


class _Fixed(Collector):
    """Yields metrics collected once (so each target's snapshot is read once per render)."""

    def __init__(self, metrics: Sequence[object]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[object]:  # type: ignore[override]
        return iter(self._metrics)


def _render(fmt: str, metrics: Sequence[object]) -> bytes:
    body: bytes = (om_latest if fmt == "openmetrics" else text_latest)(_Fixed(metrics))
    return body[: -len(_EOF)] if fmt == "openmetrics" and body.endswith(_EOF) else body


def split_families(page: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
    """Cut a rendered page into ``(name, header lines, sample lines)``, one per family.

    A family's header starts at its ``# HELP`` line; sample lines never start
    with ``#``, and a label value cannot hold a raw newline.
    """
    pos, n = 0, len(page)
    while pos < n:
        nxt = page.find(b"\n# HELP ", pos)
        end = n if nxt < 0 else nxt + 1
        chunk = page[pos:end]
        body = 0
        while body < len(chunk) and chunk[body] == 0x23:  # '#'
            body = chunk.index(b"\n", body) + 1
        name = chunk[7 : chunk.index(b" ", 7)] if chunk.startswith(b"# HELP ") else b""
        yield name, chunk[:body], chunk[body:]
        pos = end


@dataclass
class _Target:
    snap: TargetSnapshot
    blocks: dict[str, dict[bytes, bytes]]  # format -> family -> sample lines


class MetricsPage:
    """The prebuilt per-target part of /metrics, rebuilt from snapshots by a builder thread.

    Args:
        snapshots: the current snapshot of every target, in order.
        offender_cap: the per-target cap on offender series.
    """

    def __init__(
        self,
        snapshots: Callable[[], Sequence[TargetSnapshot]],
        offender_cap: Callable[[], int],
    ) -> None:
        self._snapshots = snapshots
        self._cap = offender_cap
        self._lock = threading.Lock()  # one build at a time
        self._swap = threading.Lock()  # replacing a finished page (held for microseconds)
        self._targets: dict[str, _Target] = {}
        self._pages: dict[str, tuple[bytes, bytes | None]] = {}  # format -> (body, gzipped)
        self._asked: dict[str, float] = {}
        self._headers: dict[str, list[tuple[bytes, bytes]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.builds = 0
        self.build_seconds = 0.0

    # -- building

    def _collect(self, snaps: Sequence[TargetSnapshot]) -> list[object]:
        return [
            m for c in collectors.target_collectors(lambda: snaps, self._cap) for m in c.collect()
        ]

    def _family_headers(self, fmt: str) -> list[tuple[bytes, bytes]]:
        """Every target family's name and header, in exposition order (from no targets)."""
        found = self._headers.get(fmt)
        if found is None:
            found = [(n, h) for n, h, _ in split_families(_render(fmt, self._collect(())))]
            self._headers[fmt] = found
        return found

    def build(self, formats: Iterable[str] | None = None, budget: float | None = None) -> None:
        """Re-render changed targets and rebuild the pages of ``formats`` (those asked for).

        With a ``budget`` (seconds), rendering stops when it is spent: targets not
        re-rendered keep their previous series (or wait, if they have none yet) until
        the next build, so a fleet starting or changing at once never holds the builder
        (and the GIL) for long.
        """
        now = time.monotonic()
        stop_at = None if budget is None else time.perf_counter() + budget
        with self._lock:
            if formats is None:
                asked = list(self._asked.items())
                formats = [f for f, at in asked if now - at < FORMAT_IDLE_SECONDS]
            wanted = set(formats)
            formats = [f for f in FORMATS if f in wanted]
            if not formats:
                return
            started = time.perf_counter()
            snaps = self._snapshots()
            fresh: dict[str, _Target] = {}
            changed = len(snaps) != len(self._targets)
            for snap in snaps:
                old = self._targets.get(snap.target)
                if old is not None and old.snap is snap and all(f in old.blocks for f in formats):
                    fresh[snap.target] = old
                    continue
                if stop_at is not None and time.perf_counter() > stop_at:
                    if old is not None and all(f in old.blocks for f in formats):
                        fresh[snap.target] = old  # this time with its previous series
                    continue
                changed = True
                metrics = self._collect((snap,))
                blocks = dict(old.blocks) if old is not None and old.snap is snap else {}
                for fmt in formats:
                    if fmt not in blocks:
                        blocks[fmt] = {n: b for n, _, b in split_families(_render(fmt, metrics))}
                fresh[snap.target] = _Target(snap, blocks)
            if not changed and list(fresh) != list(self._targets):
                changed = True
            self._targets = fresh
            for fmt in formats:
                if changed or fmt not in self._pages:
                    body = self._join(fmt, fresh.values())
                    # Compressed here, once, when clients ask for gzip (Prometheus does),
                    # so a scrape of cardguard never compresses the fleet's series itself.
                    gz_at = self._asked.get(f"{fmt}+gzip")
                    gz = None
                    if gz_at is not None and now - gz_at < FORMAT_IDLE_SECONDS:
                        gz = gzip.compress(body, compresslevel=1, mtime=0)
                    with self._swap:
                        self._pages[fmt] = (body, gz)
            self.builds += 1
            self.build_seconds += time.perf_counter() - started

    def _join(self, fmt: str, targets: Iterable[_Target]) -> bytes:
        targets = list(targets)
        out: list[bytes] = []
        for name, header in self._family_headers(fmt):
            out.append(header)
            for t in targets:
                block = t.blocks[fmt].get(name)
                if block:
                    out.append(block)
        return b"".join(out)

    # -- serving

    def page(self, fmt: str, gzipped: bool = False) -> bytes:
        """The prebuilt target part in ``fmt`` (built now if it never was)."""
        self._asked[fmt] = time.monotonic()
        found = self._pages.get(fmt)
        if found is None:
            self.build([fmt, *list(self._asked)])
            found = self._pages[fmt]
        body, gz = found
        if not gzipped:
            return body
        self._asked[f"{fmt}+gzip"] = time.monotonic()
        if gz is None:
            gz = gzip.compress(body, compresslevel=1, mtime=0)
            # Not the build lock: a request must never wait for a build.
            with self._swap:
                if self._pages.get(fmt, (None,))[0] is body:
                    self._pages[fmt] = (body, gz)
        return gz

    def response(
        self, registry: CollectorRegistry, accept: str, accept_encoding: str
    ) -> tuple[bytes, str, dict[str, str]]:
        """``/metrics``: the live registry's series, then the prebuilt target series."""
        try:
            encoder, content_type = choose_encoder(accept)
        except (TypeError, ValueError):
            # prometheus_client compares "version=abc" with numbers and raises; serve the
            # classic text format, as client_golang does for an Accept it cannot use.
            encoder, content_type = choose_encoder("")
        fmt = "openmetrics" if content_type.startswith("application/openmetrics-text") else "text"
        live: bytes = encoder(registry)
        tail = b""
        if fmt == "openmetrics":
            live = live[: -len(_EOF)] if live.endswith(_EOF) else live
            tail = _EOF
        gzipped = "gzip" in accept_encoding.lower()
        targets = self.page(fmt, gzipped)
        if not gzipped:
            return live + targets + tail, content_type, {}
        level = 1
        body = gzip.compress(live, level, mtime=0) + targets
        if tail:
            body += gzip.compress(tail, level, mtime=0)
        return body, content_type, {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}

    # -- the builder thread

    def start(self) -> None:
        """Build both formats now (Prometheus asks for OpenMetrics, people for text), then
        keep rebuilding in the background."""
        now = time.monotonic()
        for fmt in FORMATS:
            self._asked.setdefault(fmt, now)
        self.build()
        self._thread = threading.Thread(target=self._run, name="cardguard-metricspage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(REBUILD_SECONDS):
            try:
                self.build(budget=BUILD_BUDGET_SECONDS)
            except Exception:  # a bug: logged, and the previous page keeps being served
                log.exception("rebuilding the /metrics page failed", extra={"reason": "internal"})


__all__ = ["CONTENT_TYPE_LATEST", "OM_CONTENT_TYPE", "MetricsPage", "split_families"]
