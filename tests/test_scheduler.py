"""scheduler.py: per-target workers against a local server replaying pages and profiles recorded
from real Go processes (tests/testdata, see record.sh), plus live threads for isolation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import local_http
from cardguard.analyse import cardinality
from cardguard.detect import findings
from cardguard.detect.detectors import detect
from cardguard.pprof import goroutines as gr
from cardguard.pprof import heap as hp
from cardguard.pprof import profile as prof
from cardguard.run import due, scheduler
from cardguard.run.scheduler import Scheduler
from cardguard.run.target_worker import TargetWorker
from cardguard.settings.config import Caps, Config, GlobalConfig, Thresholds
from cardguard.settings.rules import DEFAULT_RULES, Rules
from cardguard.settings.targets import ProfilesConfig, TargetConfig
from support import TESTDATA, dead_url, wait_for

METRICS = TESTDATA / "metrics"
PPROF = TESTDATA / "pprof"
TEXT = "text/plain; version=0.0.4; charset=utf-8"

GLOBAL = GlobalConfig(
    thresholds=Thresholds(min_family_series=2, min_label_values=2, min_goroutine_group=2)
)


def settings() -> tuple[GlobalConfig, Rules]:
    return GLOBAL, DEFAULT_RULES


def file_route(path: Path, content_type: str = TEXT) -> local_http.Route:
    return local_http.ok(path.read_bytes(), content_type)


def goroutine_route(version: str, kind: str = "goroutine") -> local_http.Route:
    """Serve a recorded goroutine profile in the form the query asks for, as net/http/pprof does."""
    d = PPROF / version

    def route(h: local_http.Handler) -> None:
        if "debug=2" in h.path:
            h.send_body(200, (d / f"{kind}.debug2.txt").read_bytes())
        elif "debug=1" in h.path:
            h.send_body(200, (d / f"{kind}.debug1.txt").read_bytes())
        else:
            h.send_body(200, (d / f"{kind}.pb.gz").read_bytes(), "application/octet-stream")

    return route


@pytest.fixture
def go127() -> Iterator[local_http.Running]:
    """A target replaying the leaky demo built with Go 1.27 (serves goroutineleak)."""
    with local_http.serve(
        {
            "/metrics": file_route(METRICS / "demo-1.txt"),
            "/debug/pprof/heap": file_route(
                PPROF / "go1.27" / "heap.pb.gz", "application/octet-stream"
            ),
            "/debug/pprof/goroutine": goroutine_route("go1.27"),
            "/debug/pprof/goroutineleak": goroutine_route("go1.27", "goroutineleak"),
        }
    ) as srv:
        yield srv


@pytest.fixture
def go119() -> Iterator[local_http.Running]:
    """A target replaying the demo built with Go 1.19 (no goroutineleak: 404)."""
    with local_http.serve(
        {
            "/metrics": file_route(METRICS / "demo-0.txt"),
            "/debug/pprof/heap": file_route(
                PPROF / "go1.19" / "heap.pb.gz", "application/octet-stream"
            ),
            "/debug/pprof/goroutine": goroutine_route("go1.19"),
        }
    ) as srv:
        yield srv


def worker_for(srv: local_http.Running, **kw: object) -> TargetWorker:
    args: dict[str, object] = {"timeout": 5.0, "interval": 10.0}
    args.update(kw)
    return TargetWorker(TargetConfig(name="demo", url=srv.base_url, **args), settings)  # type: ignore[arg-type]


def paths(srv: local_http.Running) -> list[str]:
    return [p for p, _ in srv.server.requests]


def test_metrics_scrape_publishes_analysis(go127: local_http.Running) -> None:
    w = worker_for(go127)
    before = w.snapshot
    w.scrape_metrics()
    snap = w.snapshot
    assert snap is not before  # a new object, swapped in
    body = (METRICS / "demo-1.txt").read_bytes()
    expected = cardinality.analyse(body, content_type=TEXT, source="x")
    assert snap.analysis is not None
    assert snap.analysis.total_series == expected.total_series
    fam = snap.analysis.family("demo_http_request_duration_seconds")
    want = expected.family("demo_http_request_duration_seconds")
    assert fam is not None and want is not None and fam.series == want.series > 1000
    h = snap.health["metrics"]
    assert h.success and h.last_success is not None and h.body_bytes == len(body)
    # The Accept header negotiates OpenMetrics first, as Prometheus does.
    accept = go127.server.requests[-1][1]["Accept"]
    assert accept.startswith("application/openmetrics-text")
    assert "demo_http_request_duration_seconds" in snap.visible.families
    assert ("demo_http_request_duration_seconds", "start_point") in snap.visible.labels


def test_failed_scrape_keeps_last_good_data(
    go127: local_http.Running, caplog: pytest.LogCaptureFixture
) -> None:
    w = worker_for(go127)
    w.scrape_metrics()
    good = w.snapshot
    go127.routes["/metrics"] = local_http.status(500)
    with caplog.at_level(logging.WARNING, logger="cardguard.run.worker"):
        w.scrape_metrics()
    snap = w.snapshot
    assert snap.analysis is good.analysis  # earlier good data is kept
    h = snap.health["metrics"]
    assert not h.success
    assert dict(h.failures) == {"http_status": 1}
    assert h.last_success == good.health["metrics"].last_success
    assert "HTTP 500" in (h.last_error or "")
    records = [r for r in caplog.records if getattr(r, "endpoint", None) == "metrics"]
    assert len(records) == 1  # one log line per failure
    rec = records[0]
    assert (rec.target, rec.endpoint, rec.reason) == ("demo", "metrics", "http_status")  # type: ignore[attr-defined]


def test_unparseable_page_is_a_parse_failure(go127: local_http.Running) -> None:
    w = worker_for(go127)
    w.scrape_metrics()
    good = w.snapshot.analysis
    go127.routes["/metrics"] = local_http.ok(b"<html><body>502 Bad Gateway</body></html>\n")
    w.scrape_metrics()
    snap = w.snapshot
    assert snap.analysis is good
    assert dict(snap.health["metrics"].failures) == {"parse": 1}


def test_series_added_counters_follow_churn(go119: local_http.Running) -> None:
    w = worker_for(go119)
    w.scrape_metrics()
    assert dict(w.snapshot.series_added) == {}  # the first scrape is a baseline
    go119.routes["/metrics"] = file_route(METRICS / "demo-1.txt")
    w.scrape_metrics()
    churn = w.snapshot.churn
    assert churn is not None and not churn.baseline
    fc = churn.family("demo_http_request_duration_seconds")
    assert fc is not None and fc.series_added > 0
    added = w.snapshot.series_added
    assert added["demo_http_request_duration_seconds"] == fc.series_added
    assert sum(added.values()) == sum(f.series_added for f in churn.families)
    assert set(added) == {*w.snapshot.visible.families, "__other__"}
    # Counters only grow: a third scrape of the same page adds nothing new.
    w.scrape_metrics()
    assert w.snapshot.series_added["demo_http_request_duration_seconds"] == fc.series_added


def test_heap_profile_and_delta(go127: local_http.Running) -> None:
    base = (PPROF / "go1.27" / "heap-base.pb.gz").read_bytes()
    cur = (PPROF / "go1.27" / "heap.pb.gz").read_bytes()
    go127.routes["/debug/pprof/heap"] = local_http.ok(base, "application/octet-stream")
    w = worker_for(go127, profiles=ProfilesConfig(goroutine=False, goroutineleak="false"))
    w.collect_profiles()
    first = w.snapshot.heap
    assert first is not None and first.delta_bytes is None
    go127.routes["/debug/pprof/heap"] = local_http.ok(cur, "application/octet-stream")
    w.collect_profiles()
    heap = w.snapshot.heap
    assert heap is not None and heap.delta_bytes is not None
    b, c = prof.decode(base, "base"), prof.decode(cur, "cur")
    assert heap.inuse_bytes.total == hp.owners(c, "inuse_space").total
    assert heap.delta_bytes.total_delta == hp.diff(b, c, "inuse_space").total_delta
    assert w.snapshot.health["heap"].success
    assert w.snapshot.visible.heap_owners  # owners past the share threshold are shown


def test_corrupt_profile_keeps_previous_heap(go127: local_http.Running) -> None:
    w = worker_for(go127, profiles=ProfilesConfig(goroutine=False, goroutineleak="false"))
    w.collect_profiles()
    good = w.snapshot.heap
    go127.routes["/debug/pprof/heap"] = local_http.ok(
        b"\x1f\x8b\x08\x00garbage", "application/octet-stream"
    )
    w.collect_profiles()
    assert w.snapshot.heap is good
    assert dict(w.snapshot.health["heap"].failures) == {"parse": 1}


def test_full_goroutine_dump_only_under_limit(go127: local_http.Running) -> None:
    profiles = ProfilesConfig(heap=False, goroutineleak="false", goroutine_full_max=1000)
    w = worker_for(go127, profiles=profiles)
    # Count unknown yet: the cheap counted form first; about 200 goroutines < 1000, so the
    # full dump follows in the same round and groups are published with their creators.
    w.collect_profiles()
    got = [p for p in paths(go127) if p.startswith("/debug/pprof/goroutine")]
    assert got == ["/debug/pprof/goroutine?debug=0", "/debug/pprof/goroutine?debug=2"]
    w.collect_profiles()  # count known and under the limit: straight to the full dump
    got = [p for p in paths(go127) if p.startswith("/debug/pprof/goroutine")]
    assert got[2:] == ["/debug/pprof/goroutine?debug=2"]
    snap = w.snapshot
    assert snap.goroutines is not None and snap.goroutines.format == "debug2"
    assert snap.health["goroutine_full"].success
    big = gr.group(gr.parse((PPROF / "go1.27" / "goroutine.debug2.txt").read_bytes(), "x"))[0]
    assert big.function == "main.subscribe.func1"
    assert big.id in snap.visible.groups
    assert snap.group_creators.get(big.id) == big.created_by

    strict = worker_for(
        go127, profiles=ProfilesConfig(heap=False, goroutineleak="false", goroutine_full_max=100)
    )
    go127.server.requests.clear()
    strict.collect_profiles()
    strict.collect_profiles()
    assert paths(go127) == ["/debug/pprof/goroutine?debug=0"] * 2  # ~200 is not under 100


def test_goroutine_count_from_metrics_page_gates_full_dump(go127: local_http.Running) -> None:
    # demo-1.txt says go_goroutines 417: under 500 the first profile round is already full.
    w = worker_for(
        go127, profiles=ProfilesConfig(heap=False, goroutineleak="false", goroutine_full_max=500)
    )
    w.scrape_metrics()
    w.collect_profiles()
    assert paths(go127)[-1] == "/debug/pprof/goroutine?debug=2"
    w2 = worker_for(
        go127, profiles=ProfilesConfig(heap=False, goroutineleak="false", goroutine_full_max=400)
    )
    w2.scrape_metrics()
    w2.collect_profiles()
    assert paths(go127)[-1] == "/debug/pprof/goroutine?debug=0"


def test_goroutineleak_used_when_served(go127: local_http.Running) -> None:
    w = worker_for(go127, profiles=ProfilesConfig(heap=False, goroutine=False))
    w.collect_profiles()
    snap = w.snapshot
    assert snap.goroutineleak_supported is True
    recorded = gr.parse(
        (PPROF / "go1.27" / "goroutineleak.debug1.txt").read_bytes(), "x", kind="goroutineleak"
    )
    assert snap.leaks is not None and sum(g.count for g in snap.leaks) == recorded.total > 0
    assert snap.leaks[0].function == "main.subscribe.func1"
    assert snap.leaks[0].id in snap.visible.groups


def test_goroutineleak_404_remembered(go119: local_http.Running) -> None:
    w = worker_for(go119, profiles=ProfilesConfig(heap=False, goroutine=False))
    for _ in range(3):
        w.collect_profiles()
    assert paths(go119).count("/debug/pprof/goroutineleak?debug=1") == 1
    snap = w.snapshot
    assert snap.goroutineleak_supported is False
    assert not snap.health["goroutineleak"].attempted  # a 404 in auto mode is not a failure
    forced = worker_for(
        go119, profiles=ProfilesConfig(heap=False, goroutine=False, goroutineleak="true")
    )
    forced.collect_profiles()
    assert dict(forced.snapshot.health["goroutineleak"].failures) == {"http_status": 1}


def test_offenders_in_snapshot(go119: local_http.Running) -> None:
    w = worker_for(go119)
    w.scrape_metrics()
    go119.routes["/metrics"] = file_route(METRICS / "demo-1.txt")
    w.scrape_metrics()
    w.collect_profiles()
    snap = w.snapshot
    assert snap.offenders_error is None
    plain = detect(w.view(), DEFAULT_RULES)
    assert [(o.kind, o.id, o.summary) for o in snap.offenders] == [
        (o.kind, o.id, o.summary) for o in plain
    ]
    explosions = [o for o in snap.offenders if o.kind == "label_explosion"]
    (seed,) = [
        o
        for o in explosions
        if o.family == "demo_http_request_duration_seconds" and o.label == "start_point"
    ]
    # serve gives report's fixes: the relabel plan was checked on the live series (read at
    # the last /metrics round and kept through the profile round), and the code fix names
    # a normaliser built from the observed values.
    assert seed.evidence["relabel"]["checked_series"] > 0
    assert seed.evidence["code"]["function"] == "normaliseStartPoint"
    assert seed.fix_snippet != next(o for o in plain if o.id == seed.id).fix_snippet


def test_dead_and_stalled_targets_do_not_block_others(tmp_path: Path) -> None:
    stop = threading.Event()
    with (
        local_http.serve(
            {
                "/metrics": file_route(METRICS / "demo-0.txt"),
                "/stall/metrics": local_http.stall_before_headers(stop),
            }
        ) as srv,
        dead_url() as dead,
    ):
        off = ProfilesConfig(enabled=False)
        cfg = Config(
            source="test",
            global_=GlobalConfig(),
            targets=(
                TargetConfig(
                    name="stalled",
                    url=srv.base_url + "/stall",
                    interval=30.0,
                    timeout=20.0,
                    profiles=off,
                ),
                TargetConfig(
                    name="dead",
                    url=dead,
                    interval=0.2,
                    timeout=0.2,
                    profiles=off,
                ),
                TargetConfig(
                    name="live", url=srv.base_url, interval=0.2, timeout=1.0, profiles=off
                ),
            ),
        )
        sched = Scheduler(cfg)
        sched.start()
        try:
            by_name = lambda: {s.target: s for s in sched.snapshots()}  # noqa: E731
            # Several scrapes of "live" while "stalled" is still waiting on its first answer.
            wait_for(lambda: by_name()["live"].snapshots >= 5, 15, "live target scraped 5 times")
            assert not by_name()["stalled"].health["metrics"].attempted
            wait_for(
                lambda: by_name()["dead"].health["metrics"].failures.get("connect", 0) >= 3,
                15,
                "dead target failing",
            )
            assert by_name()["live"].health["metrics"].success
        finally:
            stop.set()
            sched.stop()


def test_apply_keeps_unchanged_workers_and_history(go127: local_http.Running) -> None:
    off = ProfilesConfig(enabled=False)
    t = TargetConfig(name="demo", url=go127.base_url, interval=0.2, timeout=1.0, profiles=off)
    sched = Scheduler(Config(source="a", global_=GlobalConfig(), targets=(t,)))
    sched.start()
    try:
        wait_for(lambda: sched.snapshots()[0].analysis is not None, 10, "first scrape")
        w = sched.worker("demo")
        sched.apply(Config(source="b", global_=GlobalConfig(caps=Caps(families=5)), targets=(t,)))
        assert sched.worker("demo") is w  # unchanged target: same worker
        changed = TargetConfig(
            name="demo", url=go127.base_url, interval=0.3, timeout=1.0, profiles=off
        )
        sched.apply(Config(source="c", global_=GlobalConfig(), targets=(changed,)))
        w2 = sched.worker("demo")
        assert w2 is not w and w2 is not None
        assert w2.snapshot.analysis is not None  # history carried over (same URL)
        sched.apply(Config(source="d", global_=GlobalConfig(), targets=()))
        assert sched.snapshots() == [] and sched.worker("demo") is None
    finally:
        sched.stop()


def test_profiles_on_their_own_interval(
    go127: local_http.Running, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr(due, "FIRST_RUN_SPREAD", 1.0)  # first runs within a second
    t = TargetConfig(
        name="demo",
        url=go127.base_url,
        interval=0.1,
        timeout=1.0,
        profiles=ProfilesConfig(interval=60.0, goroutine=False, goroutineleak="false"),
    )
    sched = Scheduler(Config(source="t", global_=GlobalConfig(), targets=(t,)))
    sched.start()
    try:
        wait_for(lambda: "/debug/pprof/heap" in paths(go127), 15, "the first heap profile")
        scraped = paths(go127).count("/metrics")
        wait_for(
            lambda: paths(go127).count("/metrics") >= scraped + 5, 15, "five more /metrics scrapes"
        )
    finally:
        sched.stop()
    assert paths(go127).count("/debug/pprof/heap") == 1  # the next one is 60s later


# --- an exception nobody expected is a failure, never a healthy-looking endpoint ------
#
# The fetch and the parsers raise only their typed errors on every real input we have
# (tests/test_fuzz.py, tests/test_hostile.py): the last real trigger, a malformed redirect
# Location, is now a FetchError("redirect"). So these tests inject the fault at a clear
# seam instead -- a module function the worker calls (analysis, detection, the fetcher's
# get) replaced by one that raises -- to prove the defensive path itself.


def exposition(w: TargetWorker) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    from cardguard.expose.collectors import ScrapeHealthCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector(lambda: [w.snapshot]))
    return generate_latest(registry).decode()


def boom(*args: object, **kwargs: object) -> object:
    raise RuntimeError("injected fault\nsecond line")


def test_internal_is_a_fixed_failure_reason() -> None:
    from cardguard.run import fetch
    from cardguard.run.snapshot import FAILURE_REASONS, INTERNAL

    assert INTERNAL == "internal" and INTERNAL in FAILURE_REASONS
    assert set(fetch.REASONS) <= set(FAILURE_REASONS)
    assert len(set(FAILURE_REASONS)) == len(FAILURE_REASONS) and FAILURE_REASONS[-1] == "other"


def test_analysis_exception_fails_the_endpoint_and_keeps_good_data(
    go127: local_http.Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injection: the page analysis raises, as a bug in the analysis would.

    The seam is incremental.analyse, which every page goes through (cardinality.analyse
    is not called again for a page whose series did not change).
    """
    from cardguard.analyse import incremental

    w = worker_for(go127)
    w.scrape_metrics()
    good = w.snapshot
    assert 'cardguard_scrape_success{endpoint="metrics",target="demo"} 1.0' in exposition(w)
    monkeypatch.setattr(incremental, "analyse", boom)
    with caplog.at_level(logging.WARNING, logger="cardguard.run.worker"):
        w.scrape_metrics()  # must not raise
        w.scrape_metrics()
    snap = w.snapshot
    assert snap.analysis is good.analysis  # earlier good data is never dropped
    h = snap.health["metrics"]
    assert not h.success and h.last_reason == "internal" and dict(h.failures) == {"internal": 2}
    assert h.last_success == good.health["metrics"].last_success
    assert (
        h.last_error == "internal error while collecting: RuntimeError: injected fault second line"
    )
    text = exposition(w)
    assert 'cardguard_scrape_success{endpoint="metrics",target="demo"} 0.0' in text
    assert (
        'cardguard_scrape_failures_total{endpoint="metrics",reason="internal",target="demo"} 2.0'
        in text
    )
    records = [r for r in caplog.records if getattr(r, "reason", None) == "internal"]
    assert len(records) == 2  # one structured line per failure, with the traceback
    rec = records[0]
    assert (rec.target, rec.endpoint) == ("demo", "metrics")  # type: ignore[attr-defined]
    assert rec.exc_info is not None and rec.exc_info[0] is RuntimeError
    # Once the bug is gone, the endpoint recovers.
    monkeypatch.undo()
    w.scrape_metrics()
    assert w.snapshot.health["metrics"].success


def test_fetcher_exception_is_blamed_on_the_endpoint_being_fetched(
    go127: local_http.Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the fetcher's get raises ValueError for the goroutine dump only.

    That is what urllib's urlsplit did on a redirect to 'http://[::1' before fetch.py
    turned it into a FetchError; the other profiles of the round must still be read.
    """
    profiles = ProfilesConfig(goroutineleak="false", goroutine_full_max=100000)
    w = worker_for(go127, profiles=profiles)
    w.scrape_metrics()  # go_goroutines is known: the round asks for the full dump directly
    real_get = w._fetcher.get

    def get(url: str, **kw: object) -> object:
        if "goroutine" in url:
            raise ValueError("Invalid IPv6 URL")
        return real_get(url, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(w._fetcher, "get", get)
    w.collect_profiles()
    health = w.snapshot.health
    assert health["heap"].success  # the step before is unaffected ...
    assert dict(health["goroutine_full"].failures) == {"internal": 1}
    assert not health["goroutine_full"].success
    assert "ValueError: Invalid IPv6 URL" in (health["goroutine_full"].last_error or "")
    assert not health["goroutine"].attempted  # ... and no other endpoint is blamed
    assert health["metrics"].success


def test_detection_exception_publishes_fresh_data_but_not_as_healthy(
    go119: local_http.Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: detect raises after a good fetch and parse."""
    w = worker_for(go119)
    w.scrape_metrics()
    before = w.snapshot
    assert before.offenders_error is None
    monkeypatch.setattr(findings, "detect", boom)
    go119.routes["/metrics"] = file_route(METRICS / "demo-1.txt")
    w.scrape_metrics()
    snap = w.snapshot
    assert snap.analysis is not before.analysis and snap.snapshots == 2  # fresh data is kept
    assert snap.offenders == before.offenders  # the last offenders found stay
    assert (snap.offenders_error or "").startswith("offender detection failed: RuntimeError")
    h = snap.health["metrics"]
    assert not h.success and dict(h.failures) == {"internal": 1}
    assert 'cardguard_scrape_success{endpoint="metrics",target="demo"} 0.0' in exposition(w)


def test_a_target_that_keeps_raising_never_stops_the_others(
    go127: local_http.Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the analysis raises for one target's pages only."""
    real = cardinality.analyse

    def analyse(data: bytes, **kw: object) -> object:
        if str(kw.get("source", "")).startswith("broken "):
            raise KeyError("injected")
        return real(data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(cardinality, "analyse", analyse)
    off = ProfilesConfig(enabled=False)
    targets = tuple(
        TargetConfig(name=n, url=go127.base_url, interval=0.1, timeout=1.0, profiles=off)
        for n in ("broken", "fine")
    )
    sched = Scheduler(Config(source="t", global_=GlobalConfig(), targets=targets))
    sched.start()
    try:
        by_name = lambda: {s.target: s for s in sched.snapshots()}  # noqa: E731
        wait_for(
            lambda: by_name()["broken"].health["metrics"].failures.get("internal", 0) >= 3,
            15,
            "the broken target to fail three times (its loop goes on)",
        )
        wait_for(lambda: by_name()["fine"].snapshots >= 3, 15, "the fine target scraped")
        assert by_name()["fine"].health["metrics"].success
        assert (
            by_name()["broken"].analysis is None
            and not by_name()["broken"].health["metrics"].success
        )
    finally:
        sched.stop()


def test_apply_that_cannot_build_a_worker_leaves_the_old_config_running(
    go127: local_http.Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: building the new target's worker raises."""

    off = ProfilesConfig(enabled=False)
    t = TargetConfig(name="demo", url=go127.base_url, interval=0.2, timeout=1.0, profiles=off)
    old_cfg = Config(source="a", global_=GlobalConfig(), targets=(t,))
    sched = Scheduler(old_cfg)
    sched.start()
    try:
        w = sched.worker("demo")
        monkeypatch.setattr(scheduler, "TargetWorker", boom)
        other = TargetConfig(name="new", url=go127.base_url, profiles=off)
        with pytest.raises(RuntimeError):
            sched.apply(Config(source="b", global_=GlobalConfig(), targets=(other,)))
        assert sched.config is old_cfg and sched.worker("demo") is w and not w._stop.is_set()
        assert sched.worker("new") is None
    finally:
        sched.stop()


# --- the schedule -----------------------------------------------------------------


def grid_job(interval: float, phase_of: float) -> object:
    """A Job on a known grid: base 100 + phase_of * interval."""
    from cardguard.run.due import Job

    job = Job.__new__(Job)
    job.interval, job.base, job.active = interval, 100.0 + phase_of * interval, True
    job.due = job.base
    return job


def test_runs_stay_on_their_grid_and_late_or_overrun_ones_are_skipped() -> None:
    job = grid_job(30.0, 0.5)  # grid: 115, 145, 175, ...
    assert job.after(115.0, 116.0) == (145.0, 0)  # an ordinary run
    assert job.after(115.0, 150.0) == (175.0, 1)  # ran past 145: that run is skipped
    job.due = 145.0
    assert job.catch_up(170.0) == (145.0, 0)  # 25s late: still run
    assert job.catch_up(180.0) == (175.0, 1)  # a whole interval late: run 175 instead
    assert job.catch_up(240.0) == (235.0, 3)
    # The first run is off the grid (spread over the start); the second waits at least
    # half an interval and then the grid holds.
    first = 100.0 + 0.5 * 10.0  # within a 10s first-run spread
    assert job.after(first, first + 1) == (145.0, 0)
    early = grid_job(300.0, 0.01)  # grid 103, 403, ...; a first run at 100.1
    assert early.after(100.1, 100.2) == (403.0, 0)


def test_phases_spread_a_fleet_over_its_interval() -> None:
    from cardguard.run.due import phase

    phases = sorted(phase(f"t{i}", "metrics") for i in range(1000))
    assert phases == sorted(set(phases)) and 0 <= phases[0] and phases[-1] < 1
    deciles = [sum(1 for p in phases if k / 10 <= p < (k + 1) / 10) for k in range(10)]
    assert min(deciles) > 60 and max(deciles) < 140  # about 100 each
    assert phase("t1", "metrics") == phase("t1", "metrics") != phase("t1", "heap")
