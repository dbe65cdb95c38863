"""Read a goroutine profile in its ``debug=1`` form: counted stacks with their frames and labels.

``goroutine profile: total 12``, then per stack ``N @ 0x... 0x...``, an
optional ``# labels: {"k":"v"}`` line and one ``#\t0xPC\tfunc+0xOFF\tfile:line``
line per frame. Go hides the runtime frames at the top of each stack here.
"""

from __future__ import annotations

import re

from cardguard.errors import ProfileError
from cardguard.pprof.goroutines.model import KINDS, GoroutineRecord, GoroutineSnapshot
from cardguard.pprof.goroutines.normalise import kept_positions
from cardguard.pprof.goroutines.text import decode_text, parse_label_map
from cardguard.pprof.heap import normalise_function

HEADER = re.compile(rb"^(\w+) profile: total (\d+)\s*$")
_LABELS = "# labels: "
_OFFSET = re.compile(r"\+0x[0-9a-f]+$")


def parse_debug1(data: bytes, source: str, kind: str | None) -> GoroutineSnapshot:
    """Read a goroutine or goroutineleak profile's ``debug=1`` text.

    Raises:
        ProfileError: not that text, or its header's total is not what its stacks count.
    """
    text = decode_text(data, source)
    lines = text.split("\n")
    m = HEADER.match(lines[0].encode())
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
        kept = kept_positions(frames)
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
            if line.startswith(_LABELS):
                try:
                    labels = parse_label_map(line[len(_LABELS) :].strip())
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
