"""Read a full goroutine dump (``debug=2``), alone or inside a crash report.

The dump is what Go prints on a crash, one goroutine at a time:
``goroutine 7 [chan receive, 15 minutes]:``, then each call and its file
line, then ``created by`` and its file line. Go 1.27 adds the goroutine's
labels (``goroutine 7 [select] {tenant: a, "k 2": "v\\"x"}:``),
``GOTRACEBACK=system`` adds ``gp=... m=...``, Go 1.26+ marks leaks
(``[chan receive (leaked)]``) and synctest bubbles (``, synctest bubble 3``).

The input may be a whole crash report (``panic:``, ``fatal error:``,
``SIGQUIT: quit`` and registers around the goroutines) or a dump pasted from
a test log with every line indented: the goroutine section is found in it and
the rest ignored. Only the first section is read, as panicparse does.
Inside a goroutine Go's order is required (a call line, then its file line;
``created by``, then its file line) and call arguments must be what Go
prints: text breaking it there is refused, with the goroutine and line named,
for the reasons panicparse refuses it. After a complete frame any other text
ends the dump (``exit status 2`` after a ``go run`` crash).
"""

from __future__ import annotations

import re

from cardguard.errors import ProfileError
from cardguard.pprof.goroutines.model import GoroutineRecord, GoroutineSnapshot
from cardguard.pprof.goroutines.normalise import GOEXIT, kept_positions
from cardguard.pprof.goroutines.text import decode_text, parse_traceback_labels
from cardguard.pprof.heap import normalise_function

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


def parse_debug2(data: bytes, source: str, kind: str | None) -> GoroutineSnapshot:
    """Read a goroutine dump: one record per goroutine, with the text before it as the preamble.

    Raises:
        ProfileError: no dump in the text, or a goroutine printed out of Go's order.
    """
    text = decode_text(data, source)
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
        if wrappers and GOEXIT in printed:
            # Printed with every frame (GOTRACEBACK=system): profiles never show
            # the compiler's wrapper functions, so drop them here too.
            key = tuple(n for i, n in enumerate(printed) if i not in wrappers)
            files = [f for i, f in enumerate(files) if i not in wrappers]
        else:
            key = printed
        stack = stacks.get(key)
        if stack is None:
            normal = [_dump_name(n, names) for n in key]
            kept = kept_positions(normal)
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
                got = label_sets[raw_labels] = parse_traceback_labels(raw_labels)
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
