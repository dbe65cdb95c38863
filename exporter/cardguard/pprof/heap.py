"""Heap owners: flat and cumulative cost per function, and growth between snapshots.

The figures are those of ``go tool pprof -top -nodefraction=0 -sample_index=X``
at its default (function) granularity:

- *flat* of a function is the sum of the samples whose leaf frame (the
  innermost inlined frame of the first location) is that function;
- *cum* is the sum of the samples whose stack contains the function anywhere,
  each sample counted once even when the function recurses or appears as
  several inlined frames.

Generic instantiations are folded together by default: ``pkg.F[go.shape.int_0]``
and ``pkg.F[go.shape.string_0]`` both count as ``pkg.F[...]``, so one generic
type does not turn into one owner per instantiation. ``go tool pprof`` keeps
the instances apart; ``fold_generics=False`` does the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, compress
from operator import itemgetter, not_

from cardguard.pprof.model import (
    Column,
    Location,
    PackedStacks,
    Profile,
    collector_paused,
    column,
    column_at,
)

_VALUES = itemgetter(1)  # Sample.values, without the named tuple's property
_LEAF = itemgetter(0)


@dataclass(frozen=True, slots=True)
class FunctionCost:
    """One function's cost in the profile's unit."""

    name: str
    flat: int
    cum: int


@dataclass(frozen=True)
class HeapReport:
    """Per-function costs for one sample index, sorted by flat (then cum, name)."""

    source: str
    sample_index: str
    unit: str
    total: int
    functions: tuple[FunctionCost, ...]


@dataclass(frozen=True, slots=True)
class FunctionDelta:
    """A function's cost now and its change since the base snapshot."""

    name: str
    flat: int
    cum: int
    flat_delta: int
    cum_delta: int


@dataclass(frozen=True)
class HeapDiff:
    """Growth between two snapshots, sorted by flat_delta (largest gain first).

    ``total`` is the current total; ``total_delta`` is the net change, the
    figure ``go tool pprof -base BASE CUR`` shows as "nodes accounting for"
    (its own "total" there sums the absolute change of every sample).
    """

    source: str
    base_source: str
    sample_index: str
    unit: str
    total: int
    total_delta: int
    functions: tuple[FunctionDelta, ...]


def normalise_function(name: str) -> str:
    """Fold a generic instantiation's shape arguments into ``[...]``.

    ``main.(*Set[go.shape.string_0]).Add`` becomes ``main.(*Set[...]).Add``.
    Names without ``go.shape.`` are returned unchanged.
    """
    if "go.shape." not in name:
        return name
    out: list[str] = []
    i = 0
    n = len(name)
    while i < n:
        c = name[i]
        if c != "[":
            out.append(c)
            i += 1
            continue
        depth = 0
        j = i
        while j < n:
            if name[j] == "[":
                depth += 1
            elif name[j] == "]":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        inner = name[i + 1 : j]
        if "go.shape." in inner or inner == "...":
            out.append("[...]")
        else:
            out.append(name[i : j + 1])
        i = j + 1
    return "".join(out)


def _costs(
    profile: Profile, index: int, fold_generics: bool = True
) -> tuple[dict[str, int], dict[str, int]]:
    """Return (flat, cum) by function name for one value index."""
    return _column_costs(column_at(profile, index), fold_generics)


_FRAMES = itemgetter(2)  # Location.frames
_FUNCTION = itemgetter(0)  # Frame.function


def _location_names(
    locations: Mapping[int, Location], name_of: Callable[[str], str]
) -> dict[int, tuple[str, ...]]:
    """Return the functions each location stands for, leaf first, each name once.

    A location of one frame (nearly all of a Go profile's tens of thousands)
    is read column by column, in C; generic names are folded only where a
    name holds a shape.
    """
    ids = list(locations)
    frames = list(map(_FRAMES, locations.values()))
    one = list(map((1).__eq__, map(len, frames)))
    names = list(map(_FUNCTION, map(_LEAF, compress(frames, one))))
    if name_of is not str and "go.shape." in "\n".join(names):
        names = list(map(name_of, names))
    names_of: dict[int, tuple[str, ...]] = dict(zip(compress(ids, one), zip(names), strict=True))
    if len(names_of) < len(ids):
        # Inlined calls: each name once, as a function counts once per sample.
        many = list(map(not_, one))
        for lid, fs in zip(compress(ids, many), compress(frames, many), strict=True):
            names_of[lid] = tuple(dict.fromkeys(name_of(f.function) for f in fs))
    return names_of


def _column_costs(col: Column, fold_generics: bool = True) -> tuple[dict[str, int], dict[str, int]]:
    """Return (flat, cum) by function name for one sample type's column.

    One pass over the samples sums each value per leaf location (flat) and
    per set of locations on the stack (cum); each location's function names
    are resolved once; only then are values spread over function names, per
    distinct set of functions. Samples that weigh nothing are left out.

    The sums are counted first: ``Counter`` over (key, value) pairs runs in
    C, and a profile holds far fewer distinct pairs than samples (its values
    are a few sizes and counts), so the Python-level work is per pair.
    """
    name_of = normalise_function if fold_generics else str
    # Each stack is a tuple of location ids, or the bytes of ids below 128:
    # both give the ids one by one.
    stacks: Sequence[Sequence[int]]
    stacks = col.stacks.packed if isinstance(col.stacks, PackedStacks) else col.stacks
    values = col.values
    with collector_paused():
        if not all(stacks):
            kept = [(st, v) for st, v in zip(stacks, values, strict=True) if st]
            stacks = [st for st, _ in kept]
            values = [v for _, v in kept]
        leaves = Counter(zip(map(_LEAF, stacks), values, strict=True))
        # A set: a recursive function counts once per sample.
        location_sets = Counter(zip(map(frozenset, stacks), values, strict=True))
    names_of = _location_names(col.profile.locations, name_of)
    flat: dict[str, int] = {}
    for (lid, v), n in leaves.items():
        if v:
            name = names_of[lid][0]
            flat[name] = flat.get(name, 0) + v * n
    # A function counts once per sample. Values are summed per location and
    # spread over the location's names at the end; a stack with two locations
    # of one function (recursion) gives the extra counts back. Only locations
    # whose names some other location also has can do that.
    seen = Counter(chain.from_iterable(names_of.values()))
    repeated = {name for name, k in seen.items() if k > 1}
    shared = frozenset(lid for lid, names in names_of.items() if not repeated.isdisjoint(names))
    by_weight: dict[int, list[frozenset[int]]] = {}
    # Weight per set of shared locations on a stack: far fewer sets than stacks.
    shared_weight: dict[frozenset[int], int] = {}
    for (locs, v), n in location_sets.items():
        if not v:
            continue
        w = v * n
        by_weight.setdefault(w, []).append(locs)
        both = locs & shared
        if len(both) > 1:
            shared_weight[both] = shared_weight.get(both, 0) + w
    names_at = names_of.__getitem__
    excess: dict[str, int] = {}
    for both, w in shared_weight.items():
        on_stack = list(chain.from_iterable(map(names_at, both)))
        if len(set(on_stack)) < len(on_stack):
            for name, m in Counter(on_stack).items():
                if m > 1:
                    excess[name] = excess.get(name, 0) + (m - 1) * w
    # Spread per distinct weight: Counter counts, in C, how many stacks hold each location.
    per_location: dict[int, int] = {}
    for w, sets in by_weight.items():
        for lid, k in Counter(chain.from_iterable(sets)).items():
            per_location[lid] = per_location.get(lid, 0) + w * k
    cum: dict[str, int] = {}
    for lid, w in per_location.items():
        for name in names_of[lid]:
            cum[name] = cum.get(name, 0) + w
    for name, w in excess.items():
        cum[name] -= w
    return flat, cum


def owners(
    profile: Profile, sample_index: str | None = None, fold_generics: bool = True
) -> HeapReport:
    """Rank the functions of ``profile`` by ``sample_index`` (default: the profile's default).

    ``fold_generics`` merges generic instantiations into one ``[...]`` name.

    Raises:
        ProfileError: the profile has no such sample type.
    """
    return owners_of(column(profile, sample_index), fold_generics)


def owners_of(col: Column, fold_generics: bool = True) -> HeapReport:
    """Rank the functions of one sample type's column, as :func:`owners` ranks its profile's.

    The column comes from :func:`~cardguard.pprof.profile.decode_column`
    (a large profile in one pass) or :func:`~cardguard.pprof.model.column`.
    """
    flat, cum = _column_costs(col, fold_generics)
    # Sorted as plain tuples (compared in C), then made FunctionCosts: tens of
    # thousands of functions in a large profile.
    ranked = sorted([(-flat.get(name, 0), -c, name) for name, c in cum.items()])
    st = col.profile.sample_types[col.index]
    return HeapReport(
        source=col.profile.source,
        sample_index=st.type,
        unit=st.unit,
        total=sum(col.values),
        functions=tuple([FunctionCost(name, -f, -c) for f, c, name in ranked]),
    )


def diff(
    base: Profile, cur: Profile, sample_index: str | None = None, fold_generics: bool = True
) -> HeapDiff:
    """Compare two snapshots of the same kind, as ``go tool pprof -base`` does.

    The deltas are pprof's ``-base`` figures; ``total_delta`` is the net change
    (the sum of every function's ``flat_delta``).

    Raises:
        ProfileError: either profile lacks the sample type.
    """
    b_index = base.value_index(sample_index if sample_index else _name(cur, sample_index))
    c_index = cur.value_index(sample_index)
    b_flat, b_cum = _costs(base, b_index, fold_generics)
    c_flat, c_cum = _costs(cur, c_index, fold_generics)
    names = set(b_cum) | set(c_cum)
    functions = sorted(
        (
            FunctionDelta(
                name,
                c_flat.get(name, 0),
                c_cum.get(name, 0),
                c_flat.get(name, 0) - b_flat.get(name, 0),
                c_cum.get(name, 0) - b_cum.get(name, 0),
            )
            for name in names
        ),
        key=lambda f: (-f.flat_delta, -f.cum_delta, f.name),
    )
    st = cur.sample_types[c_index]
    total = sum(map(itemgetter(c_index), map(_VALUES, cur.samples)))
    base_total = sum(map(itemgetter(b_index), map(_VALUES, base.samples)))
    return HeapDiff(
        source=cur.source,
        base_source=base.source,
        sample_index=st.type,
        unit=st.unit,
        total=total,
        total_delta=total - base_total,
        functions=tuple(functions),
    )


def _name(profile: Profile, sample_index: str | None) -> str:
    return profile.sample_types[profile.value_index(sample_index)].type
