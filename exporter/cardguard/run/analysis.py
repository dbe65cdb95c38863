"""Page analysis off the I/O path: in the calling thread, or in a pool of worker processes.

One fetched ``/metrics`` page becomes a :class:`PageResult`: the page's
analysis (:mod:`cardguard.analyse.incremental`, which reuses unchanged families), the
runtime and traffic values the offender rules read, and ``go_goroutines``.
What a target's previous page left (its :class:`~cardguard.analyse.incremental.Memo`)
is kept where the analysis runs, keyed by the target's name.

Two analysers with one call signature (:class:`Analyser`):

* :class:`InlineAnalyser` analyses in the calling thread (``/probe``, the
  tests, and ``serve --analysis.processes=0``);
* :class:`ProcessAnalyser` sends each page to one of N worker processes
  (forkserver children, daemons). A target always goes to the same process
  (CRC32 of its name), which keeps its memo, so a page whose series did not
  change costs the parent a pipe write and a small reply: the analysis
  object the parent already holds is reused, and after a partial change only
  the families that changed travel back. Pages are bytes, so sending one is
  a copy (about 0.2 ms for 700 kB, docs/performance.md), not a pickling of
  objects. The parent's threads do I/O only; the analysis uses every core,
  outside the parent's GIL.

A page whose series did not change comes back as ``analysis=None`` when the
caller already holds the analysis of the same ``token``; a token names one
analysis, so a caller that lost its state (a new worker) gets the whole
analysis again.
"""

from __future__ import annotations

import logging
import multiprocessing
import random
import re
import signal
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any, Protocol

from cardguard.analyse import incremental
from cardguard.analyse.cardinality import FamilyStats, Limits, PageAnalysis
from cardguard.analyse.view import (
    MetricValues,
    metric_values,
    page_samples,
    plain_samples,
    reads_family,
    values_from_page,
)
from cardguard.detect import verdict
from cardguard.errors import ParseError
from cardguard.run import malloc
from cardguard.settings.rules import Matcher

log = logging.getLogger("cardguard.run.analysis")

# Memos kept per analysing process; far above any fleet one process can scrape.
MAX_MEMOS = 100_000


@dataclass(frozen=True)
class PageRequest:
    """One fetched page to analyse for the target ``key``."""

    key: str
    token: int | None  # the token of the analysis the caller holds for this target
    data: bytes
    content_type: str
    source: str
    limits: Limits
    traffic: Matcher


@dataclass(frozen=True)
class PageResult:
    """What one page showed. ``analysis`` is None: unchanged, the caller's (same token)."""

    token: int
    analysis: PageAnalysis | None
    values: MetricValues
    goroutines: int | None
    identity: verdict.Identity | None  # which process and build served the page
    reused: int  # families whose statistics were reused from the previous page
    analysed: int  # families analysed from this page
    cpu_seconds: float  # thread CPU time the analysis took where it ran


class Analyser(Protocol):
    """Analyses pages; safe to call from many threads."""

    def analyse(self, req: PageRequest, held: PageAnalysis | None) -> PageResult:
        """Analyse ``req``; ``held`` is the caller's analysis for ``req.token``.

        Raises:
            ParseError: the page is malformed.
            AnalysisError: the analysing process died or was stopped.
        """
        ...

    def forget(self, key: str) -> None:
        """Drop what is kept for target ``key`` (it was removed)."""
        ...

    def close(self) -> None: ...


class AnalysisError(Exception):
    """An analysis process failed (a bug, or killed); the page was not analysed."""


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


class MemoStore:
    """Each target's last memo and token, bounded (least recently used dropped first)."""

    def __init__(self, max_entries: int = MAX_MEMOS) -> None:
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[int, incremental.Memo | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[int, incremental.Memo | None] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, token: int, memo: incremental.Memo | None) -> None:
        with self._lock:
            self._entries[key] = (token, memo)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


def analyse_page(store: MemoStore, req: PageRequest) -> PageResult:
    """Analyse one page against the target's memo in ``store``; update the store.

    Raises:
        ParseError: the page is malformed (the memo is kept for the next page).
    """
    started = time.thread_time()
    entry = store.get(req.key)
    memo = entry[1] if entry is not None else None
    out = incremental.analyse(
        req.data,
        content_type=req.content_type,
        source=req.source,
        limits=req.limits,
        memo=memo,
    )
    if out.unchanged and entry is not None:
        token = entry[0]
    else:
        token = random.getrandbits(62)
    store.put(req.key, token, out.memo)
    if out.segments:
        values, goroutines, identity = _values_from_segments(req, out)
    else:
        fmt = out.analysis.format
        values = values_from_page(req.data, fmt, req.source, req.traffic)
        goroutines = goroutines_from_page(req.data)
        identity = verdict.identity(req.data, fmt, req.source)
    same = out.unchanged and req.token is not None and req.token == token
    return PageResult(
        token=token,
        analysis=None if same else out.analysis,
        values=values,
        goroutines=goroutines,
        identity=identity,
        reused=out.reused,
        analysed=out.analysed,
        cpu_seconds=time.thread_time() - started,
    )


def _values_from_segments(
    req: PageRequest, out: incremental.Outcome
) -> tuple[MetricValues, int | None, verdict.Identity]:
    """Read values, ``go_goroutines`` and the process' identity from the few segments
    that hold the families wanted (a segmentable page)."""
    data = req.data
    plain = out.memo.shapes if out.memo is not None else (None,) * len(out.segments)
    pairs: list[tuple[str, float]] = []
    runtime: list[bytes] = []
    ident: list[bytes] = []
    for seg, fams, shape in zip(out.segments, out.families, plain, strict=True):
        names = [f.name for f in fams]
        if any(reads_family(n, req.traffic) for n in names):
            if shape is not None and len(names) == 1:
                # Every line has the common shape: the values are read without a scan.
                pairs += plain_samples(data, seg.body, seg.end, names[0])
            else:
                pairs += page_samples(data[seg.start : seg.end], "text", req.source, req.traffic)
        if "go_goroutines" in names:
            runtime.append(data[seg.start : seg.end])
        if any(verdict.identity_family(n) for n in names):
            ident.append(data[seg.start : seg.end])
    values = metric_values(pairs, req.traffic)
    goroutines = goroutines_from_page(b"".join(runtime)) if runtime else None
    return values, goroutines, verdict.identity(b"".join(ident), "text", req.source)


class InlineAnalyser:
    """Analyses in the calling thread; holds the memos itself."""

    def __init__(self, max_entries: int = MAX_MEMOS) -> None:
        self._store = MemoStore(max_entries)

    def analyse(self, req: PageRequest, held: PageAnalysis | None) -> PageResult:
        if held is None and req.token is not None:
            req = replace(req, token=None)  # nothing held: ask for the whole analysis
        return analyse_page(self._store, req)

    def forget(self, key: str) -> None:
        self._store.forget(key)

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._store)


# --- worker processes ---------------------------------------------------------------


def _encode(res: PageResult, held: incremental.Memo | None) -> tuple[Any, ...]:
    """The reply for a result: families the caller holds travel as their index."""
    page = res.analysis
    if page is None:
        return (res, None)
    index: dict[int, int] = {}
    if held is not None:
        index = {id(f): i for i, f in enumerate(held.analysis.families)}
    fams: tuple[FamilyStats | int, ...] = tuple(index.get(id(f), f) for f in page.families)
    return (replace(res, analysis=replace(page, families=())), fams)


def _decode(reply: tuple[Any, ...], held: PageAnalysis | None) -> PageResult:
    res, fams = reply
    if fams is None:
        return res
    out = []
    for f in fams:
        if isinstance(f, int):
            if held is None or f >= len(held.families):
                raise AnalysisError("analysis reply refers to families the caller does not hold")
            out.append(held.families[f])
        else:
            out.append(f)
    return replace(res, analysis=replace(res.analysis, families=tuple(out)))


def _child(conn: Connection) -> None:
    """A worker process: answer requests in order until the pipe closes."""
    # serve blocks its control signals before starting threads, and the mask is inherited.
    # Ctrl-C reaches the whole process group: the parent stops us (closing the pipe ends
    # this loop). SIGTERM ends a worker at once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    malloc.return_large_buffers()
    store = MemoStore()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        kind = msg[0]
        if kind == "forget":
            store.forget(msg[1])
            continue
        try:
            # The page comes as raw bytes after the request: no pickled copy of it.
            req: PageRequest = replace(msg[1], data=conn.recv_bytes())
        except (EOFError, OSError):
            return
        entry = store.get(req.key)
        held = entry[1] if entry is not None and entry[0] == req.token else None
        try:
            res = analyse_page(store, req)
            reply: tuple[Any, ...] = ("ok", _encode(res, held))
        except ParseError as exc:
            reply = ("parse", exc.source, exc.line, exc.message)
        except Exception as exc:  # noqa: BLE001 - a bug: reported to the caller, who logs it
            reply = ("error", f"{type(exc).__name__}: {exc}"[:300])
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


class _Slot:
    """One worker process and the pipe to it; one request at a time."""

    def __init__(self, ctx: Any, index: int) -> None:
        self._ctx = ctx
        self._index = index
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Connection | None = None
        self._closed = False

    def _ensure(self) -> Connection:
        if self._closed:
            raise AnalysisError("analysis stopped")
        if self._conn is None or self._proc is None or not self._proc.is_alive():
            self._discard()
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(
                target=_child, args=(child,), name=f"cardguard-analysis-{self._index}", daemon=True
            )
            proc.start()
            child.close()
            self._proc, self._conn = proc, parent
        return self._conn

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        self._conn = self._proc = None

    def call(self, req: PageRequest, held: PageAnalysis | None) -> PageResult:
        with self._lock:
            conn = self._ensure()
            try:
                conn.send(("analyse", replace(req, data=b"")))
                conn.send_bytes(req.data)
                reply = conn.recv()
            except (EOFError, OSError, ValueError) as exc:
                died = self._proc.exitcode if self._proc is not None else None
                self._discard()
                raise AnalysisError(
                    f"analysis process exited ({died if died is not None else type(exc).__name__})"
                ) from None
        kind = reply[0]
        if kind == "parse":
            raise ParseError(reply[1], reply[2], reply[3])
        if kind == "error":
            raise AnalysisError(reply[1])
        return _decode(reply[1], held)

    def forget(self, key: str) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.send(("forget", key))
            except (OSError, ValueError):
                self._discard()

    def close(self) -> None:
        self._closed = True
        # Not under the lock: a thread may be waiting for a reply; closing the pipe and
        # killing the child ends that wait (EOFError) at once.
        proc, conn = self._proc, self._conn
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.kill()
            proc.join(timeout=1.0)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


class ProcessAnalyser:
    """Analyses in ``processes`` worker processes, each target always in the same one."""

    def __init__(self, processes: int, *, start_method: str = "forkserver") -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            ctx.set_forkserver_preload(["cardguard.run.analysis"])
        self._slots = [_Slot(ctx, i) for i in range(processes)]

    def _slot(self, key: str) -> _Slot:
        return self._slots[zlib.crc32(key.encode()) % len(self._slots)]

    def analyse(self, req: PageRequest, held: PageAnalysis | None) -> PageResult:
        # The child reuses only what the caller holds: no token when it holds nothing.
        if held is None and req.token is not None:
            req = replace(req, token=None)
        return self._slot(req.key).call(req, held)

    def forget(self, key: str) -> None:
        self._slot(key).forget(key)

    def close(self) -> None:
        for s in self._slots:
            s.close()

    def pids(self) -> Sequence[int]:
        """Process ids of the running workers (for tests and memory accounting)."""
        return [p for p in (s.pid for s in self._slots) if p is not None]


def make_analyser(processes: int) -> Analyser:
    """An analyser for ``serve``: in-process for 0, else a pool of that many processes."""
    return InlineAnalyser() if processes <= 0 else ProcessAnalyser(processes)
