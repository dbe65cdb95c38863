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
    assert re.search(
        r"\[alertmanager -> chat\] firing: Cardguard(LabelExplosion|GoroutineLeakConfirmed)", out
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
