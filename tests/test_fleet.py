"""serve holding a fleet: real ``cardguard serve`` processes against real local servers.

What was measured of serve from outside, asserted here with generous margins
(timing belongs to benchmarks/bench_fleet.py, not to these tests):

* ten thousand targets (from a file_sd file; addresses nothing listens on)
  start with ``/-/healthy`` answering, fewer than 100 threads, and stop on
  SIGTERM within seconds;
* ``/probe`` with a 6 s scrape timeout and pprof endpoints that never answer
  answers within the 6 s, with the profiles marked as timed out;
* a target's heap profile is never fetched while its ``/metrics`` fetch is open;
* overload shows as lateness and skipped runs;
* target files are read at start and re-read when they change;
* ``/metrics`` comes gzipped when asked, and says the same.

Targets that answer are HTTP servers in this process (tests/local_http.py)
replaying pages and profiles recorded from real Go processes; the hostile one
is tests/evil_target.py.
"""

from __future__ import annotations

import gzip
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import local_http
from support import (
    REPO,
    TESTDATA,
    Process,
    running_cardguard_serve,
    running_listener,
    wait_for,
)

PAGE = (TESTDATA / "metrics" / "demo-0.txt").read_bytes()
HEAP = (TESTDATA / "pprof" / "go1.27" / "heap.pb.gz").read_bytes()


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError("no Threads line")


def series(proc: Process, name: str) -> dict[str, float]:
    """Every sample of ``name`` on cardguard's /metrics, by its label text."""
    text = requests.get(f"{proc.base_url}/metrics", timeout=30).text
    out = {}
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            key, _, value = line.rpartition(" ")
            out[key[len(name) :]] = float(value)
    return out


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- ten thousand targets -------------------------------------------------------------


def test_ten_thousand_targets_start_answer_and_stop(tmp_path: Path) -> None:
    # 10,000 distinct loopback addresses on port 9, where nothing listens: every fetch is a
    # refused connection, cheap for this machine. Long intervals: this is about start-up.
    addresses = [f"127.0.{i // 250}.{1 + i % 250}:9" for i in range(10_000)]
    (tmp_path / "fleet.json").write_text(json.dumps([{"targets": addresses}]))
    cfg = write_config(
        tmp_path / "cardguard.yml",
        "target_files: [fleet.json]\n"
        "target_defaults:\n  interval: 1h\n  timeout: 2s\n  profiles: {interval: 1h}\n",
    )
    started = time.monotonic()
    with running_cardguard_serve(tmp_path / "cg.log", f"--config.file={cfg}") as cg:
        pid = cg.popen.pid
        healthy_after = time.monotonic() - started
        wait_for(
            lambda: requests.get(f"{cg.base_url}/-/healthy", timeout=5).status_code == 200,
            30,
            "/-/healthy",
        )
        peak = 0
        answered = []
        for _ in range(10):
            peak = max(peak, threads_of(pid))
            t0 = time.monotonic()
            r = requests.get(f"{cg.base_url}/-/healthy", timeout=10)
            answered.append(time.monotonic() - t0)
            assert r.status_code == 200
            time.sleep(0.3)
        assert series(cg, "cardguard_targets") == {"": 10_000.0}
        fetched = series(cg, "cardguard_scrape_lateness_seconds_count")
        assert sum(fetched.values()) > 0  # the fleet is being scraped meanwhile
        assert peak < 100, f"{peak} threads"
        assert max(answered) < 5, answered
        print(
            f"\n10k targets: listening after {healthy_after:.1f}s, {peak} threads, "
            f"/-/healthy in at most {max(answered) * 1000:.0f} ms"
        )
        t0 = time.monotonic()
        cg.popen.send_signal(signal.SIGTERM)
        cg.popen.wait(timeout=30)
        stopped = time.monotonic() - t0
        assert cg.popen.returncode is not None and stopped < 15, stopped


# --- /probe answers within Prometheus' deadline -------------------------------------


def test_probe_answers_within_the_scrape_timeout_with_hanging_profiles(
    tmp_path: Path, leaky_demo: Process
) -> None:
    argv = [sys.executable, str(REPO / "tests" / "evil_target.py"), "--hostile"]
    argv += ["--good", leaky_demo.base_url]
    with running_listener(argv, tmp_path / "evil.log", "the evil target") as evil:
        cfg = write_config(
            tmp_path / "cardguard.yml",
            "probe:\n  allow: ['127.0.0.1']\n  timeout: 60s\n"
            "  profiles: {interval: 1m, goroutineleak: true}\n",
        )
        with running_cardguard_serve(tmp_path / "cg.log", f"--config.file={cfg}") as cg:
            target = f"http://127.0.0.1:{evil.port}/hanging_profile"
            t0 = time.monotonic()
            r = requests.get(
                f"{cg.base_url}/probe",
                params={"target": target},
                headers={"X-Prometheus-Scrape-Timeout-Seconds": "6"},
                timeout=60,
            )
            took = time.monotonic() - t0
    assert r.status_code == 200
    assert took < 6, f"answered after {took:.2f}s"
    name = f"127.0.0.1:{evil.port}"
    text = r.text
    assert f'cardguard_scrape_success{{endpoint="metrics",target="{name}"}} 1.0' in text
    assert "cardguard_target_series{" in text  # the page was analysed
    for endpoint in ("heap", "goroutineleak"):
        assert f'cardguard_scrape_success{{endpoint="{endpoint}",target="{name}"}} 0.0' in text
        failed = f'endpoint="{endpoint}",reason="timeout",target="{name}"'
        assert f"cardguard_scrape_failures_total{{{failed}}} 1.0" in text
    # All three profiles waited at once: the answer came after one timeout, not three.
    print(f"\n/probe with hanging pprof endpoints answered in {took:.2f}s (header: 6)")


# --- the in-flight guard --------------------------------------------------------------


class Recorder:
    """Routes that take a while and log when each request began and ended, per path."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.spans: list[tuple[str, float, float]] = []

    def route(self, body: bytes, content_type: str) -> local_http.Route:
        def handle(h: local_http.Handler) -> None:
            begin = time.monotonic()
            time.sleep(self.seconds)
            h.send_body(200, body, content_type)
            with self.lock:
                self.spans.append((h.path.split("?")[0], begin, time.monotonic()))

        return handle


@pytest.fixture
def recorded() -> Iterator[tuple[local_http.Running, Recorder]]:
    rec = Recorder(0.15)
    routes = {
        "/metrics": rec.route(PAGE, "text/plain; version=0.0.4"),
        "/debug/pprof/heap": rec.route(HEAP, "application/octet-stream"),
    }
    with local_http.serve(routes) as srv:
        yield srv, rec


def test_heap_is_never_fetched_while_metrics_is_open(
    tmp_path: Path, recorded: tuple[local_http.Running, Recorder]
) -> None:
    srv, rec = recorded
    # Both every 0.5s, each answer taking 0.15s: without the guard they would overlap
    # on most rounds (their phases are independent).
    cfg = write_config(
        tmp_path / "cardguard.yml",
        "targets:\n"
        f"  - name: rec\n    url: {srv.base_url}\n    interval: 500ms\n    timeout: 400ms\n"
        "    profiles: {interval: 500ms, goroutine: false, goroutineleak: false}\n",
    )
    with running_cardguard_serve(tmp_path / "cg.log", f"--config.file={cfg}"):
        wait_for(
            lambda: sum(1 for p, _, _ in list(rec.spans) if p.endswith("heap")) >= 12,
            60,
            "twelve heap profiles",
        )
    spans = list(rec.spans)
    metrics = [(b, e) for p, b, e in spans if p == "/metrics"]
    heaps = [(b, e) for p, b, e in spans if p.endswith("/heap")]
    assert len(metrics) >= 12
    overlaps = [(m, h) for m in metrics for h in heaps if m[0] < h[1] and h[0] < m[1]]
    assert not overlaps, f"{len(overlaps)} overlaps of heap and /metrics"


# --- overload is visible -----------------------------------------------------------


def test_overload_shows_as_lateness_and_skipped_runs(
    tmp_path: Path, recorded: tuple[local_http.Running, Recorder]
) -> None:
    srv, rec = recorded
    rec.seconds = 0.4
    targets = "".join(
        f"  - name: t{i}\n    url: {srv.base_url}\n    interval: 1s\n    timeout: 1s\n"
        "    profiles: {enabled: false}\n"
        for i in range(12)
    )
    cfg = write_config(tmp_path / "cardguard.yml", "targets:\n" + targets)
    # One fetch thread for twelve targets a second, each fetch 0.4s: a third of the runs fit.
    with running_cardguard_serve(
        tmp_path / "cg.log", f"--config.file={cfg}", "--scrape.concurrency=1"
    ) as cg:

        def skipped() -> float:
            return sum(
                v
                for k, v in series(cg, "cardguard_scrapes_skipped_total").items()
                if 'reason="late"' in k and 'endpoint="metrics"' in k
            )

        wait_for(lambda: skipped() >= 10, 60, "late runs to be skipped", step=0.5)
        buckets = series(cg, "cardguard_scrape_lateness_seconds_bucket")
        count = series(cg, "cardguard_scrape_lateness_seconds_count")['{endpoint="metrics"}']
        under_half = buckets['{endpoint="metrics",le="0.5"}']
        assert count > 0 and under_half < count  # runs started late, and it shows
        busy = series(cg, "cardguard_scrape_workers_busy")[""]
        assert busy <= 1
        per_target = series(cg, "cardguard_scrapes_skipped_total")
        assert len({k.split('target="')[1] for k in per_target}) > 1  # spread over targets


# --- target files -------------------------------------------------------------------


def test_target_files_are_read_and_reread_when_they_change(
    tmp_path: Path, recorded: tuple[local_http.Running, Recorder]
) -> None:
    srv, rec = recorded
    rec.seconds = 0.0
    address = f"127.0.0.1:{srv.port}"
    sd = tmp_path / "sd"
    sd.mkdir()
    (sd / "a.json").write_text(json.dumps([{"targets": [address]}]))
    cfg = write_config(
        tmp_path / "cardguard.yml",
        "target_files: [sd/*.json, sd/*.yml]\n"
        "target_defaults:\n  interval: 1s\n  profiles: {enabled: false}\n",
    )
    success = "cardguard_scrape_success"
    with running_cardguard_serve(tmp_path / "cg.log", f"--config.file={cfg}") as cg:

        def shown() -> set[str]:
            return {k.split('target="')[1].rstrip('"}') for k in series(cg, success)}

        wait_for(lambda: shown() == {address}, 30, "the first file's target")
        # A YAML file with a label naming the target, and a half-written JSON file:
        # the new target comes, the broken file keeps giving what it gave (nothing).
        (sd / "b.yml").write_text(
            f"- targets: ['localhost:{srv.port}']\n  labels: {{cardguard_target: named}}\n"
        )
        (sd / "c.json").write_text('[{"targets": ["127.0.0.1:')
        wait_for(lambda: shown() == {address, "named"}, 30, "the second file's target")
        (sd / "a.json").unlink()
        wait_for(lambda: shown() == {"named"}, 30, "the removed file's target to go")
        assert "cannot read target file" in cg.logs()


# --- the prebuilt /metrics page ---------------------------------------------------------


def test_metrics_page_gzipped_when_asked(
    tmp_path: Path, recorded: tuple[local_http.Running, Recorder]
) -> None:
    srv, rec = recorded
    rec.seconds = 0.0
    cfg = write_config(
        tmp_path / "cardguard.yml",
        f"targets:\n  - name: rec\n    url: {srv.base_url}\n    interval: 1s\n"
        "    profiles: {enabled: false}\n",
    )
    with running_cardguard_serve(tmp_path / "cg.log", f"--config.file={cfg}") as cg:
        wait_for(lambda: series(cg, "cardguard_target_series"), 30, "the first analysis")
        time.sleep(1.5)  # the page is rebuilt every second
        plain = requests.get(f"{cg.base_url}/metrics", timeout=30)
        raw = requests.get(
            f"{cg.base_url}/metrics",
            headers={"Accept-Encoding": "gzip"},
            timeout=30,
            stream=True,
        )
        assert raw.headers["Content-Encoding"] == "gzip"
        body = gzip.decompress(raw.raw.read())

    def families(text: str) -> set[str]:
        return {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE cardguard_")}

    assert families(body.decode()) == families(plain.text)
    assert 'cardguard_target_series{target="rec"}' in body.decode()
