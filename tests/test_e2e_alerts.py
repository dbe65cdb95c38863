"""End to end: leaks and cardguard's own failures reach an Alertmanager webhook; healthy is silent.

Real components only: the demo Go service (deploy/demo-service), ``cardguard
serve`` watching it, Debian's Prometheus scraping cardguard and the demo and
evaluating rules/, Debian's Alertmanager with deploy/alertmanager/alertmanager.yml,
and a webhook receiver in this process. Test-only changes, made in temporary
copies (see tests/opsstack.py): every ``for:`` in rules/ is divided by
opsstack.FOR_SCALE, and Alertmanager's group waits are cut to seconds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from demo_support import DEMO_FAST_FLAGS
from opsstack import (
    ALERTMANAGER_CONFIG,
    WebhookReceiver,
    address,
    alertmanager,
    cardguard_serve,
    longest_for,
    metrics_only_target,
    prometheus,
    prometheus_alerts,
    query,
    shortened_rules,
)
from support import REPO, TESTDATA, Process, dead_url, wait_for

pytestmark = pytest.mark.needs_go

# Bound for the leaks to travel demo -> cardguard -> Prometheus -> Alertmanager -> receiver.
LEAK_TIMEOUT = 180.0
RUNBOOK = (REPO / "docs" / "runbook.md").read_text()
# Rules the leaky demo (label explosion, ticker goroutine leak, unbounded cache) must fire.
# (CardguardLabelCardinalityHigh needs 10000 values: covered by promtool only, to keep
# the demo's page, and this test, small.)
LEAK_RULES = {
    "CardguardLabelExplosion",
    "CardguardTargetSeriesGrowing",
    "CardguardGoroutineLeakConfirmed",
    "CardguardGoroutineGroupGrowing",
    "CardguardHeapOwnerGrowing",
    "CardguardOffenderCritical",
    "CardguardOffenderWarning",
    "CardguardGoHeapObjectsGrowing",
    "CardguardGoGoroutinesTrendingUp",
}

Stack = tuple[WebhookReceiver, Process, Process]
# After every rule fired in Prometheus: how long a held-back notification would take to
# arrive anyway (opsstack quickens group_wait to 1s and group_interval to 2s).
NOTIFY_WINDOW = 5.0


@contextlib.contextmanager
def kit(tmp_path: Path, demo: Process, watch_alertmanager: bool = False) -> Iterator[Stack]:
    """Receiver, Alertmanager, cardguard watching ``demo``, and Prometheus scraping both.

    With ``watch_alertmanager``, the stack's own Alertmanager (a real, healthy Go
    service) is a second target, for cardguard and for Prometheus' Go-runtime rules.
    """
    rules = shortened_rules(tmp_path / "rules")
    with WebhookReceiver() as receiver, alertmanager(tmp_path, receiver) as am:
        targets = {"demo": demo.base_url}
        scrape = {"demo": address(demo)}
        if watch_alertmanager:
            targets["alertmanager"] = am.base_url
            scrape["alertmanager"] = address(am)
        with (
            cardguard_serve(tmp_path, targets) as cg,
            prometheus(tmp_path, {"cardguard": address(cg), **scrape}, rules, am.port) as prom,
        ):
            yield receiver, prom, cg


def firing(receiver: WebhookReceiver, name: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path, a)
        for path, a in receiver.alerts()
        if a["labels"]["alertname"] == name and a["status"] == "firing"
    ]


def check_annotations(alert: dict[str, Any]) -> None:
    name = alert["labels"]["alertname"]
    ann = alert["annotations"]
    assert set(ann) == {"summary", "description", "runbook_url"}
    assert "{{" not in ann["summary"] + ann["description"], "template not expanded"
    assert ann["runbook_url"].endswith("#" + name.lower())
    assert f"\n## {name}\n" in RUNBOOK


def distinct(receiver: WebhookReceiver) -> dict[tuple[str, ...], dict[str, Any]]:
    """Firing alerts that reached the receiver, one per alertname and grouping labels."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    group_by = config["route"]["group_by"]
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for _, a in receiver.alerts():
        if a["status"] == "firing":
            out[tuple(a["labels"].get(k, "") for k in group_by)] = a
    return out


def test_leaks_reach_the_receiver_once_per_cause(
    tmp_path: Path, demo_service: Callable[..., AbstractContextManager[Process]]
) -> None:
    # The demo plants three causes: a label explosion, a goroutine leak (the current Go
    # serves /debug/pprof/goroutineleak, which confirms it) and an unbounded cache.
    with demo_service("current", *DEMO_FAST_FLAGS) as demo, kit(tmp_path, demo) as stack:
        receiver, prom, cg = stack

        def causes() -> dict[str, dict[str, Any]]:
            out = {}
            for a in distinct(receiver).values():
                lab = a["labels"]
                if lab["alertname"].startswith("CardguardOffender"):
                    out[lab["kind"]] = a
            return out

        try:
            wait_for(
                lambda: set(causes()) >= {"label_explosion", "goroutine_leak", "heap_growth"},
                LEAK_TIMEOUT,
                "an offender notification for each planted cause",
            )
        except TimeoutError as exc:
            state = [(a["labels"]["alertname"], a["state"]) for a in prometheus_alerts(prom)]
            raise AssertionError(
                f"{exc}\nPrometheus alerts: {state}\nreceived: {receiver.alerts()}\n"
                f"cardguard log tail:\n{cg.logs()[-3000:]}"
            ) from None

        found = causes()
        explosion = found["label_explosion"]["labels"]
        assert explosion["alertname"] == "CardguardOffenderWarning"
        assert explosion["target"] == "demo" and explosion["label"] == "start_point"
        assert explosion["family"] == "demo_http_request_duration_seconds"
        leak = found["goroutine_leak"]["labels"]
        # confirmed by goroutineleak: critical, which holds back its own warning alert
        assert leak["alertname"] == "CardguardOffenderCritical", leak
        assert leak["function"].startswith("main.subscribe"), leak
        assert found["heap_growth"]["labels"]["function"].startswith("main."), found
        for a in found.values():
            check_annotations(a)
        paths = {p for p, a in receiver.alerts() if a["labels"].get("kind") == "goroutine_leak"}
        assert paths == {"/pager", "/chat"}, "critical pages, and reaches the chat too"

        # Every leak rule, threshold and Go-runtime trend ones too, fires on the real demo
        # in Prometheus (the promtool tests cover them on synthetic series) ...
        fired: set[str] = set()

        def not_fired() -> set[str]:
            fired.update(
                a["labels"]["alertname"] for a in prometheus_alerts(prom) if a["state"] == "firing"
            )
            return LEAK_RULES - fired

        try:
            wait_for(lambda: not not_fired(), LEAK_TIMEOUT, "every leak rule to fire", step=0.5)
        except TimeoutError:
            raise AssertionError(f"never fired on the leaky demo: {sorted(not_fired())}") from None
        # ... the Go-runtime ones with cardguard's target name, like cardguard's own ...
        trends = query(prom, 'ALERTS{alertname="CardguardGoGoroutinesTrendingUp"}')
        assert trends and {r["metric"].get("target") for r in trends} == {"demo"}, trends
        # ... and Alertmanager lets one alert per cause through: the offender alerts.
        time.sleep(NOTIFY_WINDOW)
        got = sorted((k[0], a["labels"].get("kind", "")) for k, a in distinct(receiver).items())
        assert got == [
            ("CardguardOffenderCritical", "goroutine_leak"),
            ("CardguardOffenderWarning", "heap_growth"),
            ("CardguardOffenderWarning", "label_explosion"),
        ], sorted(distinct(receiver))


def test_healthy_services_raise_no_alert(
    tmp_path: Path, demo_service: Callable[..., AbstractContextManager[Process]]
) -> None:
    with (
        demo_service("current", "-healthy") as demo,
        kit(tmp_path, demo, watch_alertmanager=True) as stack,
    ):
        receiver, prom, _ = stack
        # Silence only means something once every input of the rules is flowing.
        inputs = [
            'cardguard_scrape_success{target="demo", endpoint="metrics"} == 1',
            'cardguard_scrape_success{target="demo", endpoint="heap"} == 1',
            'cardguard_scrape_success{target="demo", endpoint=~"goroutine|goroutine_full"} == 1',
            'cardguard_target_series{target="demo"}',
            'cardguard_goroutines{target="demo"}',
            'cardguard_heap_inuse_bytes{target="demo"}',
            'cardguard_offenders{target="demo"}',
            'go_goroutines{job="demo"}',
            'up{job="cardguard"} == 1',
            # The real, healthy Go service next to it: Debian's Alertmanager.
            'cardguard_scrape_success{target="alertmanager", endpoint="metrics"} == 1',
            'cardguard_scrape_success{target="alertmanager", endpoint="heap"} == 1',
            'cardguard_target_series{target="alertmanager"}',
            'cardguard_goroutines{target="alertmanager"}',
            'go_goroutines{job="alertmanager"}',
        ]
        wait_for(lambda: all(query(prom, e) for e in inputs), 90, "cardguard and demo series")
        # Watch for longer than the longest (shortened) for: plus Alertmanager's group wait.
        window = longest_for() + 15
        seen: set[tuple[str, str, str]] = set()
        end = time.monotonic() + window
        while time.monotonic() < end:
            for a in prometheus_alerts(prom):
                seen.add((a["labels"]["alertname"], a["state"], str(a["labels"])))
            time.sleep(1)
        fired = {s for s in seen if s[1] == "firing"}
        assert not fired, f"alerts fired for a healthy service: {sorted(seen)}"
        assert receiver.alerts() == [], receiver.alerts()


def test_cardguard_health_alerts(
    tmp_path: Path, demo_service: Callable[..., AbstractContextManager[Process]]
) -> None:
    """A dead target, a target without pprof, capped output and cardguard itself going down."""
    rules = shortened_rules(tmp_path / "rules")
    page = TESTDATA / "metrics" / "prometheus.txt"  # a real page, served without pprof
    with (
        demo_service("current", *DEMO_FAST_FLAGS) as demo,
        metrics_only_target(page) as nopprof,
        dead_url() as dead,
        WebhookReceiver() as receiver,
        alertmanager(tmp_path, receiver) as am,
        cardguard_serve(
            tmp_path,
            {"dead": dead, "nopprof": nopprof, "demo": demo.base_url},
            extra_global={"caps": {"heap_owners": 2}},
        ) as cg,
        prometheus(tmp_path, {"cardguard": address(cg)}, rules, am.port) as prom,
    ):
        expected = {
            ("CardguardTargetDown", "dead"),
            ("CardguardTargetScrapeFailing", "dead"),
            ("CardguardProfilesNotCollected", "dead"),
            ("CardguardProfilesNotCollected", "nopprof"),
            ("CardguardOutputCapped", "demo"),
        }

        def missing() -> set[tuple[str, str]]:
            got = {
                (a["labels"]["alertname"], a["labels"].get("target", ""))
                for a in prometheus_alerts(prom)
                if a["state"] == "firing"
            }
            return expected - got

        try:
            wait_for(lambda: not missing(), LEAK_TIMEOUT, "cardguard health alerts")
        except TimeoutError:
            raise AssertionError(f"never fired: {sorted(missing())}") from None
        assert not query(prom, 'ALERTS{alertstate="firing", target="nopprof", '
                         'alertname="CardguardTargetScrapeFailing"}')  # fmt: skip
        capped = query(prom, 'ALERTS{alertname="CardguardOutputCapped", alertstate="firing"}')
        assert {r["metric"]["kind"] for r in capped} >= {"heap_owner"}

        # Routing and inhibition of what Alertmanager received: info goes to tickets,
        # and a target that answers nothing gets one alert, not one per endpoint.
        def received(name: str) -> dict[str, str]:
            return {a["labels"]["target"]: path for path, a in firing(receiver, name)}

        wait_for(
            lambda: (
                "nopprof" in received("CardguardProfilesNotCollected")
                and "demo" in received("CardguardOutputCapped")
                and "dead" in received("CardguardTargetDown")
            ),
            60,
            "health notifications",
        )
        assert received("CardguardOutputCapped")["demo"] == "/tickets"
        assert received("CardguardTargetDown")["dead"] == "/chat"
        assert "dead" not in received("CardguardTargetScrapeFailing"), "inhibition did not hold"
        assert "dead" not in received("CardguardProfilesNotCollected"), "inhibition did not hold"

        # A reload with a broken file keeps the old config and says so.
        (tmp_path / "cardguard" / "cardguard.yml").write_text("targets: [\n")
        r = requests.post(f"{cg.base_url}/-/reload", timeout=10)
        assert r.status_code == 400, r.text
        wait_for(
            lambda: bool(firing(receiver, "CardguardConfigReloadFailed")),
            60,
            "CardguardConfigReloadFailed notification",
        )
        path, alert = firing(receiver, "CardguardConfigReloadFailed")[0]
        assert path == "/chat" and alert["labels"]["instance"] == address(cg)
        check_annotations(alert)

        # cardguard itself goes away: CardguardDown pages.
        cg.stop()
        # Critical goes to the pager and, by `continue`, to the chat too; in either order.
        wait_for(
            lambda: {p for p, _ in firing(receiver, "CardguardDown")} >= {"/pager", "/chat"},
            60,
            "CardguardDown notifications on the pager and the chat",
        )
        path, alert = next(pa for pa in firing(receiver, "CardguardDown") if pa[0] == "/pager")
        assert alert["labels"]["severity"] == "critical"
        check_annotations(alert)
