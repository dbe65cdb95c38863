"""Churn across scrapes: series and label values added/removed, and distinct-value growth rates."""

from __future__ import annotations

import json
import math
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from cardguard.analyse.cardinality import Limits, PageAnalysis, analyse
from cardguard.analyse.churn import ChurnTracker
from support import TESTDATA

PAGES = TESTDATA / "metrics"
LIMITS = Limits(series_fingerprints=100_000)
EXPLODING = "demo_http_request_duration_seconds"


def recorded(name: str) -> tuple[bytes, float]:
    times = json.loads((PAGES / "pages.json").read_text())
    return (PAGES / name).read_bytes(), float(times[name]["time"])


def independent_series(data: bytes) -> dict[str, set[tuple[str, frozenset[tuple[str, str]]]]]:
    """Series per family, as prometheus_client's text parser sees them."""
    out: dict[str, set[tuple[str, frozenset[tuple[str, str]]]]] = defaultdict(set)
    for fam in text_string_to_metric_families(data.decode()):
        for s in fam.samples:
            out[fam.name].add((s.name, frozenset(s.labels.items())))
    return out


def independent_values(data: bytes, family: str, label: str) -> set[str]:
    return {
        dict(labels)[label]
        for _, labels in independent_series(data)[family]
        if label in dict(labels)
    }


def test_demo_explosion_between_two_real_scrapes() -> None:
    d0, t0 = recorded("demo-0.txt")
    d1, t1 = recorded("demo-1.txt")
    a0 = analyse(d0, content_type=None, source="demo", limits=LIMITS)
    a1 = analyse(d1, content_type=None, source="demo", limits=LIMITS)
    tracker = ChurnTracker()
    first = tracker.update(a0, t0)
    assert first.baseline
    assert all(f.series_added == f.series_removed == 0 for f in first.families)
    report = tracker.update(a1, t1)
    assert not report.baseline

    s0, s1 = independent_series(d0)[EXPLODING], independent_series(d1)[EXPLODING]
    fam = report.family(EXPLODING)
    assert fam is not None and fam.tracked and not fam.estimated
    assert (fam.series_added, fam.series_removed) == (len(s1 - s0), len(s0 - s1))
    assert fam.series_added > 100

    v0 = independent_values(d0, EXPLODING, "start_point")
    v1 = independent_values(d1, EXPLODING, "start_point")
    lab = report.label(EXPLODING, "start_point")
    assert lab is not None and not lab.estimated
    assert (lab.values_added, lab.values_removed) == (len(v1 - v0), len(v0 - v1))
    assert lab.distinct_values == len(v1)
    expected_rate = (len(v1) - len(v0)) / (t1 - t0) * 3600
    assert math.isclose(lab.growth_per_hour, expected_rate, rel_tol=1e-6)
    steady = report.label(EXPLODING, "quantile")
    assert steady is not None and steady.growth_per_hour == 0 and steady.values_added == 0


def test_removed_series_when_the_page_shrinks() -> None:
    d0, t0 = recorded("demo-0.txt")
    d1, t1 = recorded("demo-1.txt")
    tracker = ChurnTracker()
    tracker.update(analyse(d1, content_type=None, source="demo", limits=LIMITS), t0)
    report = tracker.update(analyse(d0, content_type=None, source="demo", limits=LIMITS), t1)
    s0, s1 = independent_series(d0)[EXPLODING], independent_series(d1)[EXPLODING]
    fam = report.family(EXPLODING)
    assert fam is not None
    assert (fam.series_added, fam.series_removed) == (len(s0 - s1), len(s1 - s0))
    lab = report.label(EXPLODING, "start_point")
    assert lab is not None and lab.growth_per_hour < 0


def _page(values: int, *, extra_family: bool = False, start: int = 0) -> PageAnalysis:
    lines = ["# TYPE api_latency_seconds summary"]
    for i in range(start, start + values):
        lines.append(f'api_latency_seconds_count{{start_point="/u/{i}",method="GET"}} 1')
    if extra_family:
        lines.append("# TYPE temp gauge\ntemp 1")
    return analyse(("\n".join(lines) + "\n").encode(), content_type=None, source="t", limits=LIMITS)


def test_constant_rate_explosion_shows_as_steady_growth() -> None:
    tracker = ChurnTracker(window=1800)
    rates = []
    for minute in range(60):  # 20 new URLs a minute for an hour, one scrape a minute
        report = tracker.update(_page(100 + 20 * minute), 1_000_000 + 60 * minute)
        lab = report.label("api_latency_seconds", "start_point")
        assert lab is not None
        rates.append(lab.growth_per_hour)
        method = report.label("api_latency_seconds", "method")
        assert method is not None and method.growth_per_hour == 0
    assert rates[0] == 0
    assert all(math.isclose(r, 1200, rel_tol=1e-6) for r in rates[1:])
    fam = report.family("api_latency_seconds")
    assert fam is not None and (fam.series_added, fam.series_removed) == (20, 0)


def test_one_off_jump_shows_then_fades_after_the_window() -> None:
    tracker = ChurnTracker(window=600)
    t = 0.0
    for _ in range(5):
        tracker.update(_page(100), t)
        t += 60
    jump = tracker.update(_page(1100), t)
    lab = jump.label("api_latency_seconds", "start_point")
    assert lab is not None and lab.growth_per_hour > 1000 and lab.values_added == 1000
    for _ in range(12):
        t += 60
        later = tracker.update(_page(1100), t)
    lab = later.label("api_latency_seconds", "start_point")
    assert lab is not None and lab.growth_per_hour == 0 and lab.values_added == 0


def test_vanished_family_counts_as_removed() -> None:
    tracker = ChurnTracker()
    tracker.update(_page(10, extra_family=True), 0)
    report = tracker.update(_page(10), 60)
    gone = report.family("temp")
    assert gone is not None and gone.series_removed == 1 and gone.series == 0


def test_bounded_fingerprints_estimate_and_say_so() -> None:
    # Tolerances below are about 6 standard errors of the sampled estimates.
    limits = Limits(series_fingerprints=8000, value_fingerprints=2000)
    tracker = ChurnTracker(max_fingerprints=4000)

    def page(start: int, n: int) -> PageAnalysis:
        body = "".join(f'big{{user="u{i}"}} 1\n' for i in range(start, start + n))
        return analyse(body.encode(), content_type=None, source="big", limits=limits)

    tracker.update(page(0, 50_000), 0)
    report = tracker.update(page(10_000, 50_000), 60)  # 10k gone, 10k new
    assert sum(len(s.hashes) for s in tracker._series.values()) <= 4000
    fam = report.family("big")
    assert fam is not None and fam.estimated
    assert math.isclose(fam.series_added, 10_000, rel_tol=0.25), fam.series_added
    assert math.isclose(fam.series_removed, 10_000, rel_tol=0.25), fam.series_removed
    lab = report.label("big", "user")
    assert lab is not None and lab.estimated
    assert math.isclose(lab.values_added, 10_000, rel_tol=0.35), lab.values_added


def test_untracked_series_say_so() -> None:
    data = b'm{a="1"} 1\n'
    tracker = ChurnTracker()
    a = analyse(data, content_type=None, source="m")  # default limits keep no fingerprints
    tracker.update(a, 0)
    fam = tracker.update(a, 60).family("m")
    assert fam is not None and not fam.tracked


def test_value_hashes_bounded_per_page_and_per_target() -> None:
    body = "".join(
        f"# TYPE f{f} gauge\n" + "".join(f'f{f}{{id="{f}-{i}"}} 1\n' for i in range(3000))
        for f in range(40)
    )
    limits = Limits(max_value_fingerprints_total=20_000)
    a = analyse(body.encode(), content_type=None, source="p", limits=limits)
    held = [lab.values for f in a.families for lab in f.labels if lab.values is not None]
    assert len(held) == 40
    assert sum(len(v.hashes) for v in held) <= 20_000 + 2048
    tracker = ChurnTracker(max_value_hashes=4000)
    tracker.update(a, 0)
    assert sum(len(v.hashes) for v in tracker._values.values()) <= 4000
    report = tracker.update(a, 60)
    lab = report.label("f0", "id")
    assert lab is not None and lab.values_added == lab.values_removed == 0
    assert lab.estimated and abs(lab.distinct_values - 3000) < 100
