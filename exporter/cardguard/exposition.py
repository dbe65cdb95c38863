"""Parse Prometheus text format 0.0.4 and OpenMetrics 1.0 exposition pages.

Pure: bytes in, events out; no I/O. Two entry points:

``parse(data, fmt, source)``
    Stream of ``Family`` and ``Sample`` events, one ``Sample`` per sample line,
    with labels unescaped and values as floats. Rejects malformed input with
    ``ParseError(source, line, message)``.

``scan(data, fmt, source)``
    The same stream, except that runs of sample lines of one family that have
    the common shape (``name{l="v",...} value [timestamp]``) come as one
    ``SampleBlock`` that refers to a byte range of ``data`` instead of as
    per-line ``Sample`` objects. Every line of a block has been validated with
    one regular expression pass over the range, so a block is exactly as
    trustworthy as the per-line samples; lines of any other shape go through
    the strict per-line parser. Consumers that count (``cardinality``) read a
    block with ``block_label_pairs`` / ``block_series_keys`` without creating
    a Python object per sample. The bulk checks are the per-line parser's
    (syntax, UTF-8, family membership, numeric ``le``/``quantile``) except
    one: a label name repeated within one line is only caught per line, by
    ``parse``. OpenMetrics pages always take the strict path, because their
    semantic rules (histogram groups, exemplars, ordering) are checked per
    sample.

Format choice follows Prometheus: ``detect_format`` looks at the Content-Type
(``application/openmetrics-text`` means OpenMetrics, anything else the text
format) and, when there is no Content-Type (a file or stdin), at whether the
page ends with ``# EOF``. ``ACCEPT_HEADER`` is what Prometheus 2.x sends when
scraping, preferring OpenMetrics.

Checks the strict parser applies beyond syntax (OpenMetrics only): counter,
histogram and summary values not negative or NaN; ``le``/``quantile`` present
and valid; buckets in increasing ``le`` order with non-decreasing counts and a
``+Inf`` bucket, ``_count`` equal to it, ``_sum`` and ``_count`` together;
stateset values 0/1 and info values 1; exemplars only on ``_total`` and
``_bucket`` samples and at most 128 characters of labels; metadata before
samples and not repeated; families and label groups not interleaved; repeated
series only with non-decreasing timestamps. One leniency, for real pages:
metadata repeated after a family's samples starts a second family of the same
name (client_golang serves ``go_memstats_alloc_bytes`` as a gauge and, right
after it, as a counter; Prometheus scrapes that page). Conformance cases marked
bad that cardguard accepts anyway would be listed, with the reason, in
tests/test_conformance.py (there are none).

Memory: the text parser remembers a bounded number of family names (see
``_TextParser``) and the OpenMetrics parser a bounded number of finished
families and label groups (``_OMParser``), so neither grows with millions of
families or series.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from cardguard.errors import ParseError

Format = Literal["text", "openmetrics", "protobuf"]

ACCEPT_HEADER = (
    "application/openmetrics-text;version=1.0.0,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
# What Prometheus 2.42 sends with native histograms on: protobuf first (cardguard.exposition_proto).
ACCEPT_HEADER_PROTOBUF = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def accept_header(native_histograms: bool) -> str:
    """Return the Accept header Prometheus sends with native histograms on or off."""
    return ACCEPT_HEADER_PROTOBUF if native_histograms else ACCEPT_HEADER


TEXT_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
OM_TYPES = frozenset(
    {"counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown"}
)

# Sample-name suffixes each type owns, per format. "" is the bare family name.
_TEXT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "histogram": ("_bucket", "_sum", "_count", ""),
    "summary": ("", "_sum", "_count"),
}
_OM_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "unknown": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
}


@dataclass(frozen=True, slots=True)
class Family:
    """Start of a metric family: its name, type, and metadata as far as known.

    ``type`` is ``untyped`` (text) or ``unknown`` (OpenMetrics) when the page
    gave no TYPE line. ``line`` is where the family starts (1-based).
    """

    name: str
    type: str
    help: str | None
    unit: str | None
    line: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample line. ``timestamp`` is in seconds, ``None`` when absent."""

    family: str
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp: float | None
    line: int


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """Validated sample lines of one family, as the byte range ``data[start:end]``.

    ``end`` is the offset of the last line's end (its newline, or the end of
    the data). ``lines`` counts the sample lines in the range; ``first_line``
    is the 1-based number of the first.
    """

    family: str
    data: bytes
    start: int
    end: int
    first_line: int
    lines: int


Event = Family | Sample
ScanEvent = Family | Sample | SampleBlock


def detect_format(content_type: str | None, data: bytes) -> Format:
    """Choose the parser as Prometheus does: by media type, else sniff for ``# EOF``.

    Without a media type, a page that cannot be text but is framed as
    protobuf is protobuf (``exposition_proto.looks_like_protobuf``).
    """
    from cardguard import exposition_proto  # it builds on this module's event types

    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        if media == exposition_proto.MEDIA_TYPE:
            return "protobuf"
        return "openmetrics" if media == "application/openmetrics-text" else "text"
    if exposition_proto.looks_like_protobuf(data):
        return "protobuf"
    tail = data[-64:].rstrip(b"\n")
    return "openmetrics" if tail.endswith(b"# EOF") and _last_line(tail) == b"# EOF" else "text"


def _last_line(data: bytes) -> bytes:
    return data.rsplit(b"\n", 1)[-1]


def parse(data: bytes, fmt: Format, source: str, *, fast: bool = True) -> Iterator[Event]:
    """Yield ``Family`` and ``Sample`` events for every line of ``data``.

    ``fast=False`` sends every line through the strict per-line parser (the
    tests compare both paths).
    """
    for event in scan(data, fmt, source, fast=fast):
        if isinstance(event, SampleBlock):
            yield from _block_samples(event, source)
        else:
            yield event


def scan(
    data: bytes, fmt: Format, source: str, *, chunk_bytes: int = 1 << 20, fast: bool = True
) -> Iterator[ScanEvent]:
    """Yield events, with common-shape sample runs of text pages as ``SampleBlock``.

    Runs are cut into blocks of about ``chunk_bytes`` so that what a consumer
    derives from one block stays small. ``fast=False`` yields no blocks.
    """
    if fmt == "openmetrics":
        yield from _OMParser(data, source).run()
    elif fmt == "protobuf":
        from cardguard import exposition_proto  # it builds on this module's event types

        yield from exposition_proto.parse(data, source)
    elif fmt == "text":
        yield from _TextParser(data, source, chunk_bytes if fast else 0).run()
    else:
        raise ValueError(f"unknown exposition format {fmt!r}")


# --------------------------------------------------------------------------
# Lexical pieces shared by both formats.

_METRIC_NAME = re.compile(rb"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(rb"[a-zA-Z_][a-zA-Z0-9_]*")
# A quoted label value, unrolled-loop form: any backslash escape is accepted
# (the OpenMetrics conformance cases keep unknown escapes such as \z verbatim).
_QUOTED = rb'"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"'
_QUOTED_RE = re.compile(_QUOTED)
_OM_NUMBER = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))"
)
_OM_REAL = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TEXT_NUMBER = _OM_NUMBER
_TEXT_HEX = re.compile(rb"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")
_TEXT_TS = re.compile(rb"-?[0-9]+")
_BLANK = b" \t"

# The common shape of a text-format sample line, used to validate whole runs
# of lines in one pass; group 1 is the metric name.
# Possessive quantifiers: nothing here needs backtracking, and telling the
# regex engine so makes these passes about a third faster.
# The value and optional timestamp that end such a line (after one space).
_FAST_VALUE = (
    rb"[+-]?+(?:[0-9]++\.?+[0-9]*+(?:[eE][+-]?+[0-9]++)?+"
    rb"|\.[0-9]++(?:[eE][+-]?+[0-9]++)?+|Inf|NaN)"
    rb"(?: -?[0-9]++)?+$"
)
_FAST_LINE = re.compile(
    rb"^([a-zA-Z_:][a-zA-Z0-9_:]*+)"
    rb"(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*+="
    + _QUOTED
    + rb"(?:,[a-zA-Z_][a-zA-Z0-9_]*+="
    + _QUOTED
    + rb")*+,?)?\})? "
    + _FAST_VALUE,
    re.MULTILINE,
)
# " value [timestamp]" at the end of a line whose series part ends in a name character or
# "}". The space comes first so the regex engine hunts for it as a literal (several times
# faster); the lookbehind then checks the character before it.
_VALUE_AT_END = re.compile(rb" (?<=[}a-zA-Z0-9_:] )" + _FAST_VALUE, re.MULTILINE)
# One label pair inside validated lines, as the raw text ``name="escaped value"``.
# Anchoring on the '{' or ',' before the name keeps the search from retrying
# inside every word of a long value; validated lines keep it in step.
_PAIR = re.compile(rb"[{,]([a-zA-Z_][a-zA-Z0-9_]*+=" + _QUOTED + rb")")
# Values of the bucket/quantile label in validated lines, per family type.
# The name comes first so the regex engine can hunt for its literal text; the
# lookbehind then checks it starts a label pair (after '{' or ',').
_BOUND_VALUES = {
    "histogram": re.compile(rb"le=(?<=[{,]le=)(" + _QUOTED + rb")"),
    "summary": re.compile(rb"quantile=(?<=[{,]quantile=)(" + _QUOTED + rb")"),
}
# Series identity (name and label block) at the start of validated lines.
_SERIES_KEY = re.compile(rb"^[^ {\n]+(?:\{[^\n]*\})?", re.MULTILINE)
# Name and value token of a validated fast-path line: the label block, if any,
# ends at the line's last "}" because values and timestamps never contain one.
_NAME_VALUE = re.compile(rb"^([^ {\n]+)(?:\{[^\n]*\})? (\S+)", re.MULTILINE)


def _valid_utf8(data: bytes, start: int, end: int) -> bool:
    """Whether data[start:end] is UTF-8 (a copy and a word-at-a-time ASCII check, usually)."""
    chunk = data[start:end]
    if chunk.isascii():
        return True
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def block_label_pairs(block: SampleBlock) -> list[bytes]:
    """Return every label pair of the block as raw ``name="escaped value"`` bytes, in order.

    ``split_pair`` splits one; deduplicating the raw pairs first is much
    cheaper than splitting all of them.
    """
    return _PAIR.findall(block.data, block.start, block.end)


def split_pair(pair: bytes) -> tuple[bytes, bytes]:
    """Split a raw pair from ``block_label_pairs`` into name and escaped value."""
    name, _, value = pair.partition(b'="')
    return name, value[:-1]


def block_series_keys(block: SampleBlock) -> list[bytes]:
    """Return each line's series identity (metric name plus label block), raw bytes."""
    return _SERIES_KEY.findall(block.data, block.start, block.end)


def fast_lines(data: bytes, start: int, end: int) -> int:
    """Count the lines of ``data[start:end]`` that have the fast path's common shape.

    ``end`` excludes the last line's newline. When the count equals the number
    of lines, every line is a valid sample line whose value and timestamp
    :func:`strip_values` removes, leaving exactly its series identity.
    """
    return len(_FAST_LINE.findall(data, start, end))


def strip_values(data: bytes) -> tuple[bytes, int]:
    """Remove the value and timestamp (fast-path grammar) from the end of every line.

    Returns the remaining text and how many lines lost a value. On lines that
    :func:`fast_lines` counts, what remains is the line's series identity.
    """
    return _VALUE_AT_END.subn(b"", data)


def block_values(block: SampleBlock) -> Iterator[tuple[str, float]]:
    """Yield ``(sample name, value)`` for each line of the block, without decoding labels.

    Much cheaper than expanding the block into ``Sample`` objects when only
    values are needed (summing request counters, reading runtime gauges).
    """
    for name, value in _NAME_VALUE.findall(block.data, block.start, block.end):
        yield name.decode("ascii"), float(value)


def unescape(raw: bytes) -> str:
    """Decode an escaped label value: ``\\\\``, ``\\"`` and ``\\n``; other escapes stay."""
    text = raw.decode("utf-8", "replace")
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "n":
                out.append("\n")
            elif nxt in '"\\':
                out.append(nxt)
            else:
                out.append(c + nxt)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class _LineError(Exception):
    """A problem in one line; the caller adds source and line number."""


_PAIR_TEXT = rb"[a-zA-Z_][a-zA-Z0-9_]*+=" + _QUOTED
# A whole label set of the plain shape (no blanks), checked in one match.
_LABELSET = {
    True: re.compile(rb"\{(?:" + _PAIR_TEXT + rb"(?:," + _PAIR_TEXT + rb")*+)?\}"),
    False: re.compile(rb"\{(?:" + _PAIR_TEXT + rb"(?:," + _PAIR_TEXT + rb")*+,?)?\}"),
}


def _parse_labels(line: bytes, pos: int, om: bool) -> tuple[tuple[tuple[str, str], ...], int]:
    """Parse ``{...}`` starting at ``line[pos] == '{'``; return labels and the offset after '}'."""
    m = _LABELSET[om].match(line, pos)
    if m is not None:
        # Plain shape: split with one findall; anything odd (bad UTF-8, a repeated
        # name) goes to the character loop below, which names the problem.
        end = m.end()
        out: list[tuple[str, str]] = []
        for pair in _PAIR.findall(line, pos, end):
            name, _, quoted = pair.partition(b"=")
            raw = quoted[1:-1]
            try:
                value = raw.decode("utf-8")
            except UnicodeDecodeError:
                break
            out.append((name.decode("ascii"), unescape(raw) if "\\" in value else value))
        else:
            if len({k for k, _ in out}) == len(out):
                return tuple(out), end
    labels: list[tuple[str, str]] = []
    seen: set[str] = set()
    pos += 1
    n = len(line)
    while True:
        if not om:
            while pos < n and line[pos] in _BLANK:
                pos += 1
        if pos < n and line[pos] == 0x7D:  # '}'
            if om and labels and line[pos - 1] == 0x2C:  # ','
                raise _LineError("trailing comma in label set")
            return tuple(labels), pos + 1
        m = _LABEL_NAME.match(line, pos)
        if m is None:
            raise _LineError(f"expected a label name at column {pos + 1}")
        name = m.group().decode("ascii")
        pos = m.end()
        if not om:
            while pos < n and line[pos] in _BLANK:
                pos += 1
        if pos >= n or line[pos] != 0x3D:  # '='
            raise _LineError(f"expected '=' after label name {name!r}")
        pos += 1
        if not om:
            while pos < n and line[pos] in _BLANK:
                pos += 1
        q = _QUOTED_RE.match(line, pos)
        if q is None:
            raise _LineError(f"expected a quoted value for label {name!r}")
        raw = line[q.start() + 1 : q.end() - 1]
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _LineError(f"label {name!r} value is not valid UTF-8") from exc
        if name in seen:
            raise _LineError(f"duplicate label name {name!r}")
        seen.add(name)
        labels.append((name, unescape(raw)))
        pos = q.end()
        if not om:
            while pos < n and line[pos] in _BLANK:
                pos += 1
        if pos < n and line[pos] == 0x2C:
            pos += 1
            if om and pos < n and line[pos] == 0x7D:
                raise _LineError("trailing comma in label set")
            continue
        if pos < n and line[pos] == 0x7D:
            return tuple(labels), pos + 1
        raise _LineError(f"expected ',' or '}}' after label {name!r}")


def _om_float(tok: bytes, what: str) -> float:
    if _OM_NUMBER.fullmatch(tok) is None:
        raise _LineError(f"invalid {what} {tok.decode('utf-8', 'replace')!r}")
    return float(tok)


def _text_float(tok: bytes) -> float:
    if _TEXT_NUMBER.fullmatch(tok) is not None:
        return float(tok)
    if _TEXT_HEX.fullmatch(tok) is not None:
        return float.fromhex(tok.decode("ascii"))
    raise _LineError(f"invalid value {tok.decode('utf-8', 'replace')!r}")


def _unescape_help(raw: bytes) -> str:
    return unescape(raw)


# --------------------------------------------------------------------------
# Text format 0.0.4


class _TextFamily:
    """What the text parser remembers about one family name."""

    __slots__ = ("announced", "help", "samples", "type", "typed")

    def __init__(self, ftype: str) -> None:
        self.type = ftype
        self.help: str | None = None
        self.typed = False
        self.samples = False
        self.announced = False


class _TextParser:
    """Prometheus text format 0.0.4, with the bulk fast path for sample runs.

    It remembers at most ``FAMILY_MEMORY`` family names (the most recent), so
    its memory is bounded on pages with millions of families. A family name
    forgotten that way and met again (only on pages that scatter a family's
    lines far apart) starts a new family, and a second TYPE line for it is not
    noticed.
    """

    FAMILY_MEMORY = 20_000

    def __init__(self, data: bytes, source: str, chunk_bytes: int) -> None:
        self.data = data
        self.source = source
        self.chunk_bytes = chunk_bytes
        # OrderedDict: dropping the oldest is O(1) (a dict slows down when emptied from the front).
        self.fams: OrderedDict[str, _TextFamily] = OrderedDict()
        self.pending: str | None = None  # family whose metadata is being read

    def error(self, line: int, message: str) -> ParseError:
        return ParseError(self.source, line, message)

    def run(self) -> Iterator[ScanEvent]:
        data = self.data
        n = len(data)
        pos = 0
        lineno = 1
        while pos < n:
            if data[pos] == 0x23:  # '#': one comment line
                end = data.find(b"\n", pos)
                if end < 0:
                    end = n
                yield from self.comment(data[pos:end], lineno)
                pos = end + 1
                lineno += 1
                continue
            # A run of non-comment lines up to the next line starting with '#'.
            run_end = data.find(b"\n#", pos)
            run_end = n if run_end < 0 else run_end + 1
            yield from self.sample_run(pos, run_end, lineno)
            lineno += data.count(b"\n", pos, run_end)
            pos = run_end
        yield from self.announce_pending(None, lineno)

    def family(self, name: str) -> _TextFamily:
        """The state of ``name``, created as untyped if new; forgets the oldest past the cap."""
        fam = self.fams.get(name)
        if fam is None:
            fam = self.fams[name] = _TextFamily("untyped")
            if len(self.fams) > self.FAMILY_MEMORY:
                oldest, state = self.fams.popitem(last=False)
                if oldest == self.pending:
                    self.fams[oldest] = state
        return fam

    def announce_pending(self, unless: str | None, lineno: int) -> list[Family]:
        """Announce a family that had metadata but no samples once another begins."""
        name = self.pending
        if name is None or name == unless:
            return []
        self.pending = None
        fam = self.fams.get(name)
        if fam is None or fam.announced:
            return []
        fam.announced = True
        return [Family(name, fam.type, fam.help, None, lineno)]

    def comment(self, line: bytes, lineno: int) -> list[Family]:
        parts = line[1:].lstrip(_BLANK)
        if parts.startswith(b"HELP") and (len(parts) == 4 or parts[4] in _BLANK):
            rest = parts[4:].lstrip(_BLANK)
            m = _METRIC_NAME.match(rest)
            if m is None or (m.end() < len(rest) and rest[m.end()] not in _BLANK):
                raise self.error(lineno, "HELP line without a valid metric name")
            name = m.group().decode("ascii")
            events = self.announce_pending(name, lineno)
            fam = self.family(name)
            if fam.help is not None:
                raise self.error(lineno, f"second HELP line for metric name {name!r}")
            fam.help = _unescape_help(rest[m.end() :].lstrip(_BLANK))
            if not fam.announced:
                self.pending = name
            return events
        if parts.startswith(b"TYPE") and (len(parts) == 4 or parts[4] in _BLANK):
            fields = parts[4:].split()
            if len(fields) != 2 or _METRIC_NAME.fullmatch(fields[0]) is None:
                raise self.error(lineno, "TYPE line must be '# TYPE <metric name> <type>'")
            name = fields[0].decode("ascii")
            ftype = fields[1].decode("ascii", "replace").lower()
            if ftype not in TEXT_TYPES:
                raise self.error(lineno, f"unknown metric type {ftype!r} for {name!r}")
            events = self.announce_pending(name, lineno)
            fam = self.family(name)
            if fam.samples:
                raise self.error(lineno, f"TYPE line for {name!r} after its samples")
            if fam.typed:
                raise self.error(lineno, f"second TYPE line for metric name {name!r}")
            fam.type = ftype
            fam.typed = True
            if not fam.announced:
                self.pending = name
            return events
        # Any other comment is ignored, as the text format allows.
        return []

    def family_of(self, name: str, lineno: int) -> tuple[str, Family | None]:
        fams = self.fams
        fname = name
        fam = fams.get(name)
        if fam is None:
            for suffix in ("_sum", "_count", "_bucket"):
                if name.endswith(suffix):
                    base = fams.get(name[: -len(suffix)])
                    if base is not None and suffix in _TEXT_SUFFIXES.get(base.type, ()):
                        fname, fam = name[: -len(suffix)], base
                        break
            if fam is None:
                fam = self.family(name)
        fam.samples = True
        event = None
        if not fam.announced:
            fam.announced = True
            if self.pending == fname:
                self.pending = None
            event = Family(fname, fam.type, fam.help, None, lineno)
        return fname, event

    def allowed_names(self, fam: str) -> frozenset[bytes]:
        suffixes = _TEXT_SUFFIXES.get(self.fams[fam].type, ("",))
        return frozenset((fam + s).encode() for s in suffixes)

    def sample_run(self, start: int, end: int, lineno: int) -> Iterator[ScanEvent]:
        """Yield blocks for [start, end), falling back to the strict parser per chunk."""
        if self.chunk_bytes <= 0:
            yield from self.strict_lines(start, end, lineno)
            return
        data = self.data
        pos = start
        while pos < end:
            stop = min(pos + self.chunk_bytes, end)
            if stop < end:
                nl = data.rfind(b"\n", pos, stop)
                stop = end if nl < 0 else nl + 1
            yield from self.chunk(pos, stop, lineno)
            lineno += data.count(b"\n", pos, stop)
            pos = stop

    def chunk(self, start: int, stop: int, lineno: int) -> Iterator[ScanEvent]:
        data = self.data
        # Line range without the final newline, so findall's '$' meets the last line.
        end = stop - 1 if stop > start and data[stop - 1] == 0x0A else stop
        lines = data.count(b"\n", start, end) + 1
        names = _FAST_LINE.findall(data, start, end)
        if len(names) == lines and _valid_utf8(data, start, end):
            distinct = set(names)
            first = names[0].decode("ascii")
            fam, event = self.family_of(first, lineno)
            if distinct <= self.allowed_names(fam) and self.bounds_valid(fam, start, end):
                if event is not None:
                    yield event
                yield SampleBlock(fam, data, start, end, lineno, lines)
                return
            if event is not None:
                # Undo the announcement; the strict path below re-announces in order.
                self.fams[fam].announced = False
        yield from self.strict_lines(start, stop, lineno)

    def bounds_valid(self, fam: str, start: int, end: int) -> bool:
        """Whether every ``le`` (histogram) or ``quantile`` (summary) value is a number.

        The search is not aligned on label pairs, but a raw '"' cannot occur
        inside a quoted value, so a false hit can only capture text with an '='
        in it, which fails here and sends the chunk to the strict parser.
        """
        bound = _BOUND_VALUES.get(self.fams[fam].type)
        if bound is None:
            return True
        for quoted in set(bound.findall(self.data, start, end)):
            try:
                float(quoted[1:-1])
            except ValueError:
                return False
        return True

    def strict_lines(self, start: int, stop: int, lineno: int) -> Iterator[ScanEvent]:
        data = self.data
        pos = start
        while pos < stop:
            end = data.find(b"\n", pos, stop)
            if end < 0:
                end = stop
            line = data[pos:end]
            if line.strip(_BLANK):
                if line.lstrip(_BLANK).startswith(b"#"):
                    yield from self.comment(line.lstrip(_BLANK), lineno)
                else:
                    yield from self.sample_line(line, lineno)
            pos = end + 1
            lineno += 1

    def sample_line(self, line: bytes, lineno: int) -> Iterator[ScanEvent]:
        try:
            name, labels, value, ts = self.split_line(line)
        except _LineError as exc:
            raise self.error(lineno, str(exc)) from None
        fam, event = self.family_of(name, lineno)
        if event is not None:
            yield event
        ftype = self.fams[fam].type
        try:
            if ftype == "histogram" and name.endswith("_bucket") and name != fam:
                _check_bound(labels, "le")
            elif ftype == "summary" and name == fam:
                _check_bound(labels, "quantile")
        except _LineError as exc:
            raise self.error(lineno, str(exc)) from None
        yield Sample(fam, name, labels, value, ts, lineno)

    def split_line(
        self, line: bytes
    ) -> tuple[str, tuple[tuple[str, str], ...], float, float | None]:
        line = line.strip(_BLANK)
        m = _METRIC_NAME.match(line)
        if m is None:
            raise _LineError("expected a metric name")
        name = m.group().decode("ascii")
        pos = m.end()
        n = len(line)
        while pos < n and line[pos] in _BLANK:
            pos += 1
        labels: tuple[tuple[str, str], ...] = ()
        if pos < n and line[pos] == 0x7B:  # '{'
            labels, pos = _parse_labels(line, pos, om=False)
        elif pos == m.end() and pos < n:
            raise _LineError(f"invalid character after metric name {name!r}")
        fields = line[pos:].split()
        if not fields:
            raise _LineError(f"missing value for {name!r}")
        if len(fields) > 2:
            raise _LineError("unexpected text after the timestamp")
        value = _text_float(fields[0])
        ts = None
        if len(fields) == 2:
            if _TEXT_TS.fullmatch(fields[1]) is None:
                raise _LineError(f"invalid timestamp {fields[1].decode('utf-8', 'replace')!r}")
            ts = int(fields[1]) / 1000.0
        return name, labels, value, ts


def _check_bound(labels: tuple[tuple[str, str], ...], key: str) -> None:
    for k, v in labels:
        if k == key:
            try:
                float(v)
            except ValueError:
                raise _LineError(
                    f"expected a number as value of label {key!r}, got {v!r}"
                ) from None
            return


def _block_samples(block: SampleBlock, source: str) -> Iterator[Sample]:
    """Expand a validated block into per-line samples (the slow, complete form)."""
    data = block.data
    pos = block.start
    lineno = block.first_line
    while pos <= block.end and lineno < block.first_line + block.lines:
        end = data.find(b"\n", pos, block.end)
        if end < 0:
            end = block.end
        line = data[pos:end]
        m = _METRIC_NAME.match(line)
        assert m is not None  # validated by _FAST_LINE
        name = m.group().decode("ascii")
        rest = line[m.end() :]
        labels: tuple[tuple[str, str], ...] = ()
        if rest.startswith(b"{"):
            try:
                labels, after = _parse_labels(line, m.end(), om=False)
            except _LineError as exc:
                raise ParseError(source, lineno, str(exc)) from None
            rest = line[after:]
        fields = rest.split()
        value = float(fields[0])
        ts = int(fields[1]) / 1000.0 if len(fields) > 1 else None
        if block.family != name:
            ftype_suffix = name[len(block.family) :]
            if ftype_suffix == "_bucket":
                try:
                    _check_bound(labels, "le")
                except _LineError as exc:
                    raise ParseError(source, lineno, str(exc)) from None
        yield Sample(block.family, name, labels, value, ts, lineno)
        pos = end + 1
        lineno += 1


# --------------------------------------------------------------------------
# OpenMetrics 1.0


@dataclass
class _OMGroup:
    """State of one histogram/summary label group while its samples stream by."""

    key: tuple[tuple[str, str], ...]
    last_le: float = -math.inf
    last_bucket: float = 0.0
    inf_bucket: float | None = None
    negative_bucket: bool = False
    count: float | None = None
    sum: float | None = None
    has_bucket: bool = False
    line: int = 0


class _OMParser:
    """Strict OpenMetrics 1.0 parser; see the module docstring for the rules it checks."""

    # Bounds on what the interleaving and clash checks remember: finished label
    # groups per family, and names of finished families. Past them the oldest
    # are forgotten, and a family or group coming back that late goes unnoticed.
    GROUP_MEMORY = 100_000
    CLOSED_MEMORY = 100_000

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.source = source
        # Names of finished families (and their sample names), oldest first, bounded.
        self.closed: OrderedDict[str, None] = OrderedDict()
        self.fam: str | None = None
        self.ftype = "unknown"
        self.help: str | None = None
        self.unit: str | None = None
        self.meta_seen: set[str] = set()
        self.announced = False
        self.fam_line = 0
        self.group: _OMGroup | None = None
        self.finished_groups: set[int] = set()
        self.last_series: tuple[str, tuple[tuple[str, str], ...]] | None = None
        self.last_ts: float | None = None

    def error(self, line: int, message: str) -> ParseError:
        return ParseError(self.source, line, message)

    def run(self) -> Iterator[Event]:
        data = self.data
        n = len(data)
        pos = 0
        lineno = 0
        eof = False
        while pos < n:
            end = data.find(b"\n", pos)
            if end < 0:
                end = n
            line = data[pos:end]
            lineno += 1
            pos = end + 1
            if eof:
                raise self.error(lineno, "text after '# EOF'")
            if line == b"# EOF":
                if end < n and pos < n:
                    raise self.error(lineno + 1, "text after '# EOF'")
                eof = True
                continue
            try:
                if not line:
                    raise _LineError("blank line")
                if line[0] == 0x23:
                    yield from self.metadata(line, lineno)
                else:
                    yield from self.sample(line, lineno)
            except _LineError as exc:
                raise self.error(lineno, str(exc)) from None
        if not eof:
            raise self.error(max(lineno, 1), "missing '# EOF' at end of OpenMetrics page")
        try:
            yield from self.close_family(lineno)
        except _LineError as exc:
            raise self.error(lineno, str(exc)) from None

    # -- families

    def family_event(self) -> Family:
        assert self.fam is not None
        return Family(self.fam, self.ftype, self.help, self.unit, self.fam_line)

    def close_family(self, lineno: int) -> Iterator[Event]:
        self.finish_group(lineno)
        if self.fam is not None:
            if not self.announced:
                yield self.family_event()
            self.remember_closed(self.fam)
            for suffix in _OM_SUFFIXES.get(self.ftype, ("",)):
                self.remember_closed(self.fam + suffix)
        self.fam = None
        self.ftype = "unknown"
        self.help = None
        self.unit = None
        self.meta_seen = set()
        self.announced = False
        self.finished_groups = set()
        self.last_series = None

    def remember_closed(self, name: str) -> None:
        self.closed[name] = None
        if len(self.closed) > self.CLOSED_MEMORY:
            self.closed.popitem(last=False)

    def open_family(self, name: str, lineno: int) -> Iterator[Event]:
        yield from self.close_family(lineno)
        if name in self.closed:
            raise _LineError(f"metric family {name!r} appears twice or clashes with another")
        self.fam = name
        self.fam_line = lineno

    def metadata(self, line: bytes, lineno: int) -> Iterator[Event]:
        if not line.startswith(b"# "):
            raise _LineError("comment lines must be '# HELP', '# TYPE', '# UNIT' or '# EOF'")
        kind, _, rest = line[2:].partition(b" ")
        if kind not in (b"HELP", b"TYPE", b"UNIT"):
            raise _LineError(f"unknown metadata {kind.decode('utf-8', 'replace')!r}")
        name_b, sep, value = rest.partition(b" ")
        if not sep or _METRIC_NAME.fullmatch(name_b) is None:
            raise _LineError(f"{kind.decode()} line must be '# {kind.decode()} <name> <value>'")
        name = name_b.decode("ascii")
        k = kind.decode()
        if name != self.fam:
            yield from self.open_family(name, lineno)
        elif self.announced:
            if k not in self.meta_seen:
                raise _LineError(f"metadata for {name!r} after its samples")
            # A fresh metadata block for the same name after samples starts a
            # second family of that name. client_golang writes exactly this for a
            # gauge and a counter sharing a base name (go_memstats_alloc_bytes and
            # go_memstats_alloc_bytes_total), and Prometheus scrapes it.
            yield from self.close_family(lineno)
            self.fam = name
            self.fam_line = lineno
        if k in self.meta_seen:
            raise _LineError(f"repeated {k} for {name!r}")
        self.meta_seen.add(k)
        if k == "HELP":
            self.help = _unescape_help(value)
        elif k == "TYPE":
            ftype = value.decode("utf-8", "replace")
            if ftype not in OM_TYPES:
                raise _LineError(f"unknown metric type {ftype!r}")
            if self.unit and ftype in ("info", "stateset"):
                raise _LineError(f"{ftype} metrics cannot have a unit")
            self.ftype = ftype
            for suffix in _OM_SUFFIXES[ftype]:
                if suffix and name + suffix in self.closed:
                    raise _LineError(f"family {name!r} clashes with {name + suffix!r}")
        else:
            unit = value.decode("utf-8", "replace")
            if unit and not name.endswith("_" + unit):
                raise _LineError(f"metric name {name!r} must end with its unit '_{unit}'")
            if self.ftype in ("info", "stateset"):
                raise _LineError(f"{self.ftype} metrics cannot have a unit")
            self.unit = unit
        # A family's names must not be taken by earlier families' samples.
        return

    # -- samples

    def sample(self, line: bytes, lineno: int) -> Iterator[Event]:
        m = _METRIC_NAME.match(line)
        if m is None:
            raise _LineError("expected a metric name")
        name = m.group().decode("ascii")
        pos = m.end()
        labels: tuple[tuple[str, str], ...] = ()
        if pos < len(line) and line[pos] == 0x7B:
            labels, pos = _parse_labels(line, pos, om=True)
        rest = line[pos:]
        if not rest.startswith(b" "):
            raise _LineError(f"expected a space and a value after {name!r}")
        value_part, hash_sep, exemplar = rest[1:].partition(b" # ")
        if not hash_sep and value_part.endswith(b" #"):
            raise _LineError("empty exemplar")
        fields = value_part.split(b" ")
        if not fields[0] or len(fields) > 2 or any(not f for f in fields):
            raise _LineError("expected 'value [timestamp]' separated by single spaces")
        value = _om_float(fields[0], "value")
        ts = None
        if len(fields) == 2:
            if _OM_REAL.fullmatch(fields[1]) is None:
                raise _LineError(f"invalid timestamp {fields[1].decode('utf-8', 'replace')!r}")
            ts = float(fields[1])

        fam = self.resolve(name)
        if fam is None:
            yield from self.open_family(name, lineno)
            fam = name
        if not self.announced:
            self.announced = True
            yield self.family_event()
        suffix = name[len(fam) :]
        if hash_sep:
            self.check_exemplar(exemplar, suffix)
        self.check_sample(suffix, labels, value, lineno)
        self.check_repeat(name, labels, ts)
        yield Sample(fam, name, labels, value, ts, lineno)

    def resolve(self, name: str) -> str | None:
        fam = self.fam
        if fam is not None and name.startswith(fam):
            if name[len(fam) :] in _OM_SUFFIXES.get(self.ftype, ("",)):
                return fam
        if name in self.closed:
            raise _LineError(f"samples of {name!r} are not contiguous with their family")
        return None

    def check_repeat(
        self, name: str, labels: tuple[tuple[str, str], ...], ts: float | None
    ) -> None:
        series = (name, labels)
        if series == self.last_series:
            if ts is None or self.last_ts is None or ts < self.last_ts:
                raise _LineError("repeated series needs increasing timestamps on every sample")
        self.last_series = series
        self.last_ts = ts

    def check_exemplar(self, text: bytes, suffix: str) -> None:
        allowed = (self.ftype == "counter" and suffix == "_total") or (
            self.ftype in ("histogram", "gaugehistogram") and suffix == "_bucket"
        )
        if not allowed:
            raise _LineError(
                f"exemplars are not allowed on {self.ftype} sample {suffix or 'value'}"
            )
        if not text.startswith(b"{"):
            raise _LineError("exemplar must start with a label set")
        labels, pos = _parse_labels(text, 0, om=True)
        if sum(len(k) + len(v) for k, v in labels) > 128:
            raise _LineError("exemplar labels longer than 128 characters")
        rest = text[pos:]
        if not rest.startswith(b" "):
            raise _LineError("expected a space and a value after exemplar labels")
        fields = rest[1:].split(b" ")
        if not fields[0] or len(fields) > 2 or any(not f for f in fields):
            raise _LineError("exemplar must be '{labels} value [timestamp]'")
        _om_float(fields[0], "exemplar value")
        if len(fields) == 2 and _OM_REAL.fullmatch(fields[1]) is None:
            raise _LineError("invalid exemplar timestamp")

    def check_sample(
        self, suffix: str, labels: tuple[tuple[str, str], ...], value: float, lineno: int
    ) -> None:
        ftype = self.ftype
        if ftype == "counter":
            if suffix == "_total" and (math.isnan(value) or value < 0):
                raise _LineError("counter value must be a non-negative number")
        elif ftype == "info":
            if value != 1:
                raise _LineError("info value must be 1")
        elif ftype == "stateset":
            if self.fam not in dict(labels):
                raise _LineError(f"stateset sample needs a label named {self.fam!r}")
            if value not in (0, 1):
                raise _LineError("stateset value must be 0 or 1")
        elif ftype in ("histogram", "gaugehistogram", "summary"):
            self.group_sample(suffix, labels, value, lineno)

    def group_sample(
        self, suffix: str, labels: tuple[tuple[str, str], ...], value: float, lineno: int
    ) -> None:
        ftype = self.ftype
        bound = "quantile" if ftype == "summary" else "le"
        bval: str | None = None
        if labels and labels[-1][0] == bound:  # where client libraries put it
            key, bval = labels[:-1], labels[-1][1]
        else:
            key = tuple(kv for kv in labels if kv[0] != bound)
            if len(key) != len(labels):
                bval = dict(labels)[bound]
        if self.group is None or self.group.key != key:
            self.finish_group(lineno)
            h = hash(key)
            if h in self.finished_groups:
                raise _LineError("samples of one label group are not contiguous")
            self.group = _OMGroup(key, line=lineno)
        g = self.group
        if suffix == "_created":
            return
        nan_ok = ftype == "summary" and suffix == ""  # a quantile of no observations
        if (math.isnan(value) and not nan_ok) or (
            value < 0 and suffix not in ("_sum", "_gsum", "")
        ):
            raise _LineError(f"{ftype} {suffix or 'quantile'} value must be a non-negative number")
        if ftype == "summary":
            if suffix == "":
                q = bval
                if q is None:
                    raise _LineError("summary quantile sample needs a 'quantile' label")
                try:
                    qv = float(q)
                except ValueError:
                    raise _LineError(f"invalid quantile {q!r}") from None
                if not 0 <= qv <= 1:
                    raise _LineError(f"quantile {q!r} outside [0, 1]")
                if value < 0:
                    raise _LineError("summary quantile value must not be negative")
            elif value < 0:
                raise _LineError(f"summary {suffix} must not be negative")
            return
        if suffix == "_bucket":
            le = bval
            if le is None:
                raise _LineError("histogram bucket needs an 'le' label")
            if le == "+Inf":
                lev = math.inf
            elif _OM_REAL.fullmatch(le.encode()) is None:
                raise _LineError(f"invalid le {le!r}")
            else:
                lev = float(le)
            if g.count is not None or g.sum is not None:
                raise _LineError("bucket after _count/_sum of its group")
            if lev <= g.last_le:
                raise _LineError("histogram buckets must be in increasing 'le' order")
            if value < g.last_bucket:
                raise _LineError("histogram bucket counts must not decrease")
            g.last_le, g.last_bucket, g.has_bucket = lev, value, True
            if lev < 0:
                g.negative_bucket = True
            if lev == math.inf:
                g.inf_bucket = value
        elif suffix in ("_count", "_gcount"):
            g.count = value
        elif suffix in ("_sum", "_gsum"):
            g.sum = value

    def finish_group(self, lineno: int) -> None:
        g = self.group
        if g is None:
            return
        self.group = None
        if len(self.finished_groups) < self.GROUP_MEMORY:
            self.finished_groups.add(hash(g.key))
        if self.ftype == "summary":
            return
        if g.inf_bucket is None:
            raise _LineError(f"histogram group starting at line {g.line} has no '+Inf' bucket")
        if (g.count is None) != (g.sum is None):
            raise _LineError(f"histogram group starting at line {g.line} needs both count and sum")
        if g.count is not None and g.count != g.inf_bucket:
            raise _LineError(f"histogram count differs from its '+Inf' bucket (line {g.line})")
        if g.sum is not None:
            if self.ftype == "histogram" and g.negative_bucket:
                raise _LineError("histogram with negative buckets must not have a _sum")
            if g.sum < 0 and not g.negative_bucket:
                raise _LineError("negative sum without negative buckets")
