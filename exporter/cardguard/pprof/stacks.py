"""Whole stacks out of profiles and goroutine groups, and the folded-stack format.

A stack here is a tuple of frames from the root (``main.main``) to the leaf,
each frame a ``(function, site)`` pair where the site is ``file:line`` with
the build path shortened (:func:`source_path`) or ``""`` when unknown. Inlined
calls count as frames of their own, as ``go tool pprof`` shows them, so the
values of the stacks whose leaf is a function add up to pprof's *flat* for it,
and those holding it anywhere to its *cum*.

The folded format (Brendan Gregg's ``stackcollapse`` output, read by
flamegraph.pl, speedscope and Pyroscope) is one ``root;caller;leaf value``
line per stack; a comparison adds a second column, ``root;...;leaf before
after``, which flamegraph.pl draws as a differential flame graph.

Pure: profiles and groups in, plain data and text out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from cardguard.pprof.model import Profile

Frame = tuple[str, str]
"""``(function, "file:line")``; the site is ``""`` when the input does not carry one."""
Stack = tuple[Frame, ...]
"""Frames from the root to the leaf."""

# Where Go puts sources when a binary is built without -trimpath: the module
# cache, a GOPATH or the GOROOT (both "<dir>/src/<import path>/file.go").
_MODCACHE = "/pkg/mod/"
_SRC = "/src/"
_VERSION = re.compile(r"@v[^/]*")


def source_path(filename: str) -> str:
    """Shorten a Go build path to what ``-trimpath`` would have written.

    Works on ``file:line`` too (only the directory part changes).

    ``/home/u/go/pkg/mod/github.com/a/b@v1.2.0/c.go`` -> ``github.com/a/b@v1.2.0/c.go``,
    ``/usr/lib/go/src/runtime/proc.go`` -> ``runtime/proc.go``,
    ``/tmp/gopath-x/src/demo-service/main.go`` -> ``demo-service/main.go``.
    Paths already relative (built with ``-trimpath``) and paths with no
    ``src/`` directory (a module built in place) are returned unchanged.
    """
    if not filename.startswith("/"):
        return filename
    i = filename.rfind(_MODCACHE)
    if i >= 0 and _VERSION.search(filename, i):
        return filename[i + len(_MODCACHE) :]
    j = filename.rfind(_SRC)
    while j >= 0:
        rest = filename[j + len(_SRC) :]
        if "/" in rest:  # an import path, not just a file name
            return rest
        j = filename.rfind(_SRC, 0, j)
    return filename


def site(filename: str, line: int) -> str:
    """Return ``file:line`` with the build path shortened, or ``""`` without a file."""
    if not filename:
        return ""
    path = source_path(filename)
    return f"{path}:{line}" if line else path


def profile_stacks(profile: Profile, index: int) -> dict[Stack, int]:
    """Sum value ``index`` of ``profile`` per whole stack (inlined frames expanded).

    Samples that weigh nothing are left out.
    """
    frames_of: dict[int, tuple[Frame, ...]] = {
        lid: tuple((f.function, site(f.filename, f.line)) for f in reversed(loc.frames))
        for lid, loc in profile.locations.items()
    }
    per_ids: dict[tuple[int, ...], int] = {}
    for smp in profile.samples:
        v = smp.values[index]
        if v:
            per_ids[smp.stack] = per_ids.get(smp.stack, 0) + v
    out: dict[Stack, int] = {}
    for ids, v in per_ids.items():
        stack = tuple(fr for lid in reversed(ids) for fr in frames_of[lid])
        out[stack] = out.get(stack, 0) + v
    return out


class Counted(Protocol):
    """Goroutine records or groups: frames innermost first, their sites, a count."""

    @property
    def frames(self) -> tuple[str, ...]: ...

    @property
    def sites(self) -> tuple[str, ...] | None: ...

    @property
    def count(self) -> int: ...


def counted_stacks(items: Iterable[Counted]) -> dict[Stack, int]:
    """Count goroutines per stack, as grouping sees them (the runtime's hidden frames gone)."""
    out: dict[Stack, int] = {}
    for g in items:
        sites = g.sites or ()
        stack = tuple(
            (name, source_path(sites[i]) if i < len(sites) else "")
            for i, name in reversed(list(enumerate(g.frames)))
        )
        out[stack] = out.get(stack, 0) + g.count
    return out


def _frame_text(frame: Frame, lines: bool) -> str:
    name, where = frame
    text = f"{name} ({where})" if lines and where else name
    # ';' separates frames and a line ends the record: neither may appear in a frame.
    return text.replace(";", ":").replace("\n", " ")


def _collapse(stacks: Mapping[Stack, int], lines: bool) -> dict[str, int]:
    out: dict[str, int] = {}
    for stack, v in stacks.items():
        key = ";".join(_frame_text(f, lines) for f in stack) or "<empty>"
        out[key] = out.get(key, 0) + v
    return out


def folded(stacks: Mapping[Stack, int], lines: bool = False) -> str:
    """Render ``stacks`` as folded lines, ``root;...;leaf value``, heaviest first.

    ``lines`` appends each frame's ``(file:line)``; a function called from two
    lines then makes two frames, as ``go tool pprof -lines`` does.
    """
    rows = sorted(_collapse(stacks, lines).items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    return "".join(f"{k} {v}\n" for k, v in rows)


def folded_diff(base: Mapping[Stack, int], cur: Mapping[Stack, int], lines: bool = False) -> str:
    """Render two snapshots as ``root;...;leaf before after`` lines, largest change first."""
    b, c = _collapse(base, lines), _collapse(cur, lines)
    keys = sorted(set(b) | set(c), key=lambda k: (-abs(c.get(k, 0) - b.get(k, 0)), k))
    return "".join(f"{k} {b.get(k, 0)} {c.get(k, 0)}\n" for k in keys)


def parse_folded(text: str) -> dict[tuple[str, ...], list[int]]:
    """Read folded lines back: frames (root first) -> the value columns of that line.

    For tests and tools that take folded input; the inverse of :func:`folded`.
    """
    out: dict[tuple[str, ...], list[int]] = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        parts = raw.split(" ")
        values: list[int] = []
        while parts and re.fullmatch(r"-?\d+", parts[-1]) and len(values) < 2:
            values.insert(0, int(parts.pop()))
        out[tuple(" ".join(parts).split(";"))] = values
    return out


def leaf_totals(stacks: Mapping[Sequence[str], Sequence[int]], column: int = -1) -> dict[str, int]:
    """Sum one value column per leaf function: pprof's flat, from folded stacks."""
    out: dict[str, int] = {}
    for frames, values in stacks.items():
        leaf = frames[-1].split(" (", 1)[0]
        out[leaf] = out.get(leaf, 0) + values[column]
    return out


__all__ = [
    "Frame",
    "Stack",
    "counted_stacks",
    "folded",
    "folded_diff",
    "leaf_totals",
    "parse_folded",
    "profile_stacks",
    "site",
    "source_path",
]
