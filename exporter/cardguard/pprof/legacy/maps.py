"""The memory map at the end of a legacy profile: which binary each address lies in.

``--- Memory map: ---`` or ``MAPPED_LIBRARIES:`` and then ``/proc/self/maps``
lines, or the brief ``start-end file`` form. Unsymbolised frames are named
after the binary (:func:`~cardguard.pprof.model.unsymbolised_name`), so the
executable mappings are read, merged and ordered as pprof does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The lines that start a memory map in the text formats.
SENTINELS = ("--- Memory map: ---", "MAPPED_LIBRARIES:")

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


@dataclass
class Mapping:
    """One executable mapping: addresses ``start`` to ``limit`` of ``file`` from ``offset``."""

    start: int
    limit: int
    offset: int
    file: str
    build_id: str = ""


def memory_map(lines: list[str]) -> list[Mapping]:
    """Read the executable mappings of a ``/proc/self/maps``-like section."""
    out: list[Mapping] = []
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


def after_sentinel(lines: list[str]) -> list[str]:
    """Skip sections pprof does not read, up to a memory map."""
    for i, line in enumerate(lines):
        if any(s in line for s in SENTINELS):
            return lines[i:]
    return []


def _mapping_entry(line: str) -> tuple[bool, Mapping | None]:
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
    return True, Mapping(
        int(start, 16), int(end, 16), int(offset, 16) if offset else 0, file or "", build_id or ""
    )


def _massage(mappings: list[Mapping]) -> list[Mapping]:
    """Merge adjacent pieces of one file and put the main binary first, as pprof does."""
    merged: list[Mapping] = []
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


def _adjacent(a: Mapping, b: Mapping) -> bool:
    if a.file and b.file and a.file != b.file:
        return False
    if a.build_id and b.build_id and a.build_id != b.build_id:
        return False
    if a.limit != b.start:
        return False
    return not (a.offset and b.offset and a.offset + (a.limit - a.start) != b.offset)


def mapping_of(addr: int, mappings: list[Mapping]) -> str:
    """Return the file of the mapping ``addr`` lies in, ``""`` when none holds it."""
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
