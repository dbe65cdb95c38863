"""Goroutine profiles in all three formats, grouped by stack and by creator.

Formats (what ``/debug/pprof/goroutine`` serves):

- ``proto`` (``debug=0``): a pprof profile with one ``goroutine/count`` value;
- ``debug1``: counted stacks, ``N @ 0x... 0x...`` followed by ``#`` frame lines;
- ``debug2``: the full dump, one goroutine at a time, with its wait state and
  minutes blocked (``[chan receive, 15 minutes]``), ``created by X in
  goroutine N`` and, on Go 1.26+ with leak detection, a ``(leaked)`` marker.

``/debug/pprof/goroutineleak`` serves the same formats; a snapshot taken from
it has ``kind == "goroutineleak"``. In its proto and debug1 forms every
goroutine is a confirmed leak (blocked on something no runnable goroutine can
reach); its debug2 form lists all goroutines and marks the leaked ones.

Groups are keyed by the stack's function names only, so addresses, offsets,
arguments and goroutine ids do not split them; the group id is a short hash of
that normalised stack and is the same whichever format the stack came from.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from cardguard.errors import ProfileError
from cardguard.pprof import profile as profile_mod
from cardguard.pprof.heap import normalise_function

FORMATS = ("proto", "debug1", "debug2")
KINDS = ("goroutine", "goroutineleak")

# Go's debug=1 text and tracebacks hide runtime frames at the top of a stack
# (gopark, chanrecv, ...) and runtime.goexit at the bottom; the proto format
# keeps them. Normalising every format the same way keeps group ids equal.
_HIDDEN_LEAF_PREFIXES = ("runtime.", "internal/runtime/")
_GOEXIT = "runtime.goexit"

# Frames that say how a goroutine waits rather than who made it wait.
RUNTIME_PREFIXES = ("runtime.", "runtime/", "internal/", "sync.", "sync/", "iter.")

_DEBUG1_HEADER = re.compile(rb"^(\w+) profile: total (\d+)\s*$")
_DEBUG2_HEADER = re.compile(r"^goroutine (\d+)(?: [^\[]*)?\[(.*)\]:\s*$")
_CREATED_BY = re.compile(r"^created by (.+?)(?: in goroutine (\d+))?\s*$")
_MINUTES = re.compile(r"^(\d+) minutes?$")
_OFFSET = re.compile(r"\+0x[0-9a-f]+$")


@dataclass(slots=True)
class GoroutineRecord:
    """One goroutine (debug2) or one counted stack (proto, debug1); treat as read-only.

    Fields a format does not carry are ``None``: only debug2 has state,
    wait minutes, creator, ids and the ``(leaked)`` marker. Not frozen only
    because frozen dataclasses build three times slower and a dump can hold
    hundreds of thousands of goroutines.
    """

    count: int
    frames: tuple[str, ...]
    created_by: str | None = None
    state: str | None = None
    wait_minutes: int | None = None
    leaked: bool | None = None
    goroutine_id: int | None = None
    creator_id: int | None = None


@dataclass(frozen=True)
class GoroutineSnapshot:
    """A parsed goroutine (or goroutineleak) profile."""

    source: str
    format: str
    kind: str
    total: int
    records: tuple[GoroutineRecord, ...]


@dataclass(frozen=True, slots=True)
class GoroutineGroup:
    """Goroutines sharing one normalised stack.

    ``function`` is the top non-runtime function; ``created_by``, ``state``
    and ``max_wait_minutes`` are the most common creator, most common state
    and longest wait (``None`` when the format lacks them); ``leaked`` counts
    confirmed leaks (``None`` when the input cannot tell).
    """

    id: str
    count: int
    function: str
    frames: tuple[str, ...]
    created_by: str | None
    state: str | None
    max_wait_minutes: int | None
    leaked: int | None


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


def detect_format(data: bytes) -> str:
    """Guess the format of a goroutine profile body: ``proto``, ``debug1`` or ``debug2``."""
    if data.startswith(profile_mod.GZIP_MAGIC):
        return "proto"
    head = data[:200].lstrip()
    if head.startswith(b"goroutine ") and b"profile: total" not in head.split(b"\n", 1)[0]:
        return "debug2"
    if _DEBUG1_HEADER.match(head.split(b"\n", 1)[0]):
        return "debug1"
    return "proto"


def parse(
    data: bytes,
    source: str,
    fmt: str | None = None,
    kind: str | None = None,
    max_bytes: int = profile_mod.DEFAULT_MAX_DECODED_BYTES,
) -> GoroutineSnapshot:
    """Parse a goroutine or goroutineleak profile in any of the three formats.

    Args:
        data: the response body or file contents.
        source: file path or URL, used in errors.
        fmt: ``proto``, ``debug1`` or ``debug2``; ``None`` detects it.
        kind: ``goroutine`` or ``goroutineleak``; ``None`` takes it from the
            debug1 header or the proto sample type, else ``goroutine``. Pass
            ``goroutineleak`` for bodies of ``/debug/pprof/goroutineleak``.

    Raises:
        ProfileError: the data is not a goroutine profile in that format.
    """
    if fmt is None:
        fmt = detect_format(data)
    if fmt not in FORMATS:
        raise ProfileError(source, f"unknown goroutine profile format {fmt!r}")
    if kind is not None and kind not in KINDS:
        raise ProfileError(source, f"unknown goroutine profile kind {kind!r}")
    if len(data) > max_bytes:
        raise ProfileError(source, f"goroutine profile exceeds the limit of {max_bytes} bytes")
    if fmt == "proto":
        return _parse_proto(data, source, kind, max_bytes)
    if fmt == "debug1":
        return _parse_debug1(data, source, kind)
    return _parse_debug2(data, source, kind)


def _parse_proto(data: bytes, source: str, kind: str | None, max_bytes: int) -> GoroutineSnapshot:
    prof = profile_mod.decode(data, source, max_bytes)
    types = [st.type for st in prof.sample_types]
    if len(types) != 1 or prof.sample_types[0].unit != "count":
        raise ProfileError(
            source, f"not a goroutine profile: sample types {', '.join(types)} (want one count)"
        )
    if kind is None:
        kind = "goroutineleak" if types[0] == "goroutineleak" else "goroutine"
    frames_of: dict[int, tuple[str, ...]] = {
        lid: tuple(normalise_function(f.function) for f in loc.frames)
        for lid, loc in prof.locations.items()
    }
    per_stack: Counter[tuple[int, ...]] = Counter()
    for smp in prof.samples:
        per_stack[smp.stack] += smp.values[0]
    records = []
    leaked = True if kind == "goroutineleak" else None
    for stack, n in per_stack.items():
        frames = normalise_stack([name for lid in stack for name in frames_of[lid]])
        records.append(GoroutineRecord(count=n, frames=frames, leaked=leaked))
    return GoroutineSnapshot(source, "proto", kind, sum(per_stack.values()), tuple(records))


def _parse_debug1(data: bytes, source: str, kind: str | None) -> GoroutineSnapshot:
    text = _text(data, source)
    lines = text.split("\n")
    m = _DEBUG1_HEADER.match(lines[0].encode())
    if m is None:
        raise ProfileError(source, "line 1: expected '<kind> profile: total N'")
    header_kind = m.group(1).decode()
    if header_kind not in KINDS:
        raise ProfileError(source, f"not a goroutine profile: a {header_kind} profile")
    total = int(m.group(2))
    if kind is None:
        kind = "goroutineleak" if header_kind == "goroutineleak" else "goroutine"
    leaked = True if kind == "goroutineleak" else None
    records: list[GoroutineRecord] = []
    count = 0
    frames: list[str] = []
    in_record = False
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            if in_record:
                records.append(GoroutineRecord(count, normalise_stack(frames), leaked=leaked))
                in_record = False
            continue
        if line.startswith("#"):
            if not in_record:
                raise ProfileError(source, f"line {lineno}: frame line outside a stack")
            if line.startswith("# labels:"):
                continue
            parts = line[1:].split()
            if not parts:
                raise ProfileError(source, f"line {lineno}: malformed frame line")
            # "#\t0xPC" alone: Go could not name the function; the PC stands in.
            name = parts[1] if len(parts) > 1 else parts[0]
            frames.append(normalise_function(_OFFSET.sub("", name)))
            continue
        head, sep, _ = line.partition(" @")
        if not sep or not head.strip().isdigit():
            raise ProfileError(source, f"line {lineno}: expected 'N @ 0x...', got {line[:80]!r}")
        if in_record:
            records.append(GoroutineRecord(count, normalise_stack(frames), leaked=leaked))
        count = int(head)
        frames = []
        in_record = True
    if in_record:
        records.append(GoroutineRecord(count, normalise_stack(frames), leaked=leaked))
    counted = sum(r.count for r in records)
    if counted != total:
        raise ProfileError(
            source, f"header says total {total} but stacks count {counted} (truncated?)"
        )
    return GoroutineSnapshot(source, "debug1", kind, total, tuple(records))


def normalise_stack(names: Sequence[str]) -> tuple[str, ...]:
    """Drop runtime.goexit and the runtime frames at the top, as Go's debug=1 output does.

    A stack made only of runtime frames is kept whole (minus goexit).
    """
    kept = [n for n in names if n != _GOEXIT]
    for i, name in enumerate(kept):
        if not name.startswith(_HIDDEN_LEAF_PREFIXES):
            return tuple(kept[i:])
    return tuple(kept)


def _strip_args(call: str) -> str:
    """Drop the argument list of a debug2 call line: ``pkg.(*T).m(0x1)`` -> ``pkg.(*T).m``.

    Go prints arguments as hex words and ``{...}`` aggregates, never with
    parentheses inside, so the last ``(`` opens the argument list.
    """
    if call.endswith(")"):
        i = call.rfind("(")
        if i > 0:
            return call[:i]
    return call


def _parse_state(inner: str) -> tuple[str, int, bool]:
    """Split the bracket of a debug2 header into (state, minutes, leaked)."""
    parts = [p.strip() for p in inner.split(",")]
    state = parts[0]
    minutes = 0
    leaked = False
    if "(leaked)" in state:
        leaked = True
        state = state.replace("(leaked)", "").strip()
    for p in parts[1:]:
        mm = _MINUTES.match(p)
        if mm:
            minutes = int(mm.group(1))
        elif p == "(leaked)" or p == "leaked":
            leaked = True
    return state, minutes, leaked


def _parse_debug2(data: bytes, source: str, kind: str | None) -> GoroutineSnapshot:
    text = _text(data, source)
    if kind is None:
        kind = "goroutine"
    # Without any marker the runtime either cannot detect leaks (before Go
    # 1.26) or no detection ran yet: unknown, not "none leaked".
    unmarked: bool | None = False if "(leaked)" in text else None
    header_match = _DEBUG2_HEADER.match
    states: dict[str, tuple[str, int, bool]] = {}
    names: dict[str, str] = {}
    stacks: dict[tuple[str, ...], tuple[str, ...]] = {}
    creators: dict[str, tuple[str, int | None]] = {}
    records: list[GoroutineRecord] = []
    append = records.append
    lineno = 1
    for block in text.split("\n\n"):
        first = lineno + len(block) - len(block.lstrip("\n"))
        lineno += block.count("\n") + 2
        lines = block.strip("\n").split("\n")
        if not lines[0]:
            continue
        m = header_match(lines[0])
        if m is None:
            raise ProfileError(
                source, f"line {first}: expected 'goroutine N [state]:', got {lines[0][:80]!r}"
            )
        inner = m.group(2)
        st = states.get(inner)
        if st is None:
            st = states[inner] = _parse_state(inner)
        frames: list[str] = []
        created_by: str | None = None
        creator_id: int | None = None
        for line in lines[1:]:
            if not line or line[0] == "\t" or line[0] == " ":
                continue  # file:line +pc: nothing in it groups goroutines
            if line.startswith("created by "):
                cr = creators.get(line)
                if cr is None:
                    cm = _CREATED_BY.match(line)
                    if cm is None:
                        raise ProfileError(source, f"line {first}: malformed {line[:80]!r}")
                    cr = creators[line] = (
                        normalise_function(cm.group(1)),
                        int(cm.group(2)) if cm.group(2) else None,
                    )
                created_by, creator_id = cr
                continue
            if line.startswith("..."):
                continue  # "...N frames elided...": what remains still identifies the group
            name = _strip_args(line)
            norm = names.get(name)
            if norm is None:
                norm = names[name] = normalise_function(name)
            frames.append(norm)
        key = tuple(frames)
        stack = stacks.get(key)
        if stack is None:
            stack = stacks[key] = normalise_stack(key)
        state, minutes, leaked = st
        append(
            GoroutineRecord(
                1,
                stack,
                created_by,
                state,
                minutes,
                True if leaked else unmarked,
                int(m.group(1)),
                creator_id,
            )
        )
    if not records:
        raise ProfileError(source, "no goroutines in the dump")
    return GoroutineSnapshot(source, "debug2", kind, len(records), tuple(records))


def _text(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(source, f"goroutine dump is not UTF-8 text (byte {exc.start})") from exc


def group_id(frames: Sequence[str]) -> str:
    """Return the short stable id of a normalised stack (12 hex digits)."""
    h = hashlib.blake2b("\n".join(frames).encode(), digest_size=6)
    return h.hexdigest()


def top_function(frames: Sequence[str]) -> str:
    """Return the innermost frame outside the runtime (the first frame if all are runtime)."""
    for name in frames:
        if not name.startswith(RUNTIME_PREFIXES):
            return name
    return frames[0] if frames else "unknown"


def group(snapshot: GoroutineSnapshot) -> list[GoroutineGroup]:
    """Group a snapshot's goroutines by normalised stack, largest group first."""
    by_stack: dict[tuple[str, ...], list[GoroutineRecord]] = {}
    for rec in snapshot.records:
        by_stack.setdefault(rec.frames, []).append(rec)
    groups = [_make_group(frames, recs) for frames, recs in by_stack.items()]
    groups.sort(key=lambda g: (-g.count, g.id))
    return groups


def _most_common(values: Iterable[tuple[str | None, int]]) -> str | None:
    c: Counter[str] = Counter()
    for v, n in values:
        if v is not None:
            c[v] += n
    if not c:
        return None
    best = max(c.values())
    return min(k for k, n in c.items() if n == best)


def _make_group(frames: tuple[str, ...], recs: list[GoroutineRecord]) -> GoroutineGroup:
    count = sum(r.count for r in recs)
    waits = [r.wait_minutes for r in recs if r.wait_minutes is not None]
    leak_known = [r for r in recs if r.leaked is not None]
    return GoroutineGroup(
        id=group_id(frames),
        count=count,
        function=top_function(frames),
        frames=frames,
        created_by=_most_common((r.created_by, r.count) for r in recs),
        state=_most_common((r.state, r.count) for r in recs),
        max_wait_minutes=max(waits) if waits else None,
        leaked=sum(r.count for r in leak_known if r.leaked) if leak_known else None,
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

    Stacks are matched by group id; leaked stacks missing from ``groups`` (a
    goroutine may have leaked between the two fetches) are appended.
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


class GoroutineGrowthTracker:
    """Growth of goroutine groups over a sliding window, in bounded memory.

    Feed it the groups of each snapshot with the time it was taken;
    :meth:`observe` returns growth against the oldest snapshot still inside
    the window. Only the ``max_groups`` largest groups of each snapshot and
    at most ``max_points`` snapshots are kept. Pure: time is passed in.
    """

    def __init__(
        self, window_seconds: float = 3600.0, max_points: int = 240, max_groups: int = 1000
    ) -> None:
        self.window_seconds = window_seconds
        self.max_points = max_points
        self.max_groups = max_groups
        self._points: list[tuple[float, dict[str, GoroutineGroup]]] = []

    def observe(self, groups: Sequence[GoroutineGroup], at: float) -> list[GroupGrowth]:
        """Record a snapshot's groups taken at ``at`` (seconds); return growth over the window."""
        kept = sorted(groups, key=lambda g: (-g.count, g.id))[: self.max_groups]
        self._points.append((at, {g.id: g for g in kept}))
        cutoff = at - self.window_seconds
        while len(self._points) > 1 and (
            self._points[0][0] < cutoff or len(self._points) > self.max_points
        ):
            self._points.pop(0)
        base = list(self._points[0][1].values())
        return growth(base, kept)

    def span_seconds(self) -> float:
        """Return the time between the oldest and newest kept snapshots."""
        if not self._points:
            return 0.0
        return self._points[-1][0] - self._points[0][0]
