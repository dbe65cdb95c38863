"""Goroutine profiles in all three formats and crash dumps, grouped by stack, creator or label.

Formats (what ``/debug/pprof/goroutine`` serves):

- ``proto`` (``debug=0``): a pprof profile with one ``goroutine/count`` value
  and, per sample, the goroutine labels set with ``pprof.Do``;
- ``debug1``: counted stacks, ``N @ 0x... 0x...``, an optional
  ``# labels: {"k":"v"}`` line and ``#`` frame lines;
- ``debug2``: the full dump, one goroutine at a time, as Go prints it on a
  crash: ``goroutine 7 [chan receive, 15 minutes]:``. Go 1.27 adds the
  goroutine's labels (``goroutine 7 [select] {tenant: a, "k 2": "v\\"x"}:``),
  ``GOTRACEBACK=system`` adds ``gp=... m=...``, Go 1.26+ marks leaks
  (``[chan receive (leaked)]``) and synctest bubbles (``, synctest bubble 3``).

A ``debug2`` input may be a whole crash report (``panic:``, ``fatal error:``,
``SIGQUIT: quit`` and registers around the goroutines) or a dump pasted from
a test log with every line indented: the goroutine section is found in it and
the rest ignored. Only the first section is read, as panicparse does.
Inside a goroutine Go's order is required (a call line, then its file line;
``created by``, then its file line) and call arguments must be what Go
prints: text breaking it there is refused, with the goroutine and line named,
for the reasons panicparse refuses it. After a complete frame any other text
ends the dump (``exit status 2`` after a ``go run`` crash).

``/debug/pprof/goroutineleak`` serves the same formats; a snapshot taken from
it has ``kind == "goroutineleak"``. In its proto and debug1 forms every
goroutine is a confirmed leak (blocked on something no runnable goroutine can
reach); its debug2 form lists all goroutines and marks the leaked ones.

Groups are keyed by the stack's function names only, so addresses, offsets,
arguments and goroutine ids do not split them. Each format hides different
runtime frames (a dump hides unexported ``runtime.`` functions anywhere, such
as ``runtime.main`` under ``main.main``; debug=1 hides only those at the top;
the proto hides none), so every stack is first reduced to the frames all
three show (:func:`normalise_stack`). The group id is a short hash of that
reduced stack and is the same whichever format the stack came from.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import NamedTuple

from cardguard.errors import ProfileError
from cardguard.pprof import profile as profile_mod
from cardguard.pprof.heap import normalise_function

FORMATS = ("proto", "debug1", "debug2")
KINDS = ("goroutine", "goroutineleak")

# A label's distinct values kept as groups before the rest fold into OTHER.
DEFAULT_MAX_LABEL_VALUES = 20

_GOEXIT = "runtime.goexit"
# debug=1 (and Go's heap text) hides frames with these prefixes at the top of a stack.
_HIDDEN_LEAF_PREFIXES = ("runtime.", "internal/runtime/")

# Frames that say how a goroutine waits rather than who made it wait.
RUNTIME_PREFIXES = ("runtime.", "runtime/", "internal/", "sync.", "sync/", "iter.")

_DEBUG1_HEADER = re.compile(rb"^(\w+) profile: total (\d+)\s*$")
_DEBUG1_LABELS = "# labels: "
# "goroutine 7 gp=0xc000007a40 m=nil [chan receive, 2 minutes] {k: v}:"; what
# lies between the id and the bracket (gp=, m=, mp=) is not needed.
_HEADER = re.compile(r"goroutine (\d+)(?: [^\[]*?)? \[([^\]]*)\](?: (\{.*\}))?:\s*$")
# Where a dump starts in a longer text: a header at the start of a line,
# possibly indented (pasted from a test log).
_HEADER_SEARCH = re.compile(
    r"^([ \t]*)goroutine \d+(?: [^\[\n]*?)? \[[^\]\n]*\][^\n]*:[ \t\r]*$", re.M
)
_CREATED_BY = re.compile(r"^created by (.+?)(?: in goroutine (\d+))?\s*$")
_MINUTES = re.compile(r"^(\d+) minutes?$")
_BUBBLE = re.compile(r"^synctest bubble (\d+)$")
_OFFSET = re.compile(r"\+0x[0-9a-f]+$")
# Functions the compiler writes around a go or defer statement's call and a
# method value; Go's profiles skip them (its wrapper flag), so the dumps must too.
_WRAPPER = re.compile(r"(\.(go|defer)wrap\d+|-fm)$")
# Status markers Go appends to the wait reason; the wait reason stays the state.
_MARKERS = (" (leaked)", " (scan)")
# Where a dump's parser is inside one goroutine.
_AFTER_HEADER, _AFTER_CALL, _AFTER_FILE, _AFTER_CREATED, _AFTER_CREATOR_FILE = range(5)
_AFTER_UNAVAILABLE, _ANCESTORS = 5, 6
_UNAVAILABLE = "goroutine running on other thread; stack unavailable"
# Marks a line of an indented dump that lacks the indentation.
_UNINDENTED = "\x00"
# What Go prints as a call's arguments: hex words (a "?" when possibly stale),
# "..." past the limit, "_" for an offset too large, "{...}" aggregates.
_ARGUMENT = r"(?:0x[0-9a-f]{1,16}\??|\.\.\.|_)?"
_ARGUMENTS = re.compile(f"{_ARGUMENT}(?:, {_ARGUMENT})*")
_NOT_BRACES = re.compile(r"[^{}]+")
_MAX_NESTING = 5  # Go prints aggregates nested at most this deep
# Lines the runtime may print inside a dump that are not frames: unwinder
# complaints, the stack hexdump that follows them, register values.
_NOISE = re.compile(r"^(runtime: |stack: |fp=|0x[0-9a-f]+: |\[signal |\s*$)")


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
    value of the label grouped by (:data:`~cardguard.analyse.cardinality.OTHER` for
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


def detect_format(data: bytes) -> str:
    """Guess the format of a goroutine profile body: ``proto``, ``debug1`` or ``debug2``.

    A text holding a goroutine header anywhere (a crash report, a dump
    pasted from a log) is ``debug2``.
    """
    if data.startswith(profile_mod.GZIP_MAGIC):
        return "proto"
    first = data.lstrip()[:200].split(b"\n", 1)[0]
    if _DEBUG1_HEADER.match(first):
        return "debug1"
    if _HEADER_SEARCH.search(data.decode("utf-8", "replace")) is not None:
        return "debug2"
    return "proto"


def parse(
    data: bytes,
    source: str,
    fmt: str | None = None,
    kind: str | None = None,
    max_bytes: int = profile_mod.DEFAULT_MAX_DECODED_BYTES,
) -> GoroutineSnapshot:
    """Parse a goroutine or goroutineleak profile in any of the three formats, or a crash dump.

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
    prof = profile_mod.decode(data, source, max_bytes, keep_labels=True)
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
    sites_of: dict[int, tuple[str, ...]] = {
        lid: tuple(f"{f.filename}:{f.line}" if f.filename else "" for f in loc.frames)
        for lid, loc in prof.locations.items()
    }
    per_stack: Counter[tuple[tuple[int, ...], tuple[tuple[str, str], ...]]] = Counter()
    for smp in prof.samples:
        per_stack[smp.stack, tuple(sorted(smp.labels))] += smp.values[0]
    records = []
    leaked = True if kind == "goroutineleak" else None
    for (stack, labels), n in per_stack.items():
        names = [name for lid in stack for name in frames_of[lid]]
        kept = _kept(names)
        sites = [s for lid in stack for s in sites_of[lid]]
        records.append(
            GoroutineRecord(
                count=n,
                frames=tuple(names[i] for i in kept),
                leaked=leaked,
                labels=labels,
                sites=tuple(sites[i] for i in kept),
            )
        )
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
    sites: list[str] = []
    labels: tuple[tuple[str, str], ...] = ()
    in_record = False

    def flush() -> None:
        kept = _kept(frames)
        stack = tuple(frames[i] for i in kept)
        where = tuple(sites[i] for i in kept)
        records.append(GoroutineRecord(count, stack, leaked=leaked, labels=labels, sites=where))

    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            if in_record:
                flush()
                in_record = False
            continue
        if line.startswith("#"):
            if not in_record:
                raise ProfileError(source, f"line {lineno}: frame line outside a stack")
            if line.startswith(_DEBUG1_LABELS):
                try:
                    labels = _parse_label_map(line[len(_DEBUG1_LABELS) :].strip())
                except ValueError as exc:
                    raise ProfileError(source, f"line {lineno}: malformed labels: {exc}") from exc
                continue
            parts = line[1:].split()
            if not parts:
                raise ProfileError(source, f"line {lineno}: malformed frame line")
            # "#\t0xPC" alone: Go could not name the function; the PC stands in.
            name = parts[1] if len(parts) > 1 else parts[0]
            frames.append(normalise_function(_OFFSET.sub("", name)))
            sites.append(parts[2] if len(parts) > 2 else "")
            continue
        head, sep, _ = line.partition(" @")
        if not sep or not head.strip().isdigit():
            raise ProfileError(source, f"line {lineno}: expected 'N @ 0x...', got {line[:80]!r}")
        if in_record:
            flush()
        count = int(head)
        frames = []
        sites = []
        labels = ()
        in_record = True
    if in_record:
        flush()
    counted = sum(r.count for r in records)
    if counted != total:
        raise ProfileError(
            source, f"header says total {total} but stacks count {counted} (truncated?)"
        )
    return GoroutineSnapshot(source, "debug1", kind, total, tuple(records))


def _shown_in_dumps(name: str) -> bool:
    """Return whether a dump at the default GOTRACEBACK shows a frame of function ``name``.

    Go's traceback hides unexported ``runtime.`` functions and names without
    a package (cgo, assembly stubs); unsymbolised addresses are kept.
    """
    if name.startswith("runtime."):
        return len(name) > 8 and "A" <= name[8] <= "Z"
    return "." in name or name.startswith("0x") or name.startswith(("[", "<"))


def normalise_stack(names: Sequence[str]) -> tuple[str, ...]:
    """Reduce a stack (innermost first) to the frames every goroutine format shows.

    Drops ``runtime.goexit`` and the compiler's wrappers (``.gowrap1``,
    ``-fm``), which only a ``GOTRACEBACK=system`` dump shows; every frame a
    dump hides (unexported ``runtime.`` functions such as ``runtime.main``
    and ``runtime.gopark``); then the ``runtime.``/``internal/runtime/``
    frames left at the top, as debug=1 does. A stack made only of runtime
    frames keeps its outermost frame (``runtime.runFinalizers``), which every
    format shows.
    """
    return tuple(names[i] for i in _kept(names))


def _kept(names: Sequence[str]) -> list[int]:
    """The positions of the frames :func:`normalise_stack` keeps (so sites can follow them)."""
    kept = [i for i, n in enumerate(names) if n != _GOEXIT and not _WRAPPER.search(n)]
    shown = [i for i in kept if _shown_in_dumps(names[i])]
    for j, i in enumerate(shown):
        if not names[i].startswith(_HIDDEN_LEAF_PREFIXES):
            return shown[j:]
    return [kept[-1]] if kept else []


def _dump_name(name: str, cache: dict[str, str]) -> str:
    """Normalise a function name as a dump prints it (``panic`` is ``runtime.gopanic``)."""
    norm = cache.get(name)
    if norm is None:
        norm = cache[name] = normalise_function("runtime.gopanic" if name == "panic" else name)
    return norm


def _bad_arguments(args: str) -> str | None:
    """Say what is wrong with a call's argument list, or ``None`` if Go could print it."""
    if args == "...":
        return None
    if "{" in args or "}" in args:
        depth = deepest = 0
        for c in _NOT_BRACES.sub("", args):
            depth += 1 if c == "{" else -1
            if depth < 0:
                return "unmatched closing curly bracket"
            deepest = max(deepest, depth)
        if depth:
            return "unmatched opening curly bracket"
        if deepest > _MAX_NESTING:
            return f"arguments nested deeper than Go prints ({_MAX_NESTING})"
        args = args.replace("{", "").replace("}", "")
    if _ARGUMENTS.fullmatch(args) is None:
        return "arguments Go does not print (hex words, ..., _ and {})"
    return None


def _bad_file_line(line: str) -> str | None:
    """Say what is wrong with a ``\tfile.go:12 +0x1d`` line, or ``None``."""
    where = line.strip().split(" ", 1)[0]
    _, colon, number = where.rpartition(":")
    if not colon or not number.isdigit():
        return "no line number"
    if len(number) > 10 or int(number) > 2**31 - 1:
        return "line number out of range"
    return None


def _parse_state(inner: str) -> tuple[str, int, bool, bool, int | None]:
    """Split the bracket of a debug2 header into (state, minutes, leaked, locked, bubble)."""
    parts = inner.split(", ")
    state = parts[0]
    leaked = False
    for marker in _MARKERS:
        if marker in state:
            leaked = leaked or marker == " (leaked)"
            state = state.replace(marker, "")
    minutes = 0
    locked = False
    bubble = None
    for p in parts[1:]:
        mm = _MINUTES.match(p)
        if mm:
            minutes = int(mm.group(1))
        elif p == "locked to thread":
            locked = True
        elif p in ("(leaked)", "leaked"):
            leaked = True
        else:
            bm = _BUBBLE.match(p)
            if bm:
                bubble = int(bm.group(1))
    return state.strip(), minutes, leaked, locked, bubble


def find_dump(text: str) -> tuple[int, str] | None:
    """Return (offset, indentation) of the first goroutine header in ``text``, or ``None``."""
    m = _HEADER_SEARCH.search(text)
    if m is None:
        return None
    return m.start(), m.group(1)


def _not_a_dump(text: str) -> str:
    """Say why ``text`` holds no goroutine dump, naming what it looks like instead."""
    if "WARNING: DATA RACE" in text:
        return "a data race report, not a goroutine dump (no 'goroutine N [state]:' line)"
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            return f"line {lineno}: expected 'goroutine N [state]:', got {line[:80]!r}"
    return "no goroutines in the dump"


# Builds a record from a tuple of all its fields, in C (no Python-level __new__).
_new_record = tuple.__new__

# What one goroutine of a dump block printed below its header: (whether its
# header is the block's own, that header, the stack as printed, the normalised
# stack, its sites, creator, creator's id). A goroutine printed without a blank
# line before it is one more entry of the block, with its own header.
_Entry = tuple[
    bool,
    re.Match[str],
    tuple[str, ...],
    tuple[str, ...],
    tuple[str, ...],
    str | None,
    int | None,
]


def _parse_debug2(data: bytes, source: str, kind: str | None) -> GoroutineSnapshot:
    text = _text(data, source)
    if kind is None:
        kind = "goroutine"
    found = find_dump(text)
    if found is None:
        raise ProfileError(source, _not_a_dump(text))
    start, indent = found
    preamble = text[:start].strip()
    # Without any marker the runtime either cannot detect leaks (before Go
    # 1.26) or no detection ran yet: unknown, not "none leaked".
    unmarked: bool | None = False if "(leaked)" in text else None
    body = text[start:]
    if "\r" in body:
        body = body.replace("\r\n", "\n")
    if indent:
        cut = len(indent)
        body = "\n".join(
            line[cut:] if line.startswith(indent) else (_UNINDENTED + line if line else line)
            for line in body.split("\n")
        )
    header_match = _HEADER.match
    # Per bracket text: the record's (state, minutes, leaked, locked, bubble).
    header_states: dict[str, tuple[str, int, bool | None, bool, int | None]] = {}
    label_sets: dict[str, tuple[tuple[str, str], ...]] = {}
    names: dict[str, str] = {}
    stacks: dict[tuple[str, ...], tuple[str, ...]] = {}
    # The sites of the first goroutine printed with each stack, normalised with it.
    stack_sites: dict[tuple[str, ...], tuple[str, ...]] = {}
    creators: dict[str, tuple[str, int | None]] = {}
    records: list[GoroutineRecord] = []
    append = records.append

    def stack_of(
        printed: tuple[str, ...], wrappers: list[int] | None, files: list[str]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Return the normalised stack and its sites for a stack as printed."""
        if wrappers and _GOEXIT in printed:
            # Printed with every frame (GOTRACEBACK=system): profiles never show
            # the compiler's wrapper functions, so drop them here too.
            key = tuple(n for i, n in enumerate(printed) if i not in wrappers)
            files = [f for i, f in enumerate(files) if i not in wrappers]
        else:
            key = printed
        stack = stacks.get(key)
        if stack is None:
            normal = [_dump_name(n, names) for n in key]
            kept = _kept(normal)
            stack = stacks[key] = tuple(normal[i] for i in kept)
            # "\t/src/main.go:42 +0x1d fp=...": the first word is the file:line.
            stack_sites[key] = tuple(
                files[i].split(None, 1)[0] if i < len(files) and files[i].strip() else ""
                for i in kept
            )
        return stack, stack_sites[key]

    def labels_of(m: re.Match[str]) -> tuple[tuple[str, str], ...]:
        raw_labels = m.group(3)
        if not raw_labels:
            return ()
        got = label_sets.get(raw_labels)
        if got is None:
            try:
                got = label_sets[raw_labels] = _parse_traceback_labels(raw_labels)
            except ValueError as exc:
                raise ProfileError(
                    source, f"goroutine {m.group(1)}: malformed labels {raw_labels!r}: {exc}"
                ) from exc
        return got

    def entry(
        own: bool,
        m: re.Match[str],
        frames: list[str],
        wrappers: list[int] | None,
        created_by: str | None,
        creator_id: int | None,
        files: list[str],
    ) -> _Entry:
        printed = tuple(frames)
        stack, sites = stack_of(printed, wrappers, files)
        return own, m, printed, stack, sites, created_by, creator_id

    checked_files: set[str] = set()

    def fail(m: re.Match[str], what: str, line: str) -> ProfileError:
        if line[:1] == _UNINDENTED:
            return ProfileError(
                source,
                f"goroutine {m.group(1)}: inconsistent indentation: {line[1:]!r}, "
                f"expected {indent!r}",
            )
        return ProfileError(source, f"goroutine {m.group(1)}: expected {what}, got {line!r}")

    def check_file(m: re.Match[str], line: str) -> None:
        reason = _bad_file_line(line)
        if reason:
            raise ProfileError(source, f"goroutine {m.group(1)}: {reason} in {line.strip()!r}")
        checked_files.add(line)

    def creator(m: re.Match[str], line: str) -> tuple[str, int | None]:
        cr = creators.get(line)
        if cr is None:
            cm = _CREATED_BY.match(line)
            if cm is None:
                raise ProfileError(source, f"goroutine {m.group(1)}: malformed {line!r}")
            cr = creators[line] = (
                normalise_function(cm.group(1)),
                int(cm.group(2)) if cm.group(2) else None,
            )
        return cr

    good_arguments: set[str] = {""}

    def call(m: re.Match[str], line: str) -> str:
        """Return a call line's function, checking its arguments are what Go prints.

        Go prints arguments as hex words and ``{...}`` aggregates, never with
        parentheses inside, so the last ``(`` opens the argument list.
        """
        i = line.rfind("(")
        if i <= 0:
            return line
        args = line[i + 1 : -1]
        if args not in good_arguments:
            bad = _bad_arguments(args)
            if bad:
                raise ProfileError(source, f"goroutine {m.group(1)}: {bad} in {line!r}")
            good_arguments.add(args)
        return line[:i]

    def read(m: re.Match[str], lines: list[str]) -> tuple[list[_Entry], bool]:
        """Read the lines below a goroutine header; return its entries and whether the dump ended.

        Go prints each goroutine as: header; (call line, file line)...; maybe
        "created by" and its file line. A line out of that order inside a
        goroutine means the text is not a dump; after a complete frame it ends one.
        """
        entries: list[_Entry] = []
        own = True
        ended = False
        frames: list[str] = []  # as printed, arguments dropped
        files: list[str] = []  # each frame's "\tfile.go:12 +0x1d" line
        wrappers: list[int] | None = None
        created_by: str | None = None
        creator_id: int | None = None
        state = _AFTER_HEADER
        for line in lines:
            first = line[:1]
            if state == _AFTER_FILE:
                if first == "\t" or first == " ":
                    continue  # a second file line: nothing in it groups goroutines
                if line.endswith(")") and first != _UNINDENTED:
                    frames.append(call(m, line))
                    files.append("")
                    state = _AFTER_CALL
                elif first == "c" and line.startswith("created by "):
                    created_by, creator_id = creator(m, line)
                    state = _AFTER_CREATED
                elif first == ".":
                    continue  # "...N frames elided...": what remains still identifies the group
                elif first == "g" and (m2 := header_match(line)) is not None:
                    # No blank line between two goroutines.
                    entries.append(entry(own, m, frames, wrappers, created_by, creator_id, files))
                    labels_of(m)  # a bad label is reported before the next goroutine's lines
                    own, m, frames, files, wrappers = False, m2, [], [], None
                    created_by = creator_id = None
                    state = _AFTER_HEADER
                elif first == "[" and line.startswith("[originating from goroutine"):
                    state = _ANCESTORS  # GODEBUG=tracebackancestors: creators' stacks follow
                elif line.startswith("non-Go function") or _NOISE.match(line):
                    continue
                else:
                    ended = True  # not part of a dump: keep what was read and stop
                    break
            elif state == _AFTER_CALL:
                if first != "\t" and first != " ":
                    raise fail(m, "a file after a function", line)
                if line not in checked_files:
                    check_file(m, line)
                # <autogenerated> code is a wrapper the profiles never show.
                if "<autogenerated>" in line and line.lstrip()[:1] == "<":
                    wrappers = (wrappers or []) + [len(frames) - 1]
                files[-1] = line
                state = _AFTER_FILE
            elif state == _AFTER_HEADER:
                if line.endswith(")") and first not in "\t " + _UNINDENTED:
                    frames.append(call(m, line))
                    files.append("")
                    state = _AFTER_CALL
                elif line.strip() == _UNAVAILABLE:
                    state = _AFTER_UNAVAILABLE
                elif line.startswith("non-Go function"):
                    state = _AFTER_FILE  # a cgo frame, printed without a file line
                elif not (first not in "\t " + _UNINDENTED and _NOISE.match(line)):
                    raise fail(m, "a function after a goroutine header", line)
            elif state == _AFTER_CREATED:
                if first != "\t" and first != " ":
                    raise fail(m, "a file after a created line", line)
                if line not in checked_files:
                    check_file(m, line)
                state = _AFTER_CREATOR_FILE
            elif state == _AFTER_UNAVAILABLE:
                if first != "c" or not line.startswith("created by "):
                    raise fail(m, "an empty line after unavailable stack", line)
                created_by, creator_id = creator(m, line)
                state = _AFTER_CREATED
            elif state == _AFTER_CREATOR_FILE:
                if first == "[" and line.startswith("[originating from goroutine"):
                    state = _ANCESTORS
                elif first == "g" and (m2 := header_match(line)) is not None:
                    entries.append(entry(own, m, frames, wrappers, created_by, creator_id, files))
                    labels_of(m)  # a bad label is reported before the next goroutine's lines
                    own, m, frames, files, wrappers = False, m2, [], [], None
                    created_by = creator_id = None
                    state = _AFTER_HEADER
                elif not _NOISE.match(line):
                    ended = True
                    break
            # _ANCESTORS: the rest of the block is other goroutines' stacks.
        entries.append(entry(own, m, frames, wrappers, created_by, creator_id, files))
        return entries, ended

    # Goroutines parked in one place print the same lines below their headers:
    # each distinct text is read once, and every goroutine reuses what it gave.
    # The blocks are cut one at a time, so no list of them all is ever held.
    seen: dict[str, tuple[list[_Entry], bool]] = {}
    at = 0
    size = len(body)
    find = body.find
    while at < size:
        cut = find("\n\n", at)
        if cut < 0:
            cut = size
        start, at = at, cut + 2
        while start < cut and body[start] == "\n":
            start += 1  # more than one blank line
        end = cut
        while end > start and body[end - 1] == "\n":
            end -= 1  # the newline ending the text
        if start == end:
            continue
        newline = find("\n", start, end)
        if newline < 0:
            newline = end
        m = header_match(body[start:newline])
        if m is None:
            break  # the dump has ended: registers, "exit status 2", a log line
        below = body[newline + 1 : end]
        got = seen.get(below)
        if got is None:
            got = seen[below] = read(m, below.split("\n") if below else [])
        entries, ended = got
        for own, inner_m, printed, stack, sites, created_by, creator_id in entries:
            hm = m if own else inner_m
            gid, inner, raw_labels = hm.groups()
            st = header_states.get(inner)
            if st is None:
                state, minutes, leaked, locked, bubble = _parse_state(inner)
                st = header_states[inner] = (
                    state,
                    minutes,
                    True if leaked else unmarked,
                    locked,
                    bubble,
                )
            append(
                _new_record(
                    GoroutineRecord,
                    (
                        1,
                        stack,
                        created_by,
                        st[0],
                        st[1],
                        st[2],
                        int(gid),
                        creator_id,
                        labels_of(hm) if raw_labels else (),
                        st[3],
                        st[4],
                        printed,
                        sites,
                    ),
                )
            )
        if ended:
            break
    if not records:
        raise ProfileError(source, "no goroutines in the dump")
    return GoroutineSnapshot(source, "debug2", kind, len(records), tuple(records), preamble)


def _text(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(source, f"goroutine dump is not UTF-8 text (byte {exc.start})") from exc


# --- Go's quoting of label keys and values ---------------------------------------

_SIMPLE_ESCAPES = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    '"': b'"',
    "'": b"'",
}
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}
_BARE = re.compile(r"[A-Za-z0-9./_]*")


def _unquote(s: str, i: int) -> tuple[str, int]:
    """Read the Go-quoted string starting at ``s[i] == '"'``; return it and the index after it.

    Reads what ``strconv.Quote`` (debug=1) and the runtime's traceback
    quoting (debug=2) write: ``\\n``-style escapes, ``\\xHH`` bytes (invalid
    UTF-8 stays visible as ``\\xHH`` text), ``\\uHHHH`` and ``\\UHHHHHHHH``.
    """
    out = bytearray()
    i += 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == '"':
            return out.decode("utf-8", "backslashreplace"), i + 1
        if c != "\\":
            j = i
            while j < n and s[j] not in '"\\':
                j += 1
            out += s[i:j].encode()
            i = j
            continue
        if i + 1 >= n:
            break
        e = s[i + 1]
        if e in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[e]
            i += 2
        elif e in _HEX_DIGITS:
            width = _HEX_DIGITS[e]
            digits = s[i + 2 : i + 2 + width]
            if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError(f"bad escape at {i}")
            v = int(digits, 16)
            if e == "x":
                out.append(v)
            else:
                out += chr(v).encode("utf-8", "surrogatepass")
            i += 2 + width
        elif e in "01234567":
            digits = s[i + 1 : i + 4]
            if len(digits) != 3 or not all(d in "01234567" for d in digits):
                raise ValueError(f"bad escape at {i}")
            out.append(int(digits, 8) & 0xFF)
            i += 4
        else:
            raise ValueError(f"bad escape at {i}")
    raise ValueError("unterminated quoted string")


def _token(s: str, i: int) -> tuple[str, int]:
    """Read a label key or value as the traceback prints it: quoted, or bare when plain."""
    if i < len(s) and s[i] == '"':
        return _unquote(s, i)
    m = _BARE.match(s, i)
    assert m is not None  # the pattern matches the empty string
    return m.group(0), m.end()


def _expect(s: str, i: int, lit: str) -> int:
    if not s.startswith(lit, i):
        raise ValueError(f"expected {lit!r} at {i}")
    return i + len(lit)


def _parse_traceback_labels(s: str) -> tuple[tuple[str, str], ...]:
    """Parse a dump header's labels, ``{handler: /api, "tenant id": "a b\\"c}"}``.

    Go quotes a key or value only when it holds anything but letters,
    digits, ``.``, ``/`` and ``_`` (an empty one is printed as nothing).
    """
    i = _expect(s, 0, "{")
    pairs: list[tuple[str, str]] = []
    while True:
        key, i = _token(s, i)
        i = _expect(s, i, ": ")
        value, i = _token(s, i)
        pairs.append((key, value))
        if s.startswith(", ", i):
            i += 2
            continue
        i = _expect(s, i, "}")
        if i != len(s):
            raise ValueError(f"unexpected text after labels at {i}")
        return tuple(sorted(pairs))


def _parse_label_map(s: str) -> tuple[tuple[str, str], ...]:
    """Parse debug=1's ``{"k":"v", "k2":"v2"}`` (Go's ``%q`` quoting)."""
    i = _expect(s, 0, "{")
    pairs: list[tuple[str, str]] = []
    if s.startswith("}", i):
        return ()
    while True:
        if not s.startswith('"', i):
            raise ValueError(f"expected a quoted key at {i}")
        key, i = _unquote(s, i)
        i = _expect(s, i, ":")
        if not s.startswith('"', i):
            raise ValueError(f"expected a quoted value at {i}")
        value, i = _unquote(s, i)
        pairs.append((key, value))
        if s.startswith(", ", i):
            i += 2
            continue
        i = _expect(s, i, "}")
        if i != len(s):
            raise ValueError(f"unexpected text after labels at {i}")
        return tuple(sorted(pairs))


# --- grouping ---------------------------------------------------------------------


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
    # Imported here: cardinality brings the exposition parser, which reading a
    # goroutine profile never needs (a third of `cardguard goroutines`' start-up).
    from cardguard.analyse.cardinality import OTHER

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
            the rest into :data:`~cardguard.analyse.cardinality.OTHER`, so the number
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
