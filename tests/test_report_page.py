"""The HTML report in headless Chromium: the offline page and serve's live /report page.

Chromium loads each page, ``--dump-dom`` gives the DOM it built (checked for
the offenders, their evidence, fixes and charts) and ``--screenshot`` a PNG
(checked for size and that it is not blank; the screenshot is kept next to
the test's tmp dir for a person to look at).
"""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from demo_support import DEMO_FAST_FLAGS
from support import cardguard_argv, free_port, running, wait_for

CHROMIUM = Path("/usr/bin/chromium")
SETS = Path(__file__).parent / "testdata" / "report"
FAMILY = "demo_http_request_duration_seconds"


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium missing: run scripts/bootstrap.sh")
    profile = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    profile.mkdir()
    argv = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def dump_dom(tmp: Path, url: str) -> str:
    proc = chromium(tmp, "--dump-dom", url)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(tmp: Path, url: str, out: Path, size: str = "1280,2400") -> tuple[int, int]:
    proc = chromium(tmp, f"--screenshot={out}", f"--window-size={size}", url)
    assert proc.returncode == 0 and out.exists(), proc.stderr[-2000:]
    return png_check(out)


def png_check(path: Path) -> tuple[int, int]:
    """Return (width, height) of a PNG and check that it is not one flat colour."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    # Decode the image rows enough to count distinct filtered bytes: a blank page is flat.
    idat = b""
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    assert len(set(raw[:200_000])) > 20, "screenshot looks blank"
    return width, height


def test_offline_report_page_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    proc = subprocess.run(
        cardguard_argv(
            "report",
            "--from",
            str(SETS / "demo-current"),
            "--name",
            "demo",
            "--format",
            "html",
            "--output",
            str(page),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    dom = dump_dom(tmp_path, page.as_uri())
    # the browser built the page: title, one article per offender, worst first
    assert "<title>cardguard report</title>" in dom
    severities = re.findall(r'<article class="(\w+)"', dom)
    assert severities[0] == "critical" and len(severities) >= 3
    order = ["critical", "warning", "info"]
    assert [order.index(s) for s in severities] == sorted(order.index(s) for s in severities)
    assert f"the start_point label on {FAMILY} creates a new series per URL" in dom
    assert "main.subscribe.func1" in dom and "chan receive on a ticker" in dom
    assert "quantile.newStream" in dom
    assert "metric_relabel_configs:" in dom
    assert "NOT the target's own heap" in dom
    # inline SVG trend charts made it into the DOM, with data points
    assert dom.count("<svg") >= 3 and "<polyline" in dom
    shot = tmp_path / "report.png"
    width, height = screenshot(tmp_path, page.as_uri(), shot)
    assert (width, height) == (1280, 2400)


def _serve_config(tmp: Path, demo_url: str) -> Path:
    cfg = tmp / "cardguard.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "targets": [{"name": "demo", "url": demo_url, "profiles": {"interval": "1s"}}],
            },
            sort_keys=False,
        )
    )
    return cfg


def test_serve_report_page_in_chromium(demo_service: Any, tmp_path: Path) -> None:
    flags = (*DEMO_FAST_FLAGS, "-mem-profile-rate=4096")
    with demo_service("current", *flags) as demo:
        cfg = _serve_config(tmp_path, demo.base_url)
        port = free_port()
        argv = cardguard_argv(
            "serve", f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"
        )
        base = f"http://127.0.0.1:{port}"
        with running(argv, tmp_path / "serve.log", port=port, ready_url=f"{base}/-/healthy"):
            # the landing page links to the report
            assert 'href="report"' in requests.get(base + "/", timeout=5).text

            def named() -> bool:
                body = requests.get(base + "/report", timeout=5).text
                return "start_point" in body and "main.subscribe.func1" in body

            wait_for(named, 90, "serve's /report to name the demo's offenders", step=0.5)
            dom = dump_dom(tmp_path, base + "/report")
            shot = tmp_path / "serve-report.png"
            screenshot(tmp_path, base + "/report", shot)
    assert "<title>cardguard: offenders</title>" in dom
    assert 'id="t-demo"' in dom
    assert f"{FAMILY}{{start_point}}" in dom
    assert "main.subscribe" in dom
    assert "<svg" in dom
