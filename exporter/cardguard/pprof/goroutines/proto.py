"""Read a goroutine profile in its proto form (``debug=0``): counted stacks and their labels.

A pprof profile with one ``goroutine/count`` value and, per sample, the
labels the program set with ``pprof.Do``. Stacks are whole here (no frame
hidden), so they are reduced as the other formats show them.
"""

from __future__ import annotations

from collections import Counter

from cardguard.errors import ProfileError
from cardguard.pprof.goroutines.model import GoroutineRecord, GoroutineSnapshot
from cardguard.pprof.goroutines.normalise import kept_positions
from cardguard.pprof.heap import normalise_function
from cardguard.pprof.model import Profile
from cardguard.pprof.profile import decode


def parse_proto(data: bytes, source: str, kind: str | None, max_bytes: int) -> GoroutineSnapshot:
    """Read a goroutine or goroutineleak profile.proto (gzip-compressed or raw).

    Raises:
        ProfileError: not a profile, or not one of goroutine counts.
    """
    return snapshot_of(decode(data, source, max_bytes, keep_labels=True), source, kind)


def snapshot_of(prof: Profile, source: str, kind: str | None = None) -> GoroutineSnapshot:
    """The goroutine snapshot of an already decoded goroutine profile (decoded with labels).

    Raises:
        ProfileError: not one of goroutine counts.
    """
    types = [st.type for st in prof.sample_types]
    if len(types) != 1 or prof.sample_types[0].unit != "count":
        raise ProfileError(
            source, f"not a goroutine profile: sample types {', '.join(types)} (want one count)"
        )
    if kind is None:
        kind = "goroutineleak" if types[0] == "goroutineleak" else "goroutine"
    frames_of: dict[int, tuple[str, ...]] = {
        lid: tuple(normalise_function(f.function) for f in loc.frames)
        for lid, loc in prof.locations.items()
    }
    sites_of: dict[int, tuple[str, ...]] = {
        lid: tuple(f"{f.filename}:{f.line}" if f.filename else "" for f in loc.frames)
        for lid, loc in prof.locations.items()
    }
    per_stack: Counter[tuple[tuple[int, ...], tuple[tuple[str, str], ...]]] = Counter()
    for smp in prof.samples:
        per_stack[smp.stack, tuple(sorted(smp.labels))] += smp.values[0]
    records = []
    leaked = True if kind == "goroutineleak" else None
    for (stack, labels), n in per_stack.items():
        names = [name for lid in stack for name in frames_of[lid]]
        kept = kept_positions(names)
        sites = [s for lid in stack for s in sites_of[lid]]
        records.append(
            GoroutineRecord(
                count=n,
                frames=tuple(names[i] for i in kept),
                leaked=leaked,
                labels=labels,
                sites=tuple(sites[i] for i in kept),
            )
        )
    return GoroutineSnapshot(source, "proto", kind, sum(per_stack.values()), tuple(records))
