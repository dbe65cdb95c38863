"""serve closes the evidence chain as ``cardguard report`` does, within one watch.

``cardguard serve`` watches the leaky demo on a held port; the demo is then
stopped and started again on the same address, once with its leaks switched
off (``-healthy``, the fix) and once unchanged. The restart shows on /metrics
(``process_start_time_seconds``), and serve's /report judges each offender
found before it on its own quantity after it: ``fixed`` with both slopes, or
``still growing``. The fixes serve offers are report's too: the relabel plan
checked on the live series, and a normaliser built from the observed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from demo_support import DEMO_FAST_FLAGS, demo_on
from support import reserved_port, running_cardguard_serve, wait_for

FLAGS = (*DEMO_FAST_FLAGS, "-mem-profile-rate=4096", "-cache-entry-bytes=16384")
SEED = ("demo_http_request_duration_seconds", "start_point")


def report(base: str) -> dict[str, Any]:
    (doc,) = requests.get(f"{base}/report", params={"format": "json"}, timeout=30).json()["targets"]
    out: dict[str, Any] = doc
    return out


def seed(doc: dict[str, Any]) -> dict[str, Any] | None:
    found = [
        o
        for o in doc["offenders"]
        if o["kind"] == "label_explosion"
        and (o["evidence"].get("family"), o["evidence"].get("label")) == SEED
    ]
    assert len(found) <= 1, found  # named once
    return found[0] if found else None


def watch_across_restart(
    binary: Path, work: Path, *after: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Serve's report before the restart and once the new process has been judged."""
    with reserved_port() as port:
        (work / "cardguard.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            f"targets:\n  - name: demo\n    url: http://127.0.0.1:{port}\n"
            "    profiles: {interval: 2s}\n"
        )
        with running_cardguard_serve(
            work / "serve.log", f"--config.file={work / 'cardguard.yml'}"
        ) as cg:
            base = cg.base_url
            with demo_on(binary, port, work / "demo-before.log", *FLAGS):
                wait_for(lambda: seed(report(base)) is not None, 120, "the seed explosion")
                # A few more rounds, so the slope before the fix rests on several points.
                points = report(base)["snapshots"]
                wait_for(lambda: report(base)["snapshots"] >= points + 4, 60, "more rounds")
                before = report(base)

            def judged() -> bool:
                o = seed(report(base))
                v = (o or {}).get("evidence", {}).get("verdict")
                return v is not None and v["points_after"] >= 5

            with demo_on(binary, port, work / "demo-after.log", *after):
                wait_for(judged, 120, "serve to judge the seed after the restart")
                doc = report(base)
            assert "Traceback" not in cg.logs()
    return before, doc


@pytest.mark.parametrize(
    ("after", "status"), [(("-healthy",), "fixed"), (FLAGS, "still growing")], ids=["fixed", "not"]
)
def test_serve_judges_the_seed_across_a_restart(
    demo_binaries: dict[str, Path], tmp_path: Path, after: tuple[str, ...], status: str
) -> None:
    before, doc = watch_across_restart(demo_binaries["current"], tmp_path, *after)
    o = seed(doc)
    assert o is not None
    v = o["evidence"]["verdict"]
    assert v["status"] == status, v
    assert v["restart"]["restarted"] is True
    assert v["restart"]["start_time_before"] != v["restart"]["start_time_after"]
    assert v["slope_before_per_hour"] > 0 and v["slope_after_per_hour"] is not None
    if status == "fixed":
        assert v["slope_after_per_hour"] <= 0.1 * v["slope_before_per_hour"]
        assert o["severity"] == "info" and o["summary"].startswith("fixed: ")
    else:
        assert v["slope_after_per_hour"] > 0.1 * v["slope_before_per_hour"]
        assert o["severity"] in ("warning", "critical")
        assert o["summary"].startswith("still growing: ")
    # Before the restart serve offered report's fixes: the relabel plan proven on the
    # live series (no rewrite that merges series), a normaliser from the observed values.
    first = seed(before)
    assert first is not None
    plan = first["evidence"]["relabel"]
    assert plan["checked_series"] > 0
    assert all(c["merged"] == 0 for c in plan["offered"]), plan
    assert first["evidence"]["code"]["function"] == "normaliseStartPoint"
    assert "func normaliseStartPoint(" in first["fix_snippet"]
