"""The leaky demo service, built from source with real Go toolchains and run live.

Each leak is switchable and shows within seconds at the rates the tests pass.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cardguard.pprof import goroutines as gr
from cardguard.pprof import heap, profile
from demo_support import DEMO_FAST_FLAGS
from support import Process, wait_for

DemoFactory = Callable[..., AbstractContextManager[Process]]
SUMMARY = "demo_http_request_duration_seconds"
LEAKER = "main.subscribe.func1"


def _metrics(proc: Process) -> dict[str, float]:
    """Return a few figures from the demo's /metrics page."""
    text = requests.get(f"{proc.base_url}/metrics", timeout=5).text
    out: dict[str, float] = {"series": 0.0, "summary_series": 0.0}
    for fam in text_string_to_metric_families(text):
        out["series"] += len(fam.samples)
        if fam.name == SUMMARY:
            out["summary_series"] = float(len({s.labels["start_point"] for s in fam.samples}))
        elif fam.name == "demo_http_requests":
            out["requests"] = sum(s.value for s in fam.samples if s.name.endswith("_total"))
        elif fam.name in ("go_goroutines", "demo_page_cache_entries", "demo_subscriptions_open"):
            out[fam.name] = fam.samples[0].value
    return out


def _grows(proc: Process, timeout: float = 30, **by: float) -> None:
    """Wait until every named figure grew by at least the given amount."""
    start = _metrics(proc)

    def grown() -> bool:
        now = _metrics(proc)
        return all(now.get(k, 0) >= start.get(k, 0) + n for k, n in by.items())

    wait_for(grown, timeout, f"growth of {by}")


@pytest.mark.parametrize("toolchain", ["go1.19", "current"])
def test_every_leak_shows_while_traffic_stays_flat(
    demo_service: DemoFactory, toolchain: str
) -> None:
    with demo_service(toolchain, *DEMO_FAST_FLAGS) as proc:
        _grows(
            proc, summary_series=200, go_goroutines=100, demo_page_cache_entries=200, requests=50
        )
        # The service believes its subscriptions are closed.
        assert _metrics(proc)["demo_subscriptions_open"] <= 5
        # The heap owner is the label explosion's quantile streams.
        body = requests.get(f"{proc.base_url}/debug/pprof/heap", timeout=10).content
        owners = heap.owners(profile.decode(body, "live heap"), "inuse_space").functions
        assert "github.com/beorn7/perks/quantile.newStream" in [f.name for f in owners[:3]]


def test_healthy_mode_leaks_nothing(demo_service: DemoFactory) -> None:
    with demo_service("current", "-healthy", "-request-rate=500") as proc:
        _grows(proc, requests=500)
        m = _metrics(proc)
        # One start_point per route template, however many requests.
        assert m["summary_series"] <= 2
        assert m.get("demo_page_cache_entries", 0) == 0
        assert m["go_goroutines"] < 20


def test_leaks_switch_independently(demo_service: DemoFactory) -> None:
    flags = ("-leak-labels=false", "-leak-cache=false", "-goroutine-rate=200", "-tick-interval=2ms")
    with demo_service("current", *flags) as proc:
        _grows(proc, go_goroutines=200)
        m = _metrics(proc)
        assert m["summary_series"] <= 2
        assert m.get("demo_page_cache_entries", 0) == 0


def test_goroutineleak_confirms_the_ticker_pollers(demo_service: DemoFactory) -> None:
    with demo_service("current", *DEMO_FAST_FLAGS) as proc:
        url = f"{proc.base_url}/debug/pprof/goroutineleak?debug=1"

        def leaked() -> int:
            snap = gr.parse(requests.get(url, timeout=10).content, url)
            assert snap.kind == "goroutineleak"
            return sum(g.count for g in gr.group(snap) if g.function == LEAKER)

        wait_for(lambda: leaked() >= 50, 30, "goroutineleak to report 50 pollers")
        # Only the pollers leak: the traffic loops stay reachable.
        snap = gr.parse(requests.get(url, timeout=10).content, url)
        assert {g.function for g in gr.group(snap)} == {LEAKER}
        # After detection ran, the full dump marks them too.
        dump_url = f"{proc.base_url}/debug/pprof/goroutine?debug=2"
        groups = gr.group(gr.parse(requests.get(dump_url, timeout=10).content, dump_url))
        poller = next(g for g in groups if g.function == LEAKER)
        assert poller.leaked and poller.leaked >= 50
        assert poller.created_by == "main.subscribe" and poller.state == "chan receive"


def test_go119_does_not_serve_goroutineleak(demo_service: DemoFactory) -> None:
    with demo_service("go1.19", "-healthy") as proc:
        r = requests.get(f"{proc.base_url}/debug/pprof/goroutineleak", timeout=10)
        assert r.status_code == 404


def test_goroutine_group_growth_between_live_snapshots(demo_service: DemoFactory) -> None:
    # What serve does each goroutine round: group the snapshot, compare with an earlier one.
    with demo_service("current", *DEMO_FAST_FLAGS) as proc:
        url = f"{proc.base_url}/debug/pprof/goroutine?debug=1"

        def groups() -> list[gr.GoroutineGroup]:
            return gr.group(gr.parse(requests.get(url, timeout=10).content, url))

        base = groups()

        def grown() -> bool:
            top = gr.growth(base, groups())[0]
            return top.function == LEAKER and top.delta >= 100

        wait_for(grown, 30, "the poller group to grow by 100")


def test_steady_mode_holds_every_leak_at_its_bound(demo_service: DemoFactory) -> None:
    """-steady: each leak grows to its bound and then holds (the demo can run for days)."""
    bounds = ("-steady", "-label-bound=150", "-goroutine-bound=120", "-cache-bound=250")
    with demo_service("current", *DEMO_FAST_FLAGS, *bounds) as proc:
        start = _metrics(proc)

        def at_bounds() -> bool:
            m = _metrics(proc)
            return (
                m["summary_series"] >= 150
                and m["demo_page_cache_entries"] >= 250
                and m["go_goroutines"] >= start["go_goroutines"] + 110
            )

        wait_for(at_bounds, 30, "every leak to reach its bound")
        held = _metrics(proc)
        # At the fast rates, another second would add 200 paths, 100 pollers, 200 pages.
        _grows(proc, requests=100)
        now = _metrics(proc)
        # The bound, plus the ten raw paths of the steady traffic (labelled raw too).
        assert now["summary_series"] == held["summary_series"] <= 150 + 10
        assert now["demo_page_cache_entries"] == held["demo_page_cache_entries"] == 250
        assert now["go_goroutines"] <= held["go_goroutines"] + 5
