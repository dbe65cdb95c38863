"""The goroutine types every reader builds and grouping reads: records, snapshots and groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

FORMATS = ("proto", "debug1", "debug2")
KINDS = ("goroutine", "goroutineleak")


class GoroutineRecord(NamedTuple):
    """One goroutine (debug2) or one counted stack (proto, debug1).

    Fields a format does not carry are ``None``: only debug2 has state,
    wait minutes, creator, ids, thread locking, synctest bubbles and the
    ``(leaked)`` marker. ``labels`` are the goroutine's pprof labels, sorted
    by key (every format carries them when the program sets them; a dump
    only from Go 1.27). ``printed`` is the stack as a dump printed it
    (arguments dropped), before normalisation. ``sites`` holds the
    ``file:line`` of each frame of ``frames`` as the input printed it (``""``
    where it printed none); in a dump, goroutines with one stack share the
    first one's sites. A named tuple because a dump can hold hundreds of
    thousands of goroutines: one builds in C (a dataclass runs Python code).
    """

    count: int  # type: ignore[assignment]  # the field hides tuple.count, which nothing calls
    frames: tuple[str, ...]
    created_by: str | None = None
    state: str | None = None
    wait_minutes: int | None = None
    leaked: bool | None = None
    goroutine_id: int | None = None
    creator_id: int | None = None
    labels: tuple[tuple[str, str], ...] = ()
    locked: bool | None = None
    bubble: int | None = None
    printed: tuple[str, ...] | None = None
    sites: tuple[str, ...] | None = None


@dataclass(frozen=True)
class GoroutineSnapshot:
    """A parsed goroutine (or goroutineleak) profile.

    ``preamble`` is what a crash dump printed before its goroutines (the
    ``panic:`` or ``fatal error:`` message, signal and register lines),
    stripped; empty for profiles.
    """

    source: str
    format: str
    kind: str
    total: int
    records: tuple[GoroutineRecord, ...]
    preamble: str = ""


@dataclass(frozen=True, slots=True)
class GoroutineGroup:
    """Goroutines sharing one normalised stack (and one label value, when grouped by a label).

    ``function`` is the top non-runtime function; ``created_by``, ``state``
    and ``max_wait_minutes`` are the most common creator, most common state
    and longest wait (``None`` when the format lacks them); ``leaked`` counts
    confirmed leaks (``None`` when the input cannot tell). ``label`` is the
    value of the label grouped by (:data:`~cardguard.parse.overflow.OTHER` for
    the values past the cap, ``None`` for goroutines without the label or
    when not grouping by a label). ``sites`` are the ``file:line`` of each
    frame of its largest record (empty when the input carries none).
    """

    id: str
    count: int
    function: str
    frames: tuple[str, ...]
    created_by: str | None
    state: str | None
    max_wait_minutes: int | None
    leaked: int | None
    label: str | None = None
    sites: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CreatorGroup:
    """Goroutines grouped by the function that started them."""

    created_by: str | None
    count: int
    groups: int
    leaked: int | None


@dataclass(frozen=True, slots=True)
class GroupGrowth:
    """Change in one group's goroutine count between two snapshots."""

    id: str
    function: str
    created_by: str | None
    base_count: int
    count: int
    delta: int
