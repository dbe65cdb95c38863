"""Read what a goroutine dump prints of one goroutine: its header, calls, files and creator.

Go prints each goroutine as its header (``goroutine 7 [chan receive, 15
minutes] {k: v}:``), then per frame a call line and its file line, then
``created by`` and its file line. The order is required and call arguments
must be what Go prints; text breaking them is refused with the goroutine and
line named, for the reasons panicparse refuses it. :mod:`.dump` finds the
goroutines in a dump and hands each one's text to a :class:`Reader`.
"""

from __future__ import annotations

import re

from cardguard.errors import ProfileError
from cardguard.pprof.goroutines.model import GoroutineRecord
from cardguard.pprof.goroutines.normalise import GOEXIT, kept_positions
from cardguard.pprof.goroutines.text import parse_traceback_labels
from cardguard.pprof.heap import normalise_function

# "goroutine 7 gp=0xc000007a40 m=nil [chan receive, 2 minutes] {k: v}:"; what
# lies between the id and the bracket (gp=, m=, mp=) is not needed.
HEADER = re.compile(r"goroutine (\d+)(?: [^\[]*?)? \[([^\]]*)\](?: (\{.*\}))?:\s*$")
_CREATED_BY = re.compile(r"^created by (.+?)(?: in goroutine (\d+))?\s*$")
_MINUTES = re.compile(r"^(\d+) minutes?$")
_BUBBLE = re.compile(r"^synctest bubble (\d+)$")
# Status markers Go appends to the wait reason; the wait reason stays the state.
_MARKERS = (" (leaked)", " (scan)")
# Where a dump's parser is inside one goroutine.
_AFTER_HEADER, _AFTER_CALL, _AFTER_FILE, _AFTER_CREATED, _AFTER_CREATOR_FILE = range(5)
_AFTER_UNAVAILABLE, _ANCESTORS = 5, 6
_UNAVAILABLE = "goroutine running on other thread; stack unavailable"
# Marks a line of an indented dump that lacks the indentation.
UNINDENTED = "\x00"
# What Go prints as a call's arguments: hex words (a "?" when possibly stale),
# "..." past the limit, "_" for an offset too large, "{...}" aggregates.
_ARGUMENT = r"(?:0x[0-9a-f]{1,16}\??|\.\.\.|_)?"
_ARGUMENTS = re.compile(f"{_ARGUMENT}(?:, {_ARGUMENT})*")
_NOT_BRACES = re.compile(r"[^{}]+")
_MAX_NESTING = 5  # Go prints aggregates nested at most this deep
# Lines the runtime may print inside a dump that are not frames: unwinder
# complaints, the stack hexdump that follows them, register values.
_NOISE = re.compile(r"^(runtime: |stack: |fp=|0x[0-9a-f]+: |\[signal |\s*$)")


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


# Builds a record from a tuple of all its fields, in C (no Python-level __new__).
new_record = tuple.__new__

# What one goroutine of a dump block printed below its header: (whether its
# header is the block's own, that header, the stack as printed, the normalised
# stack, its sites, creator, creator's id). A goroutine printed without a blank
# line before it is one more entry of the block, with its own header.
Entry = tuple[
    bool,
    re.Match[str],
    tuple[str, ...],
    tuple[str, ...],
    tuple[str, ...],
    str | None,
    int | None,
]
# What a header's bracket and labels give a record: (state, minutes, leaked,
# locked, bubble, labels).
HeaderFields = tuple[str, int, bool | None, bool, int | None, tuple[tuple[str, str], ...]]


class Reader:
    """Read the text of a dump's goroutines; every distinct text is read once and remembered.

    Goroutines parked in one place print the same lines below their headers,
    and the same brackets, labels, creators and calls: each is parsed and
    checked the first time and looked up after that.
    """

    def __init__(self, source: str, indent: str, unmarked: bool | None) -> None:
        self.source = source
        self.indent = indent
        # Without any marker the runtime either cannot detect leaks (before Go
        # 1.26) or no detection ran yet: unknown, not "none leaked".
        self.unmarked = unmarked
        self.header_fields: dict[tuple[str, str | None], HeaderFields] = {}
        self.label_sets: dict[str, tuple[tuple[str, str], ...]] = {}
        self.names: dict[str, str] = {}
        self.stacks: dict[tuple[str, ...], tuple[str, ...]] = {}
        # The sites of the first goroutine printed with each stack, normalised with it.
        self.stack_sites: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.creators: dict[str, tuple[str, int | None]] = {}
        self.checked_files: set[str] = set()
        self.good_arguments: set[str] = {""}
        # Per text below a header: its entries and whether the dump ended in it.
        self.texts: dict[str, tuple[list[Entry], bool]] = {}

    def text(self, m: re.Match[str], below: str) -> tuple[list[Entry], bool]:
        """Read the text below header ``m``, or recall what the same text gave before."""
        got = self.texts.get(below)
        if got is None:
            got = self.texts[below] = self.read(m, below.split("\n") if below else [])
        return got

    def header(self, m: re.Match[str]) -> HeaderFields:
        """Return what header ``m``'s bracket and labels give its record."""
        _, inner, raw_labels = m.groups()
        fields = self.header_fields.get((inner, raw_labels))
        if fields is None:
            state, minutes, leaked, locked, bubble = _parse_state(inner)
            fields = self.header_fields[inner, raw_labels] = (
                state,
                minutes,
                True if leaked else self.unmarked,
                locked,
                bubble,
                self.labels_of(m),
            )
        return fields

    def record(self, m: re.Match[str], entry: Entry) -> GoroutineRecord:
        """Build the record of the goroutine under header ``m`` that printed ``entry``."""
        return record(self.header(m), int(m.group(1)), entry)

    def stack_of(
        self, printed: tuple[str, ...], wrappers: list[int] | None, files: list[str]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Return the normalised stack and its sites for a stack as printed."""
        if wrappers and GOEXIT in printed:
            # Printed with every frame (GOTRACEBACK=system): profiles never show
            # the compiler's wrapper functions, so drop them here too.
            key = tuple(n for i, n in enumerate(printed) if i not in wrappers)
            files = [f for i, f in enumerate(files) if i not in wrappers]
        else:
            key = printed
        stack = self.stacks.get(key)
        if stack is None:
            normal = [_dump_name(n, self.names) for n in key]
            kept = kept_positions(normal)
            stack = self.stacks[key] = tuple(normal[i] for i in kept)
            # "\t/src/main.go:42 +0x1d fp=...": the first word is the file:line.
            self.stack_sites[key] = tuple(
                files[i].split(None, 1)[0] if i < len(files) and files[i].strip() else ""
                for i in kept
            )
        return stack, self.stack_sites[key]

    def labels_of(self, m: re.Match[str]) -> tuple[tuple[str, str], ...]:
        raw_labels = m.group(3)
        if not raw_labels:
            return ()
        got = self.label_sets.get(raw_labels)
        if got is None:
            try:
                got = self.label_sets[raw_labels] = parse_traceback_labels(raw_labels)
            except ValueError as exc:
                raise ProfileError(
                    self.source, f"goroutine {m.group(1)}: malformed labels {raw_labels!r}: {exc}"
                ) from exc
        return got

    def entry(
        self,
        own: bool,
        m: re.Match[str],
        frames: list[str],
        wrappers: list[int] | None,
        created_by: str | None,
        creator_id: int | None,
        files: list[str],
    ) -> Entry:
        printed = tuple(frames)
        stack, sites = self.stack_of(printed, wrappers, files)
        return own, m, printed, stack, sites, created_by, creator_id

    def fail(self, m: re.Match[str], what: str, line: str) -> ProfileError:
        if line[:1] == UNINDENTED:
            return ProfileError(
                self.source,
                f"goroutine {m.group(1)}: inconsistent indentation: {line[1:]!r}, "
                f"expected {self.indent!r}",
            )
        return ProfileError(self.source, f"goroutine {m.group(1)}: expected {what}, got {line!r}")

    def check_file(self, m: re.Match[str], line: str) -> None:
        reason = _bad_file_line(line)
        if reason:
            raise ProfileError(self.source, f"goroutine {m.group(1)}: {reason} in {line.strip()!r}")
        self.checked_files.add(line)

    def creator(self, m: re.Match[str], line: str) -> tuple[str, int | None]:
        cr = self.creators.get(line)
        if cr is None:
            cm = _CREATED_BY.match(line)
            if cm is None:
                raise ProfileError(self.source, f"goroutine {m.group(1)}: malformed {line!r}")
            cr = self.creators[line] = (
                normalise_function(cm.group(1)),
                int(cm.group(2)) if cm.group(2) else None,
            )
        return cr

    def call(self, m: re.Match[str], line: str) -> str:
        """Return a call line's function, checking its arguments are what Go prints.

        Go prints arguments as hex words and ``{...}`` aggregates, never with
        parentheses inside, so the last ``(`` opens the argument list.
        """
        i = line.rfind("(")
        if i <= 0:
            return line
        args = line[i + 1 : -1]
        if args not in self.good_arguments:
            bad = _bad_arguments(args)
            if bad:
                raise ProfileError(self.source, f"goroutine {m.group(1)}: {bad} in {line!r}")
            self.good_arguments.add(args)
        return line[:i]

    def read(self, m: re.Match[str], lines: list[str]) -> tuple[list[Entry], bool]:
        """Read the lines below a goroutine header; return its entries and whether the dump ended.

        Go prints each goroutine as: header; (call line, file line)...; maybe
        "created by" and its file line. A line out of that order inside a
        goroutine means the text is not a dump; after a complete frame it ends one.
        """
        header_match = HEADER.match
        entries: list[Entry] = []
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
                if line.endswith(")") and first != UNINDENTED:
                    frames.append(self.call(m, line))
                    files.append("")
                    state = _AFTER_CALL
                elif first == "c" and line.startswith("created by "):
                    created_by, creator_id = self.creator(m, line)
                    state = _AFTER_CREATED
                elif first == ".":
                    continue  # "...N frames elided...": what remains still identifies the group
                elif first == "g" and (m2 := header_match(line)) is not None:
                    # No blank line between two goroutines.
                    entries.append(
                        self.entry(own, m, frames, wrappers, created_by, creator_id, files)
                    )
                    self.labels_of(m)  # a bad label is reported before the next goroutine's lines
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
                    raise self.fail(m, "a file after a function", line)
                if line not in self.checked_files:
                    self.check_file(m, line)
                # <autogenerated> code is a wrapper the profiles never show.
                if "<autogenerated>" in line and line.lstrip()[:1] == "<":
                    wrappers = (wrappers or []) + [len(frames) - 1]
                files[-1] = line
                state = _AFTER_FILE
            elif state == _AFTER_HEADER:
                if line.endswith(")") and first not in "\t " + UNINDENTED:
                    frames.append(self.call(m, line))
                    files.append("")
                    state = _AFTER_CALL
                elif line.strip() == _UNAVAILABLE:
                    state = _AFTER_UNAVAILABLE
                elif line.startswith("non-Go function"):
                    state = _AFTER_FILE  # a cgo frame, printed without a file line
                elif not (first not in "\t " + UNINDENTED and _NOISE.match(line)):
                    raise self.fail(m, "a function after a goroutine header", line)
            elif state == _AFTER_CREATED:
                if first != "\t" and first != " ":
                    raise self.fail(m, "a file after a created line", line)
                if line not in self.checked_files:
                    self.check_file(m, line)
                state = _AFTER_CREATOR_FILE
            elif state == _AFTER_UNAVAILABLE:
                if first != "c" or not line.startswith("created by "):
                    raise self.fail(m, "an empty line after unavailable stack", line)
                created_by, creator_id = self.creator(m, line)
                state = _AFTER_CREATED
            elif state == _AFTER_CREATOR_FILE:
                if first == "[" and line.startswith("[originating from goroutine"):
                    state = _ANCESTORS
                elif first == "g" and (m2 := header_match(line)) is not None:
                    entries.append(
                        self.entry(own, m, frames, wrappers, created_by, creator_id, files)
                    )
                    self.labels_of(m)  # a bad label is reported before the next goroutine's lines
                    own, m, frames, files, wrappers = False, m2, [], [], None
                    created_by = creator_id = None
                    state = _AFTER_HEADER
                elif not _NOISE.match(line):
                    ended = True
                    break
            # _ANCESTORS: the rest of the block is other goroutines' stacks.
        entries.append(self.entry(own, m, frames, wrappers, created_by, creator_id, files))
        return entries, ended


def record(fields: HeaderFields, gid: int, entry: Entry) -> GoroutineRecord:
    """Build the record of goroutine ``gid``, whose header gave ``fields``, from its entry."""
    _, _, printed, stack, sites, created_by, creator_id = entry
    state, minutes, leaked, locked, bubble, labels = fields
    return new_record(
        GoroutineRecord,
        (
            1,
            stack,
            created_by,
            state,
            minutes,
            leaked,
            gid,
            creator_id,
            labels,
            locked,
            bubble,
            printed,
            sites,
        ),
    )
