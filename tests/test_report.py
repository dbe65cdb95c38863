"""``cardguard report`` against live Go services: the leaky demo, and healthy real services.

Healthy services are Debian's own Go binaries (Prometheus, Alertmanager,
Pushgateway) started on port 0 with temporary directories. Each watch is
a few seconds long; the demo runs with its fast leak rates.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import promstack
from demo_support import DEMO_FAST_FLAGS
from promstack import pushgateway
from support import Process, cardguard_argv, dead_url, running_on_port_0

WATCH = ("--duration", "4s", "--interval", "2s")
FAMILY = "demo_http_request_duration_seconds"
SERIOUS = ("warning", "critical")


def report(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cardguard_argv("report", *args), capture_output=True, text=True, timeout=180
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def report_json(*args: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(report(*args, "--format", "json").stdout)
    return doc


def find(doc: dict[str, Any], kind: str, **evidence: Any) -> dict[str, Any]:
    hits = [
        o
        for o in doc["offenders"]
        if o["kind"] == kind and all(o["evidence"].get(k) == v for k, v in evidence.items())
    ]
    assert len(hits) == 1, [(o["kind"], o["summary"]) for o in doc["offenders"]]
    return hits[0]


# --- the leaky demo ----------------------------------------------------------------------


@pytest.fixture
def demo(demo_service: Any) -> Iterator[Process]:
    # A fine heap sampling rate lets the profile show where the leaked tickers are made.
    flags = (*DEMO_FAST_FLAGS, "-mem-profile-rate=4096", "-cache-entry-bytes=16384")
    with demo_service("current", *flags) as proc:
        yield proc


def test_report_names_the_demo_offenders_with_fixes(demo: Process, tmp_path: Path) -> None:
    proc = report(demo.base_url, *WATCH, "--format", "json", "--save", str(tmp_path / "saved"))
    doc = json.loads(proc.stdout)
    assert doc["target"] == f"127.0.0.1:{demo.port}"
    assert doc["snapshots"] == 3
    # progress went to stderr while it waited
    assert "snapshot 1/3" in proc.stderr and "snapshot 3/3" in proc.stderr
    assert "waiting" in proc.stderr

    label = find(doc, "label_explosion", family=FAMILY, label="start_point")
    assert label["severity"] in SERIOUS
    assert "creates a new series per URL" in label["summary"]
    assert label["evidence"]["call_site"].startswith("main.apiHandler.ServeHTTP")
    assert "NOT the target's own heap" in label["fix"]
    # no rewrite of the raw paths is safe, so the snippet drops what explodes
    assert "\nmetric_relabel_configs:\n" in label["fix_snippet"]
    assert "No rewrite or removal of start_point is safe" in label["fix_snippet"]

    leak = find(doc, "goroutine_leak", function="main.subscribe.func1")
    assert leak["severity"] == "critical"  # Go 1.27 confirms it in goroutineleak
    assert leak["evidence"]["created_by"] == "main.subscribe"
    assert leak["evidence"]["blocking"] == "chan receive on a ticker"
    assert leak["fix"]

    # The summary children's heap is the label explosion's cost: one cause, one offender.
    assert not [o for o in doc["offenders"] if o["kind"] == "children_heap_cost"]
    cost = label["evidence"]["heap_cost"]
    assert cost["bytes_per_child"] > 0
    assert cost["call_site"].startswith("main.apiHandler.ServeHTTP")

    # worst first
    ranks = [("info", "warning", "critical").index(o["severity"]) for o in doc["offenders"]]
    assert ranks == sorted(ranks, reverse=True)

    # the saved snapshots give the same offenders offline
    again = report_json("--from", str(tmp_path / "saved"), "--name", doc["target"])
    assert {o["id"] for o in again["offenders"]} == {o["id"] for o in doc["offenders"]}


def test_report_on_go119_demo_sees_growth(demo_service: Any) -> None:
    with demo_service("go1.19", *DEMO_FAST_FLAGS) as proc:
        doc = report_json(proc.base_url, *WATCH)
    assert any("goroutineleak" in n and "404" in n for n in doc["notes"])
    leak = find(doc, "goroutine_leak", function="main.subscribe.func1")
    assert leak["severity"] == "warning"
    assert leak["evidence"]["created_by"] == "main.subscribe"
    assert leak["evidence"]["blocking"].startswith("chan receive")
    find(doc, "label_explosion", family=FAMILY, label="start_point")


def test_text_report_and_fail_on(demo: Process) -> None:
    proc = report(
        demo.base_url, "--duration", "2s", "--interval", "2s", "--fail-on", "warning", check=False
    )
    assert proc.returncode == 3, proc.stderr
    assert "SEVERITY" in proc.stdout and f"{FAMILY}{{start_point}}" in proc.stdout


# --- healthy real Go services ----------------------------------------------------------


@contextlib.contextmanager
def prometheus(tmp: Path) -> Iterator[Process]:
    with promstack.prometheus(tmp, {"global": {"scrape_interval": "1s"}}, self_job="self") as p:
        yield p


@contextlib.contextmanager
def alertmanager(tmp: Path) -> Iterator[Process]:
    cfg = tmp / "alertmanager.yml"
    cfg.write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
    argv = [
        "/usr/bin/prometheus-alertmanager",
        f"--config.file={cfg}",
        f"--storage.path={tmp / 'data'}",
        "--web.listen-address=127.0.0.1:0",
        "--cluster.listen-address=",
    ]
    with running_on_port_0(argv, tmp / "alertmanager.log", ready_path="/-/ready") as p:
        yield p


SERVICES = {"prometheus": prometheus, "alertmanager": alertmanager, "pushgateway": pushgateway}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_healthy_real_service_names_nothing_serious(name: str, tmp_path: Path) -> None:
    binary = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager"}.get(
        name, "prometheus-pushgateway"
    )
    if not Path(f"/usr/bin/{binary}").exists():
        pytest.fail(f"/usr/bin/{binary} missing: run scripts/bootstrap.sh")
    with SERVICES[name](tmp_path) as proc:
        doc = report_json(proc.base_url, *WATCH)
    assert doc["snapshots"] == 3
    # it really looked: metrics, heap and goroutines were read
    assert not [n for n in doc["notes"] if "no heap" in n or "no goroutine" in n], doc["notes"]
    serious = [o["summary"] for o in doc["offenders"] if o["severity"] in SERIOUS]
    assert serious == []


def test_label_explosion_pushed_into_pushgateway_is_caught(tmp_path: Path) -> None:
    with pushgateway(tmp_path) as proc:
        lines = "".join(
            f'checkout_requests_total{{path="/cart/{i}/items/{i * 7919 % 10007}"}} {i}\n'
            for i in range(400)
        )
        body = "# TYPE checkout_requests_total counter\n" + lines
        r = requests.post(f"{proc.base_url}/metrics/job/x", data=body.encode(), timeout=10)
        assert r.status_code == 200, r.text
        doc = report_json(proc.base_url, *WATCH)
    o = find(doc, "label_explosion", family="checkout_requests_total", label="path")
    assert o["severity"] in SERIOUS
    assert o["evidence"]["distinct_values"] == 400
    assert o["evidence"]["pattern"] == "url_path"
    assert "checkout_requests_total" in o["fix_snippet"]


# --- offline input and bad input ---------------------------------------------------------

SETS = Path(__file__).parent / "testdata" / "report"


def test_loose_files_offline() -> None:
    d = SETS / "demo-current"
    snaps = sorted(d.glob("snapshot-*"))
    args = []
    for s in snaps:
        args += ["--metrics", str(s / "metrics.txt.gz"), "--goroutines", str(s / "goroutine.pb.gz")]
    args += ["--heap-base", str(snaps[0] / "heap.pb.gz"), "--heap", str(snaps[-1] / "heap.pb.gz")]
    args += ["--goroutineleak", str(snaps[-1] / "goroutineleak.txt")]
    doc = report_json(*args)
    assert doc["target"] == "files"
    kinds = {o["kind"] for o in doc["offenders"]}
    assert {"label_explosion", "goroutine_leak", "heap_growth"} <= kinds


def test_corrupt_profile_is_a_note_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "heap.pb.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    m = SETS / "demo-current" / "snapshot-002" / "metrics.txt.gz"
    doc = report_json("--metrics", str(m), "--heap", str(bad))
    assert any(str(bad) in n and "gzip" in n for n in doc["notes"]), doc["notes"]
    find(doc, "label_explosion", family=FAMILY, label="start_point")


def test_malformed_metrics_page_names_file_and_line(tmp_path: Path) -> None:
    page = tmp_path / "metrics.txt"
    page.write_text('# TYPE x counter\nx{a="1"} 1\nx{a="2" 2\n')
    doc = report_json("--metrics", str(page))
    assert any(f"{page}:3" in n for n in doc["notes"]), doc["notes"]


def test_unreachable_target_fails_with_its_name() -> None:
    with dead_url() as url:
        proc = report(url, "--duration", "1s", check=False)
    assert proc.returncode == 1
    assert url.removeprefix("http://") in proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_errors() -> None:
    assert report(check=False).returncode == 2
    proc = report("http://127.0.0.1:1", "--from", str(SETS / "demo-current"), check=False)
    assert proc.returncode == 2 and "either TARGET_URL or saved files" in proc.stderr
    proc = report("--from", str(SETS / "demo-current"), "--duration", "fast", check=False)
    assert proc.returncode == 2 and "expected a duration" in proc.stderr


def test_bad_rules_file_is_reported(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text("rules:\n  label_explosion: {severity: loud}\n")
    proc = report("--from", str(SETS / "demo-current"), "--rules", str(rules), check=False)
    assert proc.returncode == 1
    assert f"{rules}:2: rules.label_explosion.severity" in proc.stderr


def test_interrupt_reports_what_was_seen(demo: Process) -> None:
    import signal

    argv = cardguard_argv("report", demo.base_url, "--duration", "60s", "--format", "json")

    def interruptible() -> None:
        # As at a terminal: a suite started in the background (nohup, `&` in a script)
        # passes SIGINT on ignored, and Python then never turns it into KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "snapshot 1/" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["snapshots"] == 1
    assert any(n.startswith("interrupted after 1 of") for n in doc["notes"])
    find(doc, "label_explosion", family=FAMILY, label="start_point")


def test_target_without_metrics_gets_profile_checks(tmp_path: Path) -> None:
    # A service serving net/http/pprof but no /metrics (report exited 1).
    with pushgateway(tmp_path) as proc:
        doc = report_json(proc.base_url, *WATCH, "--metrics-path", "/no/metrics")
    notes = " ".join(doc["notes"])
    assert "metrics:" in notes and "404" in notes
    assert "no /metrics page: label explosions, children cost and memory were not checked" in notes
    assert doc["snapshots"] >= 2
    assert [o for o in doc["offenders"] if o["severity"] in SERIOUS] == []


def test_target_serving_nothing_still_fails(tmp_path: Path) -> None:
    with pushgateway(tmp_path) as proc:
        url = proc.base_url
        proc = report(url, *WATCH, "--metrics-path", "/no/m", "--pprof-path", "/no/p", check=False)
    assert proc.returncode == 1
    assert "404" in proc.stderr


def test_target_without_pprof_still_gets_label_checks(tmp_path: Path) -> None:
    with pushgateway(tmp_path) as proc:
        body = "# TYPE orders_total counter\n" + "".join(
            f'orders_total{{customer="{i:08x}-aaaa-4bbb-8ccc-{i:012x}"}} 1\n' for i in range(300)
        )
        requests.post(f"{proc.base_url}/metrics/job/y", data=body.encode(), timeout=10)
        doc = report_json(proc.base_url, *WATCH, "--pprof-path", "/no/pprof")
    notes = " ".join(doc["notes"])
    assert "heap:" in notes and "404" in notes
    assert "no heap profile: heap growth and children cost were not checked" in notes
    o = find(doc, "label_explosion", family="orders_total", label="customer")
    assert o["evidence"]["pattern"] == "uuid"
    # each customer UUID is its own series: a placeholder would fold all 300 into one
    refused = {c["kind"]: c for c in o["evidence"]["relabel"]["refused"]}
    assert refused["rewrite"]["series_after"] == 1
    assert "action: drop" in o["fix_snippet"] and "replacement:" not in o["fix_snippet"]
