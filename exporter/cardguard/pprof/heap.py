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

from dataclasses import dataclass

from cardguard.pprof.profile import Profile


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


def _weights(profile: Profile, index: int) -> dict[tuple[int, ...], int]:
    """Sum one value per distinct stack, dropping stacks that weigh nothing."""
    per_stack: dict[tuple[int, ...], int] = {}
    get = per_stack.get
    for smp in profile.samples:
        v = smp.values[index]
        if v:
            st = smp.stack
            per_stack[st] = get(st, 0) + v
    return per_stack


def _costs(
    profile: Profile, index: int, fold_generics: bool = True
) -> tuple[dict[str, int], dict[str, int]]:
    """Return (flat, cum) by function name for one value index.

    Values are summed per distinct stack, then per leaf location (flat) and
    per distinct set of functions on a stack (cum), and only then spread over
    function names: many stacks share a leaf or a function set, so the
    per-name work is done once per group rather than once per sample.
    """
    name_of = normalise_function if fold_generics else str
    per_stack = _weights(profile, index)
    # Per location: its leaf function and the set of functions it stands for.
    leaf_of: dict[int, str] = {}
    funcs_of: dict[int, frozenset[str]] = {}
    for lid, loc in profile.locations.items():
        names = [name_of(f.function) for f in loc.frames]
        leaf_of[lid] = names[0]
        funcs_of[lid] = frozenset(names)
    per_leaf: dict[int, int] = {}
    per_set: dict[frozenset[str], int] = {}
    union = frozenset[str]().union
    funcs = funcs_of.__getitem__
    for stack, v in per_stack.items():
        if not stack:
            continue
        leaf = stack[0]
        per_leaf[leaf] = per_leaf.get(leaf, 0) + v
        # A set: a recursive function counts once per sample.
        key = union(*map(funcs, stack))
        per_set[key] = per_set.get(key, 0) + v
    flat: dict[str, int] = {}
    for lid, v in per_leaf.items():
        name = leaf_of[lid]
        flat[name] = flat.get(name, 0) + v
    cum: dict[str, int] = {}
    for names_on_stack, v in per_set.items():
        for name in names_on_stack:
            cum[name] = cum.get(name, 0) + v
    return flat, cum


def owners(
    profile: Profile, sample_index: str | None = None, fold_generics: bool = True
) -> HeapReport:
    """Rank the functions of ``profile`` by ``sample_index`` (default: the profile's default).

    ``fold_generics`` merges generic instantiations into one ``[...]`` name.

    Raises:
        ProfileError: the profile has no such sample type.
    """
    index = profile.value_index(sample_index)
    flat, cum = _costs(profile, index, fold_generics)
    functions = sorted(
        (FunctionCost(name, flat.get(name, 0), c) for name, c in cum.items()),
        key=lambda f: (-f.flat, -f.cum, f.name),
    )
    st = profile.sample_types[index]
    return HeapReport(
        source=profile.source,
        sample_index=st.type,
        unit=st.unit,
        total=sum(smp.values[index] for smp in profile.samples),
        functions=tuple(functions),
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
    total = sum(smp.values[c_index] for smp in cur.samples)
    base_total = sum(smp.values[b_index] for smp in base.samples)
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
