"""``cardguard heap`` output for other tools: a pprof diff profile, folded stacks, pprof's units.

``--format pprof --base OLD`` must read back in ``go tool pprof`` exactly as
``-diff_base OLD NEW`` does: the whole ``-top`` report is compared, for every
sample index, with the toolchain that recorded each fixture.
"""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

import pytest

from cardguard.errors import ProfileError
from cardguard.pprof import profile, profile_pb2, stacks, units
from cardguard.pprof.diff import BASE_LABEL, diff_profile
from pprof_support import HEAP_INDICES, version_dirs, version_ids
from support import cardguard_argv, go_toolchains

TOOLCHAIN = {"go1.19": "go1.19", "go1.27": "current"}


def _go(vdir: Path) -> Path:
    go = go_toolchains().get(TOOLCHAIN.get(vdir.name, ""))
    if go is None:
        pytest.fail(f"no Go toolchain for {vdir.name}: run scripts/bootstrap.sh")
    return go


def pprof(vdir: Path, *args: str) -> str:
    argv = [str(_go(vdir)), "tool", "pprof", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=vdir)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def cardguard(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cardguard_argv(*args), capture_output=True, timeout=120)


@pytest.mark.needs_go
@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_diff_profile_reads_in_pprof_as_diff_base(vdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "diff.pb.gz"
    proc = cardguard(
        "heap", str(vdir / "heap.pb.gz"), "--base", str(vdir / "heap-base.pb.gz"),
        "--format", "pprof", "--output", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for index in HEAP_INDICES:
        flags = ("-top", "-nodefraction=0", f"-sample_index={index}")
        want = pprof(vdir, *flags, "-diff_base", "heap-base.pb.gz", "heap.pb.gz")
        got = pprof(vdir, *flags, str(out))
        assert got == want, index  # header, total, every row and its order
        assert len(want.splitlines()) > 10
    # pprof measures a diff against the base's total, which it finds by the label
    top = pprof(vdir, "-top", "-unit=B", "-sample_index=inuse_space", str(out))
    total = re.search(r"of (\d+)B total", top)
    base = profile.decode((vdir / "heap-base.pb.gz").read_bytes(), "base")
    assert total is not None and int(total.group(1)) == base.total("inuse_space")


def test_diff_profile_negates_and_labels_the_base() -> None:
    vdir = version_dirs()[-1]
    data = diff_profile((vdir / "heap-base.pb.gz").read_bytes(), (vdir / "heap.pb.gz").read_bytes())
    msg = profile_pb2.Profile()
    msg.ParseFromString(gzip.decompress(data))
    base = profile_pb2.Profile()
    base.ParseFromString(gzip.decompress((vdir / "heap-base.pb.gz").read_bytes()))
    new = profile_pb2.Profile()
    new.ParseFromString(gzip.decompress((vdir / "heap.pb.gz").read_bytes()))
    strings = list(msg.string_table)

    def is_base(s: profile_pb2.Sample) -> bool:
        return any((strings[lb.key], strings[lb.str]) == BASE_LABEL for lb in s.label)

    labelled = [s for s in msg.sample if is_base(s)]
    assert len(labelled) == sum(1 for s in base.sample if any(s.value))
    assert all(v <= 0 for s in labelled for v in s.value)
    assert len(msg.sample) - len(labelled) == sum(1 for s in new.sample if any(s.value))
    # the totals of each side survive the merge
    for i in range(len(msg.sample_type)):
        assert sum(s.value[i] for s in labelled) == -sum(s.value[i] for s in base.sample)
    # the pprof header of a merge: the earlier time, NEW's types
    assert msg.time_nanos == min(base.time_nanos, new.time_nanos)
    assert [strings[v.type] for v in msg.sample_type] == [
        new.string_table[v.type] for v in new.sample_type
    ]


def test_diff_profile_refuses_what_pprof_would() -> None:
    vdir = version_dirs()[-1]
    heap = (vdir / "heap.pb.gz").read_bytes()
    with pytest.raises(ProfileError, match=r"sample types .* differ"):
        diff_profile((vdir / "goroutine.pb.gz").read_bytes(), heap, "g.pb.gz", "h.pb.gz")
    with pytest.raises(ProfileError, match=r"not a profile\.proto"):
        diff_profile((vdir / "goroutine.debug1.txt").read_bytes(), heap, "g.txt")


def test_pprof_format_refuses_a_terminal_and_passes_a_profile_through(tmp_path: Path) -> None:
    vdir = version_dirs()[-1]
    proc = cardguard("heap", str(vdir / "heap.pb.gz"), "--format", "pprof")
    assert proc.returncode == 0  # stdout is a pipe here: the bytes go through
    assert gzip.decompress(proc.stdout) == gzip.decompress((vdir / "heap.pb.gz").read_bytes())


@pytest.mark.needs_go
@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_unit_scales_as_pprof_unit(vdir: Path) -> None:
    for unit in ("MB", "kB"):
        top = pprof(vdir, "-top", "-nodefraction=0", f"-unit={unit}", "heap.pb.gz")
        want = {}
        for line in top.splitlines():
            m = re.match(r"^\s*(\S+)\s+\S+%\s+\S+%\s+(\S+)\s+\S+%\s+(.+?)(?: \(inline\))?$", line)
            if m and m.group(1) != "flat":
                want[m.group(3)] = (m.group(1), m.group(2))
        proc = cardguard("heap", str(vdir / "heap.pb.gz"), f"--unit={unit}", "--top", "0")
        assert proc.returncode == 0, proc.stderr
        got = {}
        for line in proc.stdout.decode().splitlines()[2:]:
            parts = line.split()
            if len(parts) == 5:
                got[parts[4]] = (parts[0], parts[2])
        # pprof folds generic instances apart; cardguard folds them into [...]
        shared = {f for f in want if "[" not in f}
        assert shared and {f: got[f] for f in shared} == {f: want[f] for f in shared}


def test_human_units_by_default_in_text() -> None:
    vdir = version_dirs()[-1]
    proc = cardguard("heap", str(vdir / "heap.pb.gz"), "--top", "3")
    head = proc.stdout.decode().splitlines()[0]
    assert re.search(r"total \d+\.\d\dMB$", head), head
    assert units.label(13788432, "bytes") == "13.15MB"
    assert units.label(894209, "bytes", "MB") == "0.85MB"
    assert units.label(3598, "count", "MB") == "3598"  # counts are not bytes
    assert units.signed(-512, "bytes") == "-512B" and units.signed(0, "bytes") == "0"
    assert units.canonical("mib") == "MB" and units.canonical("furlong") is None
    proc = cardguard("heap", str(vdir / "heap.pb.gz"), "--unit", "furlong")
    assert proc.returncode == 2 and b"--unit" in proc.stderr


def test_heap_folded_with_and_without_base() -> None:
    vdir = version_dirs()[-1]
    proc = cardguard("heap", str(vdir / "heap.pb.gz"), "--format", "folded")
    assert proc.returncode == 0, proc.stderr
    one = stacks.parse_folded(proc.stdout.decode())
    assert all(len(v) == 1 for v in one.values())
    assert stacks.leaf_totals(one)["main.renderSection"] > 0
    proc = cardguard(
        "heap", str(vdir / "heap.pb.gz"), "--base", str(vdir / "heap-base.pb.gz"),
        "--format", "folded", "--lines",
    )  # fmt: skip
    two = stacks.parse_folded(proc.stdout.decode())
    assert all(len(v) == 2 for v in two.values())
    leaf = next(k for k in two if k[-1].startswith("main.renderSection ("))
    assert re.search(r"\(demo-service/main\.go:\d+\)$", leaf[-1]), leaf[-1]


def test_goroutines_text_shows_file_line_and_folded_counts_every_goroutine() -> None:
    vdir = version_dirs()[-1]
    for name in ("goroutine.pb.gz", "goroutine.debug1.txt"):
        proc = cardguard("goroutines", str(vdir / name))
        assert proc.returncode == 0, proc.stderr
        text = proc.stdout.decode()
        # under the leaking group's row, its frame with the module path and line
        assert re.search(r"^ {32}main\.subscribe\.func1  demo-service/main\.go:175$", text, re.M)
        assert "cardguard-gopath" not in text and "\x1b[" not in text  # a pipe gets no colour
        proc = cardguard("goroutines", str(vdir / name), "--format", "folded")
        folded = stacks.parse_folded(proc.stdout.decode())
        total = sum(v[0] for v in folded.values())
        first = (vdir / "goroutine.debug1.txt").read_text().splitlines()[0]
        assert total == int(first.rsplit(" ", 1)[1])  # "goroutine profile: total N"
        assert stacks.leaf_totals(folded)["main.subscribe.func1"] >= 100
