"""What one target showed, as the immutable snapshot serve's collectors and pages read.

A worker builds a new :class:`TargetSnapshot` after every fetch and swaps it in
with one reference assignment, so readers see a consistent view without locks.
Also here: each endpoint's health, the bounded sets of what appears in
cardguard's own series (:class:`Visible`, sticky and capped), and the raw
profiles kept for download.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from cardguard.analyse.cardinality import PageAnalysis
from cardguard.analyse.churn import ChurnReport
from cardguard.analyse.view import (
    HeapPoint,
)
from cardguard.detect.offender import Offender
from cardguard.pprof import goroutines as gr
from cardguard.pprof import heap as hp
from cardguard.run import fetch

ENDPOINTS = ("metrics", "heap", "goroutine", "goroutine_full", "goroutineleak")


# An exception cardguard did not expect while collecting: a bug, reported as a failure.
INTERNAL = "internal"
# The values of the ``reason`` label: every fetch reason, plus what can go wrong after
# a body arrived ("other" stays last and takes anything else).
FAILURE_REASONS = (
    *(r for r in fetch.REASONS if r != "other"),
    "parse",
    "refused_by_limit",
    INTERNAL,
    "other",
)


MAX_ERROR_CHARS = 300


OUTPUT_KINDS = ("family", "label", "heap_owner", "goroutine_group", "offender")


# Offender kinds whose ``function`` is a heap owner (pprof's flat function).
HEAP_OWNER_KINDS = frozenset({"heap_growth"})


T = TypeVar("T")


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


def sticky(current: frozenset[T], candidates: Iterable[T], cap: int) -> tuple[frozenset[T], bool]:
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
