"""Every benchmark runs once on a tiny input (``--quick``) and prints its tables, so none rots.

No figure is judged here: performance is measured by the benchmarks themselves
(``python -m benchmarks NAME``), never by a timed test. What is checked is that
each one still runs end to end against its peer and prints the table with the
ratio column and cardguard's own stage breakdown.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys

import pytest

from support import CACHE, REPO

BENCHMARKS = REPO / "benchmarks"

# What each benchmark's output must hold: its comparison table (ratios to the
# peer) and its stage breakdown. A new benchmark is run too, and must at least
# print a median.
EXPECTED: dict[str, tuple[str, ...]] = {
    "bench_cardinality": (
        "== cold analysis of a",
        "CPU vs peer",
        "promtool check metrics --extended < PAGE",
        "-- cardguard cardinality, one cold page",
        "exposition: split, tokenise and validate lines",
        "us per series",
        "scrapes per CPU second",
    ),
    "bench_pprof": (
        "== heap top of heapstacks",
        "== heap top of large.cpu (google/pprof)",
        "go tool pprof -top",
        "CPU vs peer",
        "flat and cum per function (Counter per weight)",
        "== goroutine dump of 1001 goroutines",
        "parse: one split at the headers, texts read once",
        "us per goroutine",
    ),
    "bench_exposition_proto": (
        "== protobuf exposition decoders",
        "upb classes from descriptor_pb2 (peer)",
        "vs peer",
    ),
    "bench_fleet": (
        "scrapes per CPU second (median of",
        "prometheus 2.42:",
        "CPU per scrape, cardguard (processes) / Prometheus:",
        "largest fleet kept on schedule:",
        "start-up with 500 targets:",
        "one steady scrape, in-process",
    ),
    "bench_target_cost": (
        "== go1.19: API requests at 100/s",
        "goroutine debug=2",
        "of a core (aim: under 0.5%)",
    ),
}
NEEDS_GO = {"bench_pprof", "bench_fleet", "bench_target_cost"}
# Benchmarks that are not timings against a peer, with the test that runs them instead.
ELSEWHERE = {"bench_verdicts": "tests/test_verdict_matrix.py runs the verdict matrix"}


def _names() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(BENCHMARKS)])
        if m.name.startswith("bench_") and m.name not in ELSEWHERE
    )


def test_every_benchmark_is_listed() -> None:
    """A benchmark without expectations here would only be checked for a median."""
    assert set(EXPECTED) <= set(_names())


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.needs_go) if n in NEEDS_GO else n for n in _names()],
)
def test_benchmark_quick_prints_its_tables(name: str) -> None:
    short = name.removeprefix("bench_")
    # Pages and Go programs built for the run are kept with the tests' other builds.
    env = dict(os.environ, CARDGUARD_BENCH_CACHE=str(CACHE / "bench"))
    env.pop("CARDGUARD_BENCH_SERIES", None)
    env.pop("CARDGUARD_BENCH_RUNS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", short, "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"{name} --quick failed:\n{out[-3000:]}\n{proc.stderr[-3000:]}"
    assert f"==== benchmarks.{name}" in out
    for needle in EXPECTED.get(name, ("median",)):
        assert needle in out, f"{name} --quick did not print {needle!r}:\n{out[-3000:]}"
