"""What every benchmark shares: one command line, whole-process measurement, and two tables.

- ``options()``: ``--runs N`` (medians of N runs) and ``--quick`` (a tiny input,
  one run: what CI runs so that no benchmark rots; its figures mean nothing);
- ``Runner``/``compare()``: each command runs as a child of a small spawning
  process (a child forked from a benchmark holding a large input would
  inherit its peak RSS), in turn with its peer (A B A B ...) so that drift in
  the machine's load hits both alike; wall time, CPU time (user + system, from
  ``wait4``) and peak RSS are the child's own;
- ``print_table()``: medians side by side with their ratios to the peer
  (CPU time is the steadier figure on a shared machine; wall is printed too);
- ``stages()``/``print_stages()``: where the time goes inside cardguard, stage
  by stage, in CPU time measured in this process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def options(description: str | None, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the options every benchmark takes (``--runs``, ``--quick``)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--runs", type=int, default=5, help="runs per command (medians)")
    ap.add_argument(
        "--quick", action="store_true", help="tiny input, one run: checks the benchmark still runs"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.runs = 1
    return args


@dataclass
class Timing:
    """Runs of one command: wall and CPU seconds per run, and the largest peak RSS."""

    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_rss: int = 0  # bytes

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


# Runs each command and reports its wall time, CPU time and peak RSS (wait4).
_SPAWNER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    argv, stdin_path = json.loads(line)
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    start = time.perf_counter()
    p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    took = time.perf_counter() - start
    if stdin_path:
        stdin.close()
    code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    tail = err[-2000:].decode(errors="replace")
    print(json.dumps([took, cpu, usage.ru_maxrss * 1024, code, tail]), flush=True)
"""


class Runner:
    """A small process that spawns the measured commands."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SPAWNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: Sequence[str], stdin: str | None = None) -> tuple[float, float, int]:
        """Run ``argv`` once; return (wall s, CPU s, peak RSS bytes); exit on failure."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps([list(argv), stdin]) + "\n")
        self.proc.stdin.flush()
        wall, cpu, rss, code, err = json.loads(self.proc.stdout.readline())
        if code != 0:
            sys.exit(f"benchmark command failed ({code}): {' '.join(argv)}\n{err}")
        return float(wall), float(cpu), int(rss)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compare(
    runner: Runner, commands: dict[str, tuple[Sequence[str], str | None]], runs: int
) -> dict[str, Timing]:
    """Run each (argv, stdin file) ``runs`` times, interleaved; return their timings by name."""
    out = {name: Timing(name) for name in commands}
    for _ in range(runs):
        for name, (argv, stdin) in commands.items():
            wall, cpu, rss = runner.run(argv, stdin)
            t = out[name]
            t.wall.append(wall)
            t.cpu.append(cpu)
            t.peak_rss = max(t.peak_rss, rss)
    return out


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def print_table(title: str, rows: Sequence[Timing], peer: Timing | None) -> None:
    """Print medians, peak RSS and each one's ratio to the peer's (the peer's row is 1.00)."""
    runs = max((len(r.cpu) for r in rows), default=0)
    print(f"\n== {title} (medians of {runs} run{'s' if runs != 1 else ''}, whole process)")
    print(
        f"{'command':<56} {'CPU s':>8} {'wall s':>8} {'peak RSS MiB':>13}"
        f" {'CPU vs peer':>12} {'wall vs peer':>13} {'RSS vs peer':>12}"
    )
    for r in rows:
        cpu, wall = r.median_cpu, r.median_wall
        line = f"{r.name:<56} {cpu:>8.3f} {wall:>8.3f} {r.peak_rss / 2**20:>13.1f}"
        if peer is not None:
            line += (
                f" {_ratio(cpu, peer.median_cpu):>12} {_ratio(wall, peer.median_wall):>13}"
                f" {_ratio(r.peak_rss, peer.peak_rss):>12}"
            )
        print(line)
    if peer is not None:
        for r in rows:
            if r is not peer and r.median_cpu:
                print(
                    f"{r.name}: {peer.median_cpu / r.median_cpu:.2f}x the peer's speed in CPU "
                    f"time ({peer.median_wall / r.median_wall:.2f}x in wall time), "
                    f"{_ratio(r.peak_rss, peer.peak_rss)} of its peak RSS"
                )


Stage = tuple[str, Callable[[], object]]


def stages(steps: Sequence[Stage], runs: int) -> list[tuple[str, list[float]]]:
    """Time each step's callable ``runs`` times in CPU seconds of this process, in order.

    Steps run in the order given in every round, so a step may use what an
    earlier one left (e.g. a decoded profile).
    """
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(runs):
        for i, (_name, fn) in enumerate(steps):
            start = time.process_time()
            fn()
            times[i].append(time.process_time() - start)
    return [(name, t) for (name, _), t in zip(steps, times, strict=True)]


def print_stages(
    title: str, measured: Sequence[tuple[str, list[float]]], units: int = 0, unit: str = ""
) -> None:
    """Print each stage's median CPU time, its share, and its cost per unit (e.g. per series)."""
    medians = [(name, statistics.median(t)) for name, t in measured]
    total = sum(m for _, m in medians)
    per = f" {'us per ' + unit:>18}" if units else ""
    print(f"\n-- {title}: stages, CPU time in this process (medians)")
    print(f"{'stage':<52} {'ms':>9} {'share':>7}{per}")
    for name, m in medians:
        line = f"{name:<52} {m * 1000:>9.1f} {100 * m / total if total else 0:>6.1f}%"
        if units:
            line += f" {m * 1e6 / units:>18.3f}"
        print(line)
    line = f"{'total':<52} {total * 1000:>9.1f} {100.0:>6.1f}%"
    if units:
        line += f" {total * 1e6 / units:>18.3f}"
    print(line)
