"""Go's legacy text profiles (``?debug=1``) and unsymbolised profiles, checked against pprof.

``legacytext`` (tests/testdata/pprof/programs) writes its heap, mutex and
block profiles as Go's debug=1 text and as profile.proto, one right after
the other. ``go tool pprof -top BINARY FILE.txt`` reads the text with the
binary's symbols; cardguard reads the same text with the symbols Go printed
in its ``#`` lines. pprof's binary symbolisation knows no inlining, so the
row-for-row comparison uses a build without inlining (``-gcflags=all=-l``);
the inlined build is compared with its own profile.proto instead.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cardguard.errors import ProfileError
from cardguard.pprof import heap, model, profile, profile_pb2
from pprof_support import (
    HEAP_INDICES,
    build_program,
    parse_top,
    pprof_top,
    unit_flag,
    version_dirs,
)
from support import cardguard_argv

NAMES = ("heap", "mutex", "block")


@pytest.fixture(scope="module")
def written(
    toolchains: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, bool], tuple[Path, Path]]:
    """(toolchain, inlined) -> (binary, directory of the profiles it wrote)."""
    out = {}
    for label, go in toolchains.items():
        for inline in (False, True):
            binary = build_program("legacytext", go, inline=inline)
            d = tmp_path_factory.mktemp(f"legacy-{label}-{inline}")
            subprocess.run([str(binary), "-o", str(d)], check=True, timeout=120)
            out[label, inline] = (binary, d)
    return out


def _rows(prof: model.Profile, index: str) -> dict[str, tuple[int, int]]:
    report = heap.owners(prof, index, fold_generics=False)
    return {f.name: (f.flat, f.cum) for f in report.functions if f.flat or f.cum}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("label", ["go1.19", "current"])
def test_debug1_text_equals_go_tool_pprof_on_the_same_file(
    written: dict, toolchains: dict[str, Path], label: str, name: str
) -> None:
    binary, d = written[label, False]
    text = d / f"{name}.txt"
    prof = profile.decode(text.read_bytes(), str(text))
    want_types = list(HEAP_INDICES) if name == "heap" else ["contentions", "delay"]
    assert [t.type for t in prof.sample_types] == want_types
    for st in prof.sample_types:
        want = pprof_top(
            toolchains[label],
            f"-sample_index={st.type}",
            *unit_flag(st.unit),
            str(binary),
            str(text),
        )
        got = _rows(prof, st.type)
        assert got == want.rows, (name, st.type)
        assert heap.owners(prof, st.type).total == want.total
    if name == "heap":
        # The figures were unsampled (Go wrote heap/8192: MemProfileRate 4096).
        assert prof.period == 4096
        assert "main.small" in _rows(prof, "inuse_space")


@pytest.mark.parametrize("label", ["go1.19", "current"])
def test_inlined_heap_text_equals_its_profile_proto(written: dict, label: str) -> None:
    _, d = written[label, True]
    text = profile.decode((d / "heap.txt").read_bytes(), "heap.txt")
    proto = profile.decode((d / "heap.pb.gz").read_bytes(), "heap.pb.gz")
    for index in HEAP_INDICES:
        got = _rows(text, index)
        # The proto leaves runtime.goexit out of every stack; the text names it
        # (at the bottom of every goroutine's stack; system stacks lack it).
        flat, cum = got.pop("runtime.goexit")
        assert flat == 0 and 0 < cum <= heap.owners(text, index).total
        assert got == _rows(proto, index), index
    # Inlined frames come from Go's "#" lines: main.page is inlined into main.main.
    assert _rows(text, "alloc_objects")["main.page"][0] > 0


def test_cli_reads_heap_text(written: dict, toolchains: dict[str, Path]) -> None:
    binary, d = written["current", False]
    proc = subprocess.run(
        cardguard_argv("heap", str(d / "heap.txt"), "--top", "0", "--format", "json"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    want = pprof_top(toolchains["current"], "-unit=B", str(binary), str(d / "heap.txt"))
    assert out["sample_index"] == "inuse_space" and out["total"] == want.total
    assert {f["name"]: (f["flat"], f["cum"]) for f in out["functions"] if f["cum"]} == want.rows


def test_goroutine_count_text_is_a_profile_too() -> None:
    # pprof reads goroutine?debug=1 as a count profile; so does decode.
    for vdir in version_dirs():
        text = profile.decode((vdir / "goroutine.debug1.txt").read_bytes(), "debug1")
        proto = profile.decode((vdir / "goroutine.pb.gz").read_bytes(), "proto")
        assert [(t.type, t.unit) for t in text.sample_types] == [("goroutine", "count")]
        assert text.total() == proto.total()
        got = _rows(text, "goroutine")["main.subscribe.func1"]
        want = _rows(proto, "goroutine")["main.subscribe.func1"]
        # Same goroutines; the text hides the runtime frames they wait in, so
        # the function is the top of their stacks there.
        assert got == (want[1], want[1])


def _strip_symbols(data: bytes) -> bytes:
    """Remove every function and line from a real profile, as an unsymbolised one has none."""
    msg = profile_pb2.Profile()
    msg.ParseFromString(profile.unpack(data, "x"))
    for loc in msg.location:
        del loc.line[:]
    del msg.function[:]
    for m in msg.mapping:
        m.has_functions = m.has_filenames = m.has_line_numbers = m.has_inline_frames = False
    return msg.SerializeToString()


@pytest.mark.parametrize("vdir", version_dirs(), ids=[d.name for d in version_dirs()])
def test_unsymbolised_addresses_group_by_binary_as_pprof_does(
    vdir: Path, toolchains: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "unsymbolised.pb"
    path.write_bytes(_strip_symbols((vdir / "heap.pb.gz").read_bytes()))
    prof = profile.decode(path.read_bytes(), str(path))
    go = toolchains["current"]
    for index in HEAP_INDICES:
        want = pprof_top(go, "-symbolize=none", "-unit=B", f"-sample_index={index}", str(path))
        got = _rows(prof, index)
        assert got == want.rows, index
    # Every address of the binary is one node, named after it.
    assert list(got) == [f"[{Path(prof.locations[1].mapping).name}]"]


def test_debug2_dump_is_not_a_profile() -> None:
    path = version_dirs()[0] / "goroutine.debug2.txt"
    with pytest.raises(ProfileError, match=r"^dump: not a valid gzip-compressed or raw profile"):
        profile.decode(path.read_bytes(), "dump")


def test_malformed_heap_text_names_the_line() -> None:
    data = b"heap profile: 1: 2 [3: 4] @ heap/1048576\n1: 2 [3: 4] @ 0x1\nnonsense\n"
    with pytest.raises(ProfileError, match=r"^h: line 3: malformed heap sample 'nonsense'"):
        profile.decode(data, "h")
    data = b"heap profile: 1: 2 [3: 4] @ heap/1048576\n0: 5 [3: 4] @ 0x1\n"
    with pytest.raises(ProfileError, match=r"inuse count was 0 but inuse bytes was 5"):
        profile.decode(data, "h")


def test_recorded_top_files_still_parse() -> None:
    # parse_top reads -unit=ns rows too now; the recorded byte rows are unchanged.
    vdir = version_dirs()[0]
    assert parse_top(vdir / "heap.top.inuse_space.txt").total > 0
