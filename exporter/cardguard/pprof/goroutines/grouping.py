"""Group goroutines by normalised stack (and a label's value) or creator; growth between snapshots.

Groups are keyed by the stack's function names only, so addresses, offsets,
arguments and goroutine ids do not split them. Every reader has already
reduced each stack to the frames all three formats show
(:mod:`~cardguard.pprof.goroutines.normalise`), so the group id, a short hash
of that stack, is the same whichever format the stack came from.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from itertools import repeat
from operator import itemgetter

from cardguard.parse.overflow import OTHER
from cardguard.pprof.goroutines.model import (
    CreatorGroup,
    GoroutineGroup,
    GoroutineSnapshot,
    GroupGrowth,
)

# A label's distinct values kept as groups before the rest fold into OTHER.
DEFAULT_MAX_LABEL_VALUES = 20

# Frames that say how a goroutine waits rather than who made it wait.
RUNTIME_PREFIXES = ("runtime.", "runtime/", "internal/", "sync.", "sync/", "iter.")


def group_id(frames: Sequence[str], label: tuple[str, str] | None = None) -> str:
    """Return the short stable id of a normalised stack (12 hex digits).

    With ``label`` (key, value) the id is that of the stack under that label
    value, so groups split by a label keep distinct, stable ids.
    """
    text = "\n".join(frames)
    if label is not None:
        text += f"\n{{{label[0]}={label[1]}}}"
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def top_function(frames: Sequence[str]) -> str:
    """Return the innermost frame outside the runtime (the first frame if all are runtime)."""
    for name in frames:
        if not name.startswith(RUNTIME_PREFIXES):
            return name
    return frames[0] if frames else "unknown"


def label_values(
    snapshot: GoroutineSnapshot, key: str, max_values: int = DEFAULT_MAX_LABEL_VALUES
) -> dict[str, str]:
    """Map each value of label ``key`` to itself, or to OTHER past the ``max_values`` largest.

    Values are ranked by goroutine count, ties by value, so the same counts
    always keep the same values.
    """
    counts: Counter[str] = Counter()
    for (labels, count), times in Counter(map(_RECORD_LABELS_COUNT, snapshot.records)).items():
        for k, v in labels:
            if k == key:
                counts[v] += count * times
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {v: (v if i < max_values else OTHER) for i, (v, _) in enumerate(ranked)}


def group(
    snapshot: GoroutineSnapshot,
    label: str | None = None,
    max_label_values: int = DEFAULT_MAX_LABEL_VALUES,
) -> list[GoroutineGroup]:
    """Group a snapshot's goroutines by normalised stack, largest group first.

    Args:
        label: also split each stack by the value of this pprof label (e.g.
            ``handler`` or ``tenant``); goroutines without it form their own
            group with ``label=None``.
        max_label_values: keep this many distinct values (the largest), fold
            the rest into :data:`~cardguard.parse.overflow.OTHER`, so the number
            of groups stays bounded whatever the program labels with.
    """
    records = snapshot.records
    # A dump holds one record per goroutine and few distinct ones apart from
    # their ids: the records are tallied in C, by group and by the fields a
    # group sums up, and only the distinct tallies are looked at one by one.
    keys: Iterable[tuple[tuple[str, ...], str | None]]
    if label is None:
        keys = zip(map(_RECORD_FRAMES, records), repeat(None))
    else:
        folded = label_values(snapshot, label, max_label_values)
        keys = [
            (rec.frames, next((folded[v] for k, v in rec.labels if k == label), None))
            for rec in records
        ]
    tallies: dict[tuple[tuple[str, ...], str | None], list[tuple[_Tally, int]]] = {}
    for (key, tally), times in Counter(zip(keys, map(_RECORD_TALLY, records), strict=True)).items():
        tallies.setdefault(key, []).append((tally, times))
    groups = [
        _make_group(frames, counted, label, value) for (frames, value), counted in tallies.items()
    ]
    groups.sort(key=lambda g: (-g.count, g.id))
    return groups


def _most_common(pairs: Counter[tuple[str | None, int]]) -> str | None:
    """The value with the largest summed count among (value, count) pairs, ties by value."""
    c: Counter[str] = Counter()
    for (v, n), times in pairs.items():
        if v is not None:
            c[v] += n * times
    if not c:
        return None
    best = max(c.values())
    return min(k for k, n in c.items() if n == best)


# What a group sums up of each record: (creator, state, leaked, wait, count, sites).
_Tally = tuple[str | None, str | None, bool | None, int | None, int, tuple[str, ...] | None]
_RECORD_TALLY = itemgetter(2, 3, 5, 4, 0, 12)
_RECORD_FRAMES = itemgetter(1)
_RECORD_LABELS_COUNT = itemgetter(8, 0)
_RECORD_BY_CREATOR = itemgetter(2, 1, 5, 0)  # creator, frames, leaked, count


def _make_group(
    frames: tuple[str, ...],
    counted: list[tuple[_Tally, int]],
    key: str | None,
    value: str | None,
) -> GoroutineGroup:
    """Build a group from its records' distinct tallies, each with how many records gave it.

    The tallies come in the order of their first record, so the first with
    the largest count and sites is the first such record: its sites are the group's.
    """
    creators: Counter[tuple[str | None, int]] = Counter()
    states: Counter[tuple[str | None, int]] = Counter()
    waits: list[int] = []
    leak_known = False
    leaked = 0
    total = 0
    sites: tuple[str, ...] = ()
    largest = 0
    for (creator, state, leak, wait, n, rec_sites), k in counted:
        total += n * k
        creators[creator, n] += k
        states[state, n] += k
        if wait is not None:
            waits.append(wait)
        if leak is not None:
            leak_known = True
            if leak:
                leaked += n * k
        if rec_sites and (not sites or n > largest):
            sites, largest = rec_sites, n
    return GoroutineGroup(
        id=group_id(frames, (key, value) if key is not None and value is not None else None),
        count=total,
        function=top_function(frames),
        frames=frames,
        created_by=_most_common(creators),
        state=_most_common(states),
        max_wait_minutes=max(waits) if waits else None,
        leaked=leaked if leak_known else None,
        label=value,
        sites=sites,
    )


def by_creator(snapshot: GoroutineSnapshot) -> list[CreatorGroup]:
    """Group a snapshot's goroutines by creator, largest first.

    Formats without creators (proto, debug1) give one group with
    ``created_by=None``.
    """
    counts: Counter[str | None] = Counter()
    stacks: dict[str | None, set[tuple[str, ...]]] = {}
    leaked: dict[str | None, int] = {}
    leak_known = False
    tally = Counter(map(_RECORD_BY_CREATOR, snapshot.records))
    for (creator, frames, leak, n), k in tally.items():
        counts[creator] += n * k
        stacks.setdefault(creator, set()).add(frames)
        if leak is not None:
            leak_known = True
            if leak:
                leaked[creator] = leaked.get(creator, 0) + n * k
    out = [
        CreatorGroup(
            created_by=c,
            count=n,
            groups=len(stacks[c]),
            leaked=leaked.get(c, 0) if leak_known else None,
        )
        for c, n in counts.items()
    ]
    out.sort(key=lambda g: (-g.count, g.created_by or ""))
    return out


def apply_leaks(
    groups: Sequence[GoroutineGroup], leak_groups: Sequence[GoroutineGroup]
) -> list[GoroutineGroup]:
    """Set each group's ``leaked`` count from the groups of a goroutineleak snapshot.

    Stacks are matched by group id (group both by the same label, if any);
    leaked stacks missing from ``groups`` (a goroutine may have leaked
    between the two fetches) are appended.
    """
    leaks = {g.id: g for g in leak_groups}
    out = [replace(g, leaked=leaks[g.id].count if g.id in leaks else 0) for g in groups]
    known = {g.id for g in groups}
    out.extend(replace(g, leaked=g.count) for g in leak_groups if g.id not in known)
    return out


def growth(base: Sequence[GoroutineGroup], cur: Sequence[GoroutineGroup]) -> list[GroupGrowth]:
    """Return each group's change in count from ``base`` to ``cur``, largest gain first."""
    b = {g.id: g for g in base}
    c = {g.id: g for g in cur}
    out = []
    for gid in b.keys() | c.keys():
        g = c.get(gid) or b[gid]
        before = b[gid].count if gid in b else 0
        now = c[gid].count if gid in c else 0
        out.append(GroupGrowth(gid, g.function, g.created_by, before, now, now - before))
    out.sort(key=lambda x: (-x.delta, x.id))
    return out
