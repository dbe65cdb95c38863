"""``cardguard demo``: the whole local stack comes up and a leak alert reaches its receiver."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from support import cardguard_argv, wait_for

pytestmark = pytest.mark.needs_go


def test_demo_once_shows_urls_and_a_leak_alert(tmp_path: Path) -> None:
    argv = cardguard_argv(
        "demo", "--once", "--duration=4m", "--for-scale=120", f"--workdir={tmp_path}"
    )
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=400)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    urls = dict(
        re.findall(r"^  (demo service|cardguard|Prometheus|Alertmanager)\s+(http:\S+)", out, re.M)
    )
    assert set(urls) == {"demo service", "cardguard", "Prometheus", "Alertmanager"}, out
    # The offender alert is the primary one for a planted cause and names its kind.
    assert re.search(
        r"\[alertmanager -> chat\] firing: CardguardOffender(Critical|Warning) .*\n"
        r"\s+cardguard names a (critical )?(label_explosion|goroutine_leak) offender",
        out,
    ), out
    assert "stopping (--once)" in out
    # Everything it started is gone again.
    for url in urls.values():
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)
    for name in ("cardguard.yml", "prometheus.yml", "alertmanager.yml", "prometheus.log"):
        assert (tmp_path / name).exists(), name


def test_demo_stays_until_stopped_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "demo.out"
    argv = cardguard_argv("demo", f"--workdir={tmp_path / 'work'}")
    with open(out, "wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Ctrl-C stops everything" in out.read_text(), 300, "the demo banner")
        urls = dict(
            re.findall(
                r"^  (demo service|cardguard|Prometheus|Alertmanager)\s+(http:\S+)",
                out.read_text(),
                re.M,
            )
        )
        for url in urls.values():
            assert requests.get(url, timeout=5).status_code == 200, url
        assert proc.poll() is None, "the demo must stay up until it is stopped"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, out.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "cardguard demo: stopping." in out.read_text()
    for url in urls.values():
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)


def test_service_only_runs_the_demo_service_alone(tmp_path: Path) -> None:
    """``cardguard demo --service-only --listen ADDR``: the README's examples point at it."""
    out = tmp_path / "service.out"
    argv = cardguard_argv("demo", "--service-only", "--listen", "127.0.0.1:0")
    with open(out, "wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "listening on" in out.read_text(), 300, "the demo service's address")
        [address] = re.findall(r"^listening on (\S+:\d+)$", out.read_text(), re.M)
        base = f"http://{address}"
        wait_for(lambda: requests.get(base + "/metrics", timeout=5).ok, 30, "its /metrics")
        assert "demo_http_request_duration_seconds" in requests.get(base + "/metrics").text
        # What the README does with it: cardguard's commands on the live service.
        heap = subprocess.run(
            cardguard_argv("heap", base, "--format", "json", "--top", "3"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert heap.returncode == 0 and '"functions"' in heap.stdout, heap.stderr
        assert proc.poll() is None, "it stays until stopped"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, out.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopping the demo service" in out.read_text()
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "/metrics", timeout=2)
    # Nothing else was started: no cardguard, Prometheus or Alertmanager lines.
    assert "Alertmanager" not in out.read_text()


def test_once_and_service_only_do_not_mix() -> None:
    proc = subprocess.run(
        cardguard_argv("demo", "--service-only", "--once"), capture_output=True, text=True
    )
    assert proc.returncode == 2 and "--service-only runs no alerting" in proc.stderr


def test_missing_system_parts_name_their_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every missing part and its Debian package in one message, with the apt-get line.

    A fake in one respect, as this machine has every part installed: the paths the
    demo looks at are pointed somewhere empty.
    """
    from cardguard.commands import demo

    monkeypatch.setattr(demo, "PROMETHEUS", "/nonexistent/prometheus")
    monkeypatch.setattr(demo, "ALERTMANAGER", "/nonexistent/prometheus-alertmanager")
    monkeypatch.setattr(demo, "CLIENT_GOLANG", Path("/nonexistent/client_golang"))
    with pytest.raises(demo.DemoError) as err:
        demo._check_system(["go", "client_golang", "prometheus", "alertmanager"])
    message = err.value.message
    assert "Prometheus (looked for /nonexistent/prometheus): Debian package prometheus" in message
    assert "Alertmanager" in message and "Debian package prometheus-alertmanager" in message
    assert "golang-github-prometheus-client-golang-dev" in message
    assert "a Go toolchain" not in message  # that one is installed
    assert message.splitlines()[-2] == (
        "Install them with: sudo apt-get install "
        "golang-github-prometheus-client-golang-dev prometheus prometheus-alertmanager"
    )
    # --service-only needs only Go and client_golang.
    monkeypatch.setattr(demo, "CLIENT_GOLANG", demo.GOCODE / "src/github.com/prometheus")
    assert demo._check_system(["go", "client_golang"]).exists()
