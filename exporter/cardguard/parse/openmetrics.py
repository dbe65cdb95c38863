"""Parse OpenMetrics text (1.0, and 0.0.1) as Prometheus reads it, native histograms included.

Pure: bytes in, ``model`` events out. The reference is Prometheus 2.42's
``openmetricsparse.go`` (see ``exposition`` for the leniency rule and the
oracle), widened to exemplars on any sample (2.43) and native histograms
(Prometheus' OpenMetrics 2.0 parser): single spaces exactly, no blank lines,
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
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from cardguard.parse.blocks import FAST_LINE_OPENMETRICS, UNESCAPED_LINE_OPENMETRICS
from cardguard.parse.lines import LineParser, SampleLine, expand_block, longest_first
from cardguard.parse.model import Family, Sample, SampleBlock, ScanEvent
from cardguard.parse.tokens import (
    DIGITS,
    LABEL_NAME,
    METRIC_NAME,
    PLAIN_PAIR,
    QUOTED_RE,
    LineError,
    check_series,
    finite_float,
    go_float,
    label_value,
    meta_name,
    plain_labels,
    plain_sample,
    quoted_name,
    unescape,
)

OM_TYPES = frozenset(
    {"counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown"}
)
# Sample-name suffixes each type owns. "" is the bare family name.
SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "unknown": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created", ""),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum", ""),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
}

# A label set of the plain shape (no quoted names, no trailing comma), split with one findall.
_PLAIN_LABELS = re.compile(rb"\{(?:" + PLAIN_PAIR + rb"(?:," + PLAIN_PAIR + rb")*+)?\}")
# A whole sample line of the plain shape: name, label set, value and
# timestamp (seconds), in one match.
_PLAIN_LINE = re.compile(
    rb"([a-zA-Z_:][a-zA-Z0-9_:]*+)(" + _PLAIN_LABELS.pattern + rb")? ([^ {]++)(?: ([^ #][^ ]*+))?$"
)


def scan(
    data: bytes, source: str, *, chunk_bytes: int = 1 << 20, fast: bool = True
) -> Iterator[ScanEvent]:
    """Yield a page's events, with common-shape sample runs as blocks (``exposition.scan``)."""
    return OpenMetricsParser(data, source, chunk_bytes if fast else 0).run()


def block_samples(block: SampleBlock, source: str) -> Iterator[Sample]:
    """Expand a validated block of this format into per-line samples."""
    return expand_block(block, source, _sample_line)


def _sample_line(line: bytes) -> SampleLine:
    name, labels, value, ts, _, _ = om_sample(line)
    return name, labels, value, ts


class OpenMetricsParser(LineParser):
    """OpenMetrics 1.0 (and 0.0.1), as Prometheus reads it; see the module docstring."""

    SUFFIXES = SUFFIXES
    ALL_SUFFIXES = longest_first(SUFFIXES)
    UNTYPED = "unknown"
    UNESCAPED_LINE = UNESCAPED_LINE_OPENMETRICS
    FAST_LINE = FAST_LINE_OPENMETRICS

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
                except LineError as exc:
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
            raise LineError(
                "expected '# HELP', '# TYPE', '# UNIT' or '# EOF' (OpenMetrics has no comments)"
            )
        k = kind.decode()
        if line[6:7] != b" ":
            raise LineError(f"expected metric name after {k}")
        name, after = meta_name(line[7:], k)
        if not after.startswith(b" ") or not newline:
            raise LineError(f"expected text in {k}")
        text = after[1:]
        if k == "HELP":
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                raise LineError("help text is not a valid UTF-8 string") from None
            return self.metadata(name, k, unescape(text), lineno)
        value = text.decode("utf-8", "replace")
        if k == "TYPE":
            if value not in OM_TYPES:
                raise LineError(f"invalid metric type {value!r}")
        elif value and not name.endswith("_" + value):
            raise LineError(f"unit {value!r} not a suffix of metric {name!r}")
        return self.metadata(name, k, value, lineno)

    def line(self, line: bytes, lineno: int) -> list[ScanEvent]:
        if not line:
            raise LineError("blank line (OpenMetrics has none)")
        name, labels, value, ts, _, composite = om_sample(line)
        if composite is not None:
            fam = self.fams.get(name)
            ftype = fam.type if fam is not None else None
            if ftype not in ("histogram", "gaugehistogram"):
                raise LineError(
                    "a native histogram value needs a histogram or gaugehistogram family "
                    "(TYPE line) named like the sample"
                )
            value = _native_histogram(composite, ftype == "gaugehistogram")
        return self.sample_events(name, labels, value, ts, lineno)


def om_sample(
    line: bytes,
) -> tuple[str, list[tuple[str, str]], float, float | None, int, bytes | None]:
    """Parse one OpenMetrics sample line.

    Returns name, labels, value, timestamp, the number of exemplars, and for
    a native histogram its composite value (``value`` is then 0; see
    ``_native_histogram``).
    """
    plain = _PLAIN_LINE.match(line)
    if plain is not None:
        return (*plain_sample(line, plain, om=True), 0, None)
    n = len(line)
    name: str | None = None
    labels: list[tuple[str, str]] = []
    pos = 0
    if line[0] != 0x7B:
        m = METRIC_NAME.match(line)
        if m is None:
            raise LineError(
                f"{line[:1].decode('utf-8', 'replace')!r} is not a valid start of a sample"
            )
        name = m.group().decode("ascii")
        pos = m.end()
    if pos < n and line[pos] == 0x7B:
        end = plain_labels(line, pos, _PLAIN_LABELS, labels) if name is not None else None
        if end is None:
            del labels[:]
            name, end = _om_labels(line, pos, name, labels, exemplar=False)
        pos = end
    if name is None:
        raise LineError("metric name not set")
    if pos >= n or line[pos] != 0x20:
        raise LineError(f"expected a space and a value after metric {name!r}")
    vend = line.find(b" ", pos + 1)
    if vend < 0:
        vend = n
    tok = line[pos + 1 : vend]
    if not tok:
        raise LineError(f"expected value after metric {name!r}")
    composite = None
    value = 0.0
    if tok[0] == 0x7B:  # '{': a native histogram
        composite = tok
    else:
        value = go_float(tok)
    pos = vend
    ts = None
    if pos < n and not line.startswith(b" # {", pos):
        tend = line.find(b" ", pos + 1)
        if tend < 0:
            tend = n
        ts = finite_float(line[pos + 1 : tend], "timestamp")
        pos = tend
        if composite is not None and line.startswith(b" st@", pos):
            # OpenMetrics 2.0's start timestamp, read with its native histograms.
            send = line.find(b" ", pos + 1)
            if send < 0:
                send = n
            finite_float(line[pos + 4 : send], "start timestamp")
            pos = send
    exemplars = 0
    while pos < n:
        if not line.startswith(b" # {", pos):
            after = "exemplar" if exemplars else "timestamp"
            raise LineError(f"expected next entry after {after}")
        if exemplars and composite is None:
            raise LineError("expected next entry after exemplar (one exemplar per sample)")
        pos = _om_exemplar(line, pos + 3)
        exemplars += 1
    check_series(labels)
    return name, labels, value, ts, exemplars, composite


def _om_exemplar(line: bytes, pos: int) -> int:
    """Parse ``{labels} value [timestamp]`` at ``line[pos] == '{'``; return where it ends."""
    n = len(line)
    _, pos = _om_labels(line, pos, None, [], exemplar=True)
    if pos >= n or line[pos] != 0x20:
        raise LineError("expected value after exemplar labels")
    vend = line.find(b" ", pos + 1)
    if vend < 0:
        vend = n
    tok = line[pos + 1 : vend]
    if not tok:
        raise LineError("expected value after exemplar labels")
    go_float(tok, "exemplar value")
    pos = vend
    if pos < n and not line.startswith(b" # {", pos):
        tend = line.find(b" ", pos + 1)
        if tend < 0:
            tend = n
        finite_float(line[pos + 1 : tend], "exemplar timestamp")
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
            q = QUOTED_RE.match(line, pos)
            if q is None:
                raise LineError("unterminated quoted string")
            raw = line[pos + 1 : q.end() - 1]
            pos = q.end()
            if not exemplar and pos < n and line[pos] in (0x2C, 0x7D):
                if name is not None:
                    raise LineError("metric name already set")
                name = quoted_name(raw, "metric name")
            else:
                lname = quoted_name(raw, "label name")
                pos = _omlabel_value(line, pos, lname, labels, exemplar)
        else:
            m = LABEL_NAME.match(line, pos)
            if m is None:
                raise LineError(f"expected label name at column {pos + 1}")
            pos = _omlabel_value(line, m.end(), m.group().decode("ascii"), labels, exemplar)
        if pos < n and line[pos] == 0x7D:
            return name, pos + 1
        if pos >= n or line[pos] != 0x2C:
            raise LineError("expected comma or brace close")
        pos += 1


def _omlabel_value(
    line: bytes, pos: int, lname: str, labels: list[tuple[str, str]], exemplar: bool
) -> int:
    """Read ``="value"`` at ``line[pos]`` into ``labels``; return the offset after it."""
    if line[pos : pos + 1] != b"=":
        raise LineError(f"expected equal after label name {lname!r}")
    q = QUOTED_RE.match(line, pos + 1)
    if q is None or (exemplar and b"\x00" in q.group()):
        # Prometheus' lexer lets a NUL into series label values only.
        raise LineError(f"expected label value for label {lname!r}")
    labels.append((lname, label_value(line[pos + 2 : q.end() - 1], lname)))
    return q.end()


# --------------------------------------------------------------------------
# Native histograms

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
        raise LineError("native histogram: composite value must be wrapped in {}")
    count_key, sum_key = ("gcount", "gsum") if gauge else ("count", "sum")
    fields: dict[str, bytes] = {}
    for part in _split_composite(tok[1:-1]):
        key_b, sep, val = part.partition(b":")
        key = key_b.decode("utf-8", "replace")
        if not sep:
            raise LineError(f"native histogram: invalid composite field (missing ':'): {key!r}")
        if key in ("bucket", "quantile"):
            raise LineError(
                f"composite {key} lists (OpenMetrics 2.0 classic histograms and summaries) "
                "are not read: no released Prometheus reads them"
            )
        if key not in _NH_FIELDS and key not in (count_key, sum_key):
            raise LineError(f"native histogram: unknown composite field {key!r}")
        if key in fields:
            raise LineError(f"native histogram: duplicate composite field {key!r}")
        fields[key] = val
    for key in (count_key, sum_key, "schema", "zero_threshold", "zero_count"):
        if key not in fields:
            raise LineError(f"native histogram: missing required field: {key}")
    schema = fields["schema"]
    if _INT.fullmatch(schema) is None or not -4 <= int(schema) <= 8:
        raise LineError(
            f"native histogram: schema must be between -4 and 8, got "
            f"{schema.decode('utf-8', 'replace')!r}"
        )
    count = go_float(fields[count_key], count_key)
    total = go_float(fields[sum_key], sum_key)
    zero_threshold = go_float(fields["zero_threshold"], "zero_threshold")
    if not math.isfinite(zero_threshold) or zero_threshold < 0:
        raise LineError("native histogram: zero_threshold must be a non-negative, finite number")
    zero_count = go_float(fields["zero_count"], "zero_count")
    is_float = not (_integral(count) and _integral(zero_count))
    observed = zero_count
    for side in ("positive", "negative"):
        spans = _spans(fields.get(side + "_spans", b"[]"), side)
        deltas, absolute = fields.get(side + "_deltas"), fields.get(side + "_buckets")
        if deltas is not None and absolute is not None:
            raise LineError(f"native histogram: both {side}_deltas and {side}_buckets")
        buckets = _bucket_list(deltas if deltas is not None else absolute or b"[]", side)
        need = sum(length for _, length in spans)
        if need != len(buckets):
            raise LineError(
                f"native histogram: {side} side: spans need {need} buckets, "
                f"have {len(buckets)} buckets"
            )
        running = 0.0
        for i, b in enumerate(buckets):
            if deltas is not None:
                if not _integral(b):
                    raise LineError(f"native histogram: {side}_deltas must be integers")
                running += b
            else:
                running = b
                is_float = is_float or not _integral(b)
            if running < 0:
                raise LineError(
                    f"native histogram: {side} side: bucket number {i + 1} has observation "
                    f"count of {running:g}"
                )
            observed += running
    if is_float:
        if count < 0 or zero_count < 0:
            raise LineError("native histogram: negative observation count")
    elif (observed > count) if math.isnan(total) else (observed != count):
        raise LineError(
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
        raise LineError(f"native histogram: {side}_spans must be wrapped in []")
    out: list[tuple[int, int]] = []
    inner = text[1:-1]
    for i, part in enumerate(inner.split(b",") if inner else ()):
        off, sep, length = part.partition(b":")
        if not sep or _INT.fullmatch(off) is None or DIGITS.fullmatch(length) is None:
            raise LineError(
                f"native histogram: invalid {side} span {part.decode('utf-8', 'replace')!r}"
            )
        if i and int(off) < 0:
            raise LineError(
                f"native histogram: {side} side: span number {i + 1} with offset {int(off)}"
            )
        out.append((int(off), int(length)))
    return out


def _bucket_list(text: bytes, side: str) -> list[float]:
    if not (text.startswith(b"[") and text.endswith(b"]")):
        raise LineError(f"native histogram: {side} buckets must be wrapped in []")
    inner = text[1:-1]
    return [go_float(p, f"{side} bucket") for p in (inner.split(b",") if inner else ())]
