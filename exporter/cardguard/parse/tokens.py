"""The tokens the two text formats share: names, quoted strings, floats, label pairs.

Pure, and below ``text`` and ``openmetrics``, which build their grammars from
these pieces; ``blocks`` builds the fast path's from them too. A problem in
a line is a ``LineError``; the parser that read the line turns it into a
``ParseError`` naming the source and the line.

What Prometheus' scrape loop and TSDB refuse after parsing, in both text
formats (``check_series``): a ``__name__`` label beside the metric name, a
label name repeated within one series, and a quoted name that is empty or
not UTF-8. A repeated name is fine where Prometheus drops or replaces it
first: every label of a name that has an empty value somewhere in the
series is dropped, and ``job`` and ``instance`` are replaced by the target's.
"""

from __future__ import annotations

import math
import re

METRIC_NAME = re.compile(rb"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(rb"[a-zA-Z_][a-zA-Z0-9_]*")
# A quoted string (label value, or a quoted name), unrolled-loop form: any
# backslash escape is accepted, as Prometheus' lexers accept it; only \\, \"
# and \n are decoded (``unescape``).
QUOTED = rb'"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"'
QUOTED_RE = re.compile(QUOTED)
# What Go's strconv.ParseFloat reads, without the hexadecimal and '_' forms
# Prometheus' parseFloat refuses: decimal numbers, Inf/Infinity (signed) and
# NaN (unsigned), case-insensitive.
_GO_FLOAT = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf(?:inity)?))|(?i:nan)"
)
DIGITS = re.compile(rb"[0-9]+")
# One label pair inside validated lines, as the raw text ``name="escaped value"``.
# Anchoring on the '{' or ',' before the name keeps the search from retrying
# inside every word of a long value; validated lines keep it in step.
PAIR = re.compile(rb"[{,]([a-zA-Z_][a-zA-Z0-9_]*+=" + QUOTED + rb")")
# A label pair of the plain shape (no blanks, no quoted name), for the per-format
# ``{...}`` patterns ``plain_labels`` and ``plain_sample`` read.
PLAIN_PAIR = rb"[a-zA-Z_][a-zA-Z0-9_]*+=" + QUOTED


class LineError(Exception):
    """A problem in one line; the caller adds source and line number."""


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


def go_float(tok: bytes, what: str = "value") -> float:
    """Read a number as Prometheus' parseFloat does (Go's ParseFloat, no hex, no '_')."""
    if _GO_FLOAT.fullmatch(tok) is None:
        text = tok.decode("utf-8", "replace")
        if any(c in tok for c in b"pP_"):
            raise LineError(f"unsupported character in float: {what} {text!r}")
        raise LineError(f"invalid {what} {text!r}")
    v = float(tok)
    if math.isinf(v) and tok[-1:] not in (b"f", b"F", b"y", b"Y"):
        raise LineError(f"{what} {tok.decode('ascii')!r} out of range")
    return v


def finite_float(tok: bytes, what: str) -> float:
    """Read a number that must be finite (an OpenMetrics timestamp)."""
    ts = go_float(tok, what)
    if math.isnan(ts) or math.isinf(ts):
        raise LineError(f"invalid {what}")
    return ts


def quoted_name(raw: bytes, what: str) -> str:
    """Decode a quoted (UTF-8) metric or label name, without its quotes."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LineError(f"{what} is not valid UTF-8") from None
    name = unescape(raw)
    if not name:
        raise LineError(f"{what} is empty")
    return name


def label_value(raw: bytes, name: str) -> str:
    """Decode a label value, without its quotes; refuse one that is not UTF-8."""
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LineError(f"invalid UTF-8 label value for label {name!r}") from None
    return unescape(raw) if "\\" in value else value


def check_series(labels: list[tuple[str, str]]) -> None:
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
            raise LineError('label name "__name__" is not unique (it is the metric name)')
        if k in seen:
            repeated.add(k)
        seen.add(k)
    for k in repeated:
        if k not in ("job", "instance") and all(v for name, v in labels if name == k):
            raise LineError(f"label name {k!r} is not unique")


def meta_name(rest: bytes, kind: str) -> tuple[str, bytes]:
    """The metric name at the start of a HELP/TYPE/UNIT line's rest, and what follows it."""
    if rest[:1] == b'"':
        q = QUOTED_RE.match(rest)
        if q is None:
            raise LineError(f"expected metric name after {kind}")
        return unescape(rest[1 : q.end() - 1]), rest[q.end() :]
    m = METRIC_NAME.match(rest)
    if m is None:
        raise LineError(f"expected metric name after {kind}")
    return m.group().decode("ascii"), rest[m.end() :]


def plain_sample(
    line: bytes, m: re.Match[bytes], om: bool = False
) -> tuple[str, list[tuple[str, str]], float, float | None]:
    """Name, labels, value and timestamp of a line a format's plain-line pattern matched.

    The pattern's groups are the name, the label set, the value and the
    timestamp; ``om`` reads the timestamp as OpenMetrics writes it (seconds,
    a float), else as the text format does (integer milliseconds).
    """
    name = m.group(1).decode("ascii")
    labels: list[tuple[str, str]] = []
    if m.group(2):
        for pair in PAIR.findall(line, m.start(2), m.end(2)):
            lname, _, quoted = pair.partition(b"=")
            key = lname.decode("ascii")
            labels.append((key, label_value(quoted[1:-1], key)))
        check_series(labels)
    value = go_float(m.group(3))
    ts: float | None = None
    if m.group(4) is not None:
        ts = finite_float(m.group(4), "timestamp") if om else int(m.group(4)) / 1000.0
    return name, labels, value, ts


def plain_labels(
    line: bytes, pos: int, pattern: re.Pattern[bytes], labels: list[tuple[str, str]]
) -> int | None:
    """Read a plain-shape label set at ``line[pos] == '{'``; its end, or None if not plain.

    ``pattern`` is the format's plain ``{...}`` pattern (built on ``PLAIN_PAIR``).
    """
    m = pattern.match(line, pos)
    if m is None:
        return None
    end = m.end()
    for pair in PAIR.findall(line, pos, end):
        name, _, quoted = pair.partition(b"=")
        lname = name.decode("ascii")
        labels.append((lname, label_value(quoted[1:-1], lname)))
    return end
