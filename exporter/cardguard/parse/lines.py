"""What the text and OpenMetrics parsers share: line splitting, families, the fast path.

Pure. ``LineParser`` is the base of ``text.TextParser`` and
``openmetrics.OpenMetricsParser``; each subclass brings its format's line
grammar, its types' suffixes and its fast-path pattern (``blocks``).

Families: a sample belongs to the family whose name it extends by one of the
suffixes its type owns (``_bucket``/``_sum``/``_count`` of a text histogram,
``_total``/``_created`` of an OpenMetrics counter...), else to a family of
its own name (``untyped`` in text, ``unknown`` in OpenMetrics). Memory: each
parser remembers a bounded number of family names (``FAMILY_MEMORY``, the
most recent), so it does not grow with millions of families; a family
forgotten that way and met again starts anew.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator
from typing import ClassVar

from cardguard.errors import ParseError
from cardguard.parse.blocks import (
    FIRST_NAME,
    GROUP_1,
    newlines,
    unescaped_label_values,
    valid_utf8,
)
from cardguard.parse.model import Family, Sample, SampleBlock, ScanEvent
from cardguard.parse.tokens import LineError

# What a format's line reader returns for a sample line: name, labels, value, timestamp.
SampleLine = tuple[str, list[tuple[str, str]], float, float | None]


def longest_first(suffixes: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Every non-empty suffix of a format's table, longest first ("_gcount" before "_count")."""
    return tuple(sorted({s for ss in suffixes.values() for s in ss if s}, key=len)[::-1])


class _FamilyState:
    """What a parser remembers about one family name."""

    __slots__ = ("announced", "help", "line", "type", "unit")

    def __init__(self, ftype: str, line: int) -> None:
        self.type = ftype
        self.help: str | None = None
        self.unit: str | None = None
        self.announced = False
        self.line = line


class LineParser:
    """Line splitting, family bookkeeping and the fast path, common to both text formats.

    It remembers at most ``FAMILY_MEMORY`` family names (the most recent), so
    its memory is bounded on pages with millions of families.
    """

    FAMILY_MEMORY = 20_000
    # Set by each format: sample-name suffixes each type owns ("" is the bare
    # family name), the same longest first, the type of a family without a
    # TYPE line, and the fast path's line patterns (``blocks``: unescaped, escaped).
    SUFFIXES: ClassVar[dict[str, tuple[str, ...]]]
    ALL_SUFFIXES: ClassVar[tuple[str, ...]]
    UNTYPED: ClassVar[str]
    UNESCAPED_LINE: ClassVar[re.Pattern[bytes]]
    FAST_LINE: ClassVar[re.Pattern[bytes]]

    def __init__(self, data: bytes, source: str, chunk_bytes: int) -> None:
        self.data = data
        self.source = source
        self.chunk_bytes = chunk_bytes
        # Instance attributes: read on every sample line, faster than class ones.
        self.suffixes = self.SUFFIXES
        self.all_suffixes = self.ALL_SUFFIXES
        self.untyped = self.UNTYPED
        self.unescaped_line = self.UNESCAPED_LINE
        self.fast_line = self.FAST_LINE
        # OrderedDict: dropping the oldest is O(1) (a dict slows down when emptied from the front).
        self.fams: OrderedDict[str, _FamilyState] = OrderedDict()
        self.pending: str | None = None  # family whose metadata is being read
        self.ended = False

    def error(self, line: int, message: str) -> ParseError:
        return ParseError(self.source, line, message)

    # -- families

    def family(self, name: str, lineno: int) -> _FamilyState:
        """The state of ``name``, created untyped if new; forgets the oldest past the cap."""
        fam = self.fams.get(name)
        if fam is None:
            fam = self.fams[name] = _FamilyState(self.untyped, lineno)
            if len(self.fams) > self.FAMILY_MEMORY:
                oldest, state = self.fams.popitem(last=False)
                if oldest == self.pending:
                    self.fams[oldest] = state
        return fam

    def announce_pending(self, unless: str | None) -> list[Family]:
        """Announce a family that had metadata but no samples once another begins."""
        name = self.pending
        if name is None or name == unless:
            return []
        self.pending = None
        fam = self.fams.get(name)
        if fam is None or fam.announced:
            return []
        fam.announced = True
        return [Family(name, fam.type, fam.help, fam.unit, fam.line)]

    def metadata(self, name: str, kind: str, value: str, lineno: int) -> list[Family]:
        """Record a HELP, TYPE or UNIT line for ``name``.

        Metadata may come after the family's samples (Prometheus keeps the
        latest); a changed type starts a new family of that name (client_golang
        serves a gauge and a counter both named go_memstats_alloc_bytes, one
        after the other, on OpenMetrics pages).
        """
        events = self.announce_pending(name)
        fam = self.family(name, lineno)
        if not fam.announced:
            self.pending = name
        if kind == "HELP":
            fam.help = value
        elif kind == "UNIT":
            fam.unit = value
        elif value != fam.type:
            fam.type = value
            if fam.announced:
                fam.announced = False
                fam.line = lineno
                self.pending = name
        return events

    def family_of(self, name: str, lineno: int) -> tuple[str, Family | None]:
        """The family a sample named ``name`` belongs to, and its announcement if first."""
        fams = self.fams
        fname = name
        fam = fams.get(name)
        if fam is None:
            for suffix in self.all_suffixes:
                if name.endswith(suffix):
                    base = fams.get(name[: -len(suffix)])
                    if base is not None and suffix in self.suffixes.get(base.type, ()):
                        fname, fam = name[: -len(suffix)], base
                        break
            if fam is None:
                fam = self.family(name, lineno)
        event = None
        if not fam.announced:
            fam.announced = True
            if self.pending == fname:
                self.pending = None
            event = Family(fname, fam.type, fam.help, fam.unit, fam.line)
        return fname, event

    def block_names(self, fam: str) -> list[bytes]:
        """The sample names a block of family ``fam`` may hold: those ``family_of`` maps to it."""
        out = [fam.encode()]
        for suffix in self.suffixes.get(self.fams[fam].type, ()):
            if suffix and fam + suffix not in self.fams:
                out.append((fam + suffix).encode())
        return out

    def sample_events(
        self, name: str, labels: list[tuple[str, str]], value: float, ts: float | None, lineno: int
    ) -> list[ScanEvent]:
        fam, event = self.family_of(name, lineno)
        events: list[ScanEvent] = list(self.announce_pending(fam))
        if event is not None:
            events.append(event)
        events.append(Sample(fam, name, tuple(labels), value, ts, lineno))
        return events

    # -- runs of sample lines: the fast path, else line by line

    def sample_run(self, start: int, end: int, lineno: int) -> Generator[ScanEvent, None, int]:
        """Yield blocks for [start, end), falling back to the strict parser per chunk.

        Returns how many newlines it read (each chunk's are counted once, by
        :meth:`chunk`: a count is a pass over the bytes).
        """
        if self.chunk_bytes <= 0:
            yield from self.strict_lines(start, end, lineno)
            return self.data.count(b"\n", start, end)
        data = self.data
        pos = start
        newlines = 0
        while pos < end and not self.ended:
            stop = min(pos + self.chunk_bytes, end)
            if stop < end:
                nl = data.rfind(b"\n", pos, stop)
                stop = end if nl < 0 else nl + 1
            counted = yield from self.chunk(pos, stop, lineno)
            lineno += counted
            newlines += counted
            pos = stop
        return newlines

    def chunk(self, start: int, stop: int, lineno: int) -> Generator[ScanEvent, None, int]:
        """Yield [start, stop) as one block if it has the fast path's shape, else line by line.

        Returns how many newlines [start, stop) holds.
        """
        data = self.data
        piece = data[start:stop]
        count = newlines(piece)
        # Line range without the final newline.
        end = stop - 1 if stop > start and data[stop - 1] == 0x0A else stop
        lines = count - (stop - end) + 1
        # A lone line costs less line by line than as a block.
        first = FIRST_NAME.match(data, start, end) if lines > 1 else None
        if first is not None:
            fam, event = self.family_of(first.group().decode("ascii"), lineno)
            valid, labels = self.validated(fam, piece, start, end, lines)
            if valid:
                yield from self.announce_pending(fam)
                if event is not None:
                    yield event
                yield SampleBlock(fam, data, start, end, lineno, lines, labels)
                return count
            if event is not None:
                # Undo the announcement; the strict path below re-announces in order.
                self.fams[fam].announced = False
        yield from self.strict_lines(start, stop, lineno)
        return count

    def validated(
        self, fam: str, piece: bytes, start: int, end: int, lines: int
    ) -> tuple[bool, dict[bytes, set[bytes]] | None]:
        """Whether the ``lines`` lines of ``piece`` (data[start:end] and its newline) form a block.

        They must be sample lines of family ``fam`` with the fast path's
        shape. Also returns each label's distinct values where the unescaped
        pattern read them (``blocks.unescaped_label_values``), None where the
        escaped pattern validated the lines.
        """
        if self.counted_names(self.block_names(fam), start, end) != lines or not valid_utf8(piece):
            return False, None
        if b"\\" not in piece:
            pairs, matched = self.unescaped_line.subn(GROUP_1, piece)
            if matched != lines:
                # The escaped pattern accepts no line the unescaped one refuses.
                return False, None
            labels = unescaped_label_values(pairs)
            if labels is not None:
                return True, labels
        return self.fast_line.subn(b"", piece)[1] == lines, None

    def counted_names(self, names: list[bytes], start: int, end: int) -> int:
        """How many lines of data[start:end] start with one of ``names`` and then '{' or ' '.

        Label values of lines the fast regex accepts hold no raw newline, so
        every "\\n" followed by a name is a line start.
        """
        data = self.data
        total = 0
        for name in names:
            for follow in (b"{", b" "):
                total += data.count(b"\n" + name + follow, start, end)
                if data.startswith(name + follow, start):
                    total += 1
        return total

    def strict_lines(self, start: int, stop: int, lineno: int) -> Iterator[ScanEvent]:
        data = self.data
        pos = start
        while pos < stop:
            end = data.find(b"\n", pos, stop)
            if end < 0:
                end = stop
            try:
                events = self.line(data[pos:end], lineno)
            except LineError as exc:
                raise self.error(lineno, str(exc)) from None
            if self.ended:
                return
            yield from events
            pos = end + 1
            lineno += 1

    def line(self, line: bytes, lineno: int) -> list[ScanEvent]:
        raise NotImplementedError


def expand_block(
    block: SampleBlock, source: str, read: Callable[[bytes], SampleLine]
) -> Iterator[Sample]:
    """Expand a validated block into per-line samples (the slow, complete form).

    ``read`` is the format's reader of one sample line.
    """
    data = block.data
    pos = block.start
    lineno = block.first_line
    for _ in range(block.lines):
        end = data.find(b"\n", pos, block.end)
        if end < 0:
            end = block.end
        line = data[pos:end]
        try:
            name, labels, value, ts = read(line)
        except LineError as exc:  # pragma: no cover - the block was validated
            raise ParseError(source, lineno, str(exc)) from None
        yield Sample(block.family, name, tuple(labels), value, ts, lineno)
        pos = end + 1
        lineno += 1
