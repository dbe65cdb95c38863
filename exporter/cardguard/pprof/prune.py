"""Frame pruning as pprof does it: a profile's ``drop_frames`` and ``keep_frames`` patterns.

Both readers apply it: profile.proto carries its own patterns, and legacy heap
profiles get pprof's pattern for Go's allocation frames
(:mod:`cardguard.pprof.legacy`), so that figures match ``go tool pprof -top``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from cardguard.pprof.model import Frame, Location, Sample

# pprof compares a frame's function name with drop_frames/keep_frames after
# cutting it at its first "(", except where the "(" begins one of these.
_RESERVED_PARENS = re.compile(r"\(anonymous namespace\)|operator\(\)|\(")


def _simplify(name: str) -> str:
    name = name.removeprefix(".")
    for m in _RESERVED_PARENS.finditer(name):
        if m.group(0) == "(":
            return name[: m.start()]
    return name


def prune(
    samples: Sequence[Sample], locations: Mapping[int, Location], drop: str, keep: str = ""
) -> tuple[list[Sample], dict[int, Location]]:
    """Remove what pprof calls uninteresting frames: those matching ``drop`` and what they called.

    ``drop`` and ``keep`` are a profile's ``drop_frames``/``keep_frames``
    patterns, matched against whole (simplified) function names. Scanning
    each stack from its root, the first location with a dropped frame below
    a location without one is cut, with everything it called; so a stack
    that starts in dropped frames keeps them. Inside a location, the
    dropped frame and the frames inlined into it go. Patterns that do not
    compile are ignored, as pprof ignores them.
    """
    try:
        drop_rx = re.compile(f"^(?:{drop})$")
        keep_rx = re.compile(f"^(?:{keep})$") if keep else None
    except re.error:
        return list(samples), dict(locations)
    cache: dict[str, bool] = {}

    def dropped(name: str) -> bool:
        hit = cache.get(name)
        if hit is None:
            simple = _simplify(name)
            hit = cache[name] = bool(drop_rx.match(simple)) and not (
                keep_rx is not None and keep_rx.match(simple)
            )
        return hit

    whole: set[int] = set()  # locations to remove entirely
    beneath: set[int] = set()  # locations below which the stack is cut
    out_locations: dict[int, Location] = {}
    for lid, loc in locations.items():
        frames = loc.frames
        for i in range(len(frames) - 1, -1, -1):
            if not _is_unnamed(frames[i]) and dropped(frames[i].function):
                beneath.add(lid)
                if i == len(frames) - 1:
                    whole.add(lid)
                else:
                    loc = Location(loc.id, loc.address, frames[i + 1 :], loc.mapping)
                break
        out_locations[lid] = loc
    if not beneath:
        return list(samples), out_locations
    out: list[Sample] = []
    for smp in samples:
        stack = smp.stack
        found_user = False
        for i in range(len(stack) - 1, -1, -1):
            lid = stack[i]
            if lid not in beneath:
                found_user = True
                continue
            if not found_user:
                continue
            stack = stack[i + 1 :] if lid in whole else stack[i:]
            break
        out.append(smp if stack is smp.stack else smp._replace(stack=stack))
    return out, out_locations


def _is_unnamed(frame: Frame) -> bool:
    """Return whether ``frame`` stands for an address without a function name."""
    name = frame.function
    return not frame.filename and (name == "<unknown>" or (name[:1] == "[" and name[-1:] == "]"))
