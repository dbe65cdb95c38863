"""The Java agent's profiles: ``heapz`` and ``contentionz`` text, and the names in its CPU profiles.

Not Go's, but ``go tool pprof`` reads them, so they are read the same way:
a header (``--- heapz 1 ---``), ``key=value`` attributes, ``size count @
0x...`` samples and ``0xADDR function (File.java:12)`` lines naming the
addresses. The binary CPU format (:mod:`cardguard.pprof.legacy.cpu`) ends
with the same naming lines.
"""

from __future__ import annotations

import re

from cardguard.errors import ProfileError
from cardguard.pprof.legacy.raw import HEX, RawProfile, Unrecognised
from cardguard.pprof.legacy.text import scale_heap_sample
from cardguard.pprof.model import Frame, ValueType

_HEADERS = {"--- heapz 1 ---": "heap", "--- contentionz 1 ---": "contention"}
_ATTRIBUTE = re.compile(r"([0-9A-Za-z_ ]+)=([0-9A-Za-z_ ]+)")
_SAMPLE = re.compile(r" *(\d+) +(\d+) +@ +([ x0-9a-f]*)")
_LOCATION = re.compile(r"^\s*0x([0-9A-Fa-f]+)\s+(.*)\s*$")
_FILE_LINE = re.compile(r"^(.*)\s+\((.+):(-?\d+)\)$")
_PATH = re.compile(r"^(.*)\s+\((.*)\)$")
_HEAP_RATE = 524288  # the Java agent samples every 512 KiB


def parse_java(lines: list[str], source: str) -> RawProfile:
    """Read the Java agent's heapz or contentionz text.

    Raises:
        Unrecognised: not the Java agent's text.
        ProfileError: its text, malformed.
    """
    kind = _HEADERS.get(lines[0].strip()) if len(lines) > 1 else None
    if kind is None:
        raise Unrecognised
    raw = RawProfile(sample_types=(), period_type=ValueType("", ""), period=0)
    # Only lines ended by a newline are attributes or samples, as pprof reads them.
    complete = len(lines) - 1
    i = 1
    while i < complete:
        line = lines[i].strip()
        if line:
            am = _ATTRIBUTE.search(line)
            if am is None:
                break
            key, value = am.group(1).strip(), am.group(2).strip()
            attr = f"{kind}/{key}"
            if key == "format":
                if value != "java":
                    raise Unrecognised
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
                raise Unrecognised
        i += 1
    while i < complete:
        line = lines[i].strip()
        if line:
            sm = _SAMPLE.search(line)
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
                first, second = scale_heap_sample(first, second, _HEAP_RATE)
            elif raw.period:
                first, second = first * raw.period, second * raw.period
            addrs = [int(h, 16) for h in HEX.findall(sm.group(3))]
            raw.samples.append((addrs, (first, second)))
        i += 1
    if not raw.sample_types:
        raise ProfileError(source, "malformed profile: missing sample type information")
    java_locations(lines[i:], raw)
    return raw


def _go_int(value: str, source: str, line: str) -> int:
    """Parse an integer as Go's ``strconv.ParseInt(s, 0, 64)`` does (``010`` is octal)."""
    try:
        if len(value) > 1 and value[0] == "0" and value[1:].isdigit():
            return int(value, 8)
        return int(value, 0)
    except ValueError as exc:
        raise ProfileError(source, f"parsing {line!r}: {exc}") from exc


def java_locations(lines: list[str], raw: RawProfile) -> None:
    """Name addresses from the Java agent's ``0xADDR function (File.java:12)`` lines."""
    used = {a for stack, _ in raw.samples for a in stack}
    files: dict[str, str] = {}  # a function keeps the file it was first listed with
    for text in lines:
        lm = _LOCATION.match(text.strip())
        if lm is None:
            continue
        addr = int(lm.group(1), 16)
        if addr not in used:
            continue
        rest, file, line_no = lm.group(2), "", 0
        if (fl := _FILE_LINE.match(rest)) is not None:
            rest, file = fl.group(1), fl.group(2)
            line_no = max(int(fl.group(3)), 0)
        elif (pm := _PATH.match(rest)) is not None:
            rest, file = pm.group(1), pm.group(2).rstrip("/").rsplit("/", 1)[-1]
        elif "generated stub/JIT" in rest:
            rest = "STUB"
        file = files.setdefault(rest, file)
        raw.symbols[addr] = [Frame(rest, file, line_no)]
