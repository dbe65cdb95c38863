"""Goroutine profiles in all three formats from real Go processes, checked against Go."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from cardguard.errors import ProfileError
from cardguard.pprof import goroutines as gr
from pprof_support import leak_dirs, parse_top, version_dirs, version_ids
from support import Process

LEAKER = "main.subscribe.func1"


def _parse(path: Path, **kw: str) -> gr.GoroutineSnapshot:
    return gr.parse(path.read_bytes(), str(path), **kw)


def _go_printed_debug1(path: Path) -> tuple[int, list[tuple[int, str]]]:
    """Return Go's header total and (count, first printed function) per stack."""
    lines = path.read_text().splitlines()
    total = int(lines[0].rsplit(" ", 1)[1])
    stacks: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\d+) @", line)
        if m:
            frames = [x for x in lines[i + 1 :] if x.startswith("#\t")]
            fn = frames[0].split("\t")[2] if frames else ""
            stacks.append((int(m.group(1)), re.sub(r"\+0x[0-9a-f]+$", "", fn)))
    return total, stacks


def _group(groups: list[gr.GoroutineGroup], function: str) -> gr.GoroutineGroup:
    found = [g for g in groups if g.function == function]
    assert len(found) == 1, [g.function for g in groups]
    return found[0]


@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_formats_are_detected(vdir: Path) -> None:
    assert gr.detect_format((vdir / "goroutine.pb.gz").read_bytes()) == "proto"
    assert gr.detect_format((vdir / "goroutine.debug1.txt").read_bytes()) == "debug1"
    assert gr.detect_format((vdir / "goroutine.debug2.txt").read_bytes()) == "debug2"


@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_debug1_counts_equal_what_go_printed(vdir: Path) -> None:
    total, stacks = _go_printed_debug1(vdir / "goroutine.debug1.txt")
    snap = _parse(vdir / "goroutine.debug1.txt")
    assert (snap.format, snap.kind, snap.total) == ("debug1", "goroutine", total)
    groups = gr.group(snap)
    assert sum(g.count for g in groups) == total
    leaker_count = sum(n for n, fn in stacks if fn == LEAKER)
    assert leaker_count >= 100
    assert _group(groups, LEAKER).count == leaker_count
    # debug1 has no states, waits, creators or leak markers.
    assert all(g.state is None and g.max_wait_minutes is None for g in groups)
    assert all(g.created_by is None and g.leaked is None for g in groups)


@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_proto_groups_equal_go_tool_pprof(vdir: Path) -> None:
    want = parse_top(vdir / "goroutine.top.txt")
    snap = _parse(vdir / "goroutine.pb.gz")
    assert snap.format == "proto" and snap.total == want.total
    groups = gr.group(snap)
    for name, (_flat, cum) in want.rows.items():
        if name.startswith(("runtime.", "internal/runtime/")):
            continue  # normalised away at the top of stacks, as Go's debug=1 does
        assert sum(g.count for g in groups if name in g.frames) == cum, name


@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_group_ids_are_the_same_in_every_format(vdir: Path) -> None:
    by_format = {
        name: _group(gr.group(_parse(vdir / name)), LEAKER)
        for name in ("goroutine.pb.gz", "goroutine.debug1.txt", "goroutine.debug2.txt")
    }
    ids = {g.id for g in by_format.values()}
    assert len(ids) == 1 and re.fullmatch(r"[0-9a-f]{12}", ids.pop())
    counts = {g.count for g in by_format.values()}
    assert len(counts) == 1  # the leak had stopped: every format saw the same goroutines
    assert {g.frames for g in by_format.values()} == {(LEAKER,)}


@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_debug2_states_waits_and_creators(vdir: Path) -> None:
    text = (vdir / "goroutine.debug2.txt").read_text()
    snap = _parse(vdir / "goroutine.debug2.txt")
    assert snap.total == len(re.findall(r"^goroutine \d+ ", text, re.M))
    g = _group(gr.group(snap), LEAKER)
    assert g.created_by == "main.subscribe"
    assert g.state == "chan receive"
    waits = [
        int(m) for m in re.findall(r"^goroutine \d+ \[chan receive, (\d+) minutes\]", text, re.M)
    ]
    assert g.max_wait_minutes == (max(waits) if waits else 0)
    ids = [r.goroutine_id for r in snap.records]
    assert len(set(ids)) == len(ids) and None not in ids
    in_goroutine = re.findall(r"^created by main\.subscribe in goroutine (\d+)$", text, re.M)
    creator_ids = [r.creator_id for r in snap.records if r.frames == (LEAKER,)]
    if in_goroutine:  # Go 1.21+ names the creating goroutine
        assert sorted(creator_ids) == sorted(int(x) for x in in_goroutine)
    else:
        assert set(creator_ids) == {None}
    creators = gr.by_creator(snap)
    sub = next(c for c in creators if c.created_by == "main.subscribe")
    assert (sub.count, sub.groups) == (g.count, 1)


def test_go119_dump_has_minutes_and_no_leak_markers() -> None:
    vdir = next(d for d in version_dirs() if d.name == "go1.19")
    groups = gr.group(_parse(vdir / "goroutine.debug2.txt"))
    assert _group(groups, LEAKER).max_wait_minutes >= 1
    # Go 1.19 cannot detect leaks: unknown, not zero.
    assert all(g.leaked is None for g in groups)


@pytest.mark.parametrize("vdir", leak_dirs(), ids=[d.name for d in leak_dirs()])
def test_leaked_markers_match_the_goroutineleak_profile(vdir: Path) -> None:
    leak_total, _ = _go_printed_debug1(vdir / "goroutineleak.debug1.txt")
    assert leak_total >= 100
    groups = gr.group(_parse(vdir / "goroutine.debug2.txt"))
    assert _group(groups, LEAKER).leaked == leak_total
    assert all(g.leaked == 0 for g in groups if g.function != LEAKER)


@pytest.mark.parametrize("vdir", leak_dirs(), ids=[d.name for d in leak_dirs()])
def test_goroutineleak_profile_in_every_format(vdir: Path) -> None:
    leak_total, _ = _go_printed_debug1(vdir / "goroutineleak.debug1.txt")
    for name in ("goroutineleak.pb.gz", "goroutineleak.debug1.txt"):
        snap = _parse(vdir / name)
        assert snap.kind == "goroutineleak" and snap.total == leak_total, name
        (g,) = gr.group(snap)
        assert (g.function, g.count, g.leaked) == (LEAKER, leak_total, leak_total)
    # The debug=2 form lists every goroutine and marks the leaked ones.
    snap = _parse(vdir / "goroutineleak.debug2.txt", kind="goroutineleak")
    groups = gr.group(snap)
    assert sum(g.leaked or 0 for g in groups) == leak_total
    assert snap.total > leak_total
    top = parse_top(vdir / "goroutineleak.top.txt")
    assert top.total == leak_total and top.rows[LEAKER][1] == leak_total


@pytest.mark.parametrize("vdir", leak_dirs(), ids=[d.name for d in leak_dirs()])
def test_apply_leaks_to_counted_groups(vdir: Path) -> None:
    groups = gr.group(_parse(vdir / "goroutine.debug1.txt"))
    leaks = gr.group(_parse(vdir / "goroutineleak.debug1.txt"))
    merged = {g.function: g for g in gr.apply_leaks(groups, leaks)}
    assert merged[LEAKER].leaked == leaks[0].count
    assert all(g.leaked == 0 for f, g in merged.items() if f != LEAKER)


def test_growth_on_real_groups() -> None:
    vdir = version_dirs()[0]
    cur = gr.group(_parse(vdir / "goroutine.debug2.txt"))
    leaker = _group(cur, LEAKER)
    base = [g for g in cur if g.function != LEAKER]
    grown = gr.growth(base, cur)
    assert grown[0].id == leaker.id and grown[0].delta == leaker.count
    assert all(x.delta == 0 for x in grown[1:])
    # A group gone since the base shrinks by all it had.
    shrunk = gr.growth(cur, base)
    assert shrunk[-1].id == leaker.id and shrunk[-1].delta == -leaker.count
    assert (shrunk[-1].base_count, shrunk[-1].count) == (leaker.count, 0)


def test_truncated_debug1_is_refused() -> None:
    path = version_dirs()[0] / "goroutine.debug1.txt"
    data = path.read_bytes()
    cut = data[: data.index(b"\n\n") + 2]  # header and first stack only
    with pytest.raises(ProfileError, match=r"^g1: header says total \d+ but stacks count"):
        gr.parse(cut, "g1")


def test_garbage_is_refused_with_the_source() -> None:
    with pytest.raises(
        ProfileError, match=r"^dump\.txt: line 1: expected 'goroutine N \[state\]:'"
    ):
        gr.parse(b"goroutine x\nhello\n", "dump.txt", fmt="debug2")
    with pytest.raises(ProfileError, match=r"^p: not a"):
        gr.parse(b"\x00\x01\x02garbage", "p", fmt="proto")
    with pytest.raises(ProfileError, match=r"^t: goroutine dump is not UTF-8"):
        gr.parse(b"goroutine 1 [running]:\n\xff\xfe\n", "t", fmt="debug2")
    with pytest.raises(ProfileError, match="unknown goroutine profile format"):
        gr.parse(b"", "t", fmt="debug3")


def test_heap_profile_is_not_a_goroutine_profile() -> None:
    path = version_dirs()[0] / "heap.pb.gz"
    with pytest.raises(ProfileError, match="not a goroutine profile"):
        _parse(path)


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("main.(*T).run(0xc000010000, {0x1, 0x2})", "main.(*T).run"),
        ("main.subscribe.func1()", "main.subscribe.func1"),
        ("main.work(...)", "main.work"),
        ("main.(*Cache[go.shape.int64,go.shape.string]).Put(0x0?, 0x1)", "main.(*Cache[...]).Put"),
    ],
)
def test_debug2_call_lines_lose_their_arguments(line: str, want: str) -> None:
    dump = f"goroutine 7 [select, 3 minutes]:\n{line}\n\t/x.go:1 +0x1\n".encode()
    (rec,) = gr.parse(dump, "d").records
    assert rec.frames == (want,) and rec.state == "select" and rec.wait_minutes == 3


def test_other_count_profiles_are_not_goroutine_profiles(leaky_demo: Process) -> None:
    url = f"{leaky_demo.base_url}/debug/pprof/threadcreate?debug=1"
    body = requests.get(url, timeout=10).content
    assert body.startswith(b"threadcreate profile: total ")
    with pytest.raises(ProfileError, match=r"not a goroutine profile: a threadcreate profile"):
        gr.parse(body, url)


def _dump_edits(data: bytes) -> dict[str, bytes]:
    """A recorded dump and the same dump edited where reading it block by block decides things."""
    first = data.index(b"\n\ngoroutine ")
    second = data.index(b"\n\ngoroutine ", first + 2)
    return {
        "as recorded": data,
        "three blank lines": data.replace(b"\n\ngoroutine ", b"\n\n\n\ngoroutine ", 3),
        "no blank line before the second": data[:first] + data[first + 1 :],
        "trailing text": data + b"\nexit status 2\n",
        "a paragraph after the first": data[:first] + b"\n\nexit status 2" + data[first:],
        "a refused header": data[:first] + b"\n\ngoroutine 7 [x] junk" + data[first:],
        "cut inside the second": data[: second - 20],
        "cut after a header": data[: data.index(b"\n", second + 2)],
        "CRLF": data.replace(b"\n", b"\r\n"),
        "non-ASCII": data.replace(b"main.", "mäin.".encode(), 1),
        "a file before its call": data[:second] + b"\n\ngoroutine 9 [x]:\n\tf.go:1" + data[second:],
        "bad labels": data[:first]
        + b"\n\ngoroutine 9 [x] {k v}:\nmain.f()\n\tf.go:1"
        + data[first:],
    }


def test_one_split_reads_a_dump_as_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dump split at its headers in one pass gives the block reader's records, or its refusal."""
    from cardguard.pprof.goroutines import dump

    dumps = [d / "goroutine.debug2.txt" for d in version_dirs()] + [
        d / "goroutineleak.debug2.txt" for d in leak_dirs()
    ]
    checked = 0
    for path in dumps:
        for what, data in _dump_edits(path.read_bytes()).items():
            outcomes = []
            for split in (True, False):
                if not split:
                    monkeypatch.setattr(dump, "_split_records", lambda reader, body: None)
                try:
                    outcomes.append(gr.parse(data, "d", fmt="debug2"))
                except ProfileError as exc:
                    outcomes.append(str(exc))
                monkeypatch.undo()
            assert outcomes[0] == outcomes[1], (path, what)
            checked += isinstance(outcomes[0], gr.GoroutineSnapshot)
    assert checked >= 20
