"""Benchmark: `cardguard cardinality` against promtool and prometheus_client on a ~1M-series page.

The page imitates what a client_golang service with a label explosion serves:
the default Go and process collectors, HTTP histograms and counters with
realistic handler/method/code labels, an RPC summary, and a summary whose
``start_point`` label received the request URL (the defining incident).

All three tools read the same file, in turn, as child processes, so each
one's wall time, CPU time and peak RSS (``os.wait4``) are its own:

- ``cardguard cardinality PAGE --format json`` (also computes per-label detail)
- ``promtool check metrics --extended < PAGE`` (series per family only): the peer
- a plain loop over ``prometheus_client.parser.text_string_to_metric_families``

Then cardguard's stages on the same page, in this process.

Run: ``python -m benchmarks cardinality [--runs N]`` (default 5 runs), or
``--quick`` (2,000 series, one run) as CI does. Environment:
``CARDGUARD_BENCH_SERIES`` (default 1000000), ``CARDGUARD_BENCH_RUNS``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO

from benchmarks._harness import Runner, compare, options, print_stages, print_table, stages

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


def exploding_scrapes(series: int, scrapes: int) -> None:
    """Scrapes per CPU second of what serve does with each page of an exploding target.

    Every scrape's page has ``series`` series of which the exploding summary's
    are all new (another seed each time): parse, count, label values and the
    churn update against the previous scrape, in this process. The whole
    server (fetch, scheduling, exposition) is measured by ``benchmarks fleet``.
    """
    import io
    import statistics
    import time

    from cardguard.analyse.cardinality import analyse
    from cardguard.analyse.churn import ChurnTracker

    pages = []
    for seed in range(scrapes + 1):
        buf = io.StringIO()
        write_page(buf, series, seed=seed + 100)
        pages.append(buf.getvalue().encode())
    tracker = ChurnTracker()
    tracker.update(analyse(pages[0], content_type=None, source="page"), 0.0)
    times = []
    for i, page in enumerate(pages[1:], start=1):
        start = time.process_time()
        tracker.update(analyse(page, content_type=None, source="page"), 60.0 * i)
        times.append(time.process_time() - start)
    med = statistics.median(times)
    print(
        f"\n== serve's analysis of an exploding target: {series:,}-series pages, every "
        f"exploding series new each scrape ({scrapes} scrapes, CPU time in this process)"
    )
    print(f"{'median CPU per scrape':<40} {med * 1000:>9.1f} ms")
    print(f"{'scrapes per CPU second':<40} {1 / med:>9.1f}   (aim >= 60)")


def stage_breakdown(path: Path, runs: int, series: int) -> None:
    """Time the stages of one cold analysis in this process: read, parse, count, classify, ..."""
    from cardguard.analyse import patterns
    from cardguard.analyse.cardinality import analyse
    from cardguard.analyse.churn import ChurnTracker
    from cardguard.commands.cardinality import render_json
    from cardguard.parse.exposition import detect_format, scan

    state: dict[str, Any] = {}

    def read() -> None:
        state["data"] = path.read_bytes()

    def parse() -> None:
        data = state["data"]
        for _ in scan(data, detect_format(None, data), "page"):
            pass

    def whole() -> None:
        state["analysis"] = analyse(state["data"], content_type=None, source="page")

    def classify() -> None:
        for fam in state["analysis"].families:
            for lab in fam.labels:
                patterns.classify(list(lab.examples), lab.distinct_values)

    def churn() -> None:
        ChurnTracker().update(state["analysis"], 0.0)

    def render() -> None:
        render_json(state["analysis"], 0)

    measured = dict(
        stages(
            [
                ("read", read),
                ("parse", parse),
                ("analyse", whole),
                ("classify", classify),
                ("churn", churn),
                ("render", render),
            ],
            runs,
        )
    )
    # analyse() parses the page as it counts: what it adds to the parse alone is
    # counting, label values (sets, then HyperLogLog) and their fingerprints.
    counting = [
        max(0.0, a - p) for a, p in zip(measured["analyse"], measured["parse"], strict=True)
    ]
    print_stages(
        "cardguard cardinality, one cold page (every series new)",
        [
            ("read the page (file)", measured["read"]),
            ("exposition: split, tokenise and validate lines", measured["parse"]),
            ("counting, label values, hashing (analyse - parse)", counting),
            ("label patterns (classify)", measured["classify"]),
            ("churn baseline (ChurnTracker.update)", measured["churn"]),
            ("render JSON", measured["render"]),
        ],
        series,
        "series",
    )


def main(argv: list[str] | None = None) -> None:
    """Compare cardguard with promtool and prometheus_client, then show cardguard's stages."""
    args = options(__doc__.splitlines()[0] if __doc__ else None, argv)
    default = "2000" if args.quick else "1000000"
    series = int(os.environ.get("CARDGUARD_BENCH_SERIES", default))
    runs = int(os.environ.get("CARDGUARD_BENCH_RUNS", args.runs))
    path = page_path(series)
    size = path.stat().st_size
    lines = sum(1 for line in open(path, "rb") if not line.startswith(b"#"))
    print(f"bench_cardinality: {path} ({size / 1e6:.1f} MB, {lines:,} series), {runs} runs each")

    ours = "cardguard cardinality --format json (with per-label detail)"
    commands: dict[str, tuple[list[str], str | None]] = {
        ours: (
            [sys.executable, "-m", "cardguard", "cardinality", str(path), "--format", "json"],
            None,
        ),
    }
    promtool = shutil.which("promtool")
    peer_name = "promtool check metrics --extended < PAGE"
    if promtool:
        commands[peer_name] = ([promtool, "check", "metrics", "--extended"], str(path))
    else:
        print("promtool not found: no peer row (Debian: apt-get install prometheus)")
    commands["prometheus_client text_string_to_metric_families"] = (
        [sys.executable, "-c", PROMETHEUS_CLIENT_LOOP, str(path)],
        None,
    )
    with Runner() as runner:
        timings = compare(runner, commands, runs)
    # One more cardguard run whose output is kept, to check it counted the same page.
    out = subprocess.run(commands[ours][0], capture_output=True, check=True).stdout
    total = json.loads(out)["total_series"]
    if total != lines:
        raise SystemExit(f"bench_cardinality: cardguard counted {total} series, page has {lines}")
    peer = timings.get(peer_name)
    print_table(f"cold analysis of a {lines:,}-series page", list(timings.values()), peer)
    if peer is not None:
        print("aims: >= 5x promtool's speed, <= 0.1 of its peak RSS (whole process, page included)")
    stage_breakdown(path, runs, lines)
    exploding_scrapes(2_000 if args.quick else 10_000, 3 if args.quick else 20)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
