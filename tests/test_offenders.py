"""Offender detection on snapshot sets recorded from real Go processes (tests/testdata/report/).

Regenerate the sets with ``tests/testdata/record.sh report``. The assertions
name what the recorded processes really did (the demo's bugs are in
deploy/demo-service/main.go), not figures copied from a previous run.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from cardguard.analyse.heap_sites import compute_library_use, frames_of, library_use, owners
from cardguard.analyse.view import (
    MEMORY_METRICS,
    GoroutinePoint,
    TargetView,
    metric_values,
    values_from_page,
)
from cardguard.commands.snapshots import load_saved
from cardguard.commands.watch import Watch
from cardguard.detect.children_heap_cost import MIN_SAMPLED_ALLOCATIONS, _children_heap_cost
from cardguard.detect.detectors import detect
from cardguard.detect.goroutine_leak import live_frames
from cardguard.detect.heap_growth import published
from cardguard.detect.offender import Offender, offender_id
from cardguard.settings.rulefile import load_rules_file
from cardguard.settings.rules import DEFAULT_RULES, SEVERITY_RANK, Rules
from support import TESTDATA

SETS = TESTDATA / "report"
FAMILY = "demo_http_request_duration_seconds"


def view_of(name: str, rules: Rules = DEFAULT_RULES, target: str = "demo") -> TargetView:
    w = Watch(target, rules)
    for snap, where in load_saved(SETS / name):
        w.add(snap, where)
    assert not w.notes, w.notes
    return w.view()


@pytest.fixture(scope="module")
def demo() -> TargetView:
    return view_of("demo-current")


@pytest.fixture(scope="module")
def demo119() -> TargetView:
    return view_of("demo-go1.19")


def one(found: list[Offender], kind: str, **evidence: str) -> Offender:
    hits = [
        o
        for o in found
        if o.kind == kind and all(o.evidence.get(k) == v for k, v in evidence.items())
    ]
    assert len(hits) == 1, [(o.kind, o.summary) for o in found]
    return hits[0]


def test_label_explosion_names_label_family_call_site_and_fix(demo: TargetView) -> None:
    found = detect(demo)
    o = one(found, "label_explosion", family=FAMILY, label="start_point")
    assert o.severity in ("warning", "critical")
    assert o.evidence["pattern"] == "url_path"
    assert all(x.startswith("/api/") for x in o.evidence["examples"])
    # the distinct values grew over the watch (the demo adds new URLs every second)
    trend = [p[1] for p in o.evidence["trend"]["points"]]
    assert trend == sorted(trend) and trend[-1] > trend[0]
    assert o.evidence["distinct_values"] == trend[-1]
    # the summary is the one sentence a person can act on
    assert o.summary.startswith(f"the start_point label on {FAMILY} creates a new series per URL")
    assert "quantile.newStream holds them" in o.summary
    # instrumentation call site from the heap profile: the demo's handler, not client_golang
    assert o.evidence["call_site"].startswith("main.apiHandler.ServeHTTP (")
    assert "main.go:" in o.evidence["call_site"]
    assert any("(*SummaryVec).WithLabelValues" in f for f in o.evidence["stack"])
    assert "protects Prometheus but NOT the target's own heap" in o.fix
    assert "main.apiHandler.ServeHTTP" in o.fix
    snippet = o.fix_snippet or ""
    assert "\nmetric_relabel_configs:\n" in snippet
    assert "source_labels: [__name__, start_point]" in snippet
    # detection alone has no live series to check a rewrite on: it offers none
    assert "target_label" not in snippet
    assert "action: drop" in snippet


def test_relabel_snippet_is_valid_for_prometheus(demo: TargetView, tmp_path: Path) -> None:
    """promtool accepts a scrape config carrying the suggested metric_relabel_configs."""
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    o = one(detect(demo), "label_explosion", family=FAMILY, label="start_point")
    body = "\n".join("    " + line for line in (o.fix_snippet or "").splitlines())
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "scrape_configs:\n  - job_name: demo\n    static_configs: [{targets: ['x:1']}]\n"
        + body
        + "\n"
    )
    proc = subprocess.run([promtool, "check", "config", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unchecked_relabel_snippet_drops_only_the_family(demo: TargetView) -> None:
    """Without the live series the snippet drops the family's series with the label, no more."""
    import yaml

    o = one(detect(demo), "label_explosion", family=FAMILY, label="start_point")
    steps = yaml.safe_load(o.fix_snippet or "")["metric_relabel_configs"]
    assert [s["action"] for s in steps] == ["drop"]
    regex = re.compile(steps[0]["regex"])
    for value in o.evidence["examples"]:
        assert regex.fullmatch(f"{FAMILY}_count;{value}")
        assert regex.fullmatch(f"{FAMILY};{value}")
    assert not regex.fullmatch(f"{FAMILY}_count;")
    assert not regex.fullmatch("demo_http_requests_total;/api/x")


def heap_costs(view: TargetView) -> list[Offender]:
    """The children_heap_cost offenders before they are folded into label explosions."""
    use = library_use(view.heaps[-1].profile)
    return _children_heap_cost(view, DEFAULT_RULES.for_target(view.target), use)


def test_children_heap_cost_joins_family_to_client_library_owner(demo: TargetView) -> None:
    found = detect(demo)
    o = one(heap_costs(demo), "children_heap_cost", family=FAMILY)
    ev = o.evidence
    # the type is the page's (# TYPE ... summary), not guessed from a function name
    assert ev["metric_type"] == "summary"
    assert ev["function"] == "github.com/beorn7/perks/quantile.newStream"
    # bytes per child measured over the watch: heap growth over children growth
    assert ev["bytes_per_child_from"].startswith("heap growth over children growth")
    points = ev["trend"]["points"]
    first = next(f for f in demo.metrics[0].families if f.name == FAMILY)
    grown = ev["children"] - first.children
    assert ev["bytes_per_child"] == round((points[-1][1] - points[0][1]) / grown)
    label = one(found, "label_explosion", family=FAMILY, label="start_point")
    # one child per distinct start_point (the method label has one value)
    assert ev["children"] == label.evidence["distinct_values"]
    assert ev["library_bytes"] <= ev["heap_inuse_bytes"]
    profile = demo.heaps[-1].profile
    assert ev["heap_inuse_bytes"] == profile.total("inuse_space")
    # the call site is the service's own code
    assert ev["call_site"].startswith("main.apiHandler.ServeHTTP (")
    assert ev["profiles_with_bytes"] >= 2
    assert "grew" in ev["why"] or "unbounded" in ev["why"]
    # One cause, one offender: the cost is evidence of the label explosion it comes from.
    assert not [x for x in found if x.kind == "children_heap_cost"]
    assert label.evidence["heap_cost"]["library_bytes"] == ev["library_bytes"]
    assert label.evidence["heap_cost"]["call_site"] == ev["call_site"]


def test_children_heap_cost_needs_growing_or_unbounded_children(demo: TargetView) -> None:
    # The same heap, but the page's vectors stay as they were at the start and
    # carry no unbounded label: bounded, pre-registered children are no offender.
    start = demo.metrics[0]
    bounded = dataclasses.replace(start, labels=())
    view = dataclasses.replace(demo, metrics=(bounded, bounded, bounded))
    assert not heap_costs(view)
    assert heap_costs(demo)


def test_children_heap_cost_ignores_one_profile_of_sampling_noise(demo: TargetView) -> None:
    # One profile whose children bytes rest on a handful of sampled allocations
    # (a 512 KiB sampling rate turns one sample into half a megabyte) is noise.
    last = demo.heaps[-1]
    noisy = dataclasses.replace(last.profile, period=512 * 1024 * 1024)
    use = compute_library_use(noisy)
    assert use.samples < MIN_SAMPLED_ALLOCATIONS
    view = dataclasses.replace(demo, heaps=(dataclasses.replace(last, profile=noisy),))
    assert not heap_costs(view)
    # The real profile (4 KiB rate) rests on thousands: named from one profile alone.
    alone = dataclasses.replace(demo, heaps=(last,))
    assert heap_costs(alone)


def test_goroutine_leak_names_function_creator_and_ticker(demo: TargetView) -> None:
    o = one(detect(demo), "goroutine_leak", function="main.subscribe.func1")
    ev = o.evidence
    assert ev["created_by"] == "main.subscribe"
    assert ev["blocking"] == "chan receive on a ticker"
    assert ev["made_at"].startswith("main.subscribe (")
    # Go 1.27 serves goroutineleak: the leak is confirmed, so it is critical
    assert ev["leaked"] > 0 and o.severity == "critical"
    assert ev["growth"] > 0
    counts = [p[1] for p in ev["trend"]["points"]]
    assert counts == sorted(counts)
    assert "main.subscribe" in o.summary and "ticker" in o.summary
    assert "Ticker.Stop does not close the channel" in o.fix


def test_goroutine_leak_without_goroutineleak_profile_is_growth(demo119: TargetView) -> None:
    assert demo119.leaks is None  # Go 1.19 has no goroutineleak endpoint
    o = one(detect(demo119), "goroutine_leak", function="main.subscribe.func1")
    assert o.severity == "warning"
    assert o.evidence["created_by"] == "main.subscribe"
    assert o.evidence["leaked"] is None
    assert any(r.startswith("grew from") for r in o.evidence["reasons"])


def test_heap_growth_owner_while_traffic_is_steady(demo: TargetView) -> None:
    found = [o for o in detect(demo) if o.kind == "heap_growth"]
    assert found, "the demo's unbounded cache grows the heap"
    o = found[0]
    assert o.evidence["function"].startswith("main.")
    assert o.evidence["growth_bytes"] >= DEFAULT_RULES.defaults.heap_growth.min_growth_bytes
    assert "demo_http_requests_total" in o.evidence["traffic_families"]
    assert o.evidence["traffic"].startswith("request rate steady")
    assert o.severity == "warning"


def test_heap_growth_that_follows_traffic_is_only_info(demo: TargetView) -> None:
    # The same heap profiles, with the request counter made to accelerate.
    points = []
    total = 0.0
    for i, p in enumerate(demo.metrics):
        total += 100.0 * (i + 1) ** 3
        values = dataclasses.replace(p.values, traffic=total)
        points.append(dataclasses.replace(p, values=values))
    view = dataclasses.replace(demo, metrics=tuple(points))
    growth = [o for o in detect(view) if o.kind == "heap_growth"]
    assert growth and all(o.severity == "info" for o in growth)
    assert all("may follow load" in o.evidence["traffic"] for o in growth)


def test_one_step_of_heap_growth_is_not_a_leak(demo: TargetView) -> None:
    # The demo's real profiles, but the heap stops growing after the first interval (a
    # start-up allocation such as Prometheus' tsdb.newStripeSeries looks like this).
    first, second = demo.heaps[0], demo.heaps[1]
    # A later profile (a GC completed: another owner changed) in which the owner is flat.
    other = next(
        smp
        for smp in second.profile.samples
        if not any(f.function.startswith("main.") for f in frames_of(second.profile, smp.stack))
    )
    later = dataclasses.replace(second.profile, samples=(*second.profile.samples, other))
    flat = dataclasses.replace(demo.heaps[-1], profile=later)
    view = dataclasses.replace(demo, heaps=(first, second, flat))
    assert not [o for o in detect(view) if o.kind == "heap_growth"]
    # With only two snapshots one step is all there is: named, but only as info.
    two = dataclasses.replace(demo, heaps=(first, demo.heaps[-1]))
    growth = [o for o in detect(two) if o.kind == "heap_growth"]
    assert growth and all(o.severity == "info" for o in growth)


def test_a_profile_no_gc_rewrote_is_not_a_flat_interval() -> None:
    """The cache-only demo watched 12s at 4s (the verdict matrix's row, saved with --save).

    Go rewrites the heap profile only when a GC completes; a leaking heap doubles its GC
    goal each cycle, so no GC came in the last interval and the last two profiles are the
    same. That is no news, not a heap that stopped growing.
    """
    view = view_of("demo-cache-no-gc")
    owner = "main.renderSection"
    values = [owners(h.profile).inuse.get(owner, 0) for h in view.heaps]
    assert values[-1] == values[-2] > values[0]
    assert len(published(view.heaps)) == len(view.heaps) - 1
    (o,) = [o for o in detect(view) if o.kind == "heap_growth"]
    assert o.function == owner and o.severity == "warning"
    # the trend shows the published profiles only
    assert len(o.evidence["trend"]["points"]) == len(view.heaps) - 1


def test_heap_that_appears_during_the_watch_counts_from_where_it_shows(demo: TargetView) -> None:
    # A first profile without the owner (the healthy demo's), then the leaky demo's: the
    # owner appears from zero, as a start-up table does when the profile publishes it two
    # GC cycles late (Prometheus' tsdb.newStripeSeries on a loaded machine).
    empty = view_of("demo-healthy").heaps[0]
    owner = "main.renderSection"
    assert owners(empty.profile).inuse.get(owner, 0) == 0
    h = demo.heaps
    at = [h[0].at - 3.0, *(x.at for x in h)]
    appeared = (dataclasses.replace(empty, at=at[0]), h[1], h[2])
    view = dataclasses.replace(demo, heaps=appeared)
    found = [o for o in detect(view) if o.kind == "heap_growth" and o.function == owner]
    # one step of growth after it showed: at most info
    assert all(o.severity == "info" for o in found)
    # It keeps growing after it showed: still a leak.
    view = dataclasses.replace(demo, heaps=(dataclasses.replace(empty, at=at[0]), *h))
    (o,) = [o for o in detect(view) if o.kind == "heap_growth" and o.function == owner]
    assert o.severity == "warning"


@pytest.mark.parametrize("name", ["demo-healthy", "prometheus"])
def test_healthy_services_name_nothing_serious(name: str) -> None:
    view = view_of(name, target=name)
    assert len(view.metrics) >= 2 and len(view.heaps) >= 2 and view.goroutines
    found = detect(view)
    assert [o for o in found if SEVERITY_RANK[o.severity] > SEVERITY_RANK["info"]] == []


def test_worst_first(demo: TargetView) -> None:
    found = detect(demo)
    ranks = [SEVERITY_RANK[o.severity] for o in found]
    assert ranks == sorted(ranks, reverse=True)
    assert found[0].severity == "critical"


def test_ids_are_stable_and_distinct(demo: TargetView) -> None:
    a = detect(demo)
    b = detect(view_of("demo-current"))
    assert [o.id for o in a] == [o.id for o in b]
    assert len({o.id for o in a}) == len(a)
    other = detect(dataclasses.replace(demo, target="other"))
    assert not {o.id for o in a} & {o.id for o in other}
    o = one(a, "label_explosion", family=FAMILY, label="start_point")
    assert o.id == offender_id("label_explosion", "demo", f"{FAMILY}\x00start_point")


def test_json_shape(demo: TargetView) -> None:
    for o in detect(demo):
        d = o.to_dict()
        assert {"id", "kind", "severity", "summary", "evidence", "fix"} <= set(d)
        ev = d["evidence"]
        if d["kind"] == "label_explosion":
            assert ev["family"] and ev["label"]
        elif d["kind"] in ("goroutine_leak", "heap_growth"):
            assert ev["function"]
        elif d["kind"] == "children_heap_cost":
            assert ev["family"] and ev["function"]


# --- rules change the outcome -----------------------------------------------------------


def rules_from(tmp_path: Path, text: str) -> Rules:
    p = tmp_path / "rules.yml"
    p.write_text(text)
    return load_rules_file(p)


def test_allow_list_silences_a_family(demo: TargetView, tmp_path: Path) -> None:
    rules = rules_from(tmp_path, f"rules:\n  allow: {{families: ['{FAMILY}']}}\n")
    kinds = {(o.kind, o.family) for o in detect(demo, rules)}
    assert ("label_explosion", FAMILY) not in kinds
    assert ("children_heap_cost", FAMILY) not in kinds


def test_per_label_override_and_ignore(demo: TargetView, tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        "rules:\n  overrides:\n    - {family: 'demo_*', label: start_point, severity: critical}\n",
    )
    o = one(detect(demo, rules), "label_explosion", family=FAMILY, label="start_point")
    assert o.severity == "critical"
    rules = rules_from(
        tmp_path, "rules:\n  overrides:\n    - {label: 're:start_.*', ignore: true}\n"
    )
    assert not [o for o in detect(demo, rules) if o.kind == "label_explosion"]


def test_per_target_override(demo: TargetView, tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        "rules:\n  targets:\n    demo:\n      label_explosion:\n"
        "        distinct_values: 100000\n        distinct_values_any: 100000\n"
        "        growth_per_hour: 1e12\n        series_share: 1.0\n"
        "        min_share_values: 100000\n",
    )
    assert not [o for o in detect(demo, rules) if o.kind == "label_explosion"]
    # another target keeps the defaults
    other = dataclasses.replace(demo, target="other")
    assert [o for o in detect(other, rules) if o.kind == "label_explosion"]


def test_deny_list_makes_a_bounded_label_an_offender(demo: TargetView, tmp_path: Path) -> None:
    assert not [o for o in detect(demo) if o.label == "code"]
    rules = rules_from(tmp_path, "rules:\n  deny: {labels: [code], min_distinct_values: 1}\n")
    o = one(detect(demo, rules), "label_explosion", family="demo_http_requests_total", label="code")
    assert o.severity == "warning"
    assert o.evidence["reasons"][0] == "the rules deny this label"


def test_goroutine_limits_from_rules(demo: TargetView, tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path, "rules:\n  goroutine_leak: {leaked_severity: info, severity: info}\n"
    )
    o = one(detect(demo, rules), "goroutine_leak", function="main.subscribe.func1")
    assert o.severity == "info"
    rules = rules_from(tmp_path, "rules:\n  goroutine_leak: {min_growth: 1000000}\n")
    demo_no_leak = dataclasses.replace(demo, leaks=None)
    assert not [o for o in detect(demo_no_leak, rules) if o.kind == "goroutine_leak"]


def test_misleading_memory_is_explained_and_never_a_leak(tmp_path: Path) -> None:
    view = view_of("prometheus", target="prometheus")
    m = view.metrics[-1].values.memory
    rss, heap = m["process_resident_memory_bytes"], m["go_memstats_heap_inuse_bytes"]
    assert rss > heap
    # Tighten the rule until the real figures qualify.
    rules = rules_from(
        tmp_path, "rules:\n  misleading_memory: {rss_heap_ratio: 1, min_gap_bytes: 0}\n"
    )
    o = one(detect(view, rules), "misleading_memory")
    assert o.severity == "info"
    assert "this is not a leak" in o.summary
    assert o.evidence["heap_inuse_bytes"] == heap and o.evidence["resident_bytes"] == rss
    assert o.evidence["ratio"] == round(rss / heap, 2)
    assert o.evidence["explanation"]
    parts = o.evidence["breakdown"]
    assert parts["heap_released_bytes"] == round(m["go_memstats_heap_released_bytes"])
    # with the default rule the same service is not worth a line
    assert not [o for o in detect(view) if o.kind == "misleading_memory"]


def test_container_usage_beyond_rss_is_page_cache(tmp_path: Path) -> None:
    view = view_of("prometheus", target="prometheus")
    last = view.metrics[-1]
    rss = last.values.memory["process_resident_memory_bytes"]
    values = dataclasses.replace(last.values, container_memory_bytes=rss * 6)
    view = dataclasses.replace(
        view, metrics=(*view.metrics[:-1], dataclasses.replace(last, values=values))
    )
    o = one(detect(view), "misleading_memory")
    assert o.severity == "info"
    assert o.summary.startswith("container usage")
    assert any("page cache" in e for e in o.evidence["explanation"])


def test_empty_view_has_no_offenders() -> None:
    assert detect(TargetView("nothing")) == []


def test_metric_values_sum_request_counters() -> None:
    samples = [
        ("demo_http_requests_total", 5.0),
        ("demo_http_requests_total", 7.0),
        ("http_server_requests_seconds_count", 3.0),
        ("http_server_requests_seconds_sum", 100.0),
        ("process_resident_memory_bytes", 10.0),
        ("go_goroutines", 4.0),
    ]
    v = metric_values(samples, DEFAULT_RULES.defaults.heap_growth.traffic_metric)
    assert v.traffic == 15.0
    assert v.traffic_families == ("demo_http_requests_total", "http_server_requests_seconds")
    assert v.memory == {"process_resident_memory_bytes": 10.0}


def test_deny_list_of_families_gives_one_offender_per_family(tmp_path: Path) -> None:
    text = "rules:\n  deny: {families: ['demo_http_*'], min_distinct_values: 1}\n"
    rules = rules_from(tmp_path, text)
    view = view_of("demo-healthy", rules, target="demo-healthy")
    assert detect(view) == []
    found = [o for o in detect(view, rules) if o.family == "demo_http_requests_total"]
    assert len(found) == 1
    denied = {o.family for o in detect(view, rules)}
    assert denied == {"demo_http_requests_total", "demo_http_request_duration_seconds"}
    o = found[0]
    assert o.evidence["reasons"] == ["the rules deny this family"]
    labels = [st for st in view.metrics[-1].labels if st.family == "demo_http_requests_total"]
    assert o.label == max(labels, key=lambda st: st.distinct_values).label


def test_without_a_full_dump_the_creator_and_ticker_still_show() -> None:
    # Over the debug=2 limit only debug=1 stacks exist: no wait state, no creator.
    w = Watch("demo", DEFAULT_RULES)
    for snap, where in load_saved(SETS / "demo-current"):
        snap.goroutine_full = None
        w.add(snap, where)
    view = w.view()
    o = one(detect(view), "goroutine_leak", function="main.subscribe.func1")
    assert o.evidence["state"] is None
    assert o.evidence["created_by"] == "main.subscribe"  # the closure's enclosing function
    # the proto goroutine profile keeps the runtime frames the goroutine parks in
    assert o.evidence["blocking"] == "chan receive on a ticker"
    assert o.evidence["made_at"].startswith("main.subscribe (")
    # with only debug=1 text there is nothing to name the operation by
    o = one(
        detect(dataclasses.replace(view, goroutine_profile=None)),
        "goroutine_leak",
        function="main.subscribe.func1",
    )
    assert o.evidence["blocking"].startswith("a wait on a ticker")
    assert o.evidence["stack"] == ["main.subscribe.func1 (demo-service/main.go:175)"]


def test_goroutine_stack_has_file_and_line(demo: TargetView) -> None:
    o = one(detect(demo), "goroutine_leak", function="main.subscribe.func1")
    stack = o.evidence["stack"]
    assert any(f.startswith("runtime.chanrecv") for f in stack)
    last = stack[-1]
    assert last.startswith("main.subscribe.func1 (") and re.search(r"main\.go:\d+\)$", last)


@pytest.mark.parametrize(
    ("name", "fmt"), [("omserver.om.txt", "openmetrics"), ("omserver.txt", "text")]
)
def test_values_from_recorded_pages_in_both_formats(name: str, fmt: str) -> None:
    """The same process scraped as OpenMetrics and as text gives the same traffic and memory."""
    data = (TESTDATA / "metrics" / name).read_bytes()
    traffic = DEFAULT_RULES.defaults.heap_growth.traffic_metric
    v = values_from_page(data, fmt, name, traffic)  # type: ignore[arg-type]
    assert v.traffic_families == ("omserver_http_requests_total",)
    expected = sum(
        float(line.rsplit(" ", 1)[1])
        for line in data.decode().splitlines()
        if line.startswith("omserver_http_requests_total{")
    )
    assert v.traffic == expected
    assert v.memory["go_memstats_heap_inuse_bytes"] > 0
    assert set(v.memory) <= set(MEMORY_METRICS)


def test_json_stays_valid_with_nan_and_idle_traffic(demo: TargetView) -> None:
    import json
    import math

    v = metric_values(
        [("go_memstats_heap_inuse_bytes", math.nan), ("x_requests_total", math.inf)],
        DEFAULT_RULES.defaults.heap_growth.traffic_metric,
    )
    assert v.memory == {} and v.traffic is None
    # traffic that starts from zero during the watch: growth may follow load
    points = []
    for i, p in enumerate(demo.metrics):
        values = dataclasses.replace(p.values, traffic=0.0 if i < 2 else 500.0)
        points.append(dataclasses.replace(p, values=values))
    view = dataclasses.replace(demo, metrics=tuple(points))
    growth = [o for o in detect(view) if o.kind == "heap_growth"]
    assert growth and all(o.severity == "info" for o in growth)
    for o in detect(view):
        json.dumps(o.to_dict(), allow_nan=False)


def test_growth_alone_makes_a_label_explosion(tmp_path: Path) -> None:
    # Only the growth rule can fire: static thresholds out of reach.
    rules = rules_from(
        tmp_path,
        "rules:\n  label_explosion:\n    distinct_values: 1000000\n"
        "    distinct_values_any: 1000000\n    series_share: 1.0\n"
        "    min_share_values: 1000000\n",
    )
    found = detect(view_of("demo-current", rules), rules)
    o = one(found, "label_explosion", family=FAMILY, label="start_point")
    assert len(o.evidence["reasons"]) == 1 and o.evidence["reasons"][0].startswith("growing by")
    first, last = o.evidence["trend"]["points"][0], o.evidence["trend"]["points"][-1]
    assert o.evidence["new_values"] >= last[1] - first[1] > 0
    # a label that does not grow is not an offender under the same rules
    assert not [x for x in found if x.kind == "label_explosion" and x.label != "start_point"]


def test_goroutines_blocked_past_the_limit(tmp_path: Path) -> None:
    """A Go 1.19 dump (tests/testdata/pprof, recorded over a minute after the leak stopped)."""
    from cardguard.pprof import goroutines as gr

    data = (TESTDATA / "pprof" / "go1.19" / "goroutine.debug2.txt").read_bytes()
    snap = gr.parse(data, "goroutine.debug2.txt")
    view = TargetView("old", goroutines=(GoroutinePoint.of(snap, 0.0),))
    # one snapshot, no leak profile: only the wait-time rule can fire, and not at 10m
    assert detect(view) == []
    rules = rules_from(tmp_path, "rules:\n  goroutine_leak: {max_wait: 1m, min_blocked: 10}\n")
    o = one(detect(view, rules), "goroutine_leak", function="main.subscribe.func1")
    assert o.severity == "info"  # blocked_severity: long waits may be a worker pool
    assert o.evidence["max_wait_seconds"] >= 60
    assert o.evidence["reasons"][0].endswith("(limit 1)")
    assert o.evidence["blocking"] == "chan receive"
    rules = rules_from(
        tmp_path, "rules:\n  goroutine_leak: {max_wait: 1m, blocked_severity: critical}\n"
    )
    assert one(detect(view, rules), "goroutine_leak", function="main.subscribe.func1").severity == (
        "critical"
    )


# --- what a healthy, widely used Go server showed (tests/testdata/record_report.py)


@pytest.mark.parametrize("name", ["etcd-gzip-1", "etcd-gzip-2"])
def test_scrape_in_flight_on_a_bounded_vector_is_no_children_cost(name: str) -> None:
    view = view_of(name, target="etcd")
    last = view.metrics[-1]
    grpc = next(f for f in last.families if f.name == "grpc_server_handled_total")
    # ~700 pre-registered gRPC method x code counters, the same at every scrape ...
    assert grpc.metric_type == "counter" and grpc.children >= 600
    assert {f.children for p in view.metrics for f in p.families if f.name == grpc.name} == {
        grpc.children
    }
    # ... while a gzip /metrics response was being built in the heap (Gather,
    # processMetric, flate), in some profile of the watch.
    uses = [library_use(h.profile) for h in view.heaps]
    assert max(u.transient for u in uses) > 0
    found = detect(view)
    assert not [o for o in found if o.kind == "children_heap_cost"]
    assert [o for o in found if SEVERITY_RANK[o.severity] > SEVERITY_RANK["info"]] == []


def test_live_watch_streams_are_one_info_offender_worded_as_live_work() -> None:
    # etcd while 600 clients open watch streams: connection readers, stream send and
    # receive loops and per-stream handlers grow together, one cause.
    view = view_of("etcd-watch", target="etcd")
    assert view.goroutines[-1].total > view.goroutines[0].total + 1000
    found = detect(view)
    assert [o for o in found if SEVERITY_RANK[o.severity] > SEVERITY_RANK["info"]] == []
    (o,) = [o for o in found if o.kind == "goroutine_leak"]
    assert o.severity == "info" and o.evidence["live_work"]
    assert "live work" in o.summary and "never returns" not in o.summary
    assert "leave" in o.summary
    joined = {m["function"] for m in o.evidence["same_cause"]}
    assert "go.etcd.io/etcd/etcdserver/api/v3rpc.(*serverWatchStream).sendLoop" in joined
    assert "go.etcd.io/etcd/etcdserver/api/v3rpc.(*watchServer).Watch" in joined
    assert len(joined) >= 4
    # The watchers' heap (one watch stream each) follows the clients too: info at most.
    assert all(x.severity == "info" for x in found if x.kind == "heap_growth")


def test_a_leak_that_grows_beside_live_streams_is_still_named() -> None:
    # The etcd watch, with the demo's ticker leak (Go 1.27, goroutineleak) next to it:
    # live work does not hide a leak of another cause.
    etcd = view_of("etcd-watch", target="etcd")
    demo = view_of("demo-current")
    points = []
    for e, d in zip(etcd.goroutines[-3:], demo.goroutines, strict=True):
        points.append(GoroutinePoint(at=e.at, total=e.total + d.total, groups=e.groups + d.groups))
    view = dataclasses.replace(etcd, goroutines=tuple(points), leaks=demo.leaks)
    leaks = [o for o in detect(view) if o.kind == "goroutine_leak"]
    named = [o for o in leaks if o.function == "main.subscribe.func1"]
    assert len(named) == 1 and named[0].severity == "critical"
    assert "never returns" in named[0].summary
    assert all(o.severity == "info" for o in leaks if o is not named[0])


def test_a_handler_that_blocks_inside_a_connection_is_not_live_work() -> None:
    # Stacks as Go prints them, innermost first: a connection's read is live work; the
    # service's own handler waiting inside net/http's connection loop is its own wait.
    read = ["internal/poll.runtime_pollWait", "net.(*netFD).Read", "net/http.(*connReader).read"]
    handler = [
        "main.(*api).waitForever",
        "net/http.HandlerFunc.ServeHTTP",
        "net/http.(*conn).serve",
    ]
    stream = ["google.golang.org/grpc/internal/transport.(*recvBufferReader).readClient"]
    assert live_frames(read) == "parked in a network read"
    assert live_frames(stream) == "serving an RPC stream"
    assert live_frames(handler) is None
