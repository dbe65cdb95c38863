"""What every legacy reader yields, and how it becomes a :class:`~cardguard.pprof.model.Profile`.

A reader fills a :class:`RawProfile`: sample types, stacks as addresses, the
memory map, and the frames Go's text printed for each address. :func:`build`
turns addresses into locations named as ``go tool pprof`` names them and
applies the reader's frame pruning.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from cardguard.pprof.legacy.maps import Mapping, mapping_of
from cardguard.pprof.model import Frame, Location, Profile, Sample, ValueType, unsymbolised_name
from cardguard.pprof.prune import prune

# An address as the text formats print it.
HEX = re.compile(r"0x[0-9a-f]+")

_GOEXIT = "runtime.goexit"


class Unrecognised(Exception):
    """The input is not in the format a reader tried."""


@dataclass
class RawProfile:
    """A legacy profile as read, before symbols and mappings are applied."""

    sample_types: tuple[ValueType, ...]
    period_type: ValueType | None
    period: int
    samples: list[tuple[list[int], tuple[int, ...]]] = field(default_factory=list)
    duration_nanos: int = 0
    mappings: list[Mapping] = field(default_factory=list)
    # Go's "#" lines: frames per address, and per sample the addresses printed.
    symbols: dict[int, list[Frame]] = field(default_factory=dict)
    printed: list[set[int]] | None = None
    drop: str = ""
    keep: str = ""


def build(raw: RawProfile, source: str) -> Profile:
    """Name each address's location, prune the frames the reader asks for, and make the profile."""
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
                file = mapping_cache[addr] = mapping_of(addr, raw.mappings)
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
