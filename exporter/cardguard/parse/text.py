"""Parse the Prometheus text format (0.0.4, and 1.0.0's quoted names) as Prometheus reads it.

Pure: bytes in, ``model`` events out. The reference is Prometheus 2.42's
``promparse.go`` (see ``exposition`` for the leniency rule and the oracle):
blanks (space, tab) may surround every token, except before a metric name
that starts a line (Prometheus makes them part of the name, and refuses it);
commas between label pairs are optional and a trailing one is allowed; a
value is anything Go's ``strconv.ParseFloat`` reads except hexadecimal and
``_`` forms and values too large for a float (``0x1p-3`` is refused, as is
``-NaN``); a timestamp is digits only (milliseconds, int64). Comment lines
are anything starting with ``#`` other than ``# HELP <name> ...`` and
``# TYPE <name> <type>`` (a bare ``# HELP`` is a comment); HELP and TYPE may
repeat and come after samples (a TYPE that changes a family's type starts a
new family of that name); ``le`` and ``quantile`` need not be numbers. A NUL
byte at the start of a line ends the page, as Prometheus' lexer reads it as
end of input. One deliberate gap: Prometheus accepts a raw newline inside a
quoted label value or name; cardguard, which reads line by line, refuses it
(no client writes one).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from cardguard.parse.blocks import FAST_LINE_TEXT, UNESCAPED_LINE_TEXT
from cardguard.parse.lines import LineParser, expand_block, longest_first
from cardguard.parse.model import Family, Sample, SampleBlock, ScanEvent
from cardguard.parse.tokens import (
    DIGITS,
    LABEL_NAME,
    METRIC_NAME,
    PLAIN_PAIR,
    QUOTED_RE,
    LineError,
    check_series,
    go_float,
    label_value,
    meta_name,
    plain_labels,
    plain_sample,
    quoted_name,
    unescape,
)

TEXT_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
# Sample-name suffixes each type owns. "" is the bare family name.
SUFFIXES: dict[str, tuple[str, ...]] = {
    "histogram": ("_bucket", "_sum", "_count", ""),
    "summary": ("", "_sum", "_count"),
}

_BLANK = b" \t"
_INT64_MAX = (1 << 63) - 1
# What may follow a label value: '}', a comma, the next pair.
_LABEL_START = re.compile(rb'[a-zA-Z_"}]')
# A value token: anything up to a blank, '{' or NUL (Prometheus' lexer).
_TEXT_VALUE = re.compile(rb"[^{ \t\x00]+")
# A label set of the plain shape (no blanks, no quoted names), split with one findall.
_PLAIN_LABELS = re.compile(rb"\{(?:" + PLAIN_PAIR + rb"(?:," + PLAIN_PAIR + rb")*+,?)?\}")
# A whole sample line of the plain shape: name, label set, value and
# timestamp (integer milliseconds), in one match.
_PLAIN_LINE = re.compile(
    rb"([a-zA-Z_:][a-zA-Z0-9_:]*+)("
    + _PLAIN_LABELS.pattern
    + rb")? ([^ \t{\x00]++)(?: ([0-9]{1,18}+))?$"
)


def scan(
    data: bytes, source: str, *, chunk_bytes: int = 1 << 20, fast: bool = True
) -> Iterator[ScanEvent]:
    """Yield a page's events, with common-shape sample runs as blocks (``exposition.scan``)."""
    return TextParser(data, source, chunk_bytes if fast else 0).run()


def block_samples(block: SampleBlock, source: str) -> Iterator[Sample]:
    """Expand a validated block of this format into per-line samples."""
    return expand_block(block, source, text_sample)


class TextParser(LineParser):
    """Prometheus text format (0.0.4, and 1.0.0's quoted names), as Prometheus reads it."""

    SUFFIXES = SUFFIXES
    ALL_SUFFIXES = longest_first(SUFFIXES)
    UNTYPED = "untyped"
    UNESCAPED_LINE = UNESCAPED_LINE_TEXT
    FAST_LINE = FAST_LINE_TEXT

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
                except LineError as exc:
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
            raise LineError("invalid metric name: blanks before it")
        name, labels, value, ts = text_sample(stripped)
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
        name, after = meta_name(rest[4:].lstrip(_BLANK), k)
        # Prometheus takes the text after the name less its first character.
        text = after[1:]
        if k == "HELP":
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                raise LineError("help text is not a valid UTF-8 string") from None
            return self.metadata(name, k, unescape(text), lineno)
        ftype = text.decode("utf-8", "replace")
        if ftype not in TEXT_TYPES:
            raise LineError(f"invalid metric type {ftype!r}")
        return self.metadata(name, k, ftype, lineno)


def _skip(line: bytes, pos: int) -> int:
    n = len(line)
    while pos < n and line[pos] in _BLANK:
        pos += 1
    return pos


def text_sample(
    line: bytes,
) -> tuple[str, list[tuple[str, str]], float, float | None]:
    """Parse one text-format sample line (leading blanks already stripped)."""
    plain = _PLAIN_LINE.match(line)
    if plain is not None:
        return plain_sample(line, plain)
    n = len(line)
    name: str | None = None
    labels: list[tuple[str, str]] = []
    pos = 0
    if line[0] != 0x7B:  # '{'
        m = METRIC_NAME.match(line)
        if m is None:
            raise LineError(
                f"{line[:1].decode('utf-8', 'replace')!r} is not a valid start of a sample"
            )
        name = m.group().decode("ascii")
        pos = _skip(line, m.end())
    if pos < n and line[pos] == 0x7B:
        end = plain_labels(line, pos, _PLAIN_LABELS, labels) if name is not None else None
        if end is None:
            del labels[:]
            name, end = _text_labels(line, pos, name, labels)
        pos = _skip(line, end)
    if name is None:
        raise LineError("metric name not set")
    m = _TEXT_VALUE.match(line, pos)
    if m is None:
        raise LineError(f"expected value after metric {name!r}")
    value = go_float(m.group())
    pos = _skip(line, m.end())
    ts = None
    if pos < n:
        m = DIGITS.match(line, pos)
        if m is None:
            raise LineError("expected timestamp or new record")
        ms = int(m.group())
        if ms > _INT64_MAX:
            raise LineError(f"timestamp {m.group().decode()} out of range")
        ts = ms / 1000.0
        if _skip(line, m.end()) < n:
            raise LineError("expected next entry after timestamp")
    check_series(labels)
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
            raise LineError("expected label name or '}'")
        c = line[pos]
        if c == 0x7D:  # '}'
            return name, pos + 1
        if c == 0x22:  # '"': a quoted label name, or the metric name
            q = QUOTED_RE.match(line, pos)
            if q is None:
                raise LineError("unterminated quoted string")
            raw = line[pos + 1 : q.end() - 1]
            pos = _skip(line, q.end())
            if pos < n and line[pos] in (0x2C, 0x7D):  # ',' or '}'
                if name is not None:
                    raise LineError("metric name already set")
                name = quoted_name(raw, "metric name")
                if line[pos] == 0x2C:
                    pos += 1
                continue
            lname = quoted_name(raw, "label name")
        else:
            m = LABEL_NAME.match(line, pos)
            if m is None:
                raise LineError(f"expected label name at column {pos + 1}")
            lname = m.group().decode("ascii")
            pos = _skip(line, m.end())
        if pos >= n or line[pos] != 0x3D:  # '='
            raise LineError(f"expected equal after label name {lname!r}")
        pos = _skip(line, pos + 1)
        q = QUOTED_RE.match(line, pos)
        if q is None:
            raise LineError(f"expected label value for label {lname!r}")
        labels.append((lname, label_value(line[pos + 1 : q.end() - 1], lname)))
        pos = _skip(line, q.end())
        if pos < n and line[pos] == 0x2C:
            pos += 1
        elif pos >= n or _LABEL_START.match(line, pos) is None:
            # Prometheus reads the next label name without a comma before it.
            raise LineError(f"expected ',' or '}}' after label {lname!r}")
