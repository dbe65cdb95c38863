"""The /metrics exposition of one recorded target, pinned whole as a golden.

As node_exporter pins its whole output in ``e2e-output.txt``: the recorded
watch tests/testdata/report/demo-go1.19 (the leaky demo, three snapshots 3 s
apart) is replayed over HTTP to a real worker whose clock reads the recorded
times, and every per-target series cardguard exports for it (scrape health,
cardinality per family and label, heap owners, goroutine groups, offenders)
is compared with tests/testdata/golden/metrics/demo-go1.19.txt.

Normalised first: how long things took (``*_duration_seconds``, CPU time) and
the replay's port, which change from run to run. Regenerate as tests/golden.py says.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

import local_http
from cardguard.expose.collectors import target_collectors
from cardguard.run.target_worker import TargetWorker
from cardguard.settings.config import GlobalConfig
from cardguard.settings.rules import DEFAULT_RULES, Rules
from cardguard.settings.targets import ProfilesConfig, TargetConfig
from golden import check_golden
from replay import replay
from support import TESTDATA

RECORDED = TESTDATA / "report" / "demo-go1.19"
_PORT = re.compile(r"127\.0\.0\.1:\d+")
_TIMING = re.compile(r"^(\w*(?:_duration_seconds|_cpu_seconds)\w*(?:\{[^}]*\})?) \S+$", re.M)


def normalise(text: str) -> str:
    text = _PORT.sub("127.0.0.1:<port>", text)
    return _TIMING.sub(lambda m: f"{m.group(1)} <seconds>", text)


def settings() -> tuple[GlobalConfig, Rules]:
    return GlobalConfig(), DEFAULT_RULES


def test_target_series_golden() -> None:
    snapshots = sorted(p for p in RECORDED.iterdir() if p.is_dir())
    times = [json.loads((d / "meta.json").read_text())["at"] for d in snapshots]
    now = [times[0]]
    with local_http.serve(replay(snapshots)) as target:
        profiles = ProfilesConfig(goroutine_full_max=0, goroutineleak="false")
        t = TargetConfig(name="demo", url=target.base_url, timeout=10.0, profiles=profiles)
        w = TargetWorker(t, settings, clock=lambda: now[0])
        for at in times:
            now[0] = at
            w.scrape_metrics()
            w.collect_profiles()
    snap = w.snapshot
    assert snap.snapshots == len(snapshots) and snap.offenders, snap
    registry = CollectorRegistry(auto_describe=False)
    for c in target_collectors(lambda: [snap], lambda: 50):
        registry.register(c)
    text = generate_latest(registry).decode()
    check_golden("metrics/demo-go1.19.txt", text, normalise)
    # The golden holds the findings, not only their shapes.
    for want in (
        "cardguard_offender_info{",
        'kind="label_explosion"',
        'kind="goroutine_leak"',
        'kind="heap_growth"',
        'cardguard_heap_owner_inuse_bytes{function="main.renderSection"',
    ):
        assert want in text, want


def test_golden_is_in_the_repository() -> None:
    assert Path(TESTDATA / "golden" / "metrics" / "demo-go1.19.txt").is_file()
