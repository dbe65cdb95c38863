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
Each goroutine's text is read by :mod:`.traceback`, which refuses text out of
Go's order; after a complete frame any other text ends the dump (``exit
status 2`` after a ``go run`` crash).

A dump is cut into goroutines in one pass, a regular expression splitting it
at every header that follows a blank line (:func:`_split_records`); the
goroutines of a dump parked in a few places print a few distinct texts, each
read once. A dump that pass cannot read as :func:`_read_blocks` would (an
indented one, or one refused somewhere) is read block by block instead.
"""

from __future__ import annotations

import re
from itertools import repeat
from operator import add, itemgetter
from typing import Any, cast

from cardguard.errors import ProfileError
from cardguard.pprof.goroutines.model import GoroutineRecord, GoroutineSnapshot
from cardguard.pprof.goroutines.text import decode_text
from cardguard.pprof.goroutines.traceback import (
    HEADER,
    UNINDENTED,
    Entry,
    Reader,
    new_record,
    record,
)

# Where a dump starts in a longer text: a header at the start of a line,
# possibly indented (pasted from a test log).
_HEADER_SEARCH = re.compile(
    r"^([ \t]*)goroutine \d+(?: [^\[\n]*?)? \[[^\]\n]*\][^\n]*:[ \t\r]*$", re.M
)
_HEADER_SEARCH_BYTES = re.compile(_HEADER_SEARCH.pattern.encode(), re.M)


def find_dump(text: str) -> tuple[int, str] | None:
    """Return (offset, indentation) of the first goroutine header in ``text``, or ``None``."""
    return _find(text)


def holds_dump(data: bytes) -> bool:
    """Return whether the text in ``data`` (UTF-8, errors replaced) holds a goroutine header."""
    return _find(data if data.isascii() else data.decode("utf-8", "replace")) is not None


def _find(text: str | bytes) -> tuple[int, str] | None:
    """:func:`find_dump` in text or in ASCII bytes, searched as they are: the same offsets."""
    if isinstance(text, bytes):
        mb = _HEADER_SEARCH_BYTES.search(text)
        return None if mb is None else (mb.start(), mb.group(1).decode("ascii"))
    m = _HEADER_SEARCH.search(text)
    return None if m is None else (m.start(), m.group(1))


def _not_a_dump(text: str) -> str:
    """Say why ``text`` holds no goroutine dump, naming what it looks like instead."""
    if "WARNING: DATA RACE" in text:
        return "a data race report, not a goroutine dump (no 'goroutine N [state]:' line)"
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            return f"line {lineno}: expected 'goroutine N [state]:', got {line[:80]!r}"
    return "no goroutines in the dump"


def _read_blocks(reader: Reader, body: str) -> list[GoroutineRecord]:
    """Read a dump block by block (a block ends at a blank line): one record per goroutine.

    The blocks are cut one at a time, so no list of them all is ever held.
    """
    records: list[GoroutineRecord] = []
    append = records.append
    header_match = HEADER.match
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
        entries, ended = reader.text(m, body[newline + 1 : end])
        for entry in entries:
            append(reader.record(m if entry[0] else entry[1], entry))
        if ended:
            break
    return records


# A goroutine's header after a blank line: its id and the rest of its line.
# Every header HEADER accepts there starts so, and nothing else starts a
# goroutine after a blank line: the text up to the next match is one goroutine's.
_SPLIT = "\n\ngoroutine (\\d+) ([^\n]*)"
_SPLIT_TEXT = re.compile(_SPLIT)
_SPLIT_BYTES = re.compile(_SPLIT.encode())
# The dump's first header, at the start of its text.
_FIRST_TEXT = re.compile("goroutine (\\d+) ([^\n]*)")
_FIRST_BYTES = re.compile(_FIRST_TEXT.pattern.encode())
_FIRST_HALF = itemgetter(0)
_SECOND = itemgetter(1)


def _below(piece: str) -> tuple[str, bool]:
    """Cut what follows a header line in the split: (the goroutine's text, whether the dump ends).

    The text is what :func:`_read_blocks` reads below the header: up to the
    first blank line, without the newlines around it. Anything but newlines
    past that blank line starts no goroutine (the split would have cut there),
    so the dump ends with this goroutine.
    """
    cut = piece.find("\n\n")
    if cut < 0:
        return piece[1:].rstrip("\n"), False
    return piece[1:cut], bool(piece[cut:].strip("\n"))


def _split_records(reader: Reader, body: str | bytes) -> list[GoroutineRecord] | None:
    """Read a dump as :func:`_read_blocks` does, with one split over the whole of it.

    A regular expression cuts every goroutine's id, header and text apart in
    C; each distinct header and text is read once, at its first goroutine;
    the records are then built column by column. ``body`` is ASCII bytes
    (never copied as a ``str``) or text. ``None`` when its first line is no
    header.

    Raises:
        ProfileError: as :func:`_read_blocks`, but maybe for a later goroutine,
            or for text past the dump's end: the caller reads the dump again
            block by block to say what and where.
    """
    fm: re.Match[Any] | None
    if isinstance(body, bytes):
        pieces: list[Any] = _SPLIT_BYTES.split(body)
        fm = _FIRST_BYTES.match(pieces[0])
    else:
        pieces = _SPLIT_TEXT.split(body)
        fm = _FIRST_TEXT.match(pieces[0])
    if fm is None:
        return None
    gids: list[Any] = [fm.group(1), *pieces[1::3]]
    tails: list[Any] = [fm.group(2), *pieces[2::3]]
    texts: list[Any] = [pieces[0][fm.end() :], *pieces[3::3]]
    del pieces
    n = len(gids)
    # Each distinct header tail and text, by the index of its first goroutine.
    first_tail = dict(zip(reversed(tails), range(n - 1, -1, -1), strict=True))
    first_text = dict(zip(reversed(texts), range(n - 1, -1, -1), strict=True))
    # Each goroutine's text as that index: compared later as an int, not as its bytes.
    text_at = list(map(first_text.__getitem__, texts))
    del texts
    # Block by block, the dump ends before the first goroutine whose header
    # HEADER refuses, and with the first whose text ends it.
    matches = {
        tail: HEADER.match(f"goroutine {_text(gids[i])} {_text(tail)}")
        for tail, i in first_tail.items()
    }
    end = min((i for tail, i in first_tail.items() if matches[tail] is None), default=n)
    read: dict[int, list[Entry]] = {}
    ends = []
    for piece, i in sorted(first_text.items(), key=_SECOND):
        if i >= end:
            break
        below, cut = _below(_text(piece))
        entries, ended = reader.text(cast("re.Match[str]", matches[tails[i]]), below)
        read[i] = entries
        if ended or cut:
            ends.append(i + 1)
    end = min(ends, default=end)
    del gids[end:], tails[end:], text_at[end:]
    headers = {
        tail: reader.header(m) for tail, m in matches.items() if first_tail[tail] < end and m
    }
    if any(len(entries) > 1 for entries in read.values()):
        # Goroutines printed without a blank line between them: each block's
        # first is under the block's header, the others under their own.
        records: list[GoroutineRecord] = []
        for gid, tail, t in zip(gids, tails, text_at, strict=True):
            own, *others = read[t]
            records.append(record(headers[tail], int(gid), own))
            records.extend(reader.record(e[1], e) for e in others)
        return records
    # A record is its header's fields and its text's, around its id: each
    # pair's two halves are put together once, and each record in C.
    halves = {}
    for tail, t in set(zip(tails, text_at, strict=True)):
        state, minutes, leaked, locked, bubble, labels = headers[tail]
        _, _, printed, stack, sites, created_by, creator_id = read[t][0]
        halves[tail, t] = (
            (1, stack, created_by, state, minutes, leaked),
            (creator_id, labels, locked, bubble, printed, sites),
        )
    pairs = list(map(halves.__getitem__, zip(tails, text_at, strict=True)))
    del tails, text_at
    fields = map(add, map(add, map(_FIRST_HALF, pairs), zip(map(int, gids))), map(_SECOND, pairs))
    return list(map(new_record, repeat(GoroutineRecord), fields))


def parse_debug2(data: bytes, source: str, kind: str | None) -> GoroutineSnapshot:
    """Read a goroutine dump: one record per goroutine, with the text before it as the preamble.

    Raises:
        ProfileError: no dump in the text, or a goroutine printed out of Go's order.
    """
    if kind is None:
        kind = "goroutine"
    # ASCII (nearly every dump) is read as bytes: the same characters at the same
    # offsets, and no copy of a large dump as a str.
    text: str | bytes = data if data.isascii() else decode_text(data, source)
    found = _find(text)
    if found is None:
        raise ProfileError(source, _not_a_dump(_text(text)))
    start, indent = found
    preamble = _text(text[:start]).strip()
    # Without any marker the runtime either cannot detect leaks (before Go
    # 1.26) or no detection ran yet: unknown, not "none leaked".
    unmarked: bool | None = False if b"(leaked)" in data else None
    body = text[start:]
    if isinstance(body, bytes):
        if b"\r" in body:
            body = body.replace(b"\r\n", b"\n")
    elif "\r" in body:
        body = body.replace("\r\n", "\n")
    records = None
    if not indent:
        try:
            records = _split_records(Reader(source, indent, unmarked), body)
        except ProfileError:
            records = None  # read again block by block, which says where
    if records is None:
        lines = _text(body)
        if indent:
            cut = len(indent)
            lines = "\n".join(
                line[cut:] if line.startswith(indent) else (UNINDENTED + line if line else line)
                for line in lines.split("\n")
            )
        records = _read_blocks(Reader(source, indent, unmarked), lines)
    if not records:
        raise ProfileError(source, "no goroutines in the dump")
    return GoroutineSnapshot(source, "debug2", kind, len(records), tuple(records), preamble)


def _text(text: str | bytes) -> str:
    """Text as it is, or ASCII bytes as text."""
    return text.decode("ascii") if isinstance(text, bytes) else text
