"""Legacy pprof inputs: Go's ``debug=1`` text profiles and the old binary CPU format.

``go tool pprof`` reads these besides profile.proto, and people paste them.
One module per format family, each reading into a
:class:`~cardguard.pprof.legacy.raw.RawProfile` that :func:`parse` turns into a
:class:`~cardguard.pprof.model.Profile`:

- ``text``: Go's and gperftools' heap, count (goroutine, threadcreate) and
  contention (mutex, block) text, and gperftools' thread dumps;
- ``java``: the Java agent's ``heapz`` and ``contentionz``;
- ``cpu``: binary CPU profiles (Go before 1.9, gperftools, Java), in either
  word size and byte order;
- ``maps``: the memory map that may follow any of them (``--- Memory map:
  ---`` or ``MAPPED_LIBRARIES:``), naming the binary of each address, so
  unsymbolised frames are named after it;
- ``raw``: what the readers yield, and how it becomes a profile.
"""

from __future__ import annotations

from collections.abc import Callable

from cardguard.pprof.legacy.cpu import parse_cpu
from cardguard.pprof.legacy.java import parse_java
from cardguard.pprof.legacy.raw import RawProfile, Unrecognised, build
from cardguard.pprof.legacy.text import parse_contention, parse_count, parse_heap, parse_threadz
from cardguard.pprof.model import Profile

# pprof's order: the first reader that recognises the text reads it.
TEXT_READERS: tuple[Callable[[list[str], str], RawProfile], ...] = (
    parse_heap,
    parse_count,
    parse_threadz,
    parse_contention,
    parse_java,
)


def parse(data: bytes, source: str) -> Profile | None:
    """Read a legacy profile; ``None`` when ``data`` is in no legacy format pprof reads.

    Raises:
        ProfileError: the input is in a legacy format but malformed.
    """
    if not data:
        return None
    try:
        raw = parse_cpu(data)
    except Unrecognised:
        text = data.decode("utf-8", "replace")
        lines = text.replace("\r\n", "\n").split("\n")
        for reader in TEXT_READERS:
            try:
                raw = reader(lines, source)
                break
            except Unrecognised:
                continue
        else:
            return None
    return build(raw, source)
