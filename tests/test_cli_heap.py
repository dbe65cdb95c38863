"""``cardguard heap`` and ``cardguard goroutines`` run as commands, on files and live targets."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import requests

from cardguard.pprof import heap, profile
from demo_support import DEMO_FAST_FLAGS
from pprof_support import leak_dirs, parse_top, version_dirs
from support import Process, cardguard_argv, dead_url, wait_for

DemoFactory = Callable[..., AbstractContextManager[Process]]
NEWSTREAM = "github.com/beorn7/perks/quantile.newStream"
LEAKER = "main.subscribe.func1"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cardguard_argv(*args), capture_output=True, text=True, timeout=120)


def _json(*args: str) -> Any:
    proc = _run(*args, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _go119() -> Path:
    return next(d for d in version_dirs() if d.name == "go1.19")


def test_heap_json_equals_go_tool_pprof() -> None:
    vdir = _go119()  # Go 1.19 names generics [...] itself, so pprof's rows compare directly
    out = _json("heap", str(vdir / "heap.pb.gz"), "--sample-index", "inuse_objects", "--top", "0")
    want = parse_top(vdir / "heap.top.inuse_objects.txt")
    assert out["sample_index"] == "inuse_objects" and out["unit"] == "count"
    assert out["total"] == want.total
    assert {f["name"]: (f["flat"], f["cum"]) for f in out["functions"]} == want.rows
    assert set(out["functions"][0]) == {"name", "flat", "cum"}


def test_heap_top_limits_rows_and_defaults_to_inuse_space() -> None:
    path = version_dirs()[-1] / "heap.pb.gz"
    out = _json("heap", str(path), "--top", "3")
    assert out["sample_index"] == "inuse_space" and out["unit"] == "bytes"
    assert len(out["functions"]) == 3
    assert out["functions"][0]["name"] == NEWSTREAM


def test_heap_base_json_has_deltas_like_pprof_base() -> None:
    vdir = _go119()
    out = _json(
        "heap", str(vdir / "heap.pb.gz"), "--base", str(vdir / "heap-base.pb.gz"), "--top", "0"
    )
    want = parse_top(vdir / "heap.base.top.inuse_space.txt")
    got = {f["name"]: (f["flat_delta"], f["cum_delta"]) for f in out["functions"]}
    for name, figures in want.rows.items():
        assert got[name] == figures, name
    assert out["total_delta"] == want.accounted
    first = out["functions"][0]
    assert first["name"] == NEWSTREAM and first["flat_delta"] > 0
    assert {"name", "flat", "cum", "flat_delta", "cum_delta"} <= set(first)


def test_heap_text_output() -> None:
    proc = _run("heap", str(version_dirs()[-1] / "heap.pb.gz"), "--top", "5")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "inuse_space (bytes)" in lines[0]
    assert lines[2].endswith(NEWSTREAM)
    assert "more functions" in lines[-1]


def test_heap_from_a_live_target_with_a_file_base(
    demo_service: DemoFactory, tmp_path: Path
) -> None:
    with demo_service("current", *DEMO_FAST_FLAGS) as proc:
        url = f"{proc.base_url}/debug/pprof/heap"

        def owned() -> int:
            body = requests.get(url, timeout=10).content
            now = heap.owners(profile.decode(body, url))
            return next((f.flat for f in now.functions if f.name == NEWSTREAM), 0)

        # A heap profile shows what the last GC saw; wait until it saw the leak.
        base = tmp_path / "base.pb.gz"
        wait_for(lambda: owned() > 0, 30, "newStream in the heap profile")
        base.write_bytes(requests.get(url, timeout=10).content)
        before = heap.owners(profile.decode(base.read_bytes(), str(base)))
        start = next(f.flat for f in before.functions if f.name == NEWSTREAM)
        wait_for(lambda: owned() > start, 30, "newStream to grow")
        out = _json("heap", proc.base_url, "--base", str(base), "--top", "0")
        assert out["source"] == f"{proc.base_url}/debug/pprof/heap"
        row = next(f for f in out["functions"] if f["name"] == NEWSTREAM)
        assert row["flat_delta"] > 0


def test_heap_errors_name_the_file(tmp_path: Path) -> None:
    data = (version_dirs()[0] / "heap.pb.gz").read_bytes()
    cut = tmp_path / "cut.pb.gz"
    cut.write_bytes(data[: len(data) // 3])
    proc = _run("heap", str(cut))
    assert proc.returncode == 1
    assert f"Error: {cut}: truncated gzip data" in proc.stderr
    proc = _run("heap", str(tmp_path / "missing.pb.gz"))
    assert proc.returncode == 1 and "missing.pb.gz: cannot read" in proc.stderr
    proc = _run("heap", str(version_dirs()[0] / "heap.pb.gz"), "--sample-index", "cpu")
    assert proc.returncode == 1 and "no sample type 'cpu'" in proc.stderr


def test_heap_dead_target_is_a_clear_error() -> None:
    with dead_url() as url:
        proc = _run("heap", url, "--timeout", "5s")
    assert proc.returncode == 1
    assert f"{url}/debug/pprof/heap" in proc.stderr and "Traceback" not in proc.stderr


def test_goroutines_json_from_each_format() -> None:
    vdir = _go119()
    debug1 = (vdir / "goroutine.debug1.txt").read_text().splitlines()[0]
    total = int(debug1.rsplit(" ", 1)[1])
    for name in ("goroutine.pb.gz", "goroutine.debug1.txt", "goroutine.debug2.txt"):
        out = _json("goroutines", str(vdir / name))
        assert out["total"] == total, name
        g = next(g for g in out["groups"] if g["function"] == LEAKER)
        keys = {"id", "count", "function", "frames", "created_by", "state"}
        assert keys | {"max_wait_seconds", "leaked"} <= set(g)
        if name == "goroutine.debug2.txt":
            assert g["created_by"] == "main.subscribe" and g["state"] == "chan receive"
            assert g["max_wait_seconds"] >= 60
        else:  # the counted formats lack these: null, not a guess
            assert g["created_by"] is None and g["state"] is None
            assert g["max_wait_seconds"] is None
        assert g["leaked"] is None  # Go 1.19 cannot tell


def test_goroutines_leak_profile_file() -> None:
    for vdir in leak_dirs():
        out = _json("goroutines", str(vdir / "goroutineleak.pb.gz"))
        assert out["kind"] == "goroutineleak"
        (g,) = out["groups"]
        assert g["function"] == LEAKER and g["leaked"] == g["count"] == out["total"]


def test_goroutines_from_live_targets(demo_service: DemoFactory) -> None:
    with demo_service("current", *DEMO_FAST_FLAGS) as proc:
        url = f"{proc.base_url}/debug/pprof/goroutineleak?debug=1"
        wait_for(lambda: b"total 0\n" not in requests.get(url, timeout=10).content, 30, "a leak")
        out = _json("goroutines", proc.base_url)
        assert out["format"] == "debug2" and out["goroutineleak_supported"] is True
        g = next(g for g in out["groups"] if g["function"] == LEAKER)
        assert g["leaked"] >= 1 and g["created_by"] == "main.subscribe"
        # Over the full-dump limit only the counted profile is taken.
        out = _json("goroutines", proc.base_url, "--max-full-dump", "1", "--no-leaks")
        assert out["format"] == "debug1" and out["goroutineleak_supported"] is None
    with demo_service("go1.19", *DEMO_FAST_FLAGS) as proc:
        out = _json("goroutines", proc.base_url)
        assert out["goroutineleak_supported"] is False
        assert all(g["leaked"] is None for g in out["groups"])


def test_goroutines_text_output() -> None:
    proc = _run("goroutines", str(_go119() / "goroutine.debug2.txt"))
    assert proc.returncode == 0, proc.stderr
    assert "goroutine profile (debug2)" in proc.stdout.splitlines()[0]
    assert LEAKER in proc.stdout and "created by main.subscribe" in proc.stdout
