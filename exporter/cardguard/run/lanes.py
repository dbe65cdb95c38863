"""Two lanes for serve's threads: I/O (fetching) and CPU (analysis and detection).

The pool's threads spend most of their time waiting on targets; the work that
holds the GIL goes through one lane at a time, so a fleet's fetches keep
flowing while pages are analysed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

# The in-flight guard's lock, shared by all targets (held only to note a fetch's start
# and end), and what each thread collects right now (see TargetWorker._guard).
IO = threading.Condition()


CURRENT = threading.local()


# One thread at a time does CPU work in a job (parsing, decoding, publishing); waits for
# the network or an analysis worker are done off it. The GIL lets one thread compute
# anyway: the lane only spares the threads that wait for little (a scrape of cardguard's
# own /metrics, /-/healthy) from queueing for the GIL behind dozens of computing ones.
CPU_LANE = threading.Lock()


@contextlib.contextmanager
def on_lane() -> Iterator[None]:
    if getattr(CURRENT, "lane", False):
        yield  # already on it (a job within a job)
        return
    with CPU_LANE:
        CURRENT.lane = True
        try:
            yield
        finally:
            CURRENT.lane = False


@contextlib.contextmanager
def no_lane() -> Iterator[None]:
    yield


@contextlib.contextmanager
def off_lane() -> Iterator[None]:
    """Leave the lane while this thread waits (a fetch, an analysis in a worker process)."""
    if not getattr(CURRENT, "lane", False):
        yield
        return
    CPU_LANE.release()
    CURRENT.lane = False
    try:
        yield
    finally:
        CPU_LANE.acquire()
        CURRENT.lane = True


class Flag:
    """A set-once flag read without locks (a ten-thousand-target fleet has one per target)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set
