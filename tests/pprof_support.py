"""Recorded pprof fixtures (tests/testdata/pprof/<go1.N>/) and what Go printed about them.

The fixtures come from tests/testdata/record.sh; the ``*.top.*.txt`` files
next to each profile are ``go tool pprof -top`` output of the matching Go
toolchain, and ``*.debug1.txt`` are the goroutine counts Go printed itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from support import TESTDATA

PPROF_DATA = TESTDATA / "pprof"
HEAP_INDICES = ("alloc_objects", "alloc_space", "inuse_objects", "inuse_space")

_ROW = re.compile(
    r"^\s*(-?\d+)B?\s+-?[\d.]+%\s+-?[\d.]+%\s+(-?\d+)B?\s+-?[\d.]+%\s+(.+?)"
    r"(?: \((?:partial-)?inline\))?$"
)
_TOTAL = re.compile(r"accounting for (-?\d+)B?, [\d.]+% of (-?\d+)B? total")


@dataclass(frozen=True)
class PprofTop:
    """Parsed ``go tool pprof -top`` output: total and (flat, cum) by function."""

    total: int
    accounted: int  # "Showing nodes accounting for X": the sum of the flat column
    rows: dict[str, tuple[int, int]]


def parse_top(path: Path) -> PprofTop:
    """Parse -top output written with ``-unit=B`` (bytes) or plain counts."""
    text = path.read_text()
    m = _TOTAL.search(text)
    assert m, f"{path}: no total line"
    rows: dict[str, tuple[int, int]] = {}
    started = False
    for line in text.splitlines():
        if line.strip().startswith("flat"):
            started = True
            continue
        if not started:
            continue
        r = _ROW.match(line)
        assert r, f"{path}: unparsed row {line!r}"
        rows[r.group(3)] = (int(r.group(1)), int(r.group(2)))
    return PprofTop(int(m.group(2)), int(m.group(1)), rows)


def version_dirs() -> list[Path]:
    """Return the recorded fixture directories, one per Go version."""
    return sorted(p for p in PPROF_DATA.iterdir() if p.is_dir())


def version_ids() -> list[str]:
    return [p.name for p in version_dirs()]


def leak_dirs() -> list[Path]:
    """Fixture directories whose Go served /debug/pprof/goroutineleak."""
    return [p for p in version_dirs() if (p / "goroutineleak.debug1.txt").exists()]
