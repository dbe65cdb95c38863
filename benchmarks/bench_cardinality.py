"""Benchmark: `cardguard cardinality` against promtool and prometheus_client on a ~1M-series page.

The page imitates what a client_golang service with a label explosion serves:
the default Go and process collectors, HTTP histograms and counters with
realistic handler/method/code labels, an RPC summary, and a summary whose
``start_point`` label received the request URL (the defining incident).

All three tools read the same file, in one run, as child processes, so each
one's wall time and peak RSS (``ru_maxrss`` from ``os.wait4``) are its own:

- ``cardguard cardinality PAGE --format json`` (also computes per-label detail)
- ``promtool check metrics --extended < PAGE`` (series per family only)
- a plain loop over ``prometheus_client.parser.text_string_to_metric_families``

Run: ``python -m benchmarks`` (all benchmarks) or ``python -m benchmarks.bench_cardinality``.
Environment: ``CARDGUARD_BENCH_SERIES`` (default 1000000), ``CARDGUARD_BENCH_RUNS`` (3).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TextIO

BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")
SIZE_BUCKETS = ("100", "1000", "10000", "100000", "1e+06", "1e+07", "1e+08", "+Inf")
QUANTILES = ("0.5", "0.9", "0.99")
METHODS = ("GET", "POST", "PUT", "DELETE")
CODES = ("200", "201", "204", "400", "404", "500")


def _g(x: float) -> str:
    """Format a float the way Go's strconv 'g' shortest form mostly looks."""
    return repr(x) if x != int(x) or abs(x) >= 1e21 else str(int(x))


class _Lines:
    """Writes page lines straight to a file, so the page is never held in memory."""

    def __init__(self, fh: TextIO) -> None:
        self.fh = fh
        self.count = 0

    def append(self, line: str) -> None:
        self.fh.write(line)
        self.fh.write("\n")
        self.count += 1

    def __len__(self) -> int:
        return self.count


def _go_runtime(out: _Lines, rnd: random.Random) -> None:
    out.append(
        "# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection"
        " cycles."
    )
    out.append("# TYPE go_gc_duration_seconds summary")
    for q in ("0", "0.25", "0.5", "0.75", "1"):
        out.append(f'go_gc_duration_seconds{{quantile="{q}"}} {_g(rnd.random() * 1e-4)}')
    out.append(f"go_gc_duration_seconds_sum {_g(rnd.random())}")
    out.append("go_gc_duration_seconds_count 1234")
    gauges = [
        ("go_goroutines", "Number of goroutines that currently exist."),
        ("go_threads", "Number of OS threads created."),
        ("go_memstats_alloc_bytes", "Number of bytes allocated and still in use."),
        ("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use."),
        ("go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used."),
        ("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use."),
        ("go_memstats_heap_objects", "Number of allocated objects."),
        ("go_memstats_heap_sys_bytes", "Number of heap bytes obtained from system."),
        ("go_memstats_stack_inuse_bytes", "Number of bytes in use by the stack allocator."),
        ("go_memstats_sys_bytes", "Number of bytes obtained from system."),
        (
            "go_memstats_next_gc_bytes",
            "Number of heap bytes when next garbage collection will take place.",
        ),
        ("process_resident_memory_bytes", "Resident memory size in bytes."),
        ("process_virtual_memory_bytes", "Virtual memory size in bytes."),
        ("process_open_fds", "Number of open file descriptors."),
        ("process_max_fds", "Maximum number of open file descriptors."),
        ("process_start_time_seconds", "Start time of the process since unix epoch in seconds."),
    ]
    for name, help_ in gauges:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} gauge")
        out.append(f"{name} {_g(rnd.random() * 1e9)}")
    for name in (
        "go_memstats_alloc_bytes_total",
        "go_memstats_mallocs_total",
        "process_cpu_seconds_total",
    ):
        out.append(f"# HELP {name} Total, counted by the Go runtime.")
        out.append(f"# TYPE {name} counter")
        out.append(f"{name} {_g(rnd.random() * 1e6)}")
    out.append("# HELP go_info Information about the Go environment.")
    out.append("# TYPE go_info gauge")
    out.append('go_info{version="go1.19.8"} 1')


def write_page(fh: TextIO, target_series: int, seed: int = 1) -> None:
    """Write a text-format page of about ``target_series`` series to ``fh``."""
    rnd = random.Random(seed)
    out = _Lines(fh)
    _go_runtime(out, rnd)
    handlers = [f"/api/v1/{w}" for w in ("users", "orders", "items", "carts", "search", "login")]
    handlers += [f"/api/v2/resource{i}" for i in range(max(10, target_series // 2000))]
    # HTTP server histogram: handler x method x code, 12 buckets + sum + count.
    out.append("# HELP http_request_duration_seconds Duration of HTTP requests.")
    out.append("# TYPE http_request_duration_seconds histogram")
    n_hist = 0
    for h in handlers:
        for m in METHODS:
            for c in CODES:
                labels = f'code="{c}",handler="{h}",method="{m}"'
                acc = 0
                for b in BUCKETS:
                    acc += rnd.randrange(0, 50)
                    out.append(f'http_request_duration_seconds_bucket{{{labels},le="{b}"}} {acc}')
                out.append(
                    f"http_request_duration_seconds_sum{{{labels}}} {_g(acc * rnd.random())}"
                )
                out.append(f"http_request_duration_seconds_count{{{labels}}} {acc}")
                n_hist += 1
    out.append("# HELP http_requests_total Total HTTP requests.")
    out.append("# TYPE http_requests_total counter")
    for h in handlers:
        for m in METHODS:
            for c in CODES:
                labels = f'code="{c}",handler="{h}",method="{m}"'
                out.append(f"http_requests_total{{{labels}}} {rnd.randrange(1, 10**6)}")
    out.append("# HELP http_response_size_bytes Size of HTTP responses.")
    out.append("# TYPE http_response_size_bytes histogram")
    for h in handlers:
        acc = 0
        for b in SIZE_BUCKETS:
            acc += rnd.randrange(0, 100)
            out.append(f'http_response_size_bytes_bucket{{handler="{h}",le="{b}"}} {acc}')
        out.append(f'http_response_size_bytes_sum{{handler="{h}"}} {_g(acc * 1234.5)}')
        out.append(f'http_response_size_bytes_count{{handler="{h}"}} {acc}')
    out.append("# HELP rpc_durations_seconds RPC latency distributions.")
    out.append("# TYPE rpc_durations_seconds summary")
    for s in range(40):
        for m in range(10):
            labels = f'method="Method{m}",service="svc{s}"'
            for q in QUANTILES:
                out.append(f'rpc_durations_seconds{{{labels},quantile="{q}"}} {_g(rnd.random())}')
            out.append(f"rpc_durations_seconds_sum{{{labels}}} {_g(rnd.random() * 100)}")
            out.append(f"rpc_durations_seconds_count{{{labels}}} {rnd.randrange(1, 1000)}")
    # The explosion: the request URL as a summary label value.
    used = len(out)
    urls = max(1, (target_series - used) // 5)
    out.append("# HELP api_request_latency_seconds Latency by start point.")
    out.append("# TYPE api_request_latency_seconds summary")
    urnd = uuid.UUID(int=rnd.getrandbits(128))
    for i in range(urls):
        start = (
            f"/api/v1/users/{100000 + i}/orders/{uuid.UUID(int=(urnd.int + i * 7919) % (1 << 128))}"
        )
        labels = f'service="checkout",start_point="{start}"'
        for q in QUANTILES:
            out.append(f'api_request_latency_seconds{{{labels},quantile="{q}"}} {_g(rnd.random())}')
        out.append(f"api_request_latency_seconds_sum{{{labels}}} {_g(rnd.random() * 10)}")
        out.append(f"api_request_latency_seconds_count{{{labels}}} {rnd.randrange(1, 100)}")


TIME = "/usr/bin/time"


def _run(argv: list[str], stdin_path: Path | None = None) -> tuple[float, int, int]:
    """Run ``argv``; return wall seconds, its own peak RSS in bytes, and exit status.

    Peak RSS comes from GNU time wrapped around the command: a child's maxrss
    counts the memory of whatever forked it, and GNU time is tiny, whereas this
    Python process is not.
    """
    with contextlib.ExitStack() as stack:
        stdin = stack.enter_context(open(stdin_path, "rb")) if stdin_path else subprocess.DEVNULL
        report = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "rss"
        if os.path.exists(TIME):
            argv = [TIME, "-f", "%M", "-o", str(report), *argv]
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if report.exists():
            peak = int(report.read_text().split()[-1]) * 1024
        else:
            peak = usage.ru_maxrss * 1024
    return wall, peak, code


PROMETHEUS_CLIENT_LOOP = """
import sys
from prometheus_client.parser import text_string_to_metric_families
series = 0
with open(sys.argv[1], encoding="utf-8") as fh:
    for family in text_string_to_metric_families(fh.read()):
        series += len(family.samples)
print(series)
"""


def page_path(series: int, seed: int = 1) -> Path:
    """Build the page once and keep it in a cache directory."""
    cache = Path(
        os.environ.get("CARDGUARD_BENCH_CACHE", Path.home() / ".cache" / "cardguard-bench")
    )
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"client_golang-{series}-{seed}.txt"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            write_page(fh, series, seed)
        tmp.replace(path)
    return path


def main() -> None:
    series = int(os.environ.get("CARDGUARD_BENCH_SERIES", "1000000"))
    runs = int(os.environ.get("CARDGUARD_BENCH_RUNS", "3"))
    path = page_path(series)
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    size = path.stat().st_size
    lines = sum(1 for line in open(path, "rb") if not line.startswith(b"#"))
    print(f"bench_cardinality: {path} ({size / 1e6:.1f} MB, {lines} series), {runs} runs each")
    print("peak RSS measured by GNU time around each command; wall time from this process")

    with tempfile.TemporaryDirectory(prefix="cardguard-bench-") as tmp:
        out = Path(tmp) / "cardguard.json"
        tools: dict[str, tuple[list[str], Path | None]] = {
            "cardguard cardinality --format json": (
                [sys.executable, "-m", "cardguard", "cardinality", str(path), "--format", "json"],
                None,
            ),
            "promtool check metrics --extended": (
                [promtool, "check", "metrics", "--extended"],
                path,
            ),
            "prometheus_client text_string_to_metric_families": (
                [sys.executable, "-c", PROMETHEUS_CLIENT_LOOP, str(path)],
                None,
            ),
        }
        walls: dict[str, list[float]] = {name: [] for name in tools}
        rss: dict[str, list[int]] = {name: [] for name in tools}
        for _ in range(runs):
            # Interleave the tools so drift in machine load hits all of them alike.
            for name, (argv, stdin) in tools.items():
                wall, peak, code = _run(argv, stdin)
                if code != 0:
                    raise SystemExit(f"bench_cardinality: {name} exited with {code}")
                walls[name].append(wall)
                rss[name].append(peak)
        # One more cardguard run whose output is kept, to check it counted the same page.
        with open(out, "wb") as fh:
            subprocess.run(tools["cardguard cardinality --format json"][0], stdout=fh, check=True)
        total = json.loads(out.read_text())["total_series"]
        if total != lines:
            raise SystemExit(
                f"bench_cardinality: cardguard counted {total} series, page has {lines}"
            )

    ours = "cardguard cardinality --format json"
    base_wall = statistics.median(walls[ours])
    base_rss = max(rss[ours])
    print()
    print(
        f"{'tool':<52} {'median s':>9} {'min s':>8} {'peak RSS MB':>12} {'time x':>8} {'RSS x':>7}"
    )
    for name in tools:
        med = statistics.median(walls[name])
        peak = max(rss[name])
        print(
            f"{name:<52} {med:>9.2f} {min(walls[name]):>8.2f} {peak / 2**20:>12.0f}"
            f" {med / base_wall:>8.2f} {peak / base_rss:>7.2f}"
        )
    pt = "promtool check metrics --extended"
    speed = statistics.median(walls[pt]) / base_wall
    best = min(walls[pt]) / min(walls[ours])
    mem = max(rss[pt]) / base_rss
    print()
    print(
        f"cardguard vs promtool: {speed:.1f}x faster by medians ({best:.1f}x by best runs; "
        f"aim >= 2x), {mem:.1f}x less peak RSS (aim >= 3x); cardguard also counted distinct "
        "values per label"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
