"""Closing the evidence chain: after a fix, each open offender is fixed or still growing.

The leaky demo is watched and its snapshots saved (``--save``), then stopped
and started again, once with its leaks switched off (``-healthy``, the fix)
and once unchanged; ``cardguard report --baseline`` judges each offender of
the first watch on its own quantity in the second.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cardguard.detect import verdict
from cardguard.detect.offender import slope_per_hour
from demo_support import DEMO_FAST_FLAGS
from support import TESTDATA, cardguard_argv

FLAGS = (*DEMO_FAST_FLAGS, "-mem-profile-rate=4096", "-cache-entry-bytes=16384")
WATCH = ("--duration", "6s", "--interval", "2s", "--name", "demo")


def report(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        cardguard_argv("report", *args, "--format", "json"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def by_kind(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for o in doc["offenders"]:
        out.setdefault(o["kind"], []).append(o)
    return out


@pytest.fixture
def baseline(demo_service: Any, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    saved = tmp_path / "before"
    with demo_service("current", *FLAGS) as demo:
        doc = report(demo.base_url, *WATCH, "--save", str(saved))
    kinds = by_kind(doc)
    # heap_growth shows too on most runs; the two below always do within the watch
    assert {"label_explosion", "goroutine_leak"} <= set(kinds), list(kinds)
    return saved, doc


def verdicts(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for o in doc["offenders"]:
        v = o["evidence"].get("verdict")
        if v is not None:
            out[f"{o['kind']}:{o['evidence'].get('label') or o['evidence'].get('function')}"] = {
                **v,
                "summary": o["summary"],
                "severity": o["severity"],
            }
    return out


def test_demo_restarted_with_its_leaks_off_is_fixed(
    demo_service: Any, baseline: tuple[Path, dict[str, Any]]
) -> None:
    saved, before = baseline
    with demo_service("current", "-healthy") as demo:
        doc = report(demo.base_url, *WATCH, "--baseline", str(saved))
    got = verdicts(doc)
    label = got["label_explosion:start_point"]
    assert label["status"] == "fixed", label
    assert label["slope_before_per_hour"] > 0
    assert label["slope_after_per_hour"] <= 0.1 * label["slope_before_per_hour"]
    assert label["restart"]["restarted"] is True
    assert label["summary"].startswith("fixed: distinct start_point values on ")
    assert label["severity"] == "info"
    leaks = [v for k, v in got.items() if k.startswith("goroutine_leak:")]
    growth = [v for k, v in got.items() if k.startswith("heap_growth:")]
    assert leaks and all(v["status"] == "fixed" for v in leaks), leaks
    assert all(v["status"] == "fixed" for v in growth), growth
    assert bool(growth) == ("heap_growth" in {o["kind"] for o in before["offenders"]})
    for v in (*leaks, *growth):
        assert v["slope_before_per_hour"] > 0 and v["slope_after_per_hour"] is not None
    # nothing serious is left open after the fix
    assert not [o for o in doc["offenders"] if o["severity"] in ("warning", "critical")]


def test_demo_restarted_unchanged_is_still_growing(
    demo_service: Any, baseline: tuple[Path, dict[str, Any]]
) -> None:
    saved, _ = baseline
    with demo_service("current", *FLAGS) as demo:
        doc = report(demo.base_url, *WATCH, "--baseline", str(saved))
    got = verdicts(doc)
    label = got["label_explosion:start_point"]
    assert label["status"] == "still growing", label
    assert label["slope_after_per_hour"] > 0.1 * label["slope_before_per_hour"]
    assert label["summary"].startswith("still growing: distinct start_point values on ")
    assert label["severity"] in ("warning", "critical")
    leaks = [v for k, v in got.items() if k.startswith("goroutine_leak:")]
    assert leaks and any(v["status"] == "still growing" for v in leaks), leaks


def test_identity_reads_start_time_and_build_from_a_recorded_page() -> None:
    page = gzip.decompress(
        (TESTDATA / "report" / "demo-current" / "snapshot-000" / "metrics.txt.gz").read_bytes()
    )
    ident = verdict.identity(page, "text", "demo")
    assert ident.start_time is not None and ident.start_time > 1e9
    assert any(k == "go_info.version" for k, _ in ident.build)
    later = verdict.Identity(ident.start_time, ident.build)
    assert not ident.restarted(later)
    assert ident.restarted(verdict.Identity(ident.start_time + 60, ident.build))
    new_build = verdict.Identity(ident.start_time, (("go_info.version", "go9.99"),))
    assert ident.restarted(new_build)
    ids = [(0.0, ident), (1.0, later), (2.0, new_build), (3.0, new_build)]
    assert verdict.restart_index(ids) == 2


def test_slope() -> None:
    assert slope_per_hour([(0, 0), (1800, 50), (3600, 100)]) == pytest.approx(100)
    assert slope_per_hour([(5, 3)]) is None
