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
from collections.abc import Sequence
from dataclasses import replace
from operator import attrgetter

from cardguard.parse.overflow import OTHER
from cardguard.pprof.goroutines.model import (
    CreatorGroup,
    GoroutineGroup,
    GoroutineRecord,
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
    for rec in snapshot.records:
        for k, v in rec.labels:
            if k == key:
                counts[v] += rec.count
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
    by_key: dict[tuple[tuple[str, ...], str | None], list[GoroutineRecord]] = {}
    if label is None:
        for rec in snapshot.records:
            by_key.setdefault((rec.frames, None), []).append(rec)
    else:
        folded = label_values(snapshot, label, max_label_values)
        for rec in snapshot.records:
            value = next((folded[v] for k, v in rec.labels if k == label), None)
            by_key.setdefault((rec.frames, value), []).append(rec)
    groups = [_make_group(frames, recs, label, value) for (frames, value), recs in by_key.items()]
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


_RECORD_COUNT = attrgetter("count")
_RECORD_CREATED_BY = attrgetter("created_by")
_RECORD_STATE = attrgetter("state")
_RECORD_WAIT_MINUTES = attrgetter("wait_minutes")
_RECORD_LEAKED = attrgetter("leaked")
_RECORD_SITES = attrgetter("sites")


def _make_group(
    frames: tuple[str, ...], recs: list[GoroutineRecord], key: str | None, value: str | None
) -> GoroutineGroup:
    # A group of a dump holds one record per goroutine: its fields are
    # tallied in C, in one Counter over (creator, state, leaked, wait, count),
    # and only the few distinct tuples are looked at one by one.
    counts = list(map(_RECORD_COUNT, recs))
    tally = Counter(
        zip(
            map(_RECORD_CREATED_BY, recs),
            map(_RECORD_STATE, recs),
            map(_RECORD_LEAKED, recs),
            map(_RECORD_WAIT_MINUTES, recs),
            counts,
            strict=True,
        )
    )
    creators: Counter[tuple[str | None, int]] = Counter()
    states: Counter[tuple[str | None, int]] = Counter()
    waits: list[int] = []
    leak_known = False
    leaked = 0
    for (creator, state, leak, wait, n), k in tally.items():
        creators[creator, n] += k
        states[state, n] += k
        if wait is not None:
            waits.append(wait)
        if leak is not None:
            leak_known = True
            if leak:
                leaked += n * k
    # The sites of the largest record; the first record wins ties, so a dump's are stable.
    if set(counts) == {1}:
        largest = next(filter(_RECORD_SITES, recs), None)
    else:
        sited = [r for r in recs if r.sites]
        largest = max(sited, key=_RECORD_COUNT) if sited else None
    return GoroutineGroup(
        id=group_id(frames, (key, value) if key is not None and value is not None else None),
        count=sum(counts),
        function=top_function(frames),
        frames=frames,
        created_by=_most_common(creators),
        state=_most_common(states),
        max_wait_minutes=max(waits) if waits else None,
        leaked=leaked if leak_known else None,
        label=value,
        sites=largest.sites or () if largest is not None else (),
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
    for rec in snapshot.records:
        counts[rec.created_by] += rec.count
        stacks.setdefault(rec.created_by, set()).add(rec.frames)
        if rec.leaked is not None:
            leak_known = True
            if rec.leaked:
                leaked[rec.created_by] = leaked.get(rec.created_by, 0) + rec.count
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
