"""Parse Prometheus text format and OpenMetrics pages, accepting exactly what Prometheus accepts.

Pure: bytes in, events out; no I/O. Two entry points:

``parse(data, fmt, source)``
    Stream of ``Family`` and ``Sample`` events, one ``Sample`` per sample line,
    with labels unescaped and values as floats. Rejects a page Prometheus
    would not ingest with ``ParseError(source, line, message)``.

``scan(data, fmt, source)``
    The same stream, except that runs of sample lines of one family that have
    the common shape (``name{l="v",...} value [timestamp]``) come as one
    ``SampleBlock`` that refers to a byte range of ``data`` instead of as
    per-line ``Sample`` objects. Every line of a block has been validated with
    one regular expression pass over the range (which also refuses a label
    name repeated within a line), so a block is exactly as trustworthy as the
    per-line samples; lines of any other shape go through the strict per-line
    parser. Consumers that count (``cardinality``) read a block with
    ``block_label_pairs`` / ``block_series_keys`` without creating a Python
    object per sample.

Leniency is Prometheus' scrape parser's: a page Prometheus ingests is read
and counted as Prometheus counts it; a page Prometheus refuses is refused,
naming the line and the reason (in Prometheus' words where it has them). The
reference is Prometheus 2.42 (``model/textparse`` and the checks of its scrape
loop and TSDB, which the tests run as an oracle), widened to what later
Prometheus reads and 2.42 refuses: quoted UTF-8 metric and label names
(Prometheus 3), exemplars on any sample (2.43), and native histograms in
OpenMetrics text (Prometheus' OpenMetrics 2.0 parser).

Text format (``promparse.go``): blanks (space, tab) may surround every
token, except before a metric name that starts a line (Prometheus makes them
part of the name, and refuses it); commas between label pairs are optional
and a trailing one is allowed; a value is anything Go's
``strconv.ParseFloat`` reads except hexadecimal and ``_`` forms and values
too large for a float (``0x1p-3`` is refused, as is ``-NaN``); a timestamp
is digits only (milliseconds, int64). Comment lines are anything starting
with ``#`` other than ``# HELP <name> ...`` and ``# TYPE <name> <type>`` (a
bare ``# HELP`` is a comment); HELP and TYPE may repeat and come after
samples (a TYPE that changes a family's type starts a new family of that
name); ``le`` and ``quantile`` need not be numbers. A NUL byte at the start
of a line ends the page, as Prometheus' lexer reads it as end of input. One
deliberate gap: Prometheus accepts a raw newline inside a quoted label value
or name; cardguard, which reads line by line, refuses it (no client writes
one).

OpenMetrics (``openmetricsparse.go``): single spaces exactly, no blank lines,
no comments other than ``# HELP``/``# TYPE``/``# UNIT``/``# EOF``, ``# EOF``
last; a UNIT must end the family name; one exemplar per line, on any sample;
no trailing comma in a label set. Nothing beyond syntax is checked, because
Prometheus checks nothing beyond it: a histogram's ``_count`` before its
buckets, buckets out of order or without ``+Inf``, negative counters,
families interleaved or repeated are all ingested. A native histogram
(``{count:...,sum:...,schema:...,zero_threshold:...,zero_count:...,
positive_spans:[...],positive_deltas:[...]}`` as the value of a histogram or
gauge histogram family's bare name; buckets as ``*_deltas`` like
client_python writes them or absolute ``*_buckets`` like Prometheus'
OpenMetrics 2.0 parser reads them) is checked as Prometheus checks a native
histogram and is one series; several exemplars and a ``st@`` start
timestamp may follow it. The OpenMetrics 2.0 composite forms of classic
histograms and summaries (``bucket:[...]``, ``quantile:[...]``) are refused:
no released Prometheus reads them.

Both formats, what Prometheus' scrape loop and TSDB refuse after parsing: a
``__name__`` label beside the metric name, a label name repeated within one
series, and a quoted name that is empty or not UTF-8. A repeated name is
fine where Prometheus drops or replaces it first: every label of a name
that has an empty value somewhere in the series is dropped, and ``job`` and
``instance`` are replaced by the target's.

Format choice follows Prometheus: ``detect_format`` looks at the
Content-Type (``application/openmetrics-text`` means OpenMetrics, the
protobuf media type protobuf, anything else the text format). Without one (a
file or stdin) a page that ends with ``# EOF`` is OpenMetrics if it parses as
OpenMetrics, else text: a text-format page may end with a ``# EOF`` comment.
``accept_header`` gives what Prometheus 2.42 sends when scraping, preferring
OpenMetrics, or protobuf with native histograms on
(``cardguard.parse.exposition_proto``).

Families: a sample belongs to the family whose name it extends by one of the
suffixes its type owns (``_bucket``/``_sum``/``_count`` of a text histogram,
``_total``/``_created`` of an OpenMetrics counter...), else to a family of
its own name (``untyped`` in text, ``unknown`` in OpenMetrics). Memory: each
parser remembers a bounded number of family names (``FAMILY_MEMORY``, the
most recent), so it does not grow with millions of families; a family
forgotten that way and met again starts anew.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Literal

from cardguard.errors import ParseError

Format = Literal["text", "openmetrics", "protobuf"]

ACCEPT_HEADER = (
    "application/openmetrics-text;version=1.0.0,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
# What Prometheus 2.42 sends with native histograms on: protobuf first (exposition_proto).
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
    "histogram": ("_bucket", "_count", "_sum", "_created", ""),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum", ""),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
}
_SUFFIXES = {"text": _TEXT_SUFFIXES, "openmetrics": _OM_SUFFIXES}
_UNTYPED = {"text": "untyped", "openmetrics": "unknown"}
# Every suffix of either format, longest first so "_gcount" is tried before "_count".
_ALL_SUFFIXES = tuple(
    sorted({s for table in _SUFFIXES.values() for ss in table.values() for s in ss if s}, key=len)[
        ::-1
    ]
)


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
    """One sample line. ``timestamp`` is in seconds, ``None`` when absent.

    A native histogram is one sample whose ``value`` is its count of
    observations.
    """

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
    """Choose the parser as Prometheus does: by media type; for a file, sniff.

    ``content_type`` is None for a file and the (possibly empty) Content-Type
    header for a scraped page. A scraped page is read as its header says, and
    one without a header as text, as Prometheus reads it. Only a file is
    sniffed: a file that cannot be text but is framed as
    protobuf is protobuf (``exposition_proto.looks_like_protobuf``), and a
    page that ends with ``# EOF`` is OpenMetrics when it parses as
    OpenMetrics, else text.
    """
    from cardguard.parse import exposition_proto  # it builds on this module's event types

    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media == exposition_proto.MEDIA_TYPE:
            return "protobuf"
        return "openmetrics" if media == "application/openmetrics-text" else "text"
    if exposition_proto.looks_like_protobuf(data):
        return "protobuf"
    tail = data[-64:].rstrip(b"\n")
    if not (tail.endswith(b"# EOF") and _last_line(tail) == b"# EOF"):
        return "text"
    try:
        for _ in scan(data, "openmetrics", "<sniff>"):
            pass
    except ParseError:
        return "text"
    return "openmetrics"


def _last_line(data: bytes) -> bytes:
    return data.rsplit(b"\n", 1)[-1]


def parse(data: bytes, fmt: Format, source: str, *, fast: bool = True) -> Iterator[Event]:
    """Yield ``Family`` and ``Sample`` events for every line of ``data``.

    ``fast=False`` sends every line through the strict per-line parser (the
    tests compare both paths).
    """
    for event in scan(data, fmt, source, fast=fast):
        if isinstance(event, SampleBlock):
            yield from _block_samples(event, fmt, source)
        else:
            yield event


def scan(
    data: bytes, fmt: Format, source: str, *, chunk_bytes: int = 1 << 20, fast: bool = True
) -> Iterator[ScanEvent]:
    """Yield events, with common-shape sample runs as ``SampleBlock``.

    Runs are cut into blocks of about ``chunk_bytes`` so that what a consumer
    derives from one block stays small. ``fast=False`` yields no blocks.
    """
    if fmt == "openmetrics":
        yield from _OMParser(data, source, chunk_bytes if fast else 0).run()
    elif fmt == "protobuf":
        from cardguard.parse import exposition_proto  # it builds on this module's event types

        yield from exposition_proto.parse(data, source)
    elif fmt == "text":
        yield from _TextParser(data, source, chunk_bytes if fast else 0).run()
    else:
        raise ValueError(f"unknown exposition format {fmt!r}")


# --------------------------------------------------------------------------
# Lexical pieces shared by both formats.

_METRIC_NAME = re.compile(rb"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(rb"[a-zA-Z_][a-zA-Z0-9_]*")
# What may follow a label value in the text format: '}', a comma, the next pair.
_LABEL_START = re.compile(rb'[a-zA-Z_"}]')
# A quoted string (label value, or a quoted name), unrolled-loop form: any
# backslash escape is accepted, as Prometheus' lexers accept it; only \\, \"
# and \n are decoded (``unescape``).
_QUOTED = rb'"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"'
_QUOTED_RE = re.compile(_QUOTED)
# What Go's strconv.ParseFloat reads, without the hexadecimal and '_' forms
# Prometheus' parseFloat refuses: decimal numbers, Inf/Infinity (signed) and
# NaN (unsigned), case-insensitive.
_GO_FLOAT = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf(?:inity)?))|(?i:nan)"
)
_DIGITS = re.compile(rb"[0-9]+")
_BLANK = b" \t"
_INT64_MAX = (1 << 63) - 1

# Label pairs of the common shape, for the fast paths: a label name that is
# not __name__ and, from the second pair on, not the name of an earlier pair
# of the line (backreferences to the earlier names), up to _FAST_PAIRS pairs.
# Lines with more pairs go to the strict parser.
_FAST_PAIRS = 32
_FAST_NAME = rb"(?!__name__=)([a-zA-Z_][a-zA-Z0-9_]*+)="


def _distinct_pairs(n: int) -> bytes:
    inner = b""
    for j in range(n, 0, -1):
        earlier = b"|".join(b"\\%d" % i for i in range(1, j))
        not_earlier = b"(?!(?:" + earlier + b")=)" if j > 1 else b""
        pair = not_earlier + _FAST_NAME + _QUOTED
        inner = pair + (b"(?:," + inner + b")?+" if inner else b"")
    return inner


_FAST_LABELS = _distinct_pairs(_FAST_PAIRS)
# A decimal value small enough that it cannot overflow a float (at most 200
# integer digits and a two-digit exponent), or +-Inf, or NaN.
_FAST_NUMBER = rb"[+-]?+(?:[0-9]{1,200}+(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]{1,2}+)?+"
_FAST_VALUE = rb"(?:" + _FAST_NUMBER + rb"|[+-]?+Inf|NaN)"
# The common shape of a sample line, per format; no capture but the label
# names, so that subn() validates a whole run without building objects.
_FAST_LINE = {
    "text": re.compile(
        rb"^[a-zA-Z_:][a-zA-Z0-9_:]*+(?:\{(?:"
        + _FAST_LABELS
        + rb",?)?\})? "
        + _FAST_VALUE
        + rb"(?: [0-9]{1,18}+)?+$",
        re.MULTILINE,
    ),
    "openmetrics": re.compile(
        rb"^[a-zA-Z_:][a-zA-Z0-9_:]*+(?:\{(?:"
        + _FAST_LABELS
        + rb")?\})? "
        + _FAST_VALUE
        + rb"(?: "
        + _FAST_NUMBER
        + rb")?+$",
        re.MULTILINE,
    ),
}
# " value [timestamp]" at the end of a text-format line whose series part ends in
# a name character or "}" (``strip_values``). The space comes first so the regex
# engine hunts for it as a literal (several times faster); the lookbehind then
# checks the character before it.
_VALUE_AT_END = re.compile(
    rb" (?<=[}a-zA-Z0-9_:] )" + _FAST_VALUE + rb"(?: [0-9]{1,18}+)?+$", re.MULTILINE
)
# The metric name that starts a line of the common shape.
_FIRST_NAME = re.compile(rb"[a-zA-Z_:][a-zA-Z0-9_:]*+(?=[{ ])")
# One label pair inside validated lines, as the raw text ``name="escaped value"``.
# Anchoring on the '{' or ',' before the name keeps the search from retrying
# inside every word of a long value; validated lines keep it in step.
_PAIR = re.compile(rb"[{,]([a-zA-Z_][a-zA-Z0-9_]*+=" + _QUOTED + rb")")
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
    """Count the lines of ``data[start:end]`` that have the text fast path's common shape.

    ``end`` excludes the last line's newline. When the count equals the number
    of lines, every line is a valid sample line whose value and timestamp
    :func:`strip_values` removes, leaving exactly its series identity.
    """
    return _FAST_LINE["text"].subn(b"", data[start:end])[1]


def strip_values(data: bytes) -> tuple[bytes, int]:
    """Remove the value and timestamp (fast-path grammar) from the end of every line.

    Returns the remaining text and how many lines lost a value. On lines that
    :func:`fast_lines` counts, what remains is the line's series identity.
    """
    return _VALUE_AT_END.subn(b"", data)


def block_raw_values(block: SampleBlock) -> list[tuple[bytes, bytes]]:
    """Return each line's sample name and value token, undecoded (one C-level pass)."""
    return _NAME_VALUE.findall(block.data, block.start, block.end)


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


def _go_float(tok: bytes, what: str = "value") -> float:
    """Read a number as Prometheus' parseFloat does (Go's ParseFloat, no hex, no '_')."""
    if _GO_FLOAT.fullmatch(tok) is None:
        text = tok.decode("utf-8", "replace")
        if any(c in tok for c in b"pP_"):
            raise _LineError(f"unsupported character in float: {what} {text!r}")
        raise _LineError(f"invalid {what} {text!r}")
    v = float(tok)
    if math.isinf(v) and tok[-1:] not in (b"f", b"F", b"y", b"Y"):
        raise _LineError(f"{what} {tok.decode('ascii')!r} out of range")
    return v


def _quoted_name(raw: bytes, what: str) -> str:
    """Decode a quoted (UTF-8) metric or label name, without its quotes."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _LineError(f"{what} is not valid UTF-8") from None
    name = unescape(raw)
    if not name:
        raise _LineError(f"{what} is empty")
    return name


def _label_value(raw: bytes, name: str) -> str:
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _LineError(f"invalid UTF-8 label value for label {name!r}") from None
    return unescape(raw) if "\\" in value else value


def _check_series(labels: list[tuple[str, str]]) -> None:
    """Refuse what Prometheus' scrape loop and TSDB refuse in a parsed label set.

    The metric name is never among ``labels``. Before Prometheus looks for a
    label name repeated within the series it drops every label of a name
    that has an empty value, and replaces ``job`` and ``instance`` by the
    target's; both collapse repeats.
    """
    if len(labels) < 2 and not (labels and labels[0][0] == "__name__"):
        return
    seen: set[str] = set()
    repeated: set[str] = set()
    for k, _ in labels:
        if k == "__name__":
            raise _LineError('label name "__name__" is not unique (it is the metric name)')
        if k in seen:
            repeated.add(k)
        seen.add(k)
    for k in repeated:
        if k not in ("job", "instance") and all(v for name, v in labels if name == k):
            raise _LineError(f"label name {k!r} is not unique")


def _skip(line: bytes, pos: int) -> int:
    n = len(line)
    while pos < n and line[pos] in _BLANK:
        pos += 1
    return pos


def _meta_name(rest: bytes, kind: str) -> tuple[str, bytes]:
    """The metric name at the start of a HELP/TYPE/UNIT line's rest, and what follows it."""
    if rest[:1] == b'"':
        q = _QUOTED_RE.match(rest)
        if q is None:
            raise _LineError(f"expected metric name after {kind}")
        return unescape(rest[1 : q.end() - 1]), rest[q.end() :]
    m = _METRIC_NAME.match(rest)
    if m is None:
        raise _LineError(f"expected metric name after {kind}")
    return m.group().decode("ascii"), rest[m.end() :]


_PLAIN_PAIR = rb"[a-zA-Z_][a-zA-Z0-9_]*+=" + _QUOTED
# A label set of the plain shape (no blanks, no quoted names), split with one findall.
_PLAIN_LABELS = {
    "text": re.compile(rb"\{(?:" + _PLAIN_PAIR + rb"(?:," + _PLAIN_PAIR + rb")*+,?)?\}"),
    "openmetrics": re.compile(rb"\{(?:" + _PLAIN_PAIR + rb"(?:," + _PLAIN_PAIR + rb")*+)?\}"),
}


# A whole sample line of the plain shape, with timestamps as each format
# writes them: name, label set, value and timestamp, in one match.
_PLAIN_LINE = {
    "text": re.compile(
        rb"([a-zA-Z_:][a-zA-Z0-9_:]*+)("
        + _PLAIN_LABELS["text"].pattern
        + rb")? ([^ \t{\x00]++)(?: ([0-9]{1,18}+))?$"
    ),
    "openmetrics": re.compile(
        rb"([a-zA-Z_:][a-zA-Z0-9_:]*+)("
        + _PLAIN_LABELS["openmetrics"].pattern
        + rb")? ([^ {]++)(?: ([^ #][^ ]*+))?$"
    ),
}


def _plain_sample(
    line: bytes, m: re.Match[bytes], om: bool = False
) -> tuple[str, list[tuple[str, str]], float, float | None]:
    """Name, labels, value and timestamp of a line ``_PLAIN_LINE`` matched."""
    name = m.group(1).decode("ascii")
    labels: list[tuple[str, str]] = []
    if m.group(2):
        for pair in _PAIR.findall(line, m.start(2), m.end(2)):
            lname, _, quoted = pair.partition(b"=")
            key = lname.decode("ascii")
            labels.append((key, _label_value(quoted[1:-1], key)))
        _check_series(labels)
    value = _go_float(m.group(3))
    ts: float | None = None
    if m.group(4) is not None:
        ts = _om_timestamp(m.group(4), "timestamp") if om else int(m.group(4)) / 1000.0
    return name, labels, value, ts


def _plain_labels(line: bytes, pos: int, fmt: Format, labels: list[tuple[str, str]]) -> int | None:
    """Read a plain-shape label set at ``line[pos] == '{'``; its end, or None if not plain."""
    m = _PLAIN_LABELS[fmt].match(line, pos)
    if m is None:
        return None
    end = m.end()
    for pair in _PAIR.findall(line, pos, end):
        name, _, quoted = pair.partition(b"=")
        lname = name.decode("ascii")
        labels.append((lname, _label_value(quoted[1:-1], lname)))
    return end


# --------------------------------------------------------------------------
# Families, and what both parsers share.


class _FamilyState:
    """What a parser remembers about one family name."""

    __slots__ = ("announced", "help", "line", "type", "unit")

    def __init__(self, ftype: str, line: int) -> None:
        self.type = ftype
        self.help: str | None = None
        self.unit: str | None = None
        self.announced = False
        self.line = line


class _Parser:
    """Line splitting, family bookkeeping and the fast path, common to both formats.

    It remembers at most ``FAMILY_MEMORY`` family names (the most recent), so
    its memory is bounded on pages with millions of families.
    """

    FAMILY_MEMORY = 20_000
    fmt: Format = "text"

    def __init__(self, data: bytes, source: str, chunk_bytes: int) -> None:
        self.data = data
        self.source = source
        self.chunk_bytes = chunk_bytes
        self.suffixes = _SUFFIXES[self.fmt]
        self.untyped = _UNTYPED[self.fmt]
        self.fast_line = _FAST_LINE[self.fmt]
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
            for suffix in _ALL_SUFFIXES:
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
        newlines = data.count(b"\n", start, stop)
        # Line range without the final newline, so the regex's '$' meets the last line.
        end = stop - 1 if stop > start and data[stop - 1] == 0x0A else stop
        # A lone line costs less line by line than as a block.
        first = _FIRST_NAME.match(data, start, end) if data.find(b"\n", start, end) >= 0 else None
        if first is not None:
            lines = newlines - (stop - end) + 1
            fam, event = self.family_of(first.group().decode("ascii"), lineno)
            if (
                self.counted_names(self.block_names(fam), start, end) == lines
                and _valid_utf8(data, start, end)
                and self.fast_line.subn(b"", data[start:end])[1] == lines
            ):
                yield from self.announce_pending(fam)
                if event is not None:
                    yield event
                yield SampleBlock(fam, data, start, end, lineno, lines)
                return newlines
            if event is not None:
                # Undo the announcement; the strict path below re-announces in order.
                self.fams[fam].announced = False
        yield from self.strict_lines(start, stop, lineno)
        return newlines

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
            except _LineError as exc:
                raise self.error(lineno, str(exc)) from None
            if self.ended:
                return
            yield from events
            pos = end + 1
            lineno += 1

    def line(self, line: bytes, lineno: int) -> list[ScanEvent]:
        raise NotImplementedError


# --------------------------------------------------------------------------
# Text format


class _TextParser(_Parser):
    """Prometheus text format (0.0.4, and 1.0.0's quoted names), as Prometheus reads it."""

    fmt: Format = "text"

    def run(self) -> Iterator[ScanEvent]:
        data = self.data
        n = len(data)
        pos = 0
        lineno = 1
        while pos < n and not self.ended:
            if data[pos] == 0x23:  # '#': one comment line
                end = data.find(b"\n", pos)
                if end < 0:
                    end = n
                try:
                    yield from self.comment(data[pos:end], lineno)
                except _LineError as exc:
                    raise self.error(lineno, str(exc)) from None
                pos = end + 1
                lineno += 1
                continue
            # A run of non-comment lines up to the next line starting with '#'.
            run_end = data.find(b"\n#", pos)
            run_end = n if run_end < 0 else run_end + 1
            lineno += yield from self.sample_run(pos, run_end, lineno)
            pos = run_end
        yield from self.announce_pending(None)

    def line(self, line: bytes, lineno: int) -> list[ScanEvent]:
        stripped = line.lstrip(_BLANK)
        if not stripped:
            return []
        if stripped[0] == 0x23:
            return list(self.comment(stripped, lineno))
        if stripped[0] == 0:
            # Prometheus' lexer reads a NUL where a line starts as the end of input.
            self.ended = True
            return []
        if stripped is not line and stripped[0] != 0x7B:
            # Prometheus takes the blanks for part of the metric name, and refuses it.
            raise _LineError("invalid metric name: blanks before it")
        name, labels, value, ts = _text_sample(stripped)
        return self.sample_events(name, labels, value, ts, lineno)

    def comment(self, line: bytes, lineno: int) -> list[Family]:
        """A line starting with '#': HELP or TYPE metadata, else a comment to ignore."""
        if len(line) < 2 or line[1] not in _BLANK:
            return []
        rest = line[1:].lstrip(_BLANK)
        kind = rest[:4]
        if kind not in (b"HELP", b"TYPE") or len(rest) < 5 or rest[4] not in _BLANK:
            return []
        k = kind.decode()
        name, after = _meta_name(rest[4:].lstrip(_BLANK), k)
        # Prometheus takes the text after the name less its first character.
        text = after[1:]
        if k == "HELP":
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                raise _LineError("help text is not a valid UTF-8 string") from None
            return self.metadata(name, k, unescape(text), lineno)
        ftype = text.decode("utf-8", "replace")
        if ftype not in TEXT_TYPES:
            raise _LineError(f"invalid metric type {ftype!r}")
        return self.metadata(name, k, ftype, lineno)


# A text-format value token: anything up to a blank, '{' or NUL (Prometheus' lexer).
_TEXT_VALUE = re.compile(rb"[^{ \t\x00]+")


def _text_sample(
    line: bytes,
) -> tuple[str, list[tuple[str, str]], float, float | None]:
    """Parse one text-format sample line (leading blanks already stripped)."""
    plain = _PLAIN_LINE["text"].match(line)
    if plain is not None:
        return _plain_sample(line, plain)
    n = len(line)
    name: str | None = None
    labels: list[tuple[str, str]] = []
    pos = 0
    if line[0] != 0x7B:  # '{'
        m = _METRIC_NAME.match(line)
        if m is None:
            raise _LineError(
                f"{line[:1].decode('utf-8', 'replace')!r} is not a valid start of a sample"
            )
        name = m.group().decode("ascii")
        pos = _skip(line, m.end())
    if pos < n and line[pos] == 0x7B:
        end = _plain_labels(line, pos, "text", labels) if name is not None else None
        if end is None:
            del labels[:]
            name, end = _text_labels(line, pos, name, labels)
        pos = _skip(line, end)
    if name is None:
        raise _LineError("metric name not set")
    m = _TEXT_VALUE.match(line, pos)
    if m is None:
        raise _LineError(f"expected value after metric {name!r}")
    value = _go_float(m.group())
    pos = _skip(line, m.end())
    ts = None
    if pos < n:
        m = _DIGITS.match(line, pos)
        if m is None:
            raise _LineError("expected timestamp or new record")
        ms = int(m.group())
        if ms > _INT64_MAX:
            raise _LineError(f"timestamp {m.group().decode()} out of range")
        ts = ms / 1000.0
        if _skip(line, m.end()) < n:
            raise _LineError("expected next entry after timestamp")
    _check_series(labels)
    return name, labels, value, ts


def _text_labels(
    line: bytes, pos: int, name: str | None, labels: list[tuple[str, str]]
) -> tuple[str | None, int]:
    """Parse ``{...}`` at ``line[pos]``: blanks anywhere, commas optional, a quoted name maybe.

    Returns the metric name (a quoted string alone sets it, as in Prometheus
    3) and the offset after '}'.
    """
    n = len(line)
    pos += 1
    while True:
        pos = _skip(line, pos)
        if pos >= n:
            raise _LineError("expected label name or '}'")
        c = line[pos]
        if c == 0x7D:  # '}'
            return name, pos + 1
        if c == 0x22:  # '"': a quoted label name, or the metric name
            q = _QUOTED_RE.match(line, pos)
            if q is None:
                raise _LineError("unterminated quoted string")
            raw = line[pos + 1 : q.end() - 1]
            pos = _skip(line, q.end())
            if pos < n and line[pos] in (0x2C, 0x7D):  # ',' or '}'
                if name is not None:
                    raise _LineError("metric name already set")
                name = _quoted_name(raw, "metric name")
                if line[pos] == 0x2C:
                    pos += 1
                continue
            lname = _quoted_name(raw, "label name")
        else:
            m = _LABEL_NAME.match(line, pos)
            if m is None:
                raise _LineError(f"expected label name at column {pos + 1}")
            lname = m.group().decode("ascii")
            pos = _skip(line, m.end())
        if pos >= n or line[pos] != 0x3D:  # '='
            raise _LineError(f"expected equal after label name {lname!r}")
        pos = _skip(line, pos + 1)
        q = _QUOTED_RE.match(line, pos)
        if q is None:
            raise _LineError(f"expected label value for label {lname!r}")
        labels.append((lname, _label_value(line[pos + 1 : q.end() - 1], lname)))
        pos = _skip(line, q.end())
        if pos < n and line[pos] == 0x2C:
            pos += 1
        elif pos >= n or _LABEL_START.match(line, pos) is None:
            # Prometheus reads the next label name without a comma before it.
            raise _LineError(f"expected ',' or '}}' after label {lname!r}")


def _block_samples(block: SampleBlock, fmt: Format, source: str) -> Iterator[Sample]:
    """Expand a validated block into per-line samples (the slow, complete form)."""
    data = block.data
    pos = block.start
    lineno = block.first_line
    for _ in range(block.lines):
        end = data.find(b"\n", pos, block.end)
        if end < 0:
            end = block.end
        line = data[pos:end]
        try:
            if fmt == "text":
                name, labels, value, ts = _text_sample(line)
            else:
                name, labels, value, ts, _, _ = _om_sample(line)
        except _LineError as exc:  # pragma: no cover - the block was validated
            raise ParseError(source, lineno, str(exc)) from None
        yield Sample(block.family, name, tuple(labels), value, ts, lineno)
        pos = end + 1
        lineno += 1


# --------------------------------------------------------------------------
# OpenMetrics


class _OMParser(_Parser):
    """OpenMetrics 1.0 (and 0.0.1), as Prometheus reads it; see the module docstring."""

    fmt: Format = "openmetrics"

    def run(self) -> Iterator[ScanEvent]:
        data = self.data
        n = len(data)
        pos = 0
        lineno = 1
        while pos < n:
            if data[pos] == 0x23:  # '#': one metadata line, or # EOF
                end = data.find(b"\n", pos)
                if end < 0:
                    end = n
                line = data[pos:end]
                if line == b"# EOF":
                    if end + 1 < n:
                        raise self.error(lineno + 1, "unexpected data after # EOF")
                    yield from self.announce_pending(None)
                    return
                try:
                    yield from self.comment(line, end < n, lineno)
                except _LineError as exc:
                    raise self.error(lineno, str(exc)) from None
                pos = end + 1
                lineno += 1
                continue
            run_end = data.find(b"\n#", pos)
            run_end = n if run_end < 0 else run_end + 1
            lineno += yield from self.sample_run(pos, run_end, lineno)
            pos = run_end
        last = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        raise self.error(max(last, 1), "data does not end with # EOF")

    def comment(self, line: bytes, newline: bool, lineno: int) -> list[Family]:
        """A '#' line other than ``# EOF``: HELP, TYPE or UNIT, else an error."""
        kind = line[2:6]
        if not line.startswith(b"# ") or kind not in (b"HELP", b"TYPE", b"UNIT"):
            raise _LineError(
                "expected '# HELP', '# TYPE', '# UNIT' or '# EOF' (OpenMetrics has no comments)"
            )
        k = kind.decode()
        if line[6:7] != b" ":
            raise _LineError(f"expected metric name after {k}")
        name, after = _meta_name(line[7:], k)
        if not after.startswith(b" ") or not newline:
            raise _LineError(f"expected text in {k}")
        text = after[1:]
        if k == "HELP":
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                raise _LineError("help text is not a valid UTF-8 string") from None
            return self.metadata(name, k, unescape(text), lineno)
        value = text.decode("utf-8", "replace")
        if k == "TYPE":
            if value not in OM_TYPES:
                raise _LineError(f"invalid metric type {value!r}")
        elif value and not name.endswith("_" + value):
            raise _LineError(f"unit {value!r} not a suffix of metric {name!r}")
        return self.metadata(name, k, value, lineno)

    def line(self, line: bytes, lineno: int) -> list[ScanEvent]:
        if not line:
            raise _LineError("blank line (OpenMetrics has none)")
        name, labels, value, ts, _, composite = _om_sample(line)
        if composite is not None:
            fam = self.fams.get(name)
            ftype = fam.type if fam is not None else None
            if ftype not in ("histogram", "gaugehistogram"):
                raise _LineError(
                    "a native histogram value needs a histogram or gaugehistogram family "
                    "(TYPE line) named like the sample"
                )
            value = _native_histogram(composite, ftype == "gaugehistogram")
        return self.sample_events(name, labels, value, ts, lineno)


def _om_sample(
    line: bytes,
) -> tuple[str, list[tuple[str, str]], float, float | None, int, bytes | None]:
    """Parse one OpenMetrics sample line.

    Returns name, labels, value, timestamp, the number of exemplars, and for
    a native histogram its composite value (``value`` is then 0; see
    ``_native_histogram``).
    """
    plain = _PLAIN_LINE["openmetrics"].match(line)
    if plain is not None:
        return (*_plain_sample(line, plain, om=True), 0, None)
    n = len(line)
    name: str | None = None
    labels: list[tuple[str, str]] = []
    pos = 0
    if line[0] != 0x7B:
        m = _METRIC_NAME.match(line)
        if m is None:
            raise _LineError(
                f"{line[:1].decode('utf-8', 'replace')!r} is not a valid start of a sample"
            )
        name = m.group().decode("ascii")
        pos = m.end()
    if pos < n and line[pos] == 0x7B:
        end = _plain_labels(line, pos, "openmetrics", labels) if name is not None else None
        if end is None:
            del labels[:]
            name, end = _om_labels(line, pos, name, labels, exemplar=False)
        pos = end
    if name is None:
        raise _LineError("metric name not set")
    if pos >= n or line[pos] != 0x20:
        raise _LineError(f"expected a space and a value after metric {name!r}")
    vend = line.find(b" ", pos + 1)
    if vend < 0:
        vend = n
    tok = line[pos + 1 : vend]
    if not tok:
        raise _LineError(f"expected value after metric {name!r}")
    composite = None
    value = 0.0
    if tok[0] == 0x7B:  # '{': a native histogram
        composite = tok
    else:
        value = _go_float(tok)
    pos = vend
    ts = None
    if pos < n and not line.startswith(b" # {", pos):
        tend = line.find(b" ", pos + 1)
        if tend < 0:
            tend = n
        ts = _om_timestamp(line[pos + 1 : tend], "timestamp")
        pos = tend
        if composite is not None and line.startswith(b" st@", pos):
            # OpenMetrics 2.0's start timestamp, read with its native histograms.
            send = line.find(b" ", pos + 1)
            if send < 0:
                send = n
            _om_timestamp(line[pos + 4 : send], "start timestamp")
            pos = send
    exemplars = 0
    while pos < n:
        if not line.startswith(b" # {", pos):
            after = "exemplar" if exemplars else "timestamp"
            raise _LineError(f"expected next entry after {after}")
        if exemplars and composite is None:
            raise _LineError("expected next entry after exemplar (one exemplar per sample)")
        pos = _om_exemplar(line, pos + 3)
        exemplars += 1
    _check_series(labels)
    return name, labels, value, ts, exemplars, composite


def _om_timestamp(tok: bytes, what: str) -> float:
    ts = _go_float(tok, what)
    if math.isnan(ts) or math.isinf(ts):
        raise _LineError(f"invalid {what}")
    return ts


def _om_exemplar(line: bytes, pos: int) -> int:
    """Parse ``{labels} value [timestamp]`` at ``line[pos] == '{'``; return where it ends."""
    n = len(line)
    _, pos = _om_labels(line, pos, None, [], exemplar=True)
    if pos >= n or line[pos] != 0x20:
        raise _LineError("expected value after exemplar labels")
    vend = line.find(b" ", pos + 1)
    if vend < 0:
        vend = n
    tok = line[pos + 1 : vend]
    if not tok:
        raise _LineError("expected value after exemplar labels")
    _go_float(tok, "exemplar value")
    pos = vend
    if pos < n and not line.startswith(b" # {", pos):
        tend = line.find(b" ", pos + 1)
        if tend < 0:
            tend = n
        _om_timestamp(line[pos + 1 : tend], "exemplar timestamp")
        pos = tend
    return pos


def _om_labels(
    line: bytes, pos: int, name: str | None, labels: list[tuple[str, str]], *, exemplar: bool
) -> tuple[str | None, int]:
    """Parse ``{...}`` at ``line[pos]`` strictly: no blanks, commas between pairs, none trailing."""
    n = len(line)
    pos += 1
    if pos < n and line[pos] == 0x7D:
        return name, pos + 1
    while True:
        c = line[pos] if pos < n else -1
        if c == 0x22:  # '"': a quoted label name, or the metric name
            q = _QUOTED_RE.match(line, pos)
            if q is None:
                raise _LineError("unterminated quoted string")
            raw = line[pos + 1 : q.end() - 1]
            pos = q.end()
            if not exemplar and pos < n and line[pos] in (0x2C, 0x7D):
                if name is not None:
                    raise _LineError("metric name already set")
                name = _quoted_name(raw, "metric name")
            else:
                lname = _quoted_name(raw, "label name")
                pos = _om_label_value(line, pos, lname, labels, exemplar)
        else:
            m = _LABEL_NAME.match(line, pos)
            if m is None:
                raise _LineError(f"expected label name at column {pos + 1}")
            pos = _om_label_value(line, m.end(), m.group().decode("ascii"), labels, exemplar)
        if pos < n and line[pos] == 0x7D:
            return name, pos + 1
        if pos >= n or line[pos] != 0x2C:
            raise _LineError("expected comma or brace close")
        pos += 1


def _om_label_value(
    line: bytes, pos: int, lname: str, labels: list[tuple[str, str]], exemplar: bool
) -> int:
    """Read ``="value"`` at ``line[pos]`` into ``labels``; return the offset after it."""
    if line[pos : pos + 1] != b"=":
        raise _LineError(f"expected equal after label name {lname!r}")
    q = _QUOTED_RE.match(line, pos + 1)
    if q is None or (exemplar and b"\x00" in q.group()):
        # Prometheus' lexer lets a NUL into series label values only.
        raise _LineError(f"expected label value for label {lname!r}")
    labels.append((lname, _label_value(line[pos + 2 : q.end() - 1], lname)))
    return q.end()


# Native histograms in OpenMetrics text.

_NH_FIELDS = frozenset(
    {
        "schema",
        "zero_threshold",
        "zero_count",
        "positive_spans",
        "negative_spans",
        "positive_deltas",
        "negative_deltas",
        "positive_buckets",
        "negative_buckets",
    }
)
_INT = re.compile(rb"[+-]?[0-9]+")


def _native_histogram(tok: bytes, gauge: bool) -> float:
    """Check a composite native histogram value as Prometheus checks one; return its count.

    The checks are Prometheus' ``Histogram.Validate`` and
    ``FloatHistogram.Validate``: spans that fit the buckets, no negative
    bucket count, and for an integer histogram a count equal to the
    observations in its buckets (at least them when the sum is NaN).
    """
    if not tok.endswith(b"}"):
        raise _LineError("native histogram: composite value must be wrapped in {}")
    count_key, sum_key = ("gcount", "gsum") if gauge else ("count", "sum")
    fields: dict[str, bytes] = {}
    for part in _split_composite(tok[1:-1]):
        key_b, sep, val = part.partition(b":")
        key = key_b.decode("utf-8", "replace")
        if not sep:
            raise _LineError(f"native histogram: invalid composite field (missing ':'): {key!r}")
        if key in ("bucket", "quantile"):
            raise _LineError(
                f"composite {key} lists (OpenMetrics 2.0 classic histograms and summaries) "
                "are not read: no released Prometheus reads them"
            )
        if key not in _NH_FIELDS and key not in (count_key, sum_key):
            raise _LineError(f"native histogram: unknown composite field {key!r}")
        if key in fields:
            raise _LineError(f"native histogram: duplicate composite field {key!r}")
        fields[key] = val
    for key in (count_key, sum_key, "schema", "zero_threshold", "zero_count"):
        if key not in fields:
            raise _LineError(f"native histogram: missing required field: {key}")
    schema = fields["schema"]
    if _INT.fullmatch(schema) is None or not -4 <= int(schema) <= 8:
        raise _LineError(
            f"native histogram: schema must be between -4 and 8, got "
            f"{schema.decode('utf-8', 'replace')!r}"
        )
    count = _go_float(fields[count_key], count_key)
    total = _go_float(fields[sum_key], sum_key)
    zero_threshold = _go_float(fields["zero_threshold"], "zero_threshold")
    if not math.isfinite(zero_threshold) or zero_threshold < 0:
        raise _LineError("native histogram: zero_threshold must be a non-negative, finite number")
    zero_count = _go_float(fields["zero_count"], "zero_count")
    is_float = not (_integral(count) and _integral(zero_count))
    observed = zero_count
    for side in ("positive", "negative"):
        spans = _spans(fields.get(side + "_spans", b"[]"), side)
        deltas, absolute = fields.get(side + "_deltas"), fields.get(side + "_buckets")
        if deltas is not None and absolute is not None:
            raise _LineError(f"native histogram: both {side}_deltas and {side}_buckets")
        buckets = _bucket_list(deltas if deltas is not None else absolute or b"[]", side)
        need = sum(length for _, length in spans)
        if need != len(buckets):
            raise _LineError(
                f"native histogram: {side} side: spans need {need} buckets, "
                f"have {len(buckets)} buckets"
            )
        running = 0.0
        for i, b in enumerate(buckets):
            if deltas is not None:
                if not _integral(b):
                    raise _LineError(f"native histogram: {side}_deltas must be integers")
                running += b
            else:
                running = b
                is_float = is_float or not _integral(b)
            if running < 0:
                raise _LineError(
                    f"native histogram: {side} side: bucket number {i + 1} has observation "
                    f"count of {running:g}"
                )
            observed += running
    if is_float:
        if count < 0 or zero_count < 0:
            raise _LineError("native histogram: negative observation count")
    elif (observed > count) if math.isnan(total) else (observed != count):
        raise _LineError(
            f"native histogram: {observed:.0f} observations found in buckets, "
            f"but the Count field is {count:.0f}"
        )
    return count


def _integral(x: float) -> bool:
    return math.isfinite(x) and x == math.trunc(x)


def _split_composite(inner: bytes) -> list[bytes]:
    """Split ``k:v,k:[...],...`` at the commas outside brackets."""
    parts: list[bytes] = []
    depth = 0
    start = 0
    for i, c in enumerate(inner):
        if c == 0x5B:  # '['
            depth += 1
        elif c == 0x5D:
            depth -= 1
        elif c == 0x2C and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return parts


def _spans(text: bytes, side: str) -> list[tuple[int, int]]:
    if not (text.startswith(b"[") and text.endswith(b"]")):
        raise _LineError(f"native histogram: {side}_spans must be wrapped in []")
    out: list[tuple[int, int]] = []
    inner = text[1:-1]
    for i, part in enumerate(inner.split(b",") if inner else ()):
        off, sep, length = part.partition(b":")
        if not sep or _INT.fullmatch(off) is None or _DIGITS.fullmatch(length) is None:
            raise _LineError(
                f"native histogram: invalid {side} span {part.decode('utf-8', 'replace')!r}"
            )
        if i and int(off) < 0:
            raise _LineError(
                f"native histogram: {side} side: span number {i + 1} with offset {int(off)}"
            )
        out.append((int(off), int(length)))
    return out


def _bucket_list(text: bytes, side: str) -> list[float]:
    if not (text.startswith(b"[") and text.endswith(b"]")):
        raise _LineError(f"native histogram: {side} buckets must be wrapped in []")
    inner = text[1:-1]
    return [_go_float(p, f"{side} bucket") for p in (inner.split(b",") if inner else ())]
