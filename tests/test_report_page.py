"""The HTML report in headless Chromium: the offline page and serve's live /report page.

Chromium loads each page, ``--dump-dom`` gives the DOM it built (after the
page's own script ran) and ``--screenshot`` a PNG (checked for size and that
it is not blank). Screenshots stay in the test's tmp dir; with
``CARDGUARD_SCREENSHOTS=DIR`` they are also copied there for a person to look
at (what they show is described in docs/report.md).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from cardguard.pprof import goroutines as gr
from cardguard.pprof import profile
from demo_support import DEMO_FAST_FLAGS
from support import cardguard_argv, running_cardguard_serve, wait_for

CHROMIUM = Path("/usr/bin/chromium")
SETS = Path(__file__).parent / "testdata" / "report"
FAMILY = "demo_http_request_duration_seconds"
LEAKY_CACHE = "main.renderSection"  # the demo's unbounded page cache fills it
GRAFANA = "http://grafana.example:3000"


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium missing: run scripts/bootstrap.sh")
    profile_dir = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    profile_dir.mkdir()
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
        "--hide-scrollbars",
        f"--user-data-dir={profile_dir}",
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
    keep = os.environ.get("CARDGUARD_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / out.name)
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


def flame(dom: str, key: str) -> str:
    """The SVG of one flame graph of target ``demo``, as Chromium built it."""
    start = dom.index(f'id="flame-demo-{key}"')
    return dom[start : dom.index("</svg>", start)]


def frames(svg: str, name: str) -> list[str]:
    """The class attributes of every frame of function ``name`` in ``svg``."""
    return re.findall(rf'<g class="([^"]+)" data-n="{re.escape(name)}"', svg)


def test_offline_report_page_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    proc = subprocess.run(
        cardguard_argv(
            "report", "--from", str(SETS / "demo-current"), "--name", "demo",
            "--format", "html", "--output", str(page), "--grafana-url", GRAFANA,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
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
    # stacks name module paths, not the build machine's directories
    assert "demo-service/main.go:234" in dom and "/tmp/" not in dom
    # the three flame graphs: the leaking cache holds heap, and it grew over the watch
    assert dom.count('<figure class="flamegraph"') == 3
    assert frames(flame(dom, "heap"), LEAKY_CACHE)
    grown = frames(flame(dom, "heap-diff"), LEAKY_CACHE)
    assert grown and all(c == "f grew" for c in grown)
    assert frames(flame(dom, "goroutines"), "main.subscribe.func1")
    # trend charts with a clock-time axis and a value on every point
    assert dom.count('<svg class="chart"') >= 3
    assert re.search(r'text-anchor="middle">\d\d:\d\d:\d\d</text>', dom)
    assert re.search(r"<title>\d\d:\d\d:\d\d UTC: [\d.]+ MiB</title>", dom)
    # each offender links to the target's dashboard over its time range
    links = dom.count(f'href="{GRAFANA}/d/cardguard-target/cardguard-target?var-target=demo')
    assert links == 1 + len(severities)
    shot = tmp_path / "report.png"
    assert screenshot(tmp_path, page.as_uri(), shot) == (1280, 2400)
    # the search box's script: a shared link searches every graph and marks the hits
    found = dump_dom(tmp_path, page.as_uri() + "#search=renderSection")
    hits = re.findall(r'<g class="f( grew)? hit" data-n="main\.renderSection"', found)
    assert len(hits) >= 2
    assert re.search(r"<output [^>]*>\d+ frames, [\d.]+% of the width</output>", found)
    screenshot(tmp_path, page.as_uri() + "#search=renderSection", tmp_path / "search.png")


def _serve_config(tmp: Path, demo_url: str) -> Path:
    cfg = tmp / "cardguard.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "grafana_url": GRAFANA,
                },
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
        with running_cardguard_serve(tmp_path / "serve.log", f"--config.file={cfg}") as serve:
            base = serve.base_url

            def ready() -> bool:
                body = requests.get(base + "/report", timeout=5).text
                return (
                    "start_point" in body
                    and "main.subscribe.func1" in body
                    and f'class="f grew" data-n="{LEAKY_CACHE}"' in body
                )

            wait_for(ready, 120, "serve's /report to name the offenders and draw growth")
            dom = dump_dom(tmp_path, base + "/report")
            landing = requests.get(base + "/", timeout=5).text
            report = requests.get(base + "/report", timeout=5).text
            heap = requests.get(base + "/report/demo/heap.pb.gz", timeout=5)
            goroutine = requests.get(base + "/report/demo/goroutine.txt", timeout=5)
            missing = requests.get(base + "/report/nosuch/heap.pb.gz", timeout=5)
            other = requests.get(base + "/report/demo/secrets.txt", timeout=5)
            screenshot(tmp_path, base + "/report", tmp_path / "serve-report.png")
            screenshot(tmp_path, base + "/", tmp_path / "serve-landing.png", "1280,900")
    assert "<title>cardguard: offenders</title>" in dom
    assert 'id="t-demo"' in dom
    assert f"{FAMILY}{{start_point}}" in dom
    # the demo is built with -trimpath: module paths, no temporary GOPATH
    assert "demo-service/main.go:" in dom and "cardguard-gopath" not in dom
    # flame graphs of what serve holds: in-use heap, growth over its window, goroutines
    assert frames(flame(dom, "heap"), LEAKY_CACHE)
    assert "f grew" in frames(flame(dom, "heap-diff"), LEAKY_CACHE)
    assert frames(flame(dom, "goroutines"), "main.subscribe.func1")
    # the raw profiles serve kept, for go tool pprof
    assert heap.status_code == 200 and heap.content.startswith(b"\x1f\x8b")
    assert re.match(r'attachment; filename="demo-heap-\d{8}T\d{6}Z\.pb\.gz"',
                    heap.headers["Content-Disposition"])  # fmt: skip
    decoded = profile.decode(heap.content, "download")
    assert decoded.total("inuse_space") > 0
    assert gzip.decompress(heap.content)  # a whole gzip member
    assert goroutine.status_code == 200
    assert gr.parse(goroutine.content, "download").total > 0
    assert missing.status_code == 404 and other.status_code == 404
    assert 'href="report/demo/heap.pb.gz"' in report
    # one look for / and /report: the same stylesheet, the same header
    styles = [re.findall(r"<style>(.*?)</style>", p, re.S) for p in (landing, report)]
    assert styles[0] and styles[0] == styles[1]
    assert '<header class="top">' in landing and 'href="report#t-demo"' in landing
