"""Legacy pprof inputs: Go's ``debug=1`` text profiles and the old binary CPU format.

``go tool pprof`` reads these besides profile.proto, and people paste them:

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
- binary CPU profiles (Go before 1.9, gperftools), in either word size and
  byte order, followed by the process's memory map;
- and, not Go's but read the same way so that any input pprof reads is read:
  gperftools' thread dumps (``--- threadz 1 ---``) and the Java agent's
  ``heapz``, ``contentionz`` and CPU profiles.

A memory map at the end (``--- Memory map: ---`` or ``MAPPED_LIBRARIES:``)
names the binary of each address, so unsymbolised frames are named after it.

Go's text follows each stack with ``#\\t0xPC\\tfunc+0xOFF\\tfile:line`` lines.
pprof ignores them (it symbolises from the binary, when given one); here
they name the frames. Go prints every frame of a stack there except the
runtime frames at its top (``runtime.mallocgc`` and the like, which pprof
prunes from heap profiles anyway) and ``runtime.goexit`` at its bottom, so
the first are dropped and the second named.

pprof prunes legacy heap profiles with a pattern of allocator functions; its
Go part is applied here (``runtime\\..*``). The rest names C and C++
allocators, which only matter for symbolised gperftools profiles.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cardguard.errors import ProfileError
from cardguard.pprof.profile import (
    Frame,
    Location,
    Profile,
    Sample,
    ValueType,
    prune,
    unsymbolised_name,
)

# pprof's own drop pattern for legacy heap profiles, the part about Go: every
# runtime function is allocator plumbing, except those that call user code.
HEAP_DROP_FRAMES = r"runtime\..*"
HEAP_KEEP_FRAMES = r"runtime\.panic|runtime\.reflectcall|runtime\.call[0-9]*"

_GOEXIT = "runtime.goexit"

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
_HEX = re.compile(r"0x[0-9a-f]+")
_MAP_SENTINELS = ("--- Memory map: ---", "MAPPED_LIBRARIES:")
_JAVA_HEADERS = {"--- heapz 1 ---": "heap", "--- contentionz 1 ---": "contention"}
_JAVA_ATTRIBUTE = re.compile(r"([0-9A-Za-z_ ]+)=([0-9A-Za-z_ ]+)")
_JAVA_SAMPLE = re.compile(r" *(\d+) +(\d+) +@ +([ x0-9a-f]*)")
_JAVA_LOCATION = re.compile(r"^\s*0x([0-9A-Fa-f]+)\s+(.*)\s*$")
_JAVA_FILE_LINE = re.compile(r"^(.*)\s+\((.+):(-?\d+)\)$")
_JAVA_PATH = re.compile(r"^(.*)\s+\((.*)\)$")
_JAVA_HEAP_RATE = 524288  # the Java agent samples every 512 KiB
_THREADZ_START = re.compile(r"--- threadz \d+ ---")
_THREAD_START = re.compile(r"--- Thread ([0-9A-Fa-f]+) \(name: (.*)/(\d+)\) stack: ---")

# Memory map lines, /proc/self/maps or the brief "start-end file" form.
_HEXNUM = r"(?:0x)?([0-9A-Fa-f]+)"
_RANGE = r"\s*" + _HEXNUM + r"[\s-]?\s*" + _HEXNUM + r":?"
_PERM = r"(?:\s+([-rwxp]+))?"
_PROC_MAPS = re.compile(
    "^" + _RANGE + _PERM + r"(?:\s+([0-9A-Fa-f]+))?" + r"\s+[0-9A-Fa-f]+:[0-9A-Fa-f]+"
    r"\s+\d+" + r"(?:\s+(\S+))?"
)
_BRIEF_MAPS = re.compile(
    "^" + _RANGE + _PERM + r"(?:\s+(\S+))?" + r"(?:\s+\(@([0-9A-Fa-f]+)\))?"
    r"(?:\s+([0-9A-Fa-f]+))?"
)
_LOG_PREFIX = re.compile(r"^[^\[\]]+:[0-9]+]\s")
_SHARED_LIB = re.compile(r"[.]so$|[.]so[._][0-9]+")


class _Unrecognised(Exception):
    """The input is not in the format a reader tried."""


@dataclass
class _Mapping:
    start: int
    limit: int
    offset: int
    file: str
    build_id: str = ""


@dataclass
class _Raw:
    """A legacy profile as read, before symbols and mappings are applied."""

    sample_types: tuple[ValueType, ...]
    period_type: ValueType | None
    period: int
    samples: list[tuple[list[int], tuple[int, ...]]] = field(default_factory=list)
    duration_nanos: int = 0
    mappings: list[_Mapping] = field(default_factory=list)
    # Go's "#" lines: frames per address, and per sample the addresses printed.
    symbols: dict[int, list[Frame]] = field(default_factory=dict)
    printed: list[set[int]] | None = None
    drop: str = ""
    keep: str = ""


def parse(data: bytes, source: str) -> Profile | None:
    """Read a legacy profile; ``None`` when ``data`` is in no legacy format pprof reads.

    Raises:
        ProfileError: the input is in a legacy format but malformed, or in
            one cardguard does not read (Java, gperftools thread dumps).
    """
    if not data:
        return None
    try:
        raw = _parse_cpu(data, source)
    except _Unrecognised:
        raw = None
    if raw is None:
        text = data.decode("utf-8", "replace")
        lines = text.replace("\r\n", "\n").split("\n")
        # pprof's order: the first reader that recognises the input reads it.
        for reader in (_parse_heap, _parse_count, _parse_threadz, _parse_contention, _parse_java):
            try:
                raw = reader(lines, source)
                break
            except _Unrecognised:
                continue
        else:
            return None
    return _build(raw, source)


# --- text formats ---------------------------------------------------------------


def _is_space_or_comment(line: str) -> bool:
    t = line.strip()
    return not t or t[0] == "#"


def _read_symbols(line: str, raw: _Raw, printed: set[int] | None) -> None:
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


def _parse_heap(lines: list[str], source: str) -> _Raw:
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
            raise _Unrecognised
        # pprof compares the figures as printed.
        a, b, c, d = m.group(1, 2, 3, 4)
        has_alloc = (c != a and c != "0") or (d != b and d != "0")
    elif not (_GROWTH_HEADER.search(header) or _FRAGMENTATION_HEADER.search(header)):
        raise _Unrecognised
    names: tuple[tuple[str, str], ...]
    if has_alloc:
        names = (("alloc_objects", "count"), ("alloc_space", "bytes"))
        names += (("inuse_objects", "count"), ("inuse_space", "bytes"))
    else:
        names = (("objects", "count"), ("space", "bytes"))
    raw = _Raw(
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
        if any(s in stripped for s in _MAP_SENTINELS):
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
        addrs = [int(h, 16) - 1 for h in _HEX.findall(sm.group(5))]
        raw.samples.append((addrs, tuple(values)))
        if raw.printed is not None:
            printed = set()
            raw.printed.append(printed)
    raw.mappings = _memory_map(lines[rest:])
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


def _parse_count(lines: list[str], source: str) -> _Raw:
    i = 0
    while i < len(lines) and _is_space_or_comment(lines[i]):
        i += 1
    m = _COUNT_HEADER.fullmatch(lines[i]) if i < len(lines) else None
    if m is None:
        raise _Unrecognised
    kind = m.group(1)
    raw = _Raw(
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
    raw.mappings = _memory_map(_after_sentinel(lines[rest:]))
    return raw


def _parse_contention(lines: list[str], source: str) -> _Raw:
    first = lines[0]
    if not first.startswith(("--- contentionz ", "--- mutex:", "--- contention:")):
        raise _Unrecognised
    raw = _Raw(
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
                raise _Unrecognised  # gperftools' format= and resolution= are Java's
        except ValueError as exc:
            raise _Unrecognised from exc
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
            addrs = [int(h, 16) - 1 for h in _HEX.findall(sm.group(3))]
            raw.samples.append((addrs, (count, delay)))
            if raw.printed is not None:
                printed = set()
                raw.printed.append(printed)
        i += 1
    raw.mappings = _memory_map(_after_sentinel(lines[i:]))
    return raw


def _after_sentinel(lines: list[str]) -> list[str]:
    """Skip sections pprof does not read, up to a memory map."""
    for i, line in enumerate(lines):
        if any(s in line for s in _MAP_SENTINELS):
            return lines[i:]
    return []


def _parse_threadz(lines: list[str], source: str) -> _Raw:
    """Read a gperftools thread dump: one stack per thread, ``creator:`` addresses included."""
    i = 0
    while i < len(lines) and _is_space_or_comment(lines[i]):
        i += 1
    if i >= len(lines):
        raise _Unrecognised
    if _THREADZ_START.search(lines[i]):
        i += 1
        while i < len(lines) and not (
            any(s in lines[i] for s in _MAP_SENTINELS) or lines[i].startswith("-")
        ):
            i += 1
    elif not _THREAD_START.search(lines[i]):
        raise _Unrecognised
    raw = _Raw(
        sample_types=(ValueType("thread", "count"),),
        period_type=ValueType("thread", "count"),
        period=1,
    )
    while i < len(lines) and not any(s in lines[i] for s in _MAP_SENTINELS):
        if lines[i].startswith("---- no stack trace for"):
            break
        if not _THREAD_START.search(lines[i]):
            raise _Unrecognised
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
                addrs += [int(h, 16) for h in _HEX.findall(line)]
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
    raw.mappings = _memory_map(_after_sentinel(lines[i:]))
    return raw


def _parse_java(lines: list[str], source: str) -> _Raw:
    """Read the Java agent's heapz or contentionz text."""
    kind = _JAVA_HEADERS.get(lines[0].strip()) if len(lines) > 1 else None
    if kind is None:
        raise _Unrecognised
    raw = _Raw(sample_types=(), period_type=ValueType("", ""), period=0)
    # Only lines ended by a newline are attributes or samples, as pprof reads them.
    complete = len(lines) - 1
    i = 1
    while i < complete:
        line = lines[i].strip()
        if line:
            am = _JAVA_ATTRIBUTE.search(line)
            if am is None:
                break
            key, value = am.group(1).strip(), am.group(2).strip()
            attr = f"{kind}/{key}"
            if key == "format":
                if value != "java":
                    raise _Unrecognised
            elif attr == "heap/resolution":
                raw.sample_types = (
                    ValueType("inuse_objects", "count"),
                    ValueType("inuse_space", value),
                )
            elif attr == "contention/resolution":
                raw.sample_types = (ValueType("contentions", "count"), ValueType("delay", value))
            elif attr == "contention/sampling period":
                raw.period_type = ValueType("contentions", "count")
                raw.period = _go_int(value, source, line)
            elif attr == "contention/ms since reset":
                raw.duration_nanos = _go_int(value, source, line) * 1_000_000
            else:
                raise _Unrecognised
        i += 1
    while i < complete:
        line = lines[i].strip()
        if line:
            sm = _JAVA_SAMPLE.search(line)
            if sm is None:
                break
            # The agent writes the size first: the fields are swapped.
            first = _go_int(sm.group(2), source, line)
            second = _go_int(sm.group(1), source, line)
            if kind == "heap":
                if first == 0:
                    raise ProfileError(
                        source, f"parsing sample {line}: second value must be non-zero"
                    )
                first, second = scale_heap_sample(first, second, _JAVA_HEAP_RATE)
            elif raw.period:
                first, second = first * raw.period, second * raw.period
            addrs = [int(h, 16) for h in _HEX.findall(sm.group(3))]
            raw.samples.append((addrs, (first, second)))
        i += 1
    if not raw.sample_types:
        raise ProfileError(source, "malformed profile: missing sample type information")
    _java_locations(lines[i:], raw, source)
    return raw


def _go_int(value: str, source: str, line: str) -> int:
    """Parse an integer as Go's ``strconv.ParseInt(s, 0, 64)`` does (``010`` is octal)."""
    try:
        if len(value) > 1 and value[0] == "0" and value[1:].isdigit():
            return int(value, 8)
        return int(value, 0)
    except ValueError as exc:
        raise ProfileError(source, f"parsing {line!r}: {exc}") from exc


def _java_locations(lines: list[str], raw: _Raw, source: str) -> None:
    """Name addresses from the Java agent's ``0xADDR function (File.java:12)`` lines."""
    used = {a for stack, _ in raw.samples for a in stack}
    files: dict[str, str] = {}  # a function keeps the file it was first listed with
    for text in lines:
        lm = _JAVA_LOCATION.match(text.strip())
        if lm is None:
            continue
        addr = int(lm.group(1), 16)
        if addr not in used:
            continue
        rest, file, line_no = lm.group(2), "", 0
        if (fl := _JAVA_FILE_LINE.match(rest)) is not None:
            rest, file = fl.group(1), fl.group(2)
            line_no = max(int(fl.group(3)), 0)
        elif (pm := _JAVA_PATH.match(rest)) is not None:
            rest, file = pm.group(1), pm.group(2).rstrip("/").rsplit("/", 1)[-1]
        elif "generated stub/JIT" in rest:
            rest = "STUB"
        file = files.setdefault(rest, file)
        raw.symbols[addr] = [Frame(rest, file, line_no)]


# --- binary CPU profiles --------------------------------------------------------

_WORDS: tuple[tuple[str, int], ...] = (("<I", 4), (">I", 4), ("<Q", 8), (">Q", 8))


def _parse_cpu(data: bytes, source: str) -> _Raw:
    """Read a binary CPU profile: five header words (0, 3, 0, period in µs, 0), then stacks."""
    for fmt, size in _WORDS:
        if len(data) < 5 * size:
            continue
        header = struct.unpack_from(f"{fmt[0]}5{fmt[1]}", data)
        if header[0] == 0 and header[1] == 3 and header[3] > 0 and header[4] == 0:
            if header[2] in (0, 1):
                java = header[2] == 1
                return _cpu_samples(data[5 * size :], header[3] * 1000, fmt, size, java, source)
    raise _Unrecognised


def _cpu_samples(body: bytes, period: int, fmt: str, size: int, java: bool, source: str) -> _Raw:
    raw = _Raw(
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
            raise _Unrecognised
        v: int = word.unpack_from(body, pos * size)[0]
        pos += 1
        return v

    while pos < n:
        count = next_word()
        depth = next_word()
        if depth > (n - pos) * size // 4:
            raise _Unrecognised
        addrs = [next_word() for _ in range(depth)]
        if count == 0 and depth == 1 and addrs[0] == 0:
            break  # the end-of-data marker
        # Return addresses point after the call; the leaf is the interrupted PC.
        stack = addrs if java else addrs[:1] + [a - 1 for a in addrs[1:]]
        raw.samples.append((stack, (count, count * period)))
    text = body[pos * size :].decode("utf-8", "replace")
    lines = text.replace("\r\n", "\n").split("\n")
    if java:
        _java_locations(lines, raw, source)
        return raw
    _drop_signal_frames(raw)
    raw.mappings = _memory_map(lines)
    for i, (stack, values) in enumerate(raw.samples):
        # The leaf may appear twice: from the signal context and, less one, from unwinding.
        if len(stack) > 1 and stack[0] == stack[1] + 1:
            raw.samples[i] = (stack[:1] + stack[2:], values)
    return raw


def _drop_signal_frames(raw: _Raw) -> None:
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


# --- memory maps -----------------------------------------------------------------


def _memory_map(lines: list[str]) -> list[_Mapping]:
    """Read the executable mappings of a ``/proc/self/maps``-like section."""
    out: list[_Mapping] = []
    subst: dict[str, str] = {}
    for line in lines:
        lm = _LOG_PREFIX.match(line)
        if lm is not None:
            line = line[lm.end() :]
        for k, v in subst.items():
            line = line.replace(k, v)
        recognised, entry = _mapping_entry(line)
        if not recognised:
            key, sep, value = line.partition("=")
            if sep:
                subst["$" + key.strip()] = value.strip()
            continue
        if entry is not None:
            out.append(entry)
    return _massage(out)


def _mapping_entry(line: str) -> tuple[bool, _Mapping | None]:
    """Parse one map line: (is it one, the mapping or ``None`` when not executable)."""
    m = _PROC_MAPS.match(line)
    if m is not None:
        start, end, perm, offset, file = m.groups()
        build_id = ""
    else:
        m = _BRIEF_MAPS.match(line)
        if m is None:
            return False, None
        start, end, perm, file, offset, build_id = m.groups()
    if perm and "x" not in perm:
        return True, None
    return True, _Mapping(
        int(start, 16), int(end, 16), int(offset, 16) if offset else 0, file or "", build_id or ""
    )


def _massage(mappings: list[_Mapping]) -> list[_Mapping]:
    """Merge adjacent pieces of one file and put the main binary first, as pprof does."""
    merged: list[_Mapping] = []
    for m in mappings:
        last = merged[-1] if merged else None
        if last is not None and _adjacent(last, m):
            last.limit = m.limit
            last.file = m.file or last.file
            last.build_id = m.build_id or last.build_id
            continue
        merged.append(m)
    for i, m in enumerate(merged):
        file = m.file.replace("(deleted)", "").strip()
        if not file or _SHARED_LIB.search(file) or file.startswith("["):
            continue
        merged[0], merged[i] = merged[i], merged[0]
        break
    if len(merged) > 1 and merged[0].file.startswith("/anon_hugepage"):
        if merged[0].limit == merged[1].start:
            merged = merged[1:]
    if merged and merged[0].start - merged[0].offset == 0x400000:
        merged[0].start, merged[0].offset = 0x400000, 0
    return merged


def _adjacent(a: _Mapping, b: _Mapping) -> bool:
    if a.file and b.file and a.file != b.file:
        return False
    if a.build_id and b.build_id and a.build_id != b.build_id:
        return False
    if a.limit != b.start:
        return False
    return not (a.offset and b.offset and a.offset + (a.limit - a.start) != b.offset)


def _mapping_of(addr: int, mappings: list[_Mapping]) -> str:
    for m in mappings:
        if m.start <= addr < m.limit:
            return m.file
    for m in mappings:
        # Legacy writers lose the first piece of a mapping split in two.
        if m.offset and m.start - m.offset <= addr < m.start:
            m.start -= m.offset
            m.offset = 0
            return m.file
    return ""


# --- building the Profile ---------------------------------------------------------


def _build(raw: _Raw, source: str) -> Profile:
    samples: list[Sample] = []
    ids: dict[tuple[int, str], int] = {}
    locations: dict[int, Location] = {}
    mapping_cache: dict[int, str] = {}

    def location(addr: int, name: str | None) -> int:
        key = (addr, name or "")
        lid = ids.get(key)
        if lid is None:
            lid = ids[key] = len(ids) + 1
            file = mapping_cache.get(addr)
            if file is None:
                file = mapping_cache[addr] = _mapping_of(addr, raw.mappings)
            if name is not None:
                frames: tuple[Frame, ...] = (Frame(name, "", 0),)
            else:
                named = raw.symbols.get(addr)
                frames = tuple(named) if named else (Frame(unsymbolised_name(file), "", 0),)
            locations[lid] = Location(lid, addr, frames, file)
        return lid

    for i, (addrs, values) in enumerate(raw.samples):
        if raw.printed is None:
            stack = tuple(location(a, None) for a in addrs)
        else:
            stack = _go_printed_stack(addrs, raw.printed[i], location)
        samples.append(Sample(stack, values))
    out_samples: list[Sample] = samples
    if raw.drop:
        out_samples, locations = prune(samples, locations, raw.drop, raw.keep)
    return Profile(
        source=source,
        sample_types=raw.sample_types,
        samples=tuple(out_samples),
        locations=locations,
        period_type=raw.period_type,
        period=raw.period,
        duration_nanos=raw.duration_nanos,
    )


def _go_printed_stack(
    addrs: list[int], printed: set[int], location: Callable[[int, str | None], int]
) -> tuple[int, ...]:
    """Build a stack from Go's text: drop the frames it hid at the top, name its runtime.goexit.

    Go prints every frame after the first shown one but runtime.goexit; a
    stack with nothing printed was runtime.goexit alone.
    """
    out: list[int] = []
    shown = False
    for a in addrs:
        if a in printed:
            shown = True
            out.append(location(a, None))
        elif shown or not printed:
            out.append(location(a, _GOEXIT))
    return tuple(out)
