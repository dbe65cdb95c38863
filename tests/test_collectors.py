"""collectors.py: the exported series, bounded and stable, read back with Prometheus parsers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import local_http
from cardguard.expose.collectors import ReloadCollector, ReloadStatus, target_collectors
from cardguard.pprof import goroutines as gr
from cardguard.run.snapshot import TargetSnapshot
from cardguard.run.target_worker import TargetWorker
from cardguard.settings.config import Caps, GlobalConfig, Thresholds
from cardguard.settings.rules import DEFAULT_RULES, Rules
from cardguard.settings.targets import ProfilesConfig, TargetConfig
from support import TESTDATA, dead_url

PPROF = TESTDATA / "pprof" / "go1.27"
TEXT = "text/plain; version=0.0.4; charset=utf-8"


def exposition(snaps: Sequence[TargetSnapshot], offender_cap: int = 50) -> bytes:
    reg = CollectorRegistry(auto_describe=False)
    for c in target_collectors(lambda: snaps, lambda: offender_cap):
        reg.register(c)
    return generate_latest(reg)


def samples(snaps: Sequence[TargetSnapshot], offender_cap: int = 50) -> list[Sample]:
    text = exposition(snaps, offender_cap).decode()
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def values(ss: list[Sample], name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in ss
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    }


def one(ss: list[Sample], name: str, **labels: str) -> float:
    found = values(ss, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {found}"
    return next(iter(found.values()))


def make_worker(url: str, g: GlobalConfig, name: str = "t", **kw: object) -> TargetWorker:
    def settings() -> tuple[GlobalConfig, Rules]:
        return g, DEFAULT_RULES

    args: dict[str, object] = {"timeout": 60.0, "interval": 60.0, "body_size_limit": 256 << 20}
    args.update(kw)
    return TargetWorker(TargetConfig(name=name, url=url, **args), settings)  # type: ignore[arg-type]


def page(families: dict[str, int]) -> bytes:
    """A text page: each family a gauge with ``n`` series labelled by ``id``."""
    out = []
    for fam, n in families.items():
        out.append(f"# TYPE {fam} gauge\n")
        out.extend(f'{fam}{{id="{i}"}} 1\n' for i in range(n))
    return "".join(out).encode()


@pytest.fixture
def server() -> Iterator[local_http.Running]:
    with local_http.serve({}) as srv:
        yield srv


def test_million_families_output_stays_capped(server: local_http.Running) -> None:
    n = 1_000_000
    big = "".join(f'# TYPE fam_{i} gauge\nfam_{i}{{shard="{i % 7}"}} 1\n' for i in range(n))
    server.routes["/metrics"] = local_http.ok(big.encode())
    g = GlobalConfig(
        caps=Caps(families=50, labels=40),
        thresholds=Thresholds(min_family_series=1, min_label_values=1),
    )
    w = make_worker(server.base_url, g, name="huge")
    w.scrape_metrics()
    assert w.snapshot.health["metrics"].success, w.snapshot.health["metrics"].last_error
    ss = samples([w.snapshot])
    assert one(ss, "cardguard_target_series", target="huge") == n
    assert one(ss, "cardguard_target_families", target="huge") == n
    fam = values(ss, "cardguard_family_series", target="huge")
    assert len(fam) == 51  # the cap plus one overflow series
    other = one(ss, "cardguard_family_series", target="huge", family="__other__")
    assert other + sum(fam.values()) - other == n  # shown families and __other__ add up
    assert one(ss, "cardguard_output_capped", target="huge", kind="family") == 1
    assert len(values(ss, "cardguard_label_distinct_values", target="huge")) == 41
    assert one(ss, "cardguard_output_capped", target="huge", kind="label") == 1
    assert len(ss) < 400, f"{len(ss)} samples for one target"
    shown = set(fam)
    # Stable: the next scrape shows the same label sets, even though the page changed.
    m = 100_000
    server.routes["/metrics"] = local_http.ok(
        big[: big.index(f"# TYPE fam_{m} ")].replace("fam_", "new_").encode()
    )
    w.scrape_metrics()
    ss2 = samples([w.snapshot])
    assert w.snapshot.visible.families == frozenset(
        dict(k)["family"] for k in shown if dict(k)["family"] != "__other__"
    )
    # None of the old families is on the page any more; the new ones are all folded.
    assert values(ss2, "cardguard_family_series", target="huge") == {
        (("family", "__other__"), ("metric_type", "mixed"), ("target", "huge")): m
    }


def test_families_sticky_after_threshold(server: local_http.Running) -> None:
    g = GlobalConfig(
        caps=Caps(families=2, labels=5),
        thresholds=Thresholds(min_family_series=3, min_label_values=3),
    )
    w = make_worker(server.base_url, g)
    server.routes["/metrics"] = local_http.ok(page({"a": 5, "b": 1}))
    w.scrape_metrics()
    ss = samples([w.snapshot])
    assert set(values(ss, "cardguard_family_series")) == {
        (("family", "a"), ("metric_type", "gauge"), ("target", "t"))
    }
    assert one(ss, "cardguard_output_capped", kind="family") == 0
    # "a" drops below the threshold: it stays (sticky); "b" is still below it.
    server.routes["/metrics"] = local_http.ok(page({"a": 1, "b": 2}))
    w.scrape_metrics()
    ss = samples([w.snapshot])
    assert one(ss, "cardguard_family_series", family="a") == 1
    assert values(ss, "cardguard_family_series", family="b") == {}
    # Two new families pass the threshold with room for one: the other is folded.
    server.routes["/metrics"] = local_http.ok(page({"a": 1, "c": 9, "d": 4}))
    w.scrape_metrics()
    ss = samples([w.snapshot])
    assert one(ss, "cardguard_family_series", family="c") == 9
    assert one(ss, "cardguard_family_series", family="__other__") == 4
    assert one(ss, "cardguard_output_capped", kind="family") == 1
    # Labels: id of a and c passed min_label_values; counts are distinct values.
    assert one(ss, "cardguard_label_distinct_values", family="c", label="id") == 9
    assert one(ss, "cardguard_label_distinct_values_estimated", family="c", label="id") == 0
    assert values(ss, "cardguard_label_values_growth_per_second", family="c", label="id")
    # A family that vanished from the page is not exported with a stale value.
    server.routes["/metrics"] = local_http.ok(page({"c": 9}))
    w.scrape_metrics()
    assert values(samples([w.snapshot]), "cardguard_family_series", family="a") == {}


def test_series_added_and_removed_counters(server: local_http.Running) -> None:
    g = GlobalConfig(thresholds=Thresholds(min_family_series=1, min_label_values=1))
    w = make_worker(server.base_url, g)
    server.routes["/metrics"] = local_http.ok(page({"a": 5}))
    w.scrape_metrics()
    server.routes["/metrics"] = local_http.ok(page({"a": 8}))
    w.scrape_metrics()
    server.routes["/metrics"] = local_http.ok(page({"a": 2}))
    w.scrape_metrics()
    ss = samples([w.snapshot])
    assert one(ss, "cardguard_family_series_added_total", family="a") == 3
    assert one(ss, "cardguard_family_series_removed_total", family="a") == 6
    # Families that did not change are exported at 0 (so rate() has data), others fold.
    assert one(ss, "cardguard_family_series_removed_total", family="__other__") == 0


def _profile_server(srv: local_http.Running) -> None:
    def goroutine(kind: str) -> local_http.Route:
        def route(h: local_http.Handler) -> None:
            form = "debug2" if "debug=2" in h.path else "debug1"
            h.send_body(200, (PPROF / f"{kind}.{form}.txt").read_bytes())

        return route

    srv.routes.update(
        {
            "/metrics": local_http.ok((TESTDATA / "metrics" / "demo-1.txt").read_bytes()),
            "/debug/pprof/heap": local_http.ok((PPROF / "heap-base.pb.gz").read_bytes()),
            "/debug/pprof/goroutine": goroutine("goroutine"),
            "/debug/pprof/goroutineleak": goroutine("goroutineleak"),
        }
    )


def test_profile_series_add_up(server: local_http.Running) -> None:
    _profile_server(server)
    g = GlobalConfig(thresholds=Thresholds(min_goroutine_group=2, min_heap_owner_share=0.02))
    w = make_worker(server.base_url, g, profiles=ProfilesConfig(goroutine_full_max=1000))
    w.collect_profiles()  # heap base, goroutine debug=0, goroutineleak
    ss1 = samples([w.snapshot])
    server.routes["/debug/pprof/heap"] = local_http.ok((PPROF / "heap.pb.gz").read_bytes())
    w.collect_profiles()  # heap again (delta), goroutine debug=2 (about 200 < 1000)
    ss = samples([w.snapshot])
    total = one(ss, "cardguard_heap_inuse_bytes", target="t")
    owners = values(ss, "cardguard_heap_owner_inuse_bytes", target="t")
    assert sum(owners.values()) == total  # shown owners plus __other__ is the whole heap
    assert len(owners) <= g.caps.heap_owners + 1
    objs = values(ss, "cardguard_heap_owner_inuse_objects", target="t")
    assert sum(objs.values()) == one(ss, "cardguard_heap_inuse_objects", target="t")
    heap = w.snapshot.heap
    assert heap is not None and heap.delta_bytes is not None
    deltas = values(ss, "cardguard_heap_owner_inuse_bytes_delta", target="t")
    assert sum(deltas.values()) == heap.delta_bytes.total_delta
    full = gr.parse((PPROF / "goroutine.debug2.txt").read_bytes(), "x")
    leak = gr.parse((PPROF / "goroutineleak.debug1.txt").read_bytes(), "x", kind="goroutineleak")
    ticker = next(g for g in gr.group(full) if g.function == "main.subscribe.func1")
    gor = one(ss, "cardguard_goroutines", target="t")
    groups = values(ss, "cardguard_goroutine_group_goroutines", target="t")
    assert sum(groups.values()) == gor == full.total
    sub = {k: v for k, v in groups.items() if dict(k)["function"] == "main.subscribe.func1"}
    assert list(sub.values()) == [ticker.count]
    (key,) = sub
    gid, creator = dict(key)["group"], dict(key)["created_by"]
    assert creator == "main.subscribe"
    assert one(ss, "cardguard_goroutine_group_leaked", group=gid) == leak.total
    assert one(ss, "cardguard_goroutine_group_max_wait_seconds", group=gid) % 60 == 0
    assert one(ss, "cardguard_goroutineleak_supported", target="t") == 1
    # The group's label set is the same from the counted round (no creator there) and after.
    ss1_groups = values(ss1, "cardguard_goroutine_group_goroutines", group=gid)
    w.collect_profiles()
    ss3 = samples([w.snapshot])
    assert set(values(ss3, "cardguard_goroutine_group_goroutines", group=gid)) == {key}
    assert ss1_groups  # shown in the first (counted, debug=0) round already


def test_health_series_for_dead_target() -> None:
    with dead_url() as url:
        w = make_worker(url, GlobalConfig(), name="dead", timeout=1.0)
        w.scrape_metrics()
        w.scrape_metrics()
    ss = samples([w.snapshot])
    assert one(ss, "cardguard_scrape_success", target="dead", endpoint="metrics") == 0
    assert one(ss, "cardguard_scrape_failures_total", endpoint="metrics", reason="connect") == 2
    assert values(ss, "cardguard_last_scrape_success_timestamp_seconds", target="dead") == {}
    # Endpoints never tried do not appear (no false 0 for goroutine_full).
    assert values(ss, "cardguard_scrape_success", endpoint="goroutine_full") == {}
    # No data yet: no cardinality series, but the capped flags are there for every kind.
    assert values(ss, "cardguard_target_series", target="dead") == {}
    assert len(values(ss, "cardguard_output_capped", target="dead")) == 5
    # A target is named by cardguard_target_info even while nothing answers, with the
    # host:port Prometheus labels its own scrape with (the Go-runtime rules join on it).
    port = w.target.url.rsplit(":", 1)[1]
    assert one(ss, "cardguard_target_info", target="dead", address=f"127.0.0.1:{port}") == 1


def test_offender_series_capped(server: local_http.Running) -> None:
    _profile_server(server)
    server.routes["/metrics"] = local_http.ok((TESTDATA / "metrics" / "demo-0.txt").read_bytes())
    w = make_worker(server.base_url, GlobalConfig())
    w.scrape_metrics()
    server.routes["/metrics"] = local_http.ok((TESTDATA / "metrics" / "demo-1.txt").read_bytes())
    w.scrape_metrics()
    w.collect_profiles()
    found = w.snapshot.offenders
    assert len(found) >= 2
    assert one(samples([w.snapshot]), "cardguard_output_capped", kind="offender") == 0
    capped = make_worker(server.base_url, GlobalConfig(caps=Caps(offenders=1)))
    capped.scrape_metrics()
    capped.collect_profiles()
    assert len(capped.snapshot.offenders) > 1
    assert one(samples([capped.snapshot]), "cardguard_output_capped", kind="offender") == 1
    ss = samples([w.snapshot], offender_cap=1)
    info = values(ss, "cardguard_offender_info", target="t")
    assert len(info) == 1
    (labels,) = info
    assert dict(labels)["id"] == found[0].id and dict(labels)["kind"] == found[0].kind
    counts = values(ss, "cardguard_offenders", target="t")
    assert sum(counts.values()) == len(found)
    assert {dict(k)["severity"] for k in counts} == {"info", "warning", "critical"}


def test_promtool_accepts_exposition(server: local_http.Running, tmp_path: Path) -> None:
    _profile_server(server)
    w = make_worker(server.base_url, GlobalConfig())
    w.scrape_metrics()
    w.collect_profiles()
    with dead_url() as url:
        dead = make_worker(url, GlobalConfig(), name="dead", timeout=1.0)
        dead.scrape_metrics()
    reg = CollectorRegistry(auto_describe=False)
    status = ReloadStatus(successful=False, success_timestamp=123.0)
    reg.register(ReloadCollector(status))
    for c in target_collectors(lambda: [w.snapshot, dead.snapshot], lambda: 50):
        reg.register(c)
    body = generate_latest(reg)
    out = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    text = body.decode()
    assert "cardguard_config_last_reload_successful 0.0" in text
    assert "cardguard_config_last_reload_success_timestamp_seconds 123.0" in text
    # HELP says where each value comes from.
    assert "# HELP cardguard_heap_owner_inuse_bytes In-use bytes allocated directly" in text
    assert "/debug/pprof/heap" in text
