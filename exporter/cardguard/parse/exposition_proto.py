"""Parse the Prometheus protobuf exposition format into exposition's events.

Pure: bytes in, events out; no I/O. The format is a stream of
``io.prometheus.client.MetricFamily`` messages (client_model's
``metrics.proto``), each preceded by its length as a varint, served as
``application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
encoding=delimited``. ``parse(data, source)`` yields the ``Family`` and
``Sample`` events ``exposition.parse`` yields for the text formats, so the
analysis, churn and offender layers need no change; ``exposition.scan``
dispatches here for the ``protobuf`` format.

Series are the ones Prometheus 2.42 (``--enable-feature=native-histograms``)
ingests, following its ``model/textparse/protobufparse.go``:

* counter, gauge, untyped: one sample per metric, named after the family.
* summary: one sample per quantile (``quantile`` label formatted as
  Prometheus formats it, ``0.5``, ``1.0``), then ``_sum`` and ``_count``.
* classic histogram: one ``_bucket`` sample per bucket up to the first
  ``+Inf`` bound, a ``+Inf`` bucket (the sample count) when the message has
  none, then ``_sum`` and ``_count``; ``le`` is formatted as Prometheus
  formats it (``1.0`` where the text format says ``1``).
* native histogram: one sample per metric, named after the family, value the
  sample count. Classic buckets sent alongside are not ingested (Prometheus
  2.42 has no ``scrape_classic_histograms``).

Whether a family is native is decided, as Prometheus does, from its *first*
metric: native when that histogram has native buckets (spans, deltas or
absolute counts) or a zero bucket (threshold or count above 0). That is the
union of 2.42's test (deltas, zero threshold, zero count) and today's
(spans, zero threshold, zero count, since Prometheus 2.47); the two only
differ on an empty native histogram with a zero threshold of 0, which
client_golang 1.17+ marks with a no-op span and which 2.42 counts as classic
(three series instead of one; client_golang 1.14 sends no span, so both
rules count it as classic, as the tests check against 2.42).
A ``GAUGE_HISTOGRAM`` family counts like a histogram (type ``gaugehistogram``),
with ``_bucket``/``_sum``/``_count`` names as later Prometheus versions use;
2.42 itself named the ``_sum`` and ``_count`` of a classic gauge histogram
after the bare family, which collided.

Rejected as Prometheus rejects it: a length prefix of more than five bytes or
one that runs past the end, a message that does not decode (truncated varint
or field, a known field with the wrong wire type, a wire type that does not
exist), an invalid metric or label name, help text or a label value that is
not UTF-8, and an unknown metric type. Families without metrics are skipped,
as Prometheus skips them. Stricter than Prometheus on purpose: a label name
repeated within one metric (the text parser refuses that too), and the
deprecated group wire types, which no client sends. Every error is a
``ParseError`` naming the source, the MetricFamily (its number in the
stream and byte offset, and its name when known) and the byte offset of the
problem. ``Family.line`` and ``Sample.line`` hold the 1-based number of the
MetricFamily message in the stream.

Memory: the whole page is the caller's; this module holds one metric's
labels at a time, never a family's list of metrics or a histogram's buckets
(a family is walked twice, once for its name, type and help, which may come
after its metrics on the wire, and once for its metrics), plus bounded
caches of decoded label pairs (``_Parser.PAIR_CACHE``, the raw pairs repeat
across a family's metrics) and formatted bounds.

Why a hand-written decoder rather than message classes built at import time
from a ``FileDescriptorProto`` (``message_factory.GetMessageClass``, parsed
by the runtime's C decoder, upb): measured on a 10,000-series page recorded
from client_golang (``python -m benchmarks exposition_proto``, protobuf
7.36 with upb, CPU time, best of 15), upb-backed classes produce the same
events in about 34 ms and this decoder in about 46 ms on a quiet machine
(12 ms of either is building the ``Sample`` objects; on a busy one the gap
grew to 1.7x). upb is faster, and this module still reads
the wire format itself, because upb cannot do what counting like Prometheus
needs: it keeps a known field with the wrong wire type as an unknown field
instead of refusing the message (Go's decoder, and so Prometheus, refuses
it), it gives no byte offsets for errors, it decodes a whole family, every
metric of it, at once, and with the pure-Python protobuf runtime it is many
times slower. The benchmark keeps the upb variant, to measure again.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Generator, Iterator

from cardguard.errors import ParseError
from cardguard.parse.exposition import Event, Family, Sample

MEDIA_TYPE = "application/vnd.google.protobuf"
CONTENT_TYPE = MEDIA_TYPE + "; proto=io.prometheus.client.MetricFamily; encoding=delimited"

# MetricType enum values and the type names the text formats use for them.
TYPES = ("counter", "gauge", "summary", "untyped", "histogram", "gaugehistogram")
_COUNTER, _GAUGE, _SUMMARY, _UNTYPED, _HISTOGRAM, _GAUGE_HISTOGRAM = range(6)

# Wire types.
_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5

# Known fields of each message: field number -> wire types allowed (a packed
# repeated scalar also arrives as LEN) and, for messages, their own schema.
# Fields not listed are skipped, as every protobuf decoder skips them.
_Schema = dict[int, tuple[tuple[int, ...], "_Schema | None"]]
_TIMESTAMP: _Schema = {1: ((_VARINT,), None), 2: ((_VARINT,), None)}
_LABEL_PAIR: _Schema = {1: ((_LEN,), None), 2: ((_LEN,), None)}
_EXEMPLAR: _Schema = {
    1: ((_LEN,), _LABEL_PAIR),
    2: ((_I64,), None),
    3: ((_LEN,), _TIMESTAMP),
}
_VALUE: _Schema = {1: ((_I64,), None)}  # Gauge, Untyped
_COUNTER_MSG: _Schema = {1: ((_I64,), None), 2: ((_LEN,), _EXEMPLAR), 3: ((_LEN,), _TIMESTAMP)}
_QUANTILE: _Schema = {1: ((_I64,), None), 2: ((_I64,), None)}
_SUMMARY_MSG: _Schema = {
    1: ((_VARINT,), None),
    2: ((_I64,), None),
    3: ((_LEN,), _QUANTILE),
    4: ((_LEN,), _TIMESTAMP),
}
_BUCKET: _Schema = {
    1: ((_VARINT,), None),
    2: ((_I64,), None),
    3: ((_LEN,), _EXEMPLAR),
    4: ((_I64,), None),
}
_SPAN: _Schema = {1: ((_VARINT,), None), 2: ((_VARINT,), None)}
_HISTOGRAM_MSG: _Schema = {
    1: ((_VARINT,), None),  # sample_count
    2: ((_I64,), None),  # sample_sum
    3: ((_LEN,), _BUCKET),
    4: ((_I64,), None),  # sample_count_float
    5: ((_VARINT,), None),  # schema
    6: ((_I64,), None),  # zero_threshold
    7: ((_VARINT,), None),  # zero_count
    8: ((_I64,), None),  # zero_count_float
    9: ((_LEN,), _SPAN),  # negative_span
    10: ((_VARINT, _LEN), None),  # negative_delta
    11: ((_I64, _LEN), None),  # negative_count
    12: ((_LEN,), _SPAN),  # positive_span
    13: ((_VARINT, _LEN), None),  # positive_delta
    14: ((_I64, _LEN), None),  # positive_count
    15: ((_LEN,), _TIMESTAMP),  # created_timestamp
    16: ((_LEN,), _EXEMPLAR),  # exemplars
}
# Payload kind of packed repeated fields, checked when they arrive as LEN.
_PACKED = {10: _VARINT, 11: _I64, 13: _VARINT, 14: _I64}
_METRIC: _Schema = {
    1: ((_LEN,), _LABEL_PAIR),
    2: ((_LEN,), _VALUE),
    3: ((_LEN,), _COUNTER_MSG),
    4: ((_LEN,), _SUMMARY_MSG),
    5: ((_LEN,), _VALUE),
    6: ((_VARINT,), None),
    7: ((_LEN,), _HISTOGRAM_MSG),
}
_FAMILY: _Schema = {
    1: ((_LEN,), None),
    2: ((_LEN,), None),
    3: ((_VARINT,), None),
    4: ((_LEN,), _METRIC),
    5: ((_LEN,), None),
}
_NAMES = {
    id(_FAMILY): "MetricFamily",
    id(_METRIC): "Metric",
    id(_LABEL_PAIR): "LabelPair",
    id(_VALUE): "Gauge/Untyped",
    id(_COUNTER_MSG): "Counter",
    id(_SUMMARY_MSG): "Summary",
    id(_QUANTILE): "Quantile",
    id(_HISTOGRAM_MSG): "Histogram",
    id(_BUCKET): "Bucket",
    id(_SPAN): "BucketSpan",
    id(_EXEMPLAR): "Exemplar",
    id(_TIMESTAMP): "Timestamp",
}
# Which Metric field carries the value of each family type.
_VALUE_FIELD = {
    _COUNTER: 3,
    _GAUGE: 2,
    _SUMMARY: 4,
    _UNTYPED: 5,
    _HISTOGRAM: 7,
    _GAUGE_HISTOGRAM: 7,
}

_MAX_PREFIX = 5  # Prometheus reads the length prefix as a 32-bit varint
_MAX_FIELD = (1 << 29) - 1  # the largest field number protobuf allows
_METRIC_NAME = re.compile(rb"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(rb"[a-zA-Z_][a-zA-Z0-9_]*")
_NAME_CACHE = 4096  # validated label names remembered per parse
_unpack_double = struct.Struct("<d").unpack_from
# A byte no text exposition page carries outside a label value or help text.
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class _Bad(Exception):
    """A decoding problem at byte ``offset``; the parser adds the family context."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


def looks_like_protobuf(data: bytes) -> bool:
    """Return whether ``data`` (with no Content-Type) is a delimited protobuf stream.

    Only where the content cannot be a text page: the first message must be
    framed (a short length prefix that fits, the message starting with the
    family's name field) and hold a control byte that a text page would only
    carry inside a label value. Every MetricFamily with a metric holds one:
    the tags of its type, help, labels and values are such bytes.
    """
    try:
        length, pos = _varint(data, 0, min(len(data), _MAX_PREFIX))
    except _Bad:
        return False
    if length == 0 or length > len(data) - pos or data[pos] != 0x0A:
        return False
    return _BINARY.search(data, pos, min(pos + length, pos + 65536)) is not None


def parse(data: bytes, source: str) -> Iterator[Event]:
    """Yield ``Family`` and ``Sample`` events for every MetricFamily message of ``data``.

    Raises:
        ParseError: the stream is malformed (see the module docstring).
    """
    return _Parser(data, source).run()


def format_float(value: float) -> str:
    """Format a bound as Prometheus' protobuf parser does (Go's ``%v``, plus ``.0``).

    ``1`` -> ``1.0``, ``0.005`` -> ``0.005``, ``1e6`` -> ``1e+06``,
    ``inf`` -> ``+Inf``.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0.0"  # Prometheus spells -0 this way too
    # Shortest round-trip digits (what repr finds), laid out as Go's strconv
    # 'g' with precision -1 lays them out: exponent form when the decimal
    # exponent is below -4 or at least 6 (1e+06, 1.5e-05).
    sign = "-" if value < 0 else ""
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + (int(exp_text) if exp_text else 0)  # digits before the decimal point
    if whole == "0":
        point -= len(frac) - len(frac.lstrip("0")) + 1
    digits = digits.rstrip("0")
    exp = point - 1
    if exp < -4 or exp >= 6:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits)) + ".0"
    else:
        text = digits[:point] + "." + digits[point:]
    return sign + text


# --------------------------------------------------------------------------
# Wire-format reading. Every function takes the bytes, a position and the end
# of the enclosing message, and never reads past that end.


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a varint at ``pos``; return its value (unsigned, 64 bits) and the next position."""
    result = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise _Bad(start, "truncated varint")
        b = data[pos]
        pos += 1
        if shift == 63 and b > 1:
            raise _Bad(start, "varint overflows 64 bits")
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _field(data: bytes, pos: int, end: int) -> tuple[int, int, int, int]:
    """Read one field: return (number, wire type, value, next position).

    The value is the integer for a varint and the payload's start for the
    other wire types (whose end is the next position).
    """
    start = pos
    tag = data[pos]
    if tag < 0x80:
        pos += 1
    else:
        tag, pos = _varint(data, pos, end)
    number = tag >> 3
    wt = tag & 7
    if number == 0 or number > _MAX_FIELD:
        raise _Bad(start, f"field number {number} out of range")
    if wt == _VARINT:
        value, pos = _varint(data, pos, end)
        return number, wt, value, pos
    if wt == _LEN:
        if pos < end and data[pos] < 0x80:
            length = data[pos]
            pos += 1
        else:
            length, pos = _varint(data, pos, end)
        if length > end - pos:
            raise _Bad(start, f"field {number}: length {length} runs past the end of its message")
        return number, wt, pos, pos + length
    if wt == _I64:
        if end - pos < 8:
            raise _Bad(start, f"field {number}: truncated 64-bit value")
        return number, wt, pos, pos + 8
    if wt == _I32:
        if end - pos < 4:
            raise _Bad(start, f"field {number}: truncated 32-bit value")
        return number, wt, pos, pos + 4
    if wt in (_SGROUP, _EGROUP):
        raise _Bad(start, f"field {number}: group wire type {wt} is not supported")
    raise _Bad(start, f"field {number}: invalid wire type {wt}")


def _expect(schema: _Schema, number: int, wt: int, offset: int) -> _Schema | None:
    """Check a known field's wire type; return its message schema (None: scalar or unknown)."""
    known = schema.get(number)
    if known is None:
        return None
    if wt not in known[0]:
        raise _Bad(
            offset,
            f"{_NAMES[id(schema)]} field {number} has wire type {wt}, expected {known[0][0]}",
        )
    return known[1]


def _check(data: bytes, pos: int, end: int, schema: _Schema) -> None:
    """Validate a message whose values are not needed, recursing into known submessages only."""
    while pos < end:
        start = pos
        number, wt, value, pos = _field(data, pos, end)
        sub = _expect(schema, number, wt, start)
        if wt != _LEN:
            continue
        if sub is not None:
            _check(data, value, pos, sub)
        elif schema is _HISTOGRAM_MSG and number in _PACKED:
            _check_packed(data, value, pos, _PACKED[number])


def _check_packed(data: bytes, pos: int, end: int, kind: int) -> None:
    if kind == _I64:
        if (end - pos) % 8:
            raise _Bad(pos, "packed doubles: length is not a multiple of 8")
        return
    while pos < end:
        _, pos = _varint(data, pos, end)


def _double(data: bytes, pos: int) -> float:
    return float(_unpack_double(data, pos)[0])


def _payload(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Frame the LEN field whose one-byte tag is at ``pos``: return its payload's start and end.

    The same as ``_field`` for that case, with the usual one- and two-byte
    lengths read inline.
    """
    start = pos
    pos += 1
    if pos < end and data[pos] < 0x80:
        length = data[pos]
        pos += 1
    elif pos + 1 < end and data[pos + 1] < 0x80:
        length = (data[pos] & 0x7F) | data[pos + 1] << 7
        pos += 2
    else:
        length, pos = _varint(data, pos, end)
    if length > end - pos:
        raise _Bad(
            start, f"field {data[start] >> 3}: length {length} runs past the end of its message"
        )
    return pos, pos + length


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


# --------------------------------------------------------------------------


class _Histogram:
    """What counting needs of one metric's Histogram message(s)."""

    __slots__ = ("count", "count_float", "native", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.count_float = 0.0
        self.sum = 0.0
        self.native = False

    @property
    def total(self) -> float:
        return self.count_float if self.count_float > 0 else float(self.count)


def _result(gen: Generator[Sample, None, _Histogram]) -> _Histogram:
    """Run a histogram walk that emits nothing and return what it read."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


Ranges = list[tuple[int, int]]
Labels = tuple[tuple[str, str], ...]


class _Parser:
    # Bounds on the caches of decoded label pairs and formatted bounds, which
    # repeat across the metrics of a page.
    PAIR_CACHE = 16384
    BOUND_CACHE = 4096

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.source = source
        self.names: dict[bytes, str] = {}  # validated label names
        self.pairs: dict[bytes, tuple[str, str]] = {}  # raw LabelPair message -> decoded
        self.bounds: dict[float, str] = {}  # le / quantile values, formatted
        self.family_name: str | None = None

    def run(self) -> Iterator[Event]:
        data = self.data
        n = len(data)
        pos = 0
        ordinal = 0
        while pos < n:
            ordinal += 1
            start = pos
            self.family_name = None
            try:
                try:
                    length, body = _varint(data, pos, min(n, pos + _MAX_PREFIX))
                except _Bad:
                    if n - pos < _MAX_PREFIX:
                        raise _Bad(start, "truncated length prefix") from None
                    raise _Bad(start, "length prefix longer than 5 bytes") from None
                if length > n - body:
                    raise _Bad(
                        start, f"message length {length} runs past the end ({n - body} left)"
                    )
                pos = body + length
                yield from self.family(body, pos, ordinal)
            except _Bad as exc:
                name = f" ({self.family_name!r})" if self.family_name else ""
                raise ParseError(
                    self.source,
                    0,
                    f"protobuf MetricFamily #{ordinal} at byte {start}{name}: "
                    f"{exc.message} (byte {exc.offset})",
                ) from None

    def bound(self, value: float) -> str:
        text = self.bounds.get(value)
        if text is None:
            if len(self.bounds) >= self.BOUND_CACHE:
                self.bounds.clear()
            text = self.bounds[value] = format_float(value)
        return text

    # -- families

    def family(self, pos: int, end: int, ordinal: int) -> Iterator[Event]:
        data = self.data
        name_b = help_b = unit_b = b""
        mtype = 0
        first: tuple[int, int] | None = None
        start = pos
        # First walk: metadata (which may follow the metrics on the wire); metrics
        # are only framed here, and the first one kept for the native test.
        while pos < end:
            if data[pos] == 0x22:  # a metric
                value, pos = _payload(data, pos, end)
                if first is None:
                    first = (value, pos)
                continue
            fstart = pos
            number, wt, value, pos = _field(data, pos, end)
            _expect(_FAMILY, number, wt, fstart)
            if number == 1:
                name_b = data[value:pos]
            elif number == 2:
                help_b = data[value:pos]
            elif number == 3:
                mtype = value & 0xFFFFFFFF  # an enum is an int32, as Go reads it
                mtype -= (mtype >> 31) << 32
            elif number == 4:
                if first is None:
                    first = (value, pos)
            elif number == 5:
                unit_b = data[value:pos]
        if first is None:
            return  # Prometheus skips families without metrics
        if _METRIC_NAME.fullmatch(name_b) is None:
            raise _Bad(start, f"invalid metric name {name_b.decode('utf-8', 'replace')!r}")
        name = self.family_name = name_b.decode("ascii")
        try:
            help_text = help_b.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(start, "help text is not valid UTF-8") from None
        if not 0 <= mtype < len(TYPES):
            raise _Bad(start, f"unknown metric type {mtype}")
        value_field = _VALUE_FIELD[mtype]
        histogram = mtype in (_HISTOGRAM, _GAUGE_HISTOGRAM)
        native = False
        if histogram:
            _, ranges, _ = self.metric(*first, value_field)
            native = _result(self.histogram(ranges, name, (), None, 0, False)).native
        yield Family(
            name,
            TYPES[mtype],
            help_text if help_b else None,
            unit_b.decode("utf-8", "replace") if unit_b else None,
            ordinal,
        )
        # Second walk: the metrics, one at a time.
        pos = start
        while pos < end:
            if data[pos] == 0x22:
                value, pos = _payload(data, pos, end)
            else:
                _, _, _, pos = _field(data, pos, end)
                continue
            labels, ranges, ts = self.metric(value, pos, value_field)
            if histogram:
                h = yield from self.histogram(ranges, name, labels, ts, ordinal, not native)
                if native:
                    yield Sample(name, name, labels, h.total, ts, ordinal)
            elif mtype == _SUMMARY:
                yield from self.summary(ranges, name, labels, ts, ordinal)
            else:
                yield Sample(name, name, labels, self.value(ranges), ts, ordinal)

    # -- metrics

    def metric(self, pos: int, end: int, value_field: int) -> tuple[Labels, Ranges, float | None]:
        """Decode a Metric's labels and timestamp, and frame its value message(s).

        Returns the labels, the byte ranges of every occurrence of
        ``value_field`` (protobuf merges repeated messages) and the
        timestamp. Other value messages are only validated, and so are the
        value messages of counters, gauges, untyped and summaries; a
        histogram family's histograms are validated by ``histogram``.
        """
        data = self.data
        pairs = self.pairs
        labels: list[tuple[str, str]] = []
        ranges: Ranges = []
        ts_ms = 0
        start = pos
        vtag = value_field << 3 | _LEN
        vschema = _METRIC[value_field][1]
        assert vschema is not None
        while pos < end:
            if data[pos] == 0x0A and pos + 1 < end and data[pos + 1] < 0x80:
                # A label pair shorter than 128 bytes, the usual case: decoded
                # once per distinct raw message.
                ps = pos + 2
                pos = ps + data[pos + 1]
                if pos > end:
                    raise _Bad(ps - 2, "field 1: length runs past the end of its message")
                raw = data[ps:pos]
                pair = pairs.get(raw)
                if pair is None:
                    pair = self.label_pair(ps, pos)
                    if len(pairs) >= self.PAIR_CACHE:
                        pairs.clear()
                    pairs[raw] = pair
                labels.append(pair)
                continue
            if data[pos] == vtag:
                value, pos = _payload(data, pos, end)
                ranges.append((value, pos))
                if value_field != 7 and not (pos - value == 9 and data[value] == 0x09):
                    _check(data, value, pos, vschema)
                continue
            fstart = pos
            number, wt, value, pos = _field(data, pos, end)
            schema = _expect(_METRIC, number, wt, fstart)
            if number == 1:
                labels.append(self.label_pair(value, pos))
            elif number == 6:
                ts_ms = _signed(value)
            elif schema is not None:
                if number == value_field:
                    ranges.append((value, pos))
                    if number == 7 or (pos - value == 9 and data[value] == 0x09):
                        continue  # validated by histogram(), or just a double
                _check(data, value, pos, schema)
        if len(labels) > 1 and len({k for k, _ in labels}) != len(labels):
            seen: set[str] = set()
            for k, _ in labels:
                if k in seen:
                    raise _Bad(start, f"label name {k!r} repeated in one metric")
                seen.add(k)
        # Prometheus reads a timestamp of 0 as "no timestamp" (proto2 cannot tell).
        return tuple(labels), ranges, ts_ms / 1000.0 if ts_ms else None

    def label_pair(self, pos: int, end: int) -> tuple[str, str]:
        data = self.data
        name_b = value_b = b""
        start = pos
        while pos < end:
            fstart = pos
            number, wt, value, pos = _field(data, pos, end)
            _expect(_LABEL_PAIR, number, wt, fstart)
            if number == 1:
                name_b = data[value:pos]
            elif number == 2:
                value_b = data[value:pos]
        name = self.names.get(name_b)
        if name is None:
            if _LABEL_NAME.fullmatch(name_b) is None:
                raise _Bad(start, f"invalid label name {name_b.decode('utf-8', 'replace')!r}")
            if len(self.names) >= _NAME_CACHE:
                self.names.clear()
            name = self.names[name_b] = name_b.decode("ascii")
        try:
            return name, value_b.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(start, f"value of label {name!r} is not valid UTF-8") from None

    def value(self, ranges: Ranges) -> float:
        """The ``value`` (field 1) of validated Counter/Gauge/Untyped messages; the last wins."""
        data = self.data
        found = 0.0
        for pos, end in ranges:
            while pos < end:
                number, _, value, pos = _field(data, pos, end)
                if number == 1:
                    found = _double(data, value)
        return found

    def summary(
        self, ranges: Ranges, name: str, labels: Labels, ts: float | None, line: int
    ) -> Iterator[Sample]:
        """Yield a summary's quantiles, ``_sum`` and ``_count`` from validated messages."""
        data = self.data
        count = 0
        total = 0.0
        for pos, end in ranges:
            while pos < end:
                number, _, value, pos = _field(data, pos, end)
                if number == 1:
                    count = value
                elif number == 2:
                    total = _double(data, value)
                elif number == 3:
                    q = v = 0.0
                    qpos = value
                    while qpos < pos:
                        qn, _, qv, qpos = _field(data, qpos, pos)
                        if qn == 1:
                            q = _double(data, qv)
                        elif qn == 2:
                            v = _double(data, qv)
                    yield Sample(name, name, (*labels, ("quantile", self.bound(q))), v, ts, line)
        yield Sample(name, name + "_sum", labels, total, ts, line)
        yield Sample(name, name + "_count", labels, float(count), ts, line)

    def histogram(
        self,
        ranges: Ranges,
        name: str,
        labels: Labels,
        ts: float | None,
        line: int,
        classic: bool,
    ) -> Generator[Sample, None, _Histogram]:
        """Validate and read a metric's Histogram message(s); return what counting needs.

        With ``classic``, yield its classic series: buckets as they come
        (none after an explicit ``+Inf`` bucket), then the ``+Inf`` bucket if
        there was none, ``_sum`` and ``_count`` once the whole message is read.
        """
        data = self.data
        bounds = self.bounds
        h = _Histogram()
        inf_seen = not classic
        bucket_name = name + "_bucket"
        for pos, end in ranges:
            while pos < end:
                tag = data[pos]
                # Fast paths for what client libraries send most: a native bucket
                # delta, a bucket of just a count below 2**14 and a bound, the count,
                # the sum.
                if (tag == 0x68 or tag == 0x50) and pos + 1 < end and data[pos + 1] < 0x80:
                    h.native = True
                    pos += 2
                    continue
                if tag == 0x1A and pos + 1 < end:
                    size = data[pos + 1]
                    b = pos + 2
                    if (
                        (size == 11 or size == 12)
                        and b + size <= end
                        and data[b] == 0x08
                        and data[b + size - 9] == 0x11
                    ):
                        cum = data[b + 1]
                        if size == 12:
                            if cum < 0x80 or data[b + 2] >= 0x80:
                                cum = -1  # not a two-byte varint: take the slow path
                            else:
                                cum = (cum & 0x7F) | data[b + 2] << 7
                        elif cum >= 0x80:
                            cum = -1
                        if cum >= 0:
                            pos = b + size
                            if not inf_seen:
                                bound = _unpack_double(data, pos - 8)[0]
                                le = bounds.get(bound) or self.bound(bound)
                                inf_seen = le == "+Inf"
                                yield Sample(
                                    name, bucket_name, (*labels, ("le", le)), float(cum), ts, line
                                )
                            continue
                elif tag == 0x11 and pos + 9 <= end:
                    h.sum = _unpack_double(data, pos + 1)[0]
                    pos += 9
                    continue
                elif tag == 0x08 and pos + 1 < end and data[pos + 1] < 0x80:
                    h.count = data[pos + 1]
                    pos += 2
                    continue
                elif tag == 0x68 or tag == 0x50 or tag == 0x08:
                    value, pos = _varint(data, pos + 1, end)
                    if tag == 0x08:
                        h.count = value
                    else:
                        h.native = True
                    continue
                fstart = pos
                number, wt, value, pos = _field(data, pos, end)
                schema = _expect(_HISTOGRAM_MSG, number, wt, fstart)
                if number == 3:
                    bucket = self.bucket(value, pos)
                    if not inf_seen:
                        le = self.bound(bucket[0])
                        inf_seen = le == "+Inf"
                        yield Sample(name, bucket_name, (*labels, ("le", le)), bucket[1], ts, line)
                elif number == 1:
                    h.count = value
                elif number == 2:
                    h.sum = _double(data, value)
                elif number == 4:
                    h.count_float = _double(data, value)
                elif number in (6, 8):
                    if _double(data, value) > 0:
                        h.native = True
                elif number == 7:
                    if value > 0:
                        h.native = True
                elif 9 <= number <= 14:
                    h.native = True
                    if schema is not None:
                        _check(data, value, pos, schema)
                    elif wt == _LEN:
                        _check_packed(data, value, pos, _PACKED[number])
                elif schema is not None:
                    _check(data, value, pos, schema)
        if classic:
            if not inf_seen:
                yield Sample(name, bucket_name, (*labels, ("le", "+Inf")), h.total, ts, line)
            yield Sample(name, name + "_sum", labels, h.sum, ts, line)
            yield Sample(name, name + "_count", labels, h.total, ts, line)
        return h

    def bucket(self, pos: int, end: int) -> tuple[float, float]:
        """Validate and read a Bucket: its upper bound and cumulative count."""
        data = self.data
        bound = 0.0
        cum = 0
        cum_float = 0.0
        while pos < end:
            start = pos
            number, wt, value, pos = _field(data, pos, end)
            sub = _expect(_BUCKET, number, wt, start)
            if number == 1:
                cum = value
            elif number == 2:
                bound = _double(data, value)
            elif number == 4:
                cum_float = _double(data, value)
            elif sub is not None:
                _check(data, value, pos, sub)
        return bound, cum_float if cum_float > 0 else float(cum)
