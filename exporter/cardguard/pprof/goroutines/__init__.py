"""Goroutine profiles in all three formats and crash dumps, grouped by stack, creator or label.

Formats (what ``/debug/pprof/goroutine`` serves), one reader each:

- ``proto`` (``debug=0``, :mod:`.proto`): a pprof profile with one
  ``goroutine/count`` value and, per sample, the goroutine labels set with
  ``pprof.Do``;
- ``debug1`` (:mod:`.debug1`): counted stacks, ``N @ 0x... 0x...``, an
  optional ``# labels: {"k":"v"}`` line and ``#`` frame lines;
- ``debug2`` (:mod:`.dump`): the full dump, one goroutine at a time, as Go
  prints it on a crash, ``goroutine 7 [chan receive, 15 minutes]:``; also
  inside a whole crash report or pasted, indented, from a test log.

``/debug/pprof/goroutineleak`` serves the same formats; a snapshot taken from
it has ``kind == "goroutineleak"``. In its proto and debug1 forms every
goroutine is a confirmed leak (blocked on something no runnable goroutine can
reach); its debug2 form lists all goroutines and marks the leaked ones.

Every reader returns a :class:`GoroutineSnapshot` (:mod:`.model`) whose
stacks are reduced to the frames all three formats show (:mod:`.normalise`);
:mod:`.grouping` groups them by stack, label value or creator, with ids that
are the same whichever format a stack came from. This package's namespace is
the API: :func:`parse` and :func:`detect_format` here, the rest from those
modules.
"""

from __future__ import annotations

from cardguard.errors import ProfileError
from cardguard.gunzip import MAGIC
from cardguard.pprof.goroutines.debug1 import HEADER as _DEBUG1_HEADER
from cardguard.pprof.goroutines.debug1 import parse_debug1
from cardguard.pprof.goroutines.dump import find_dump, holds_dump, parse_debug2
from cardguard.pprof.goroutines.grouping import (
    DEFAULT_MAX_LABEL_VALUES,
    RUNTIME_PREFIXES,
    apply_leaks,
    by_creator,
    group,
    group_id,
    growth,
    label_values,
    top_function,
)
from cardguard.pprof.goroutines.model import (
    FORMATS,
    KINDS,
    CreatorGroup,
    GoroutineGroup,
    GoroutineRecord,
    GoroutineSnapshot,
    GroupGrowth,
)
from cardguard.pprof.goroutines.normalise import normalise_stack
from cardguard.pprof.model import DEFAULT_MAX_DECODED_BYTES

__all__ = [
    "DEFAULT_MAX_LABEL_VALUES",
    "FORMATS",
    "KINDS",
    "RUNTIME_PREFIXES",
    "CreatorGroup",
    "GoroutineGroup",
    "GoroutineRecord",
    "GoroutineSnapshot",
    "GroupGrowth",
    "apply_leaks",
    "by_creator",
    "detect_format",
    "find_dump",
    "group",
    "group_id",
    "growth",
    "label_values",
    "normalise_stack",
    "parse",
    "top_function",
]


def detect_format(data: bytes) -> str:
    """Guess the format of a goroutine profile body: ``proto``, ``debug1`` or ``debug2``.

    A text holding a goroutine header anywhere (a crash report, a dump
    pasted from a log) is ``debug2``.
    """
    if data.startswith(MAGIC):
        return "proto"
    first = data.lstrip()[:200].split(b"\n", 1)[0]
    if _DEBUG1_HEADER.match(first):
        return "debug1"
    if holds_dump(data):
        return "debug2"
    return "proto"


def parse(
    data: bytes,
    source: str,
    fmt: str | None = None,
    kind: str | None = None,
    max_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> GoroutineSnapshot:
    """Parse a goroutine or goroutineleak profile in any of the three formats, or a crash dump.

    Args:
        data: the response body or file contents.
        source: file path or URL, used in errors.
        fmt: ``proto``, ``debug1`` or ``debug2``; ``None`` detects it.
        kind: ``goroutine`` or ``goroutineleak``; ``None`` takes it from the
            debug1 header or the proto sample type, else ``goroutine``. Pass
            ``goroutineleak`` for bodies of ``/debug/pprof/goroutineleak``.

    Raises:
        ProfileError: the data is not a goroutine profile in that format.
    """
    if fmt is None:
        fmt = detect_format(data)
    if fmt not in FORMATS:
        raise ProfileError(source, f"unknown goroutine profile format {fmt!r}")
    if kind is not None and kind not in KINDS:
        raise ProfileError(source, f"unknown goroutine profile kind {kind!r}")
    if len(data) > max_bytes:
        raise ProfileError(source, f"goroutine profile exceeds the limit of {max_bytes} bytes")
    if fmt == "proto":
        # Imported here: the proto reader brings the protobuf runtime, the larger
        # part of `cardguard goroutines`' start-up, which a text profile never needs.
        from cardguard.pprof.goroutines.proto import parse_proto

        return parse_proto(data, source, kind, max_bytes)
    if fmt == "debug1":
        return parse_debug1(data, source, kind)
    return parse_debug2(data, source, kind)
