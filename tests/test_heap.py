"""Heap owners and growth against ``go tool pprof -top`` on profiles from real Go processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardguard.errors import ProfileError
from cardguard.pprof import heap, model, profile
from pprof_support import HEAP_INDICES, parse_top, version_dirs, version_ids


def _decode(path: Path) -> model.Profile:
    return profile.decode(path.read_bytes(), str(path))


@pytest.mark.parametrize("index", HEAP_INDICES)
@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_owners_equal_go_tool_pprof_to_the_byte(vdir: Path, index: str) -> None:
    want = parse_top(vdir / f"heap.top.{index}.txt")
    # pprof keeps generic instantiations apart; so does fold_generics=False.
    report = heap.owners(_decode(vdir / "heap.pb.gz"), index, fold_generics=False)
    assert report.sample_index == index
    assert report.unit == ("bytes" if index.endswith("_space") else "count")
    assert report.total == want.total
    got = {f.name: (f.flat, f.cum) for f in report.functions}
    assert got == want.rows
    # Sorted by flat, largest first, as pprof -top lists them.
    flats = [f.flat for f in report.functions]
    assert flats == sorted(flats, reverse=True)


@pytest.mark.parametrize("index", HEAP_INDICES)
@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_diff_equals_go_tool_pprof_base(vdir: Path, index: str) -> None:
    want = parse_top(vdir / f"heap.base.top.{index}.txt")
    base = _decode(vdir / "heap-base.pb.gz")
    cur = _decode(vdir / "heap.pb.gz")
    d = heap.diff(base, cur, index, fold_generics=False)
    assert d.total_delta == want.accounted == sum(f for f, _ in want.rows.values())
    got = {f.name: (f.flat_delta, f.cum_delta) for f in d.functions}
    # pprof lists every node a sample touched, even when its net change is 0;
    # cardguard lists every function of either snapshot.
    for name, figures in want.rows.items():
        assert got[name] == figures, name
    assert {n for n, v in got.items() if v != (0, 0)} <= set(want.rows)
    # The current figures ride along with the deltas.
    now = {f.name: (f.flat, f.cum) for f in heap.owners(cur, index, False).functions}
    for f in d.functions:
        assert (f.flat, f.cum) == now.get(f.name, (0, 0))


@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_label_explosion_owner_tops_the_heap_and_grows(vdir: Path) -> None:
    cur = _decode(vdir / "heap.pb.gz")
    top = heap.owners(cur, "inuse_space").functions[0]
    assert top.name == "github.com/beorn7/perks/quantile.newStream"
    d = heap.diff(_decode(vdir / "heap-base.pb.gz"), cur, "inuse_space")
    assert d.functions[0].name == "github.com/beorn7/perks/quantile.newStream"
    assert d.functions[0].flat_delta > 0


@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_recursive_function_counted_once_per_sample(vdir: Path) -> None:
    prof = _decode(vdir / "heap.pb.gz")
    recursive = [
        s
        for s in prof.samples
        if [fr.function for lid in s.stack for fr in prof.locations[lid].frames].count(
            "main.renderSection"
        )
        > 1
    ]
    assert recursive, "fixture lacks the demo's recursive renderSection stacks"
    i = prof.value_index("alloc_space")
    owners = {f.name: f for f in heap.owners(prof, "alloc_space").functions}
    section = owners["main.renderSection"]
    # Every renderSection sample counts once, however deep the recursion.
    once = sum(
        s.values[i]
        for s in prof.samples
        if any(
            fr.function == "main.renderSection"
            for lid in s.stack
            for fr in prof.locations[lid].frames
        )
    )
    assert section.cum == once
    assert section.cum <= owners["main.renderPage"].cum


@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_inlined_frames_are_attributed(vdir: Path) -> None:
    prof = _decode(vdir / "heap.pb.gz")
    inlined = [loc for loc in prof.locations.values() if len(loc.frames) > 1]
    assert inlined, "no location with inlined frames"
    # main.newPage is inlined into main.cachePage: one location, two frames,
    # the innermost first; the allocation is owned by the inlined function.
    page = [loc for loc in inlined if loc.frames[0].function == "main.newPage"]
    assert page and page[0].frames[1].function == "main.cachePage"
    owners = {f.name: f for f in heap.owners(prof, "alloc_objects").functions}
    assert owners["main.newPage"].flat > 0
    assert owners["main.cachePage"].cum >= owners["main.newPage"].cum


def test_generic_shapes_fold_into_one_function() -> None:
    vdir = next(d for d in version_dirs() if d.name == "go1.27")
    prof = _decode(vdir / "heap.pb.gz")
    raw = {
        fr.function
        for loc in prof.locations.values()
        for fr in loc.frames
        if fr.function.startswith("main.(*Cache[")
    }
    # Two instantiations (string->*page, int64->string) as the runtime names them.
    assert len(raw) >= 2 and all("go.shape." in n for n in raw)
    folded = heap.owners(prof, "alloc_space").functions
    names = [f.name for f in folded]
    assert names.count("main.(*Cache[...]).Put") == 1
    assert not [n for n in names if "go.shape." in n]
    # The folded figures are the sum of the instances go tool pprof lists (the
    # two instances never call each other, so no sample is counted twice).
    want = parse_top(vdir / "heap.top.alloc_space.txt").rows
    instances = [v for n, v in want.items() if n.startswith("main.(*Cache[go.shape.")]
    assert len(instances) >= 2
    put = next(f for f in folded if f.name == "main.(*Cache[...]).Put")
    assert (put.flat, put.cum) == (sum(v[0] for v in instances), sum(v[1] for v in instances))
    assert heap.owners(prof, "alloc_space").total == heap.owners(prof, "alloc_space", False).total


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("main.(*Cache[go.shape.string,go.shape.*uint8]).Put", "main.(*Cache[...]).Put"),
        ("main.Map[go.shape.int_0,go.shape.[]uint8_1]", "main.Map[...]"),
        ("main.F[...]", "main.F[...]"),
        ("main.arr[[4]int]", "main.arr[[4]int]"),
        ("runtime.mallocgc", "runtime.mallocgc"),
    ],
)
def test_normalise_function(raw: str, want: str) -> None:
    assert heap.normalise_function(raw) == want


def test_unknown_sample_index_names_the_source() -> None:
    path = version_dirs()[0] / "heap.pb.gz"
    with pytest.raises(ProfileError, match=r"heap\.pb\.gz: no sample type 'cpu'"):
        heap.owners(_decode(path), "cpu")


def _recorded_profiles() -> list[Path]:
    """Every recorded profile the pprof tests read: Go's own, google/pprof's and legacy ones.

    With the heap profiles the report tests read, of real services (Prometheus, etcd).
    """
    from support import TESTDATA

    roots = [TESTDATA / "pprof", TESTDATA / "corpora" / "google-pprof", TESTDATA / "report"]
    names = (".pb.gz", ".pb", ".cpu", ".heap", ".contention", ".growth", ".thread", ".txt")
    return sorted(
        p for root in roots for p in root.rglob("*") if p.is_file() and p.name.endswith(names)
    )


def test_one_pass_column_equals_the_whole_decode() -> None:
    """decode_column (what `cardguard heap` reads) = column(decode()): stacks, values, owners.

    Every recorded input, each sample type, and the same refusal where decode refuses one.
    """
    checked = refused = packed = 0
    for path in _recorded_profiles():
        data = path.read_bytes()
        try:
            prof = profile.decode(data, str(path))
        except ProfileError as exc:
            with pytest.raises(ProfileError) as info:
                profile.decode_column(data, str(path))
            assert str(info.value) == str(exc)
            refused += 1
            continue
        for index, st in enumerate(prof.sample_types):
            want = model.column(prof, st.type)
            got = profile.decode_column(data, str(path), st.type)
            assert got.index == want.index == index
            assert got.stacks == want.stacks and got.values == want.values, path
            assert got.profile == want.profile, path
            assert heap.owners_of(got) == heap.owners(prof, st.type), path
            packed += isinstance(got.stacks, model.PackedStacks)
        checked += 1
    # Go's heap, goroutine and legacy profiles and google/pprof's corpus (large.cpu).
    assert checked >= 20 and refused >= 1
    # Small heap profiles (ids below 128) read their stacks as packed bytes.
    assert packed >= 4
