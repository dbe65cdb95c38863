"""metricspage.py: the prebuilt /metrics says exactly what the collectors say, in both formats."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

import local_http
from cardguard.expose import collectors
from cardguard.expose.metricspage import MetricsPage
from cardguard.run.snapshot import TargetSnapshot
from cardguard.run.target_worker import TargetWorker
from cardguard.settings.config import GlobalConfig
from cardguard.settings.rules import DEFAULT_RULES
from cardguard.settings.targets import ProfilesConfig, TargetConfig
from support import TESTDATA

OM = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def sample_set(text: str, om: bool = False) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    parse = om_families if om else text_string_to_metric_families
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for fam in parse(text)
        for s in fam.samples
        if s.name.startswith("cardguard_")
    }


@pytest.fixture
def snapshots() -> Iterator[list[TargetSnapshot]]:
    pages = [TESTDATA / "metrics" / n for n in ("demo-0.txt", "demo-1.txt", "prometheus.txt")]
    routes = {f"/{i}/metrics": local_http.ok(p.read_bytes()) for i, p in enumerate(pages)}
    with local_http.serve(routes) as srv:
        snaps = []
        for i in range(len(pages)):
            t = TargetConfig(
                name=f"t{i}", url=f"{srv.base_url}/{i}", profiles=ProfilesConfig(enabled=False)
            )
            w = TargetWorker(t, lambda: (GlobalConfig(), DEFAULT_RULES))
            w.scrape_metrics()
            snaps.append(w.snapshot)
        snaps.append(TargetSnapshot(target="never", url="http://127.0.0.1:1"))
        yield snaps


def test_prebuilt_page_equals_the_collectors(snapshots: list[TargetSnapshot]) -> None:
    registry = CollectorRegistry(auto_describe=False)
    for c in collectors.target_collectors(lambda: snapshots, lambda: 50):
        registry.register(c)
    want = sample_set(generate_latest(registry).decode())
    page = MetricsPage(lambda: snapshots, lambda: 50)
    empty = CollectorRegistry(auto_describe=False)
    text, ctype, headers = page.response(empty, "", "")
    assert ctype.startswith("text/plain") and headers == {}
    assert sample_set(text.decode()) == want and len(want) > 50
    om, ctype, _ = page.response(empty, OM, "")
    assert ctype.startswith("application/openmetrics-text") and om.endswith(b"# EOF\n")
    assert sample_set(om.decode(), om=True) == want
    packed, _, headers = page.response(empty, OM, "gzip, deflate")
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(packed) == om


def test_a_budget_spreads_rendering_over_builds(snapshots: list[TargetSnapshot]) -> None:
    page = MetricsPage(lambda: snapshots, lambda: 50)
    page.build(["text"], budget=0.0)  # nothing fits: only the families' headers
    assert b'target="t0"' not in page.page("text")
    page.build(["text"])
    full = page.page("text")
    assert all(f'target="{s.target}"'.encode() in full for s in snapshots)
