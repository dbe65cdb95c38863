"""Go's and gperftools' legacy text profiles: heap, count, contention and thread dumps.

- heap text, ``/debug/pprof/heap?debug=1`` (and ``allocs``):
  ``heap profile: 3: 1024 [50: 4096] @ heap/1048576``, then one
  ``inuse_objects: inuse_bytes [alloc_objects: alloc_bytes] @ 0x...`` line
  per stack. The header's ``heap/R`` is twice Go's MemProfileRate; values are
  the sampled counts, unsampled here with pprof's formula for a Poisson
  sampler (``1/(1-exp(-size/rate))``) so figures equal ``go tool pprof``'s.
  gperftools' ``heapz_v2``/``heap_v2``/``heapprofile``, ``growthz`` and
  ``fragmentationz`` headers are read the same way;
- count text, ``goroutine``/``threadcreate`` ``?debug=1``:
  ``threadcreate profile: total 7`` then ``N @ 0x...`` lines;
- contention text, Go's ``mutex``/``block`` ``?debug=1`` (``--- mutex:``,
  ``--- contention:``, with ``cycles/second`` and ``sampling period``) and
  gperftools' ``--- contentionz 1 ---``;
- gperftools' thread dumps (``--- threadz 1 ---``), not Go's but read so that
  any input pprof reads is read.

Go's text follows each stack with ``#\\t0xPC\\tfunc+0xOFF\\tfile:line`` lines.
pprof ignores them (it symbolises from the binary, when given one); here
they name the frames. Go prints every frame of a stack there except the
runtime frames at its top (``runtime.mallocgc`` and the like, which pprof
prunes from heap profiles anyway) and ``runtime.goexit`` at its bottom, so
the first are dropped and the second named (:mod:`cardguard.pprof.legacy.raw`).

pprof prunes legacy heap profiles with a pattern of allocator functions; its
Go part is applied here (``runtime\\..*``). The rest names C and C++
allocators, which only matter for symbolised gperftools profiles.
"""

from __future__ import annotations

import math
import re

from cardguard.errors import ProfileError
from cardguard.pprof.legacy.maps import SENTINELS, after_sentinel, memory_map
from cardguard.pprof.legacy.raw import HEX, RawProfile, Unrecognised
from cardguard.pprof.model import Frame, ValueType

# pprof's own drop pattern for legacy heap profiles, the part about Go: every
# runtime function is allocator plumbing, except those that call user code.
HEAP_DROP_FRAMES = r"runtime\..*"
HEAP_KEEP_FRAMES = r"runtime\.panic|runtime\.reflectcall|runtime\.call[0-9]*"

_HEAP_HEADER = re.compile(
    r"heap profile: *(\d+): *(\d+) *\[ *(\d+): *(\d+) *\] *@ *(heap[_a-z0-9]*)/?(\d*)"
)
_GROWTH_HEADER = re.compile(r"heap profile: *(\d+): *(\d+) *\[ *(\d+): *(\d+) *\] @ growthz?")
_FRAGMENTATION_HEADER = re.compile(
    r"heap profile: *(\d+): *(\d+) *\[ *(\d+): *(\d+) *\] @ fragmentationz?"
)
_HEAP_SAMPLE = re.compile(r"(-?\d+): *(-?\d+) *\[ *(\d+): *(\d+) *] @([ x0-9a-f]*)")
_COUNT_HEADER = re.compile(r"(\S+) profile: total \d+")
_COUNT_SAMPLE = re.compile(r"(\d+) @((?: 0x[0-9a-f]+)+)")
_CONTENTION_SAMPLE = re.compile(r"(\d+) *(\d+) @([ x0-9a-f]*)")
_THREADZ_START = re.compile(r"--- threadz \d+ ---")
_THREAD_START = re.compile(r"--- Thread ([0-9A-Fa-f]+) \(name: (.*)/(\d+)\) stack: ---")


def _is_space_or_comment(line: str) -> bool:
    t = line.strip()
    return not t or t[0] == "#"


def _read_symbols(line: str, raw: RawProfile, printed: set[int] | None) -> None:
    """Record a Go ``#\\t0xPC\\tfunc+0xOFF\\tfile:line`` line, if it is one."""
    if printed is None or not line.startswith("#\t0x"):
        return
    parts = [p for p in line[1:].split("\t") if p]
    try:
        pc = int(parts[0], 16)
    except ValueError:
        return
    printed.add(pc)
    if len(parts) < 2:
        return  # "#\t0xPC": Go could not name it
    func = re.sub(r"\+0x[0-9a-f]+$", "", parts[1])
    file, line_no = "", 0
    if len(parts) > 2:
        file, _, num = parts[2].rpartition(":")
        line_no = int(num) if num.isdigit() else 0
        file = file or parts[2]
    frames = raw.symbols.setdefault(pc, [])
    frame = Frame(func, file, line_no)
    if frame not in frames:
        frames.append(frame)


def parse_heap(lines: list[str], source: str) -> RawProfile:
    """Read heap text (Go's ``debug=1``, gperftools' heap headers).

    Raises:
        Unrecognised: not heap text.
        ProfileError: heap text with a malformed sample.
    """
    header = lines[0]
    sampling = ""
    has_alloc = False
    rate = 1
    m = _HEAP_HEADER.search(header)
    if m is not None:
        if m.group(5) in ("heapz_v2", "heap_v2"):
            sampling, rate = "v2", int(m.group(6) or 0)
        elif m.group(5) == "heapprofile":
            rate = 1
        elif m.group(5) == "heap":
            # Go writes twice its MemProfileRate, as gperftools once did.
            sampling, rate = "v2", int(m.group(6) or 0) // 2
        else:
            raise Unrecognised
        # pprof compares the figures as printed.
        a, b, c, d = m.group(1, 2, 3, 4)
        has_alloc = (c != a and c != "0") or (d != b and d != "0")
    elif not (_GROWTH_HEADER.search(header) or _FRAGMENTATION_HEADER.search(header)):
        raise Unrecognised
    names: tuple[tuple[str, str], ...]
    if has_alloc:
        names = (("alloc_objects", "count"), ("alloc_space", "bytes"))
        names += (("inuse_objects", "count"), ("inuse_space", "bytes"))
    else:
        names = (("objects", "count"), ("space", "bytes"))
    raw = RawProfile(
        sample_types=tuple(ValueType(t, u) for t, u in names),
        period_type=ValueType("space", "bytes"),
        period=rate,
        drop=HEAP_DROP_FRAMES,
        keep=HEAP_KEEP_FRAMES,
    )
    symbolised = any(ln.startswith("#\t0x") for ln in lines)
    raw.printed = [] if symbolised else None
    printed: set[int] | None = None
    rest = len(lines)
    for i, line in enumerate(lines[1:], start=1):
        stripped = line.strip()
        if not stripped or stripped[0] == "#":
            _read_symbols(line, raw, printed)
            continue
        if any(s in stripped for s in SENTINELS):
            rest = i
            break
        sm = _HEAP_SAMPLE.search(stripped)
        if sm is None:
            raise ProfileError(source, f"line {i + 1}: malformed heap sample {stripped[:80]!r}")
        values: list[int] = []
        pairs = [(sm.group(3), sm.group(4), "allocation")] if has_alloc else []
        pairs.append((sm.group(1), sm.group(2), "inuse"))
        for count_s, size_s, what in pairs:
            count, size = int(count_s), int(size_s)
            if count == 0 and size != 0:
                raise ProfileError(
                    source, f"line {i + 1}: {what} count was 0 but {what} bytes was {size}"
                )
            if count != 0 and sampling == "v2":
                count, size = scale_heap_sample(count, size, rate)
            values += (count, size)
        addrs = [int(h, 16) - 1 for h in HEX.findall(sm.group(5))]
        raw.samples.append((addrs, tuple(values)))
        if raw.printed is not None:
            printed = set()
            raw.printed.append(printed)
    raw.mappings = memory_map(lines[rest:])
    return raw


def scale_heap_sample(count: int, size: int, rate: int) -> tuple[int, int]:
    """Unsample a heap sample of ``count`` objects, ``size`` bytes, taken every ``rate`` bytes.

    An allocation of ``s`` bytes is sampled with probability
    ``1 - exp(-s/rate)``; dividing by it estimates the real figures. Rates
    of 1 (every allocation) or less (unknown) leave the values as they are.
    """
    if count == 0 or size == 0:
        return 0, 0
    if rate <= 1:
        return count, size
    scale = 1 / (1 - math.exp(-(size / count) / rate))
    return int(count * scale), int(size * scale)


def parse_count(lines: list[str], source: str) -> RawProfile:
    """Read count text (``threadcreate profile: total 7``, then ``N @ 0x...`` lines).

    Raises:
        Unrecognised: not count text.
        ProfileError: count text with a malformed sample.
    """
    i = 0
    while i < len(lines) and _is_space_or_comment(lines[i]):
        i += 1
    m = _COUNT_HEADER.fullmatch(lines[i]) if i < len(lines) else None
    if m is None:
        raise Unrecognised
    kind = m.group(1)
    raw = RawProfile(
        sample_types=(ValueType(kind, "count"),),
        period_type=ValueType(kind, "count"),
        period=1,
    )
    symbolised = any(ln.startswith("#\t0x") for ln in lines)
    raw.printed = [] if symbolised else None
    printed: set[int] | None = None
    rest = len(lines)
    for j in range(i + 1, len(lines)):
        line = lines[j]
        if _is_space_or_comment(line):
            _read_symbols(line, raw, printed)
            continue
        if line.startswith("---"):
            rest = j
            break
        sm = _COUNT_SAMPLE.fullmatch(line)
        if sm is None:
            raise ProfileError(source, f"line {j + 1}: malformed {kind} sample {line[:80]!r}")
        addrs = [int(h, 16) - 1 for h in sm.group(2).split()]
        raw.samples.append((addrs, (int(sm.group(1)),)))
        if raw.printed is not None:
            printed = set()
            raw.printed.append(printed)
    raw.mappings = memory_map(after_sentinel(lines[rest:]))
    return raw


def parse_contention(lines: list[str], source: str) -> RawProfile:
    """Read contention text (Go's ``mutex``/``block`` ``debug=1``, gperftools' contentionz).

    Raises:
        Unrecognised: not contention text, or the Java agent's.
        ProfileError: contention text with a malformed sample.
    """
    first = lines[0]
    if not first.startswith(("--- contentionz ", "--- mutex:", "--- contention:")):
        raise Unrecognised
    raw = RawProfile(
        sample_types=(ValueType("contentions", "count"), ValueType("delay", "nanoseconds")),
        period_type=ValueType("contentions", "count"),
        period=1,
    )
    cpu_hz = 0
    i = 1
    while i < len(lines):
        line = lines[i].strip()
        if _is_space_or_comment(line):
            i += 1
            continue
        if line.startswith("---"):
            break
        key, sep, value = line.partition("=")
        if not sep:
            break
        key, value = key.strip(), value.strip()
        try:
            if key == "cycles/second":
                cpu_hz = int(value, 0)
            elif key == "sampling period":
                raw.period = int(value, 0)
            elif key == "ms since reset":
                raw.duration_nanos = int(value, 0) * 1_000_000
            elif key != "discarded samples":
                raise Unrecognised  # gperftools' format= and resolution= are Java's
        except ValueError as exc:
            raise Unrecognised from exc
        i += 1
    symbolised = any(ln.startswith("#\t0x") for ln in lines)
    raw.printed = [] if symbolised else None
    printed: set[int] | None = None
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("---"):
            break
        if _is_space_or_comment(line):
            _read_symbols(lines[i], raw, printed)
        else:
            sm = _CONTENTION_SAMPLE.search(line)
            if sm is None:
                raise ProfileError(source, f"line {i + 1}: malformed contention sample {line!r}")
            delay, count = int(sm.group(1)), int(sm.group(2))
            if raw.period > 0:
                if cpu_hz > 0:
                    delay = int(delay * raw.period / (cpu_hz / 1e9))
                count *= raw.period
            addrs = [int(h, 16) - 1 for h in HEX.findall(sm.group(3))]
            raw.samples.append((addrs, (count, delay)))
            if raw.printed is not None:
                printed = set()
                raw.printed.append(printed)
        i += 1
    raw.mappings = memory_map(after_sentinel(lines[i:]))
    return raw


def parse_threadz(lines: list[str], source: str) -> RawProfile:
    """Read a gperftools thread dump: one stack per thread, ``creator:`` addresses included.

    Raises:
        Unrecognised: not a thread dump.
    """
    i = 0
    while i < len(lines) and _is_space_or_comment(lines[i]):
        i += 1
    if i >= len(lines):
        raise Unrecognised
    if _THREADZ_START.search(lines[i]):
        i += 1
        while i < len(lines) and not (
            any(s in lines[i] for s in SENTINELS) or lines[i].startswith("-")
        ):
            i += 1
    elif not _THREAD_START.search(lines[i]):
        raise Unrecognised
    raw = RawProfile(
        sample_types=(ValueType("thread", "count"),),
        period_type=ValueType("thread", "count"),
        period=1,
    )
    while i < len(lines) and not any(s in lines[i] for s in SENTINELS):
        if lines[i].startswith("---- no stack trace for"):
            break
        if not _THREAD_START.search(lines[i]):
            raise Unrecognised
        addrs: list[int] = []
        same = False
        i += 1
        while i < len(lines):
            line = lines[i].strip()
            if line.startswith("---"):
                break
            if "same as previous thread" in line:
                same = True
            elif line:
                addrs += [int(h, 16) for h in HEX.findall(line)]
            i += 1
        if same or not addrs:
            if raw.samples:  # counted with the thread before
                stack, values = raw.samples[-1]
                raw.samples[-1] = (stack, (values[0] + 1,))
            continue
        stack = addrs[:1] + [a - 1 for a in addrs[1:]]
        if len(stack) > 1 and stack[0] == stack[1] + 1:
            stack = stack[:1] + stack[2:]
        raw.samples.append((stack, (1,)))
    raw.mappings = memory_map(after_sentinel(lines[i:]))
    return raw
