"""The text formats' fast path: the common shape of a sample line, and reading blocks of them.

Pure. Runs of sample lines of one family that have the common shape
(``name{l="v",...} value [timestamp]``) are validated with one regular
expression pass over their byte range and come out of ``exposition.scan``
as one ``SampleBlock``, so a block is exactly as trustworthy as per-line
samples. Consumers that count (``cardinality``, ``incremental``, the offender
checks) read a block with the functions here, in C-level passes, without
creating a Python object per sample.

Two patterns per format, which accept the same lines and refuse a label name
repeated within a line, or ``__name__`` as a label. A run without a
backslash (nearly every page a client library writes) is read by the
*unescaped* pattern (``UNESCAPED_LINE_TEXT``, ``UNESCAPED_LINE_OPENMETRICS``),
which validates each line and keeps its label pairs in the same pass: a
value is then anything up to the next '"', so the pairs come apart with
``bytes.split`` and each label's distinct values are gathered as the run is
read (``unescaped_label_values``, carried by the block). Any other run is
validated by the *escaped* pattern (``FAST_LINE_TEXT``,
``FAST_LINE_OPENMETRICS``), which reads escapes, and its values are gathered
when asked for (``label_values``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator

from cardguard.parse.model import SampleBlock
from cardguard.parse.tokens import PAIR, QUOTED, unescape

# Label pairs of the common shape, for the fast paths: a label name that is
# not __name__ and, from the second pair on, not the name of an earlier pair
# of the line (backreferences to the earlier names), up to FAST_PAIRS pairs.
# Lines with more pairs go to the strict parser.
FAST_PAIRS = 32
_FAST_NAME = rb"(?!__name__=)([a-zA-Z_][a-zA-Z0-9_]*+)="


def _distinct_pairs(n: int, value: bytes, groups_before: int = 0) -> bytes:
    """Up to ``n`` comma-separated pairs of distinct names; name groups after ``groups_before``."""
    inner = b""
    for j in range(n, 0, -1):
        earlier = b"|".join(b"\\%d" % (groups_before + i) for i in range(1, j))
        not_earlier = b"(?!(?:" + earlier + b")=)" if j > 1 else b""
        pair = not_earlier + _FAST_NAME + value
        inner = pair + (b"(?:," + inner + b")?+" if inner else b"")
    return inner


_FAST_LABELS = _distinct_pairs(FAST_PAIRS, QUOTED)
# A decimal value small enough that it cannot overflow a float (at most 200
# integer digits and a two-digit exponent), or +-Inf, or NaN.
_FAST_NUMBER = rb"[+-]?+(?:[0-9]{1,200}+(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]{1,2}+)?+"
_FAST_VALUE = rb"(?:" + _FAST_NUMBER + rb"|[+-]?+Inf|NaN)"


def _line(labels: bytes, openmetrics: bool) -> re.Pattern[bytes]:
    """A sample line of the common shape: a name, an optional label block that opens with
    ``labels`` (text allows a trailing comma), a value, an optional timestamp."""
    comma = rb"" if openmetrics else rb",?"
    stamp = rb"(?: " + _FAST_NUMBER + rb")?+$" if openmetrics else rb"(?: [0-9]{1,18}+)?+$"
    return re.compile(
        rb"^[a-zA-Z_:][a-zA-Z0-9_:]*+(?:" + labels + comma + rb")?\})? " + _FAST_VALUE + stamp,
        re.MULTILINE,
    )


# The common shape of a sample line, per format; no capture but the label
# names, so that subn() validates a whole run without building objects.
FAST_LINE_TEXT = _line(rb"\{(?:" + _FAST_LABELS, openmetrics=False)
FAST_LINE_OPENMETRICS = _line(rb"\{(?:" + _FAST_LABELS, openmetrics=True)
# The unescaped patterns: the same lines as the escaped ones above when a run holds
# no backslash, with the label pairs (without braces or a trailing comma) as
# group 1, so that sub() with GROUP_1 validates a run and leaves its label
# pairs, one line's after another, in one pass. A value is '[^"]*+', which a
# byte loop matches several times faster than a character class; it could
# run on past a raw newline, but then a match covers two lines and the count
# of matches falls short of the run's lines.
_UNESCAPED_LABELS = rb"\{(?:(" + _distinct_pairs(FAST_PAIRS, rb'"[^"]*+"', 1) + rb")"
UNESCAPED_LINE_TEXT = _line(_UNESCAPED_LABELS, openmetrics=False)
UNESCAPED_LINE_OPENMETRICS = _line(_UNESCAPED_LABELS, openmetrics=True)
# The replacement that keeps a match's group 1 (a line's label pairs); a line
# without labels leaves nothing (sub() skips None).
GROUP_1 = operator.methodcaller("group", 1)
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


def newlines(chunk: bytes) -> int:
    """How many newlines ``chunk`` holds.

    ``bytes.count`` of one byte compares every byte in a loop; ``replace``
    finds each newline with memchr, which on lines of tens of bytes costs a
    third of that, copy included.
    """
    return len(chunk) - len(chunk.replace(b"\n", b""))


def valid_utf8(chunk: bytes) -> bool:
    """Whether ``chunk`` is UTF-8 (a word-at-a-time ASCII check, usually)."""
    if chunk.isascii():
        return True
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def unescaped_label_values(pairs: bytes) -> dict[bytes, set[bytes]] | None:
    """Each label's distinct values, from the label pairs of a run the unescaped pattern read.

    ``pairs`` is what sub() with ``GROUP_1`` left of the run: each line's
    pairs, separated by newlines. Returns label name -> its distinct values
    (raw bytes, which need no unescaping), or None where a value starts with
    a comma, which ``split`` would take for the end of a pair (the escaped
    pattern reads such a run).
    """
    # A line's last pair ends in '"' and a newline; made '",', every pair ends so. A
    # value starting with a comma would add a piece: the quotes count the pairs.
    pieces = (pairs + b"\n").replace(b'"\n', b'",').split(b'",')
    if len(pieces) - 1 != (len(pairs) - len(pairs.replace(b'"', b""))) // 2:
        return None
    grouped: dict[bytes, set[bytes]] = {}
    for pair in set(pieces):
        name, _, value = pair.partition(b'="')
        vals = grouped.get(name)
        if vals is None:
            grouped[name] = {value}
        else:
            vals.add(value)
    grouped.pop(b"", None)  # the empty piece after the last pair
    # A line without labels left a newline before the next line's first name.
    for name in [n for n in grouped if n[:1] == b"\n"]:
        grouped.setdefault(name.lstrip(b"\n"), set()).update(grouped.pop(name))
    grouped.pop(b"", None)
    return grouped


def label_values(block: SampleBlock) -> dict[bytes, set[bytes]]:
    """Each label's distinct values in the block: name -> values, unescaped, UTF-8 bytes."""
    if block.labels is not None:
        return block.labels
    grouped: dict[bytes, set[bytes]] = {}
    # Deduplicating the raw pairs first is much cheaper than splitting all of them.
    for pair in set(PAIR.findall(block.data, block.start, block.end)):
        name, _, raw = pair.partition(b'="')
        raw = raw[:-1]
        if b"\\" in raw:
            raw = unescape(raw).encode()
        vals = grouped.get(name)
        if vals is None:
            grouped[name] = {raw}
        else:
            vals.add(raw)
    return grouped


def block_label_pairs(block: SampleBlock) -> list[bytes]:
    """Return every label pair of the block as raw ``name="escaped value"`` bytes, in order.

    ``split_pair`` splits one. To count values, :func:`label_values` is cheaper.
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
