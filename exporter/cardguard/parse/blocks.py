"""The text formats' fast path: the common shape of a sample line, and reading blocks of them.

Pure. Runs of sample lines of one family that have the common shape
(``name{l="v",...} value [timestamp]``) are validated with one regular
expression pass over their byte range (``FAST_LINE_TEXT``,
``FAST_LINE_OPENMETRICS``, which also refuse a label name repeated within a
line) and come out of ``exposition.scan`` as one ``SampleBlock``, so a block
is exactly as trustworthy as per-line samples. Consumers that count
(``cardinality``, ``incremental``, the offender checks) read a block with the
functions here, in C-level passes, without creating a Python object per
sample.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from cardguard.parse.model import SampleBlock
from cardguard.parse.tokens import PAIR, QUOTED

# Label pairs of the common shape, for the fast paths: a label name that is
# not __name__ and, from the second pair on, not the name of an earlier pair
# of the line (backreferences to the earlier names), up to FAST_PAIRS pairs.
# Lines with more pairs go to the strict parser.
FAST_PAIRS = 32
_FAST_NAME = rb"(?!__name__=)([a-zA-Z_][a-zA-Z0-9_]*+)="


def _distinct_pairs(n: int) -> bytes:
    inner = b""
    for j in range(n, 0, -1):
        earlier = b"|".join(b"\\%d" % i for i in range(1, j))
        not_earlier = b"(?!(?:" + earlier + b")=)" if j > 1 else b""
        pair = not_earlier + _FAST_NAME + QUOTED
        inner = pair + (b"(?:," + inner + b")?+" if inner else b"")
    return inner


_FAST_LABELS = _distinct_pairs(FAST_PAIRS)
# A decimal value small enough that it cannot overflow a float (at most 200
# integer digits and a two-digit exponent), or +-Inf, or NaN.
_FAST_NUMBER = rb"[+-]?+(?:[0-9]{1,200}+(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]{1,2}+)?+"
_FAST_VALUE = rb"(?:" + _FAST_NUMBER + rb"|[+-]?+Inf|NaN)"
# The common shape of a sample line, per format; no capture but the label
# names, so that subn() validates a whole run without building objects.
FAST_LINE_TEXT = re.compile(
    rb"^[a-zA-Z_:][a-zA-Z0-9_:]*+(?:\{(?:"
    + _FAST_LABELS
    + rb",?)?\})? "
    + _FAST_VALUE
    + rb"(?: [0-9]{1,18}+)?+$",
    re.MULTILINE,
)
FAST_LINE_OPENMETRICS = re.compile(
    rb"^[a-zA-Z_:][a-zA-Z0-9_:]*+(?:\{(?:"
    + _FAST_LABELS
    + rb")?\})? "
    + _FAST_VALUE
    + rb"(?: "
    + _FAST_NUMBER
    + rb")?+$",
    re.MULTILINE,
)
# " value [timestamp]" at the end of a text-format line whose series part ends in
# a name character or "}" (``strip_values``). The space comes first so the regex
# engine hunts for it as a literal (several times faster); the lookbehind then
# checks the character before it.
_VALUE_AT_END = re.compile(
    rb" (?<=[}a-zA-Z0-9_:] )" + _FAST_VALUE + rb"(?: [0-9]{1,18}+)?+$", re.MULTILINE
)
# The metric name that starts a line of the common shape.
FIRST_NAME = re.compile(rb"[a-zA-Z_:][a-zA-Z0-9_:]*+(?=[{ ])")
# Series identity (name and label block) at the start of validated lines.
_SERIES_KEY = re.compile(rb"^[^ {\n]+(?:\{[^\n]*\})?", re.MULTILINE)
# Name and value token of a validated fast-path line: the label block, if any,
# ends at the line's last "}" because values and timestamps never contain one.
_NAME_VALUE = re.compile(rb"^([^ {\n]+)(?:\{[^\n]*\})? (\S+)", re.MULTILINE)


def valid_utf8(data: bytes, start: int, end: int) -> bool:
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
    return PAIR.findall(block.data, block.start, block.end)


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
    return FAST_LINE_TEXT.subn(b"", data[start:end])[1]


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
