"""The old binary CPU profile format (Go before 1.9, gperftools, the Java agent).

Five header words (0, 3, 0, the sampling period in microseconds, 0), then
one record per stack (count, depth, that many addresses) up to an
end-of-data marker, then the process's memory map as text. Either word size
and byte order is read; which one is found from the header.
"""

from __future__ import annotations

import struct

from cardguard.pprof.legacy.java import java_locations
from cardguard.pprof.legacy.maps import memory_map
from cardguard.pprof.legacy.raw import RawProfile, Unrecognised
from cardguard.pprof.model import ValueType

_WORDS: tuple[tuple[str, int], ...] = (("<I", 4), (">I", 4), ("<Q", 8), (">Q", 8))


def parse_cpu(data: bytes) -> RawProfile:
    """Read a binary CPU profile: five header words (0, 3, 0, period in µs, 0), then stacks.

    Raises:
        Unrecognised: not a binary CPU profile, or one cut short.
    """
    for fmt, size in _WORDS:
        if len(data) < 5 * size:
            continue
        header = struct.unpack_from(f"{fmt[0]}5{fmt[1]}", data)
        if header[0] == 0 and header[1] == 3 and header[3] > 0 and header[4] == 0:
            if header[2] in (0, 1):
                java = header[2] == 1
                return _samples(data[5 * size :], header[3] * 1000, fmt, size, java)
    raise Unrecognised


def _samples(body: bytes, period: int, fmt: str, size: int, java: bool) -> RawProfile:
    raw = RawProfile(
        sample_types=(ValueType("samples", "count"), ValueType("cpu", "nanoseconds")),
        period_type=ValueType("cpu", "nanoseconds"),
        period=period,
    )
    word = struct.Struct(fmt)
    n = len(body) // size
    pos = 0

    def next_word() -> int:
        nonlocal pos
        if pos >= n:
            raise Unrecognised
        v: int = word.unpack_from(body, pos * size)[0]
        pos += 1
        return v

    while pos < n:
        count = next_word()
        depth = next_word()
        if depth > (n - pos) * size // 4:
            raise Unrecognised
        addrs = [next_word() for _ in range(depth)]
        if count == 0 and depth == 1 and addrs[0] == 0:
            break  # the end-of-data marker
        # Return addresses point after the call; the leaf is the interrupted PC.
        stack = addrs if java else addrs[:1] + [a - 1 for a in addrs[1:]]
        raw.samples.append((stack, (count, count * period)))
    text = body[pos * size :].decode("utf-8", "replace")
    lines = text.replace("\r\n", "\n").split("\n")
    if java:
        java_locations(lines, raw)
        return raw
    _drop_signal_frames(raw)
    raw.mappings = memory_map(lines)
    for i, (stack, values) in enumerate(raw.samples):
        # The leaf may appear twice: from the signal context and, less one, from unwinding.
        if len(stack) > 1 and stack[0] == stack[1] + 1:
            raw.samples[i] = (stack[:1] + stack[2:], values)
    return raw


def _drop_signal_frames(raw: RawProfile) -> None:
    """Remove a second frame nearly every sample shares: the signal handler's, not the program's.

    pprof does this up to twice, allowing one different sample per 32.
    """
    margin = len(raw.samples) // 32
    for _ in range(2):
        seconds: dict[int, int] = {}
        for stack, _values in raw.samples:
            if len(stack) > 1:
                seconds[stack[1]] = seconds.get(stack[1], 0) + 1
        common = next((a for a, c in seconds.items() if c >= len(raw.samples) - margin), None)
        if common is None:
            continue
        raw.samples = [
            (stack[:1] + stack[2:] if len(stack) > 1 and stack[1] == common else stack, values)
            for stack, values in raw.samples
        ]
