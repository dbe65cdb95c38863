"""``cardguard demo``: the whole local stack comes up and a leak alert reaches its receiver."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import requests

from support import cardguard_argv

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
