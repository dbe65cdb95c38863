"""/probe: allow-list refusals, per-target state, the HA cache, expiry, file_sd, DNS pinning.

These drive ``probe.Prober`` directly against the real demo Go service; the
HTTP endpoint and the sharded setup are tested through ``cardguard serve``
in test_probe_serve.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from cardguard.errors import ConfigError
from cardguard.expose import probe
from cardguard.settings import allowlist
from cardguard.settings.checker import Ctx
from cardguard.settings.config import GlobalConfig
from cardguard.settings.probe import ProbeConfig, load_probe_config
from cardguard.settings.rules import DEFAULT_RULES, Rules
from support import Process


class Clock:
    """A settable clock, so cache and state expiry are tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def settings() -> tuple[GlobalConfig, Rules]:
    return GlobalConfig(), DEFAULT_RULES


def prober(clock: Clock, *allow: str, **kw: object) -> probe.Prober:
    cfg = ProbeConfig(allow=allowlist.build(allow), allow_entries=allow, **kw)  # type: ignore[arg-type]
    return probe.Prober(cfg, settings, clock=clock)


def series(body: bytes, name: str) -> list[str]:
    return [line for line in body.decode().splitlines() if line.startswith(name + "{")]


def test_probe_returns_derived_series_for_that_target(leaky_demo: Process) -> None:
    p = prober(Clock(), "127.0.0.1")
    r = p.probe(f"127.0.0.1:{leaky_demo.port}")
    assert r.status == 200, r.body
    name = f"127.0.0.1:{leaky_demo.port}"
    total = series(r.body, "cardguard_target_series")
    assert total and f'target="{name}"' in total[0]
    assert float(total[0].rsplit(" ", 1)[1]) > 10
    success = series(r.body, "cardguard_scrape_success")
    assert f'cardguard_scrape_success{{endpoint="metrics",target="{name}"}} 1.0' in success
    assert f'cardguard_scrape_success{{endpoint="heap",target="{name}"}} 1.0' in success


@pytest.mark.parametrize(
    ("target", "status", "reason"),
    [
        (None, 400, "missing_target"),
        ("file:///etc/passwd", 400, "scheme"),
        ("http://admin:hunter2@127.0.0.1:1", 403, "userinfo"),
        ("10.1.2.3:9100", 403, "address_not_allowed"),
        ("no-such-host.invalid:80", 403, "dns"),
        ("169.254.169.254:80", 403, "address_not_allowed"),
    ],
)
def test_refusals_are_4xx_with_reason_and_counted(
    target: str | None, status: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    p = prober(Clock(), "127.0.0.1", "127.0.0.0/8")
    r = p.probe(target)
    assert (r.status, r.reason) == (status, reason)
    assert f"probe refused ({reason})" in r.body.decode()
    assert p.stats().refused[reason] == 1
    assert sum(p.stats().refused.values()) == 1
    assert "hunter2" not in r.body.decode() + caplog.text


def test_deny_by_default() -> None:
    p = probe.Prober(ProbeConfig(), settings)
    r = p.probe("127.0.0.1:9100")
    assert r.status == 403 and "no allow-list" in r.body.decode()
    only_host = prober(Clock(), "app.internal:6060")
    r = only_host.probe("127.0.0.1:6060")
    assert (r.status, r.reason) == (403, "not_allowed")


def test_cache_serves_ha_pairs_and_state_persists(leaky_demo: Process) -> None:
    clock = Clock()
    p = prober(clock, "127.0.0.1", cache_ttl=10.0)
    target = f"127.0.0.1:{leaky_demo.port}"
    # Two Prometheus servers probing at once: one fetch between them.
    answers: list[probe.ProbeResponse] = []
    threads = [threading.Thread(target=lambda: answers.append(p.probe(target))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status for a in answers] == [200, 200]
    assert answers[0].body == answers[1].body
    s = p.stats()
    assert (s.fetches, s.cache_hits, s.targets) == (1, 1, 1)
    # After the TTL the target is fetched again, with the state kept from before:
    # the churn tracker has its baseline, so series-added counters now appear.
    clock.now += 11
    again = p.probe(target)
    assert p.stats().fetches == 2
    assert series(again.body, "cardguard_family_series_added_total") or series(
        again.body, "cardguard_label_values_growth_per_second"
    ), again.body.decode()[:2000]


def test_state_expires_and_lru_is_bounded(leaky_demo: Process) -> None:
    clock = Clock()
    p = prober(clock, "127.0.0.1", "localhost", state_ttl=60.0, max_targets=1)
    p.probe(f"127.0.0.1:{leaky_demo.port}")
    assert p.stats().targets == 1
    p.probe(f"localhost:{leaky_demo.port}")
    s = p.stats()
    assert (s.targets, s.evicted) == (1, 1)
    assert s.target_names == (f"localhost:{leaky_demo.port}",)
    clock.now += 61
    assert p.stats().targets == 0


def test_names_allowed_by_cidr_are_pinned_to_the_checked_address(leaky_demo: Process) -> None:
    p = prober(Clock(), "127.0.0.0/8")
    r = p.probe(f"localhost:{leaky_demo.port}")
    assert r.status == 200
    entry = next(iter(p._entries.values()))
    # The URL keeps the name (Host header, TLS); the fetcher connects to the checked address.
    # That a re-resolved name is never followed is shown with real servers in test_pinning.py.
    assert entry.worker.target.url == f"http://localhost:{leaky_demo.port}"
    assert entry.worker.target.addresses == ("127.0.0.1",)
    assert series(r.body, "cardguard_target_series"), r.body.decode()[:2000]


def test_file_sd_is_reread_when_it_changes(tmp_path: Path, leaky_demo: Process) -> None:
    sd = tmp_path / "targets.json"
    target = f"127.0.0.1:{leaky_demo.port}"
    sd.write_text(f'[{{"targets": ["{target}"]}}]')
    cfg = ProbeConfig(allow_file_sd=sd)
    p = probe.Prober(cfg, settings, clock=Clock())
    assert p.probe(target).status == 200
    sd.write_text('[{"targets": ["10.9.9.9:1"]}]')
    r = p.probe(target)
    assert (r.status, r.reason) == (403, "not_allowed")
    # A broken rewrite keeps the last good list rather than emptying it.
    sd.write_text("[{")
    assert p.probe("10.9.9.9:1").reason != "not_allowed"


def load(text: str, base: Path) -> ProbeConfig:
    ctx = Ctx("cardguard.yml", base)
    node = yaml.compose(text)
    cfg = load_probe_config(node, ctx)
    if ctx.problems:
        raise ConfigError("cardguard.yml", ctx.problems)
    return cfg


def test_probe_section_loads_and_reports_every_problem(tmp_path: Path) -> None:
    (tmp_path / "sd.yml").write_text("- targets: ['a:1']\n")
    cfg = load(
        "allow: ['*.svc:6060', 10.0.0.0/8]\nallow_file_sd: sd.yml\ncache_ttl: 5s\n"
        "state_ttl: 30m\nmax_targets: 3\nprofiles: {interval: 2m}\n",
        tmp_path,
    )
    assert cfg.cache_ttl == 5 and cfg.state_ttl == 1800 and cfg.max_targets == 3
    assert cfg.profiles.interval == 120 and cfg.allow_file_sd == tmp_path / "sd.yml"
    with pytest.raises(ConfigError) as err:
        load("allow: ['10.0.0.0/33']\ncache_ttl: soon\nmax_targets: 0\nbogus: 1\n", tmp_path)
    text = "\n".join(err.value.problems)
    for needle in (
        "cardguard.yml:1:",
        "invalid CIDR",
        "cardguard.yml:2: probe.cache_ttl: expected a duration",
        "cardguard.yml:3: probe.max_targets: must be at least 1",
        "cardguard.yml:4: probe.bogus: unknown key",
    ):
        assert needle in text, text


def test_prometheus_scrape_timeout_cuts_the_fetch(tmp_path: Path, leaky_demo: Process) -> None:
    """A target that drips forever is cut at Prometheus' deadline, not probe.timeout (60s)."""
    import sys

    from support import REPO, running_listener

    argv = [sys.executable, str(REPO / "tests" / "evil_target.py"), "--hostile"]
    argv += ["--good", leaky_demo.base_url]
    with running_listener(argv, tmp_path / "evil.log", "the evil target") as evil:
        p = prober(Clock(), "127.0.0.1", timeout=60.0)
        r = p.probe(f"http://127.0.0.1:{evil.port}/slow_drip", timeout_hint=2.0)
        assert r.status == 200
        name = f"127.0.0.1:{evil.port}"
        failed = f'endpoint="metrics",reason="timeout",target="{name}"'
        assert f"cardguard_scrape_failures_total{{{failed}}} 1.0" in r.body.decode()
        duration = series(r.body, "cardguard_scrape_duration_seconds")
        took = [float(d.rsplit(" ", 1)[1]) for d in duration if 'endpoint="metrics"' in d]
        assert took and took[0] < 10, took  # 1.5s budget, far below the configured 60s
        entry = next(iter(p._entries.values()))
        assert entry.base_target.timeout == 60.0  # the configured limit is kept for later probes
