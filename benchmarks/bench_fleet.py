"""Benchmark: ``cardguard serve`` holding a fleet of real-looking Go services (issue 11).

The fleet: a /metrics page recorded from a real client_golang process
(tests/testdata/metrics/nhserver with ``-users=580``: about 11,000 series,
recorded at the start of the run) served by ``benchmarks.pageserver`` on a few
ports, with every sample value new on every scrape, plus profiles recorded
from the demo service. Each target is its own path (``/t<i>/metrics``), listed
in a file_sd file that both cardguard (``target_files``) and Prometheus read.

Measured in one run, every figure from outside the process (``/proc``), for
cardguard's whole process tree (the serve process and its analysis workers):

1. **throughput**: /metrics scrapes completed per second of cardguard's CPU
   time, with analysis in worker processes and in the fetch threads, and the
   same fleet scraped by Prometheus 2.42 for CPU per scrape side by side
   (median over sub-windows; ratios);
2. **schedule**: the largest fleet kept on schedule at a 30 s interval with
   profiles every 60 s (no run skipped, 99% of runs started within 1 s of
   their time), with RSS per target and ``/metrics`` latency p99 (gzip,
   OpenMetrics, as Prometheus asks);
3. **start-up and shutdown** with 10,000 targets: until ``/-/healthy``
   answers, until every target is scheduled, and from SIGTERM to exit;
4. **profile**: where a steady scrape's CPU goes, in-process (cProfile).

Run: ``python -m benchmarks fleet`` (about 20 minutes; ``--quick``: tiny sizes
for CI, about two minutes). Environment: ``CARDGUARD_BENCH_FLEET_SIZES``
(default ``500,1000,2000``), ``CARDGUARD_BENCH_FLEET_WINDOW`` (seconds per
throughput measurement, default 60). docs/performance.md has the results.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gzip
import json
import os
import pstats
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

TICK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
OM_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
_LISTENING = re.compile(r"^listening on 127\.0\.0\.1:(\d+)$", re.M)


@dataclass(frozen=True)
class Sizes:
    throughput_targets: int
    throughput_interval: float
    window: float
    windows: int
    schedule: tuple[int, ...]
    interval: float
    profile_interval: float
    schedule_window: float
    startup_targets: int


FULL = Sizes(
    throughput_targets=100,
    throughput_interval=2.0,
    window=float(os.environ.get("CARDGUARD_BENCH_FLEET_WINDOW", "60")),
    windows=6,
    schedule=tuple(
        int(x) for x in os.environ.get("CARDGUARD_BENCH_FLEET_SIZES", "500,1000,2000").split(",")
    ),
    interval=30.0,
    profile_interval=60.0,
    schedule_window=60.0,
    startup_targets=10_000,
)
QUICK = Sizes(
    throughput_targets=8,
    throughput_interval=1.0,
    window=8.0,
    windows=4,
    schedule=(20,),
    interval=3.0,
    profile_interval=6.0,
    schedule_window=8.0,
    startup_targets=500,
)


# --- processes, measured from outside ---------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the analysis workers, the forkserver)."""
    parents: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st is not None:
                parents[int(d)] = int(st[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in parents.items() if pp == p)
    return out


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of the process tree, as the kernel accounts it."""
    total = 0
    for p in tree(pid):
        st = _stat(p)
        if st is not None:
            total += int(st[11]) + int(st[12])
    return total / TICK


def rss_bytes(pid: int) -> int:
    total = 0
    for p in tree(pid):
        st = _stat(p)
        if st is not None:
            total += int(st[21]) * PAGE_SIZE
    return total


def threads(pid: int) -> int:
    st = _stat(pid)
    return int(st[17]) if st is not None else 0


@contextlib.contextmanager
def started(
    argv: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as fh:
        proc = subprocess.Popen(list(argv), stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(check: object, timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (requests.RequestException, OSError, ValueError, KeyError):
            pass
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def samples(base: str, name: str) -> dict[str, float]:
    text = requests.get(f"{base}/metrics", timeout=60).text
    out = {}
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            key, _, value = line.rpartition(" ")
            out[key[len(name) :]] = float(value)
    return out


# --- the fleet ------------------------------------------------------------------------


def record_page(work: Path) -> Path:
    """A text /metrics page of about 11,000 series from nhserver (client_golang), fetched now."""
    import nhserver_support as nh

    binary = nh.build_nhserver()
    with nh.start_nhserver(binary, work / "nh.log", "-users=580") as proc:
        body = nh.fetch(proc, nh.TEXT_ACCEPT).content
    path = work / "nhserver-10k.txt"
    path.write_bytes(body)
    return path


@contextlib.contextmanager
def pageserver(page: Path, work: Path, ports: int = 4) -> Iterator[tuple[list[int], str]]:
    argv = [sys.executable, "-m", "benchmarks.pageserver", f"--page={page}", f"--ports={ports}"]
    log = work / "pageserver.log"
    with started(argv, log) as proc:
        wait_for(lambda: len(_LISTENING.findall(log.read_text())) == ports, 120, "pageserver")
        found = [int(p) for p in _LISTENING.findall(log.read_text())]
        yield found, f"http://127.0.0.1:{found[0]}"
        assert proc.poll() is None


def served(stats_url: str) -> dict[str, int]:
    return requests.get(f"{stats_url}/_stats", timeout=10).json()  # type: ignore[no-any-return]


def fleet_file(path: Path, ports: Sequence[int], n: int) -> Path:
    groups = [
        {
            "targets": [f"127.0.0.1:{ports[i % len(ports)]}"],
            "labels": {
                "__metrics_path__": f"/t{i}/metrics",
                "__pprof_path__": f"/t{i}/debug/pprof",
                "cardguard_target": f"t{i}",
            },
        }
        for i in range(n)
    ]
    path.write_text(json.dumps(groups))
    return path


@contextlib.contextmanager
def cardguard(
    work: Path, name: str, config: str, *flags: str, code: Path | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "cardguard.yml").write_text(config)
    argv = [
        sys.executable,
        "-m",
        "cardguard",
        "serve",
        f"--config.file={d / 'cardguard.yml'}",
        "--web.listen-address=127.0.0.1:0",
        "--log.format=json",
        *flags,
    ]
    log = d / "cardguard.log"
    env = None
    if code is not None:  # another checkout's cardguard (the baseline)
        env = {**os.environ, "PYTHONPATH": str(code / "exporter")}
    with started(argv, log, env) as proc:
        port: list[int] = []

        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"cardguard exited:\n{log.read_text()[-3000:]}")
            for line in log.read_text().splitlines():
                if '"cardguard listening"' in line:
                    port.append(int(json.loads(line)["address"].rpartition(":")[2]))
                    return True
            return False

        try:
            wait_for(listening, 120, "cardguard to listen")
        except TimeoutError:
            print(log.read_text()[-3000:], file=sys.stderr)
            raise
        yield proc, f"http://127.0.0.1:{port[0]}"


def config_for(fleet: Path, interval: float, timeout: float, profiles: str) -> str:
    return (
        f"target_files: [{fleet}]\n"
        f"target_defaults:\n  interval: {interval:g}s\n  timeout: {timeout:g}s\n"
        f"  profiles: {profiles}\n"
    )


# --- 1. throughput ----------------------------------------------------------------------


def measure_rate(pid: int, stats_url: str, agent: str, sizes: Sizes) -> list[float]:
    """Scrapes per CPU second of ``pid``'s tree in each of ``sizes.windows`` windows."""
    rates = []
    each = sizes.window / sizes.windows
    for _ in range(sizes.windows):
        c0, s0 = cpu_seconds(pid), served(stats_url).get(agent, 0)
        time.sleep(each)
        c1, s1 = cpu_seconds(pid), served(stats_url).get(agent, 0)
        rates.append((s1 - s0) / max(c1 - c0, 1e-9))
    return rates


def listed(ports: Sequence[int], n: int, every: float) -> str:
    """The same fleet as a config's own target list (for a baseline without target_files)."""
    lines = [f"global: {{scrape_interval: {every:g}s, scrape_timeout: {every:g}s}}", "targets:"]
    for i in range(n):
        lines.append(f"  - name: t{i}")
        lines.append(f"    url: http://127.0.0.1:{ports[i % len(ports)]}")
        lines.append(f"    metrics_path: /t{i}/metrics")
        lines.append("    profiles: {enabled: false}")
    return "\n".join(lines) + "\n"


def throughput(
    work: Path, ports: list[int], stats_url: str, sizes: Sizes, baseline: Path | None
) -> dict[str, float]:
    n, every = sizes.throughput_targets, sizes.throughput_interval
    fleet = fleet_file(work / "throughput.json", ports, n)
    cfg = config_for(fleet, every, every, "{enabled: false}")
    out: dict[str, float] = {}
    modes: list[tuple[str, str, list[str], Path | None]] = [
        ("processes", cfg, ["--analysis.processes=-1"], None),
        ("inline", cfg, ["--analysis.processes=0"], None),
    ]
    if baseline is not None:
        modes.append(("baseline", listed(ports, n, every), [], baseline))
    for mode, config, flags, code in modes:
        with cardguard(work, f"tp-{mode}", config, *flags, code=code) as (proc, base):
            before = served(stats_url).get("cardguard", 0)
            wait_for(
                lambda before=before: served(stats_url).get("cardguard", 0) - before >= 3 * n,
                120,
                "three scrapes of every target",
            )
            rates = measure_rate(proc.pid, stats_url, "cardguard", sizes)
            reused = samples(base, "cardguard_analysis_families_total") if code is None else {}
        out[mode] = statistics.median(rates)
        share = reused.get('{result="reused"}', 0) / max(1.0, sum(reused.values()))
        print(
            f"cardguard ({mode}): {out[mode]:.1f} scrapes per CPU second (median of "
            f"{len(rates)}: {', '.join(f'{r:.1f}' for r in rates)}); families reused {share:.1%}"
        )
    from promstack import PROMETHEUS

    prom_dir = work / "prometheus"
    prom_dir.mkdir(exist_ok=True)
    (prom_dir / "prometheus.yml").write_text(
        f"global: {{scrape_interval: {every:g}s, scrape_timeout: {every:g}s}}\n"
        f"scrape_configs:\n  - job_name: fleet\n    file_sd_configs: [{{files: [{fleet}]}}]\n"
    )
    argv = [
        PROMETHEUS,
        f"--config.file={prom_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={prom_dir / 'data'}",
        "--web.listen-address=127.0.0.1:0",
        "--log.level=warn",
    ]
    with started(argv, prom_dir / "prometheus.log") as proc:
        before = served(stats_url).get("prometheus", 0)
        wait_for(
            lambda: served(stats_url).get("prometheus", 0) - before >= 3 * n, 120, "Prometheus"
        )
        rates = measure_rate(proc.pid, stats_url, "prometheus", sizes)
    out["prometheus"] = statistics.median(rates)
    print(
        f"prometheus 2.42: {out['prometheus']:.1f} scrapes per CPU second (median of "
        f"{len(rates)}: {', '.join(f'{r:.1f}' for r in rates)})"
    )
    if "baseline" in out:
        for mode in ("processes", "inline"):
            print(
                f"cardguard ({mode}) / baseline: {out[mode] / out['baseline']:.2f}x per CPU second"
            )
    for mode in ("processes", "inline"):
        print(
            f"CPU per scrape, cardguard ({mode}) / Prometheus: "
            f"{out['prometheus'] / out[mode]:.2f}x "
            f"({1000 / out[mode]:.1f} ms vs {1000 / out['prometheus']:.1f} ms)"
        )
    return out


# --- 2. schedule ------------------------------------------------------------------------


def late_runs(base: str) -> tuple[float, float]:
    """(runs started, runs started within 1 s) over every endpoint."""
    buckets = samples(base, "cardguard_scrape_lateness_seconds_bucket")
    total = sum(v for k, v in buckets.items() if 'le="+Inf"' in k)
    within = sum(v for k, v in buckets.items() if 'le="1.0"' in k)
    return total, within


def skipped(base: str) -> float:
    return sum(samples(base, "cardguard_scrapes_skipped_total").values())


def skipped_by(base: str) -> dict[str, float]:
    """Skipped runs by endpoint and reason."""
    out: dict[str, float] = {}
    for key, v in samples(base, "cardguard_scrapes_skipped_total").items():
        labels = dict(re.findall(r'(\w+)="([^"]*)"', key))
        k = f"{labels.get('endpoint')}/{labels.get('reason')}"
        out[k] = out.get(k, 0.0) + v
    return out


def schedule(work: Path, ports: list[int], sizes: Sizes) -> None:
    fleet = fleet_file(work / "one.json", ports, 1)
    profiles = f"{{interval: {sizes.profile_interval:g}s}}"
    with cardguard(
        work, "base", config_for(fleet, sizes.interval, min(10.0, sizes.interval), profiles)
    ) as (proc, base):
        wait_for(lambda: requests.get(f"{base}/-/ready", timeout=5).ok, 120, "one target")
        base_rss = rss_bytes(proc.pid)
    print(f"one target: RSS {base_rss / 2**20:.0f} MiB (process tree)")
    kept = 0
    for n in sizes.schedule:
        fleet = fleet_file(work / f"schedule-{n}.json", ports, n)
        cfg = config_for(fleet, sizes.interval, min(10.0, sizes.interval), profiles)
        with cardguard(work, f"schedule-{n}", cfg) as (proc, base):
            # Every job's first run comes within its interval; then measure a window.
            wait_for(
                lambda: requests.get(f"{base}/-/ready", timeout=10).ok,
                sizes.profile_interval * 3 + 60,
                f"{n} targets' first rounds",
                step=1.0,
            )
            runs0, within0 = late_runs(base)
            skipped0 = skipped(base)
            by0 = skipped_by(base)
            c0 = cpu_seconds(proc.pid)
            rss0 = rss_bytes(proc.pid)
            latencies = []
            end = time.monotonic() + sizes.schedule_window
            while time.monotonic() < end:
                t0 = time.monotonic()
                r = requests.get(
                    f"{base}/metrics",
                    headers={"Accept": OM_ACCEPT, "Accept-Encoding": "gzip"},
                    timeout=60,
                )
                latencies.append(time.monotonic() - t0)
                r.raise_for_status()
                time.sleep(0.5)
            cpu = cpu_seconds(proc.pid) - c0
            runs1, within1 = late_runs(base)
            missed = skipped(base) - skipped0
            why = {k: v - by0.get(k, 0.0) for k, v in skipped_by(base).items()}
            why = {k: v for k, v in why.items() if v}
            rss = rss_bytes(proc.pid)
            page = len(gzip.compress(requests.get(f"{base}/metrics", timeout=60).content))
        runs = runs1 - runs0
        on_time = (within1 - within0) / runs if runs else 0.0
        ok = missed == 0 and on_time >= 0.99
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"{n} targets ({sizes.interval:g}s, profiles {sizes.profile_interval:g}s): "
            f"{'ON SCHEDULE' if ok else 'BEHIND'}; {runs:.0f} runs, {on_time:.2%} within 1s, "
            f"{missed:.0f} skipped {why or ''}; CPU {cpu / sizes.schedule_window:.2f} cores; RSS "
            f"{rss / 2**20:.0f} MiB ({(rss - rss0) / 2**20:+.0f} MiB over the window), "
            f"{(rss - base_rss) / max(1, n - 1) / 1024:.0f} KiB per target; "
            f"/metrics p99 {p99 * 1000:.0f} ms, median "
            f"{statistics.median(latencies) * 1000:.0f} ms ({page / 1024:.0f} KiB gzipped)"
        )
        if not ok:
            break
        kept = n
    print(f"largest fleet kept on schedule: {kept} targets")


# --- 3. start-up and shutdown -------------------------------------------------------------


def startup(work: Path, ports: list[int], sizes: Sizes) -> None:
    n = sizes.startup_targets
    fleet = fleet_file(work / "startup.json", ports, n)
    cfg = config_for(fleet, 3600, 10, "{interval: 1h}")
    t0 = time.monotonic()
    with cardguard(work, "startup", cfg) as (proc, base):
        wait_for(lambda: requests.get(f"{base}/-/healthy", timeout=5).ok, 120, "/-/healthy")
        healthy = time.monotonic() - t0
        wait_for(
            lambda: samples(base, "cardguard_targets").get("") == n, 120, "every target scheduled"
        )
        scheduled = time.monotonic() - t0
        time.sleep(5)
        peak_threads = threads(proc.pid)
        t1 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        stopped = time.monotonic() - t1
    print(
        f"start-up with {n} targets: /-/healthy after {healthy:.1f}s, all scheduled after "
        f"{scheduled:.1f}s, {peak_threads} threads; SIGTERM to exit {stopped:.1f}s"
    )


# --- 4. where the time goes -----------------------------------------------------------------


def profile(stats_url: str) -> None:
    """cProfile of 40 steady scrapes of one target, in-process, analysis in the same thread."""
    from cardguard.expose.metricspage import MetricsPage
    from cardguard.run.target_worker import TargetWorker
    from cardguard.settings.config import GlobalConfig
    from cardguard.settings.rules import DEFAULT_RULES
    from cardguard.settings.targets import TargetConfig

    target = TargetConfig(name="p", url=stats_url, metrics_path="/t0/metrics")
    w = TargetWorker(target, lambda: (GlobalConfig(), DEFAULT_RULES))
    for _ in range(3):
        w.scrape_metrics()
    runs = 40
    c0 = time.process_time()
    for _ in range(runs):
        w.scrape_metrics()
    per = (time.process_time() - c0) / runs
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(runs):
        w.scrape_metrics()
    prof.disable()
    st = pstats.Stats(prof)
    cum = {
        (Path(file).name, name): ct
        for (file, _, name), (_, _, _, ct, _) in st.stats.items()  # type: ignore[attr-defined]
    }
    total = cum[("target_worker.py", "_scrape_metrics")]
    parts = (
        ("fetch: connect, read, gunzip (fetch.Fetcher.get)", ("fetch.py", "get")),
        ("unchanged families recognised (incremental.analyse)", ("incremental.py", "analyse")),
        (
            "values for the rules (traffic, memory, goroutines)",
            ("analysis.py", "_values_from_segments"),
        ),
        ("churn (ChurnTracker.update)", ("churn.py", "update")),
        ("history point (analyse.view.metrics_point)", ("view.py", "metrics_point")),
        ("offender detection and publish (_publish_round)", ("worker.py", "_publish_round")),
    )
    print(f"one steady scrape, in-process, analysis in the fetch thread: {per * 1000:.1f} ms CPU")
    for label, key in parts:
        print(f"  {label:<56} {cum.get(key, 0.0) / total:6.1%}")
    page = MetricsPage(lambda: [w.snapshot], lambda: 50)
    c0 = time.process_time()
    for _ in range(runs):
        page._targets.clear()
        page.build(["text", "openmetrics"])
    print(
        f"  + /metrics page: rendering the target's series, both formats: "
        f"{(time.process_time() - c0) / runs * 1000:.2f} ms per change"
    )


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks fleet")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for CI")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. from git archive) whose serve is measured for throughput too",
    )
    ap.add_argument(
        "--phases",
        default="throughput,schedule,startup,profile",
        help="which parts to run, comma-separated",
    )
    args, _ = ap.parse_known_args(sys.argv[1:])
    phases = set(args.phases.split(","))
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="cardguard-bench-fleet-") as tmp:
        work = Path(tmp)
        page = record_page(work)
        lines = sum(1 for ln in page.read_bytes().split(b"\n") if ln and not ln.startswith(b"#"))
        print(
            f"page: {len(page.read_bytes()) / 1024:.0f} KiB, {lines} series (nhserver -users=580)"
        )
        with pageserver(page, work) as (ports, stats_url):
            if "throughput" in phases:
                throughput(work, ports, stats_url, sizes, args.baseline)
            if "schedule" in phases:
                schedule(work, ports, sizes)
            if "startup" in phases:
                startup(work, ports, sizes)
            if "profile" in phases:
                profile(stats_url)


if __name__ == "__main__":
    main()
