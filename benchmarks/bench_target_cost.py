"""Benchmark: what cardguard's fetches cost the Go service it watches: CPU, its requests' latency.

The target is the demo service (deploy/demo-service, ``-steady``: every leak
grown to a bound and held, so each window sees the same process), built with
Go 1.19 and the current Go. While a client sends it API requests at a steady
rate over keep-alive connections and records each one's latency, cardguard's
fetches are replayed one endpoint at a time (``/metrics`` and
``/debug/pprof/heap``, ``goroutine?debug=0|1|2``, ``goroutineleak?debug=1``),
several at once, in windows interleaved with baseline windows of no fetching:

- **CPU per fetch**: the service's own CPU time (``/proc``) in a fetching window
  less a baseline window, per fetch;
- **latency**: p50, p99 and max of the API requests in the fetching windows
  against the baseline windows.

From the per-fetch CPU and cardguard's default schedule (``/metrics`` every
30 s; heap, goroutine and goroutineleak every 60 s; the goroutine dump as
debug=2 only under ``goroutine_full_max`` goroutines) it derives the share of
a core cardguard costs the service at the defaults, against an aim of 0.5%
and 2 ms of added p99.

Run: ``python -m benchmarks target_cost`` (``--quick``: short windows, for CI).
docs/performance.md has the results.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

TICK = os.sysconf("SC_CLK_TCK")
ENDPOINTS = (
    ("metrics", "/metrics"),
    ("heap", "/debug/pprof/heap"),
    ("goroutine debug=0", "/debug/pprof/goroutine?debug=0"),
    ("goroutine debug=1", "/debug/pprof/goroutine?debug=1"),
    ("goroutine debug=2", "/debug/pprof/goroutine?debug=2"),
    ("goroutineleak", "/debug/pprof/goroutineleak?debug=1"),
)
# cardguard's defaults (config.ProfilesConfig, TargetConfig): seconds between fetches.
DEFAULT_EVERY = {
    "metrics": 30.0,
    "heap": 60.0,
    "goroutine": 60.0,
    "goroutineleak": 60.0,
}
DEMO_FLAGS = ("-steady", "-label-bound=2000", "-goroutine-bound=1000", "-cache-bound=5000")


def cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Client:
    """API requests at a steady rate over keep-alive connections, each one's latency kept."""

    def __init__(self, port: int, rate: float, connections: int = 4) -> None:
        self.port, self.rate, self.connections = port, rate, connections
        self.lat: list[tuple[float, float]] = []  # (when, seconds)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(connections)]

    def _run(self, i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        every = self.connections / self.rate
        nxt = time.monotonic() + i * every / self.connections
        while not self._stop.is_set():
            time.sleep(max(0.0, nxt - time.monotonic()))
            nxt += every
            t0 = time.monotonic()
            conn.request("GET", f"/api/v1/users/{i}/profile")
            conn.getresponse().read()
            self.lat.append((t0, time.monotonic() - t0))

    def __enter__(self) -> Client:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def between(self, a: float, b: float) -> list[float]:
        return [d for t, d in list(self.lat) if a <= t < b]


def fetch_loop(port: int, path: str, at_once: int, stop: threading.Event, done: list[int]) -> None:
    def one() -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            done.append(resp.status)
            stop.wait(0.2)

    threads = [threading.Thread(target=one) for _ in range(at_once)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def pct(xs: Sequence[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def measure(
    pid: int, port: int, window: float, rounds: int
) -> dict[str, tuple[float, list[float]]]:
    """Per endpoint: service CPU per fetch (s) and the API latencies while fetching."""
    out: dict[str, tuple[float, list[float]]] = {}
    with Client(port, rate=100.0) as client:
        time.sleep(1.0)
        base_cpu: list[float] = []
        base_lat: list[float] = []
        for name, path in (("baseline", ""), *ENDPOINTS):
            cpus: list[float] = []
            lats: list[float] = []
            fetches = 0
            for _ in range(rounds):
                # A baseline window next to every fetching window: drift hits both.
                c0, t0 = cpu_seconds(pid), time.monotonic()
                time.sleep(window)
                c1, t1 = cpu_seconds(pid), time.monotonic()
                base_cpu.append((c1 - c0) / (t1 - t0))
                base_lat += client.between(t0, t1)
                if not path:
                    continue
                stop, done = threading.Event(), []
                th = threading.Thread(target=fetch_loop, args=(port, path, 3, stop, done))
                c0, t0 = cpu_seconds(pid), time.monotonic()
                th.start()
                time.sleep(window)
                stop.set()
                th.join()
                c1, t1 = cpu_seconds(pid), time.monotonic()
                fetches += len(done)
                cpus.append((c1 - c0) - statistics.median(base_cpu) * (t1 - t0))
                lats += client.between(t0, t1)
            if path:
                out[name] = (max(0.0, sum(cpus)) / max(1, fetches), lats)
        out["baseline"] = (0.0, base_lat)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks target_cost")
    ap.add_argument("--quick", action="store_true", help="short windows, for CI")
    args, _ = ap.parse_known_args(sys.argv[1:])
    window, rounds = (1.0, 1) if args.quick else (5.0, 4)
    import demo_support
    from support import go_toolchains

    tools = go_toolchains()
    with tempfile.TemporaryDirectory(prefix="cardguard-bench-target-") as tmp:
        for label in ("go1.19", "current"):
            go = tools.get(label)
            if go is None:
                print(f"{label}: no toolchain, skipped")
                continue
            binary = demo_support.build_demo(go)
            with demo_support.start_demo(binary, Path(tmp) / f"{label}.log", *DEMO_FLAGS) as demo:
                # Let the leaks reach their bounds (about 100 s at the default rates).
                time.sleep(5 if args.quick else 110)
                res = measure(demo.popen.pid, demo.port, window, rounds)
            report(label, res)


def report(label: str, res: dict[str, tuple[float, list[float]]]) -> None:
    base = res["baseline"][1]
    b50, b99 = pct(base, 0.5), pct(base, 0.99)
    print(f"== {label}: API requests at 100/s, median / p99 / max of their latency")
    print(f"{'endpoint':<20} {'CPU/fetch':>10} {'p50':>8} {'p99':>8} {'max':>8}  (added p99)")
    print(f"{'baseline':<20} {'':>10} {b50 * 1e3:7.2f}m {b99 * 1e3:7.2f}m {max(base) * 1e3:7.1f}m")
    cost: dict[str, float] = {}
    for name, _ in ENDPOINTS:
        cpu, lat = res[name]
        cost[name] = cpu
        p50, p99, top = pct(lat, 0.5), pct(lat, 0.99), max(lat, default=0.0)
        print(
            f"{name:<20} {cpu * 1e3:8.2f}ms {p50 * 1e3:7.2f}m {p99 * 1e3:7.2f}m "
            f"{top * 1e3:7.1f}m  ({(p99 - b99) * 1e3:+.2f} ms)"
        )
    share = (
        cost["metrics"] / DEFAULT_EVERY["metrics"]
        + cost["heap"] / DEFAULT_EVERY["heap"]
        + cost["goroutine debug=2"] / DEFAULT_EVERY["goroutine"]
        + cost["goroutineleak"] / DEFAULT_EVERY["goroutineleak"]
    )
    print(
        f"at cardguard's defaults (/metrics 30s; heap, goroutine debug=2, goroutineleak 60s): "
        f"{share:.3%} of a core (aim: under 0.5%)"
    )
    print(
        f"median CPU per fetch over the endpoints: {statistics.median(cost.values()) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
