"""Whole stacks, their file:line, and the folded format, on recorded real profiles.

Each recorded fixture is checked against ``go tool pprof`` of the toolchain
that recorded it (tests/testdata/pprof/<go1.N>/): the folded stacks of a heap
profile add up, leaf by leaf, to pprof's flat column, and those of a
comparison to its ``-diff_base`` flat column.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cardguard.pprof import goroutines as gr
from cardguard.pprof import profile, stacks
from pprof_support import HEAP_INDICES, parse_top_text, version_dirs, version_ids
from support import go_toolchains

# Which toolchain recorded which fixture directory.
TOOLCHAIN = {"go1.19": "go1.19", "go1.27": "current"}


def _go(vdir: Path) -> Path:
    go = go_toolchains().get(TOOLCHAIN.get(vdir.name, ""))
    if go is None:
        pytest.fail(f"no Go toolchain for {vdir.name}: run scripts/bootstrap.sh")
    return go


def pprof_top(vdir: Path, *args: str) -> str:
    argv = [str(_go(vdir)), "tool", "pprof", "-top", "-nodefraction=0", "-unit=B", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=vdir)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_goroutine_sites_are_the_same_in_every_format(vdir: Path) -> None:
    # The proto's locations name file:line; debug=1's '#' lines and debug=2's tab
    # lines must give every group the same ones, frame for frame.
    by_format = {}
    for name in ("goroutine.pb.gz", "goroutine.debug1.txt", "goroutine.debug2.txt"):
        groups = gr.group(gr.parse((vdir / name).read_bytes(), name))
        by_format[name] = {g.id: (g.frames, g.sites) for g in groups}
    proto = by_format["goroutine.pb.gz"]
    leaker = next(g for g in proto.values() if g[0][0] == "main.subscribe.func1")
    frames, sites = leaker
    assert len(sites) == len(frames) and sites[0].endswith("/demo-service/main.go:175")
    for name, groups in by_format.items():
        for gid, (fr, st) in groups.items():
            if gid in proto:
                assert (fr, st) == proto[gid], (name, fr)


def test_source_paths_read_as_module_paths() -> None:
    assert stacks.source_path("/tmp/cardguard-gopath-x/src/demo-service/main.go:175") == (
        "demo-service/main.go:175"
    )
    assert stacks.source_path("/usr/lib/go/src/runtime/proc.go") == "runtime/proc.go"
    assert (
        stacks.source_path("/home/u/go/pkg/mod/github.com/a/b@v1.2.0/c/d.go")
        == "github.com/a/b@v1.2.0/c/d.go"
    )
    # built with -trimpath, or in place without a src/ directory: unchanged
    assert stacks.source_path("demo-service/main.go") == "demo-service/main.go"
    assert stacks.source_path("/srv/app/main.go") == "/srv/app/main.go"
    # a file directly under some src/: the enclosing src/ is the GOPATH one
    assert stacks.source_path("/g/src/example.com/x/src/y.go") == "example.com/x/src/y.go"


@pytest.mark.needs_go
@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
@pytest.mark.parametrize("index", HEAP_INDICES)
def test_folded_stacks_add_up_to_pprof_flat(vdir: Path, index: str) -> None:
    p = profile.decode((vdir / "heap.pb.gz").read_bytes(), "heap.pb.gz")
    folded = stacks.folded(stacks.profile_stacks(p, p.value_index(index)))
    got = stacks.leaf_totals(stacks.parse_folded(folded))
    want = parse_top_text(pprof_top(vdir, f"-sample_index={index}", "heap.pb.gz"))
    assert {f: v for f, v in got.items() if v} == {
        f: flat for f, (flat, _) in want.rows.items() if flat
    }
    # every line is "frame;frame;leaf value"
    for line in folded.splitlines():
        frames, _, value = line.rpartition(" ")
        assert frames and int(value) > 0 and ";;" not in frames


@pytest.mark.needs_go
@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_folded_comparison_adds_up_to_pprof_diff_base_flat(vdir: Path) -> None:
    base = profile.decode((vdir / "heap-base.pb.gz").read_bytes(), "base")
    cur = profile.decode((vdir / "heap.pb.gz").read_bytes(), "cur")
    i = cur.value_index("inuse_space")
    folded = stacks.folded_diff(stacks.profile_stacks(base, i), stacks.profile_stacks(cur, i))
    change: dict[str, int] = {}
    for frames, (before, after) in stacks.parse_folded(folded).items():
        change[frames[-1]] = change.get(frames[-1], 0) + after - before
    want = parse_top_text(
        pprof_top(vdir, "-sample_index=inuse_space", "-diff_base", "heap-base.pb.gz", "heap.pb.gz")
    )
    assert {f: v for f, v in change.items() if v} == {
        f: flat for f, (flat, _) in want.rows.items() if flat
    }
