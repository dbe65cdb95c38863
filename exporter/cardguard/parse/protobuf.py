"""Parse the Prometheus protobuf exposition format into ``model``'s events.

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
caches of decoded label pairs (``ProtobufParser.PAIR_CACHE``, the raw pairs repeat
across a family's metrics) and formatted bounds.

The wire format is read by hand (``protowire``, which says why).
"""

from __future__ import annotations

import math
import re
from collections.abc import Generator, Iterator

from cardguard.errors import ParseError
from cardguard.parse.model import Event, Family, Sample
from cardguard.parse.protowire import (
    BUCKET_MSG,
    FAMILY_MSG,
    HISTOGRAM_MSG,
    LABEL_PAIR_MSG,
    LEN,
    MAX_PREFIX,
    METRIC_MSG,
    PACKED,
    WireError,
    check,
    check_packed,
    expect,
    payload,
    read_double,
    read_field,
    read_varint,
    signed,
    unpack_double,
)
from cardguard.parse.tokens import LABEL_NAME, METRIC_NAME

MEDIA_TYPE = "application/vnd.google.protobuf"
CONTENT_TYPE = MEDIA_TYPE + "; proto=io.prometheus.client.MetricFamily; encoding=delimited"

# MetricType enum values and the type names the text formats use for them.
TYPES = ("counter", "gauge", "summary", "untyped", "histogram", "gaugehistogram")
_COUNTER, _GAUGE, _SUMMARY, _UNTYPED, _HISTOGRAM, _GAUGE_HISTOGRAM = range(6)

# Which Metric field carries the value of each family type.
_VALUE_FIELD = {
    _COUNTER: 3,
    _GAUGE: 2,
    _SUMMARY: 4,
    _UNTYPED: 5,
    _HISTOGRAM: 7,
    _GAUGE_HISTOGRAM: 7,
}

_NAME_CACHE = 4096  # validated label names remembered per parse
# A byte no text exposition page carries outside a label value or help text.
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def looks_like_protobuf(data: bytes) -> bool:
    """Return whether ``data`` (with no Content-Type) is a delimited protobuf stream.

    Only where the content cannot be a text page: the first message must be
    framed (a short length prefix that fits, the message starting with the
    family's name field) and hold a control byte that a text page would only
    carry inside a label value. Every MetricFamily with a metric holds one:
    the tags of its type, help, labels and values are such bytes.
    """
    try:
        length, pos = read_varint(data, 0, min(len(data), MAX_PREFIX))
    except WireError:
        return False
    if length == 0 or length > len(data) - pos or data[pos] != 0x0A:
        return False
    return _BINARY.search(data, pos, min(pos + length, pos + 65536)) is not None


def parse(data: bytes, source: str) -> Iterator[Event]:
    """Yield ``Family`` and ``Sample`` events for every MetricFamily message of ``data``.

    Raises:
        ParseError: the stream is malformed (see the module docstring).
    """
    return ProtobufParser(data, source).run()


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


class ProtobufParser:
    """One page's MetricFamily stream, walked family by family (see the module docstring)."""

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
                    length, body = read_varint(data, pos, min(n, pos + MAX_PREFIX))
                except WireError:
                    if n - pos < MAX_PREFIX:
                        raise WireError(start, "truncated length prefix") from None
                    raise WireError(start, "length prefix longer than 5 bytes") from None
                if length > n - body:
                    raise WireError(
                        start, f"message length {length} runs past the end ({n - body} left)"
                    )
                pos = body + length
                yield from self.family(body, pos, ordinal)
            except WireError as exc:
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
                value, pos = payload(data, pos, end)
                if first is None:
                    first = (value, pos)
                continue
            fstart = pos
            number, wt, value, pos = read_field(data, pos, end)
            expect(FAMILY_MSG, number, wt, fstart)
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
        if METRIC_NAME.fullmatch(name_b) is None:
            raise WireError(start, f"invalid metric name {name_b.decode('utf-8', 'replace')!r}")
        name = self.family_name = name_b.decode("ascii")
        try:
            help_text = help_b.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError(start, "help text is not valid UTF-8") from None
        if not 0 <= mtype < len(TYPES):
            raise WireError(start, f"unknown metric type {mtype}")
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
                value, pos = payload(data, pos, end)
            else:
                _, _, _, pos = read_field(data, pos, end)
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
        vtag = value_field << 3 | LEN
        vschema = METRIC_MSG[value_field][1]
        assert vschema is not None
        while pos < end:
            if data[pos] == 0x0A and pos + 1 < end and data[pos + 1] < 0x80:
                # A label pair shorter than 128 bytes, the usual case: decoded
                # once per distinct raw message.
                ps = pos + 2
                pos = ps + data[pos + 1]
                if pos > end:
                    raise WireError(ps - 2, "field 1: length runs past the end of its message")
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
                value, pos = payload(data, pos, end)
                ranges.append((value, pos))
                if value_field != 7 and not (pos - value == 9 and data[value] == 0x09):
                    check(data, value, pos, vschema)
                continue
            fstart = pos
            number, wt, value, pos = read_field(data, pos, end)
            schema = expect(METRIC_MSG, number, wt, fstart)
            if number == 1:
                labels.append(self.label_pair(value, pos))
            elif number == 6:
                ts_ms = signed(value)
            elif schema is not None:
                if number == value_field:
                    ranges.append((value, pos))
                    if number == 7 or (pos - value == 9 and data[value] == 0x09):
                        continue  # validated by histogram(), or just a double
                check(data, value, pos, schema)
        if len(labels) > 1 and len({k for k, _ in labels}) != len(labels):
            seen: set[str] = set()
            for k, _ in labels:
                if k in seen:
                    raise WireError(start, f"label name {k!r} repeated in one metric")
                seen.add(k)
        # Prometheus reads a timestamp of 0 as "no timestamp" (proto2 cannot tell).
        return tuple(labels), ranges, ts_ms / 1000.0 if ts_ms else None

    def label_pair(self, pos: int, end: int) -> tuple[str, str]:
        data = self.data
        name_b = value_b = b""
        start = pos
        while pos < end:
            fstart = pos
            number, wt, value, pos = read_field(data, pos, end)
            expect(LABEL_PAIR_MSG, number, wt, fstart)
            if number == 1:
                name_b = data[value:pos]
            elif number == 2:
                value_b = data[value:pos]
        name = self.names.get(name_b)
        if name is None:
            if LABEL_NAME.fullmatch(name_b) is None:
                raise WireError(start, f"invalid label name {name_b.decode('utf-8', 'replace')!r}")
            if len(self.names) >= _NAME_CACHE:
                self.names.clear()
            name = self.names[name_b] = name_b.decode("ascii")
        try:
            return name, value_b.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError(start, f"value of label {name!r} is not valid UTF-8") from None

    def value(self, ranges: Ranges) -> float:
        """The ``value`` (field 1) of validated Counter/Gauge/Untyped messages; the last wins."""
        data = self.data
        found = 0.0
        for pos, end in ranges:
            while pos < end:
                number, _, value, pos = read_field(data, pos, end)
                if number == 1:
                    found = read_double(data, value)
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
                number, _, value, pos = read_field(data, pos, end)
                if number == 1:
                    count = value
                elif number == 2:
                    total = read_double(data, value)
                elif number == 3:
                    q = v = 0.0
                    qpos = value
                    while qpos < pos:
                        qn, _, qv, qpos = read_field(data, qpos, pos)
                        if qn == 1:
                            q = read_double(data, qv)
                        elif qn == 2:
                            v = read_double(data, qv)
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
                                bound = unpack_double(data, pos - 8)[0]
                                le = bounds.get(bound) or self.bound(bound)
                                inf_seen = le == "+Inf"
                                yield Sample(
                                    name, bucket_name, (*labels, ("le", le)), float(cum), ts, line
                                )
                            continue
                elif tag == 0x11 and pos + 9 <= end:
                    h.sum = unpack_double(data, pos + 1)[0]
                    pos += 9
                    continue
                elif tag == 0x08 and pos + 1 < end and data[pos + 1] < 0x80:
                    h.count = data[pos + 1]
                    pos += 2
                    continue
                elif tag == 0x68 or tag == 0x50 or tag == 0x08:
                    value, pos = read_varint(data, pos + 1, end)
                    if tag == 0x08:
                        h.count = value
                    else:
                        h.native = True
                    continue
                fstart = pos
                number, wt, value, pos = read_field(data, pos, end)
                schema = expect(HISTOGRAM_MSG, number, wt, fstart)
                if number == 3:
                    bucket = self.bucket(value, pos)
                    if not inf_seen:
                        le = self.bound(bucket[0])
                        inf_seen = le == "+Inf"
                        yield Sample(name, bucket_name, (*labels, ("le", le)), bucket[1], ts, line)
                elif number == 1:
                    h.count = value
                elif number == 2:
                    h.sum = read_double(data, value)
                elif number == 4:
                    h.count_float = read_double(data, value)
                elif number in (6, 8):
                    if read_double(data, value) > 0:
                        h.native = True
                elif number == 7:
                    if value > 0:
                        h.native = True
                elif 9 <= number <= 14:
                    h.native = True
                    if schema is not None:
                        check(data, value, pos, schema)
                    elif wt == LEN:
                        check_packed(data, value, pos, PACKED[number])
                elif schema is not None:
                    check(data, value, pos, schema)
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
            number, wt, value, pos = read_field(data, pos, end)
            sub = expect(BUCKET_MSG, number, wt, start)
            if number == 1:
                cum = value
            elif number == 2:
                bound = read_double(data, value)
            elif number == 4:
                cum_float = read_double(data, value)
            elif sub is not None:
                check(data, value, pos, sub)
        return bound, cum_float if cum_float > 0 else float(cum)
