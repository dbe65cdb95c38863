"""``cardguard serve`` as a subprocess on real Go targets, checked by promtool and Prometheus.

Targets: the leaky demo service (deploy/demo-service) built with a current Go
(serves goroutineleak) and with Go 1.19 (does not), plus a dead port.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

import local_http
import promstack
from support import Process, cardguard_argv, dead_url, running_cardguard, wait_for

Samples = dict[str, list[tuple[dict[str, str], float]]]


def write_config(path: Path, targets: list[dict[str, object]]) -> None:
    cfg = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "targets": targets}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def samples(base_url: str) -> Samples:
    text = requests.get(f"{base_url}/metrics", timeout=5).text
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(ss: Samples, name: str, **labels: str) -> float | None:
    for lv, v in ss.get(name, []):
        if all(lv.get(k) == want for k, want in labels.items()):
            return v
    return None


def start_cardguard(config: Path, log: Path, *extra: str) -> AbstractContextManager[Process]:
    argv = cardguard_argv(
        "serve",
        f"--config.file={config}",
        "--web.listen-address=127.0.0.1:0",
        "--log.format=json",
        *extra,
    )
    return running_cardguard(argv, log)


@pytest.fixture(scope="module")
def dead() -> Iterator[str]:
    """A target URL where connecting is refused, held for the module."""
    with dead_url() as url:
        yield url


@pytest.fixture(scope="module")
def old_demo(
    demo_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    from demo_support import start_demo

    if "go1.19" not in demo_binaries:
        pytest.skip("Debian Go 1.19 not installed")
    log = tmp_path_factory.mktemp("old-demo") / "demo.log"
    with start_demo(demo_binaries["go1.19"], log) as proc:
        yield proc


@pytest.fixture(scope="module")
def serve(
    leaky_demo: Process, old_demo: Process, dead: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    d = tmp_path_factory.mktemp("serve")
    cfg = d / "cardguard.yml"
    profiles = {"interval": "1s", "goroutine_full_max": 100000}
    write_config(
        cfg,
        [
            {"name": "leaky", "url": leaky_demo.base_url, "profiles": profiles},
            {"name": "old", "url": old_demo.base_url, "profiles": profiles},
            {"name": "dead", "url": dead, "timeout": "500ms"},
        ],
    )
    with start_cardguard(cfg, d / "cardguard.log") as proc:

        def everything_seen() -> bool:
            ss = samples(proc.base_url)
            return (
                value(ss, "cardguard_scrape_success", target="leaky", endpoint="metrics") == 1
                and value(ss, "cardguard_scrape_success", target="leaky", endpoint="heap") == 1
                and value(ss, "cardguard_goroutineleak_supported", target="leaky") == 1
                and value(ss, "cardguard_goroutineleak_supported", target="old") == 0
                and value(ss, "cardguard_heap_owner_inuse_bytes_delta", target="leaky") is not None
                and value(ss, "cardguard_goroutine_group_leaked", target="leaky") is not None
            )

        wait_for(everything_seen, 90, "cardguard to scrape metrics and profiles of both demos")
        yield proc


def test_real_go_targets_are_analysed(serve: Process, leaky_demo: Process) -> None:
    ss = samples(serve.base_url)
    fam = "demo_http_request_duration_seconds"
    assert (value(ss, "cardguard_family_series", target="leaky", family=fam) or 0) > 100
    start_points = value(
        ss, "cardguard_label_distinct_values", target="leaky", family=fam, label="start_point"
    )
    assert start_points is not None and start_points > 50
    # Cross-check against the target's own page, parsed by prometheus_client.
    own = requests.get(f"{leaky_demo.base_url}/metrics", timeout=5).text
    seen = {
        s.labels["start_point"]
        for f in text_string_to_metric_families(own)
        for s in f.samples
        if f.name == fam and "start_point" in s.labels
    }
    assert abs(len(seen) - start_points) <= len(seen) * 0.5  # the demo keeps adding paths
    assert (value(ss, "cardguard_heap_inuse_bytes", target="leaky") or 0) > 0
    assert (value(ss, "cardguard_goroutines", target="leaky") or 0) > 0
    ticker = [
        (lv, v)
        for lv, v in ss["cardguard_goroutine_group_goroutines"]
        if lv["target"] == "leaky" and lv["function"] == "main.subscribe.func1"
    ]
    assert len(ticker) == 1 and ticker[0][1] > 0
    assert ticker[0][0]["created_by"] == "main.subscribe"
    leaked = value(
        ss, "cardguard_goroutine_group_leaked", target="leaky", group=ticker[0][0]["group"]
    )
    assert leaked is not None and leaked > 0
    # Go 1.19 has no goroutineleak endpoint: remembered, not counted as failing.
    assert (
        value(ss, "cardguard_scrape_failures_total", target="old", endpoint="goroutineleak") is None
    )
    assert value(ss, "cardguard_scrape_success", target="old", endpoint="metrics") == 1


def test_dead_target_does_not_stop_the_others(serve: Process) -> None:
    ss = samples(serve.base_url)
    assert value(ss, "cardguard_scrape_success", target="dead", endpoint="metrics") == 0
    assert (
        value(
            ss,
            "cardguard_scrape_failures_total",
            target="dead",
            endpoint="metrics",
            reason="connect",
        )
        or 0
    ) >= 1
    first = value(
        ss, "cardguard_last_scrape_success_timestamp_seconds", target="leaky", endpoint="metrics"
    )
    assert first is not None

    def advanced() -> bool:
        later = value(
            samples(serve.base_url),
            "cardguard_last_scrape_success_timestamp_seconds",
            target="leaky",
            endpoint="metrics",
        )
        return later is not None and later > first

    wait_for(advanced, 10, "the leaky target to be scraped again")


def test_structured_failure_logs(serve: Process) -> None:
    lines = [json.loads(line) for line in serve.logs().splitlines() if line.startswith("{")]
    failures = [r for r in lines if r.get("target") == "dead" and r.get("endpoint") == "metrics"]
    assert failures, serve.logs()[-2000:]
    assert failures[0]["reason"] == "connect" and failures[0]["level"] == "warn"


def test_promtool_accepts_metrics_page(serve: Process) -> None:
    body = requests.get(f"{serve.base_url}/metrics", timeout=5).content
    out = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    assert b"cardguard_target_series" in body and b"process_resident_memory_bytes" in body


def test_openmetrics_negotiation(serve: Process) -> None:
    r = requests.get(
        f"{serve.base_url}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=5,
    )
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")
    names = {f.name for f in om_parse(r.text)}
    assert {"cardguard_scrape_success", "cardguard_scrape_failures"} <= names


def test_real_prometheus_ingests_cardguard(serve: Process, tmp_path: Path) -> None:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "cardguard", "static_configs": [{"targets": [f"127.0.0.1:{serve.port}"]}]}
        ],
    }
    with promstack.prometheus(tmp_path, config) as prom:

        def ingested() -> bool:
            up = promstack.query(prom, 'up{job="cardguard"}')
            series = promstack.query(prom, 'cardguard_family_series{target="leaky"}')
            dead = promstack.query(prom, 'cardguard_scrape_success{target="dead"}')
            return bool(up and up[0]["value"][1] == "1" and series and dead)  # type: ignore[index]

        wait_for(ingested, 60, "Prometheus to ingest cardguard's series")
        targets = requests.get(f"{prom.base_url}/api/v1/targets", timeout=5).json()
        active = targets["data"]["activeTargets"]
        assert active[0]["health"] == "up" and active[0]["lastError"] == ""
        names = requests.get(f"{prom.base_url}/api/v1/label/__name__/values", timeout=5).json()
        cardguard_names = {n for n in names["data"] if n.startswith("cardguard_")}
        assert {
            "cardguard_scrape_success",
            "cardguard_scrape_failures_total",
            "cardguard_label_distinct_values",
            "cardguard_heap_owner_inuse_bytes",
            "cardguard_goroutine_group_goroutines",
            "cardguard_config_last_reload_successful",
        } <= cardguard_names


def test_pages(serve: Process) -> None:
    landing = requests.get(serve.base_url + "/", timeout=5)
    assert landing.status_code == 200 and "text/html" in landing.headers["Content-Type"]
    for text in ('href="metrics"', 'href="report"', "leaky", "old", "dead", "failing (connect)"):
        assert text in landing.text
    report = requests.get(serve.base_url + "/report", timeout=30)
    assert report.status_code == 200 and "text/html" in report.headers["Content-Type"]
    assert "leaky" in report.text and "start_point" in report.text
    assert requests.get(serve.base_url + "/-/healthy", timeout=5).status_code == 200
    assert requests.get(serve.base_url + "/nope", timeout=5).status_code == 404
    assert requests.get(serve.base_url + "/-/reload", timeout=5).status_code == 405


def test_reload_keeps_old_config_when_invalid(tmp_path: Path, dead: str) -> None:
    cfg = tmp_path / "cardguard.yml"
    write_config(cfg, [{"name": "one", "url": dead, "profiles": {"enabled": False}}])
    with start_cardguard(cfg, tmp_path / "cardguard.log", "--web.enable-lifecycle") as proc:
        base = proc.base_url
        wait_for(
            lambda: value(samples(base), "cardguard_scrape_success", target="one") == 0,
            20,
            "first scrape",
        )
        good_ts = value(samples(base), "cardguard_config_last_reload_success_timestamp_seconds")
        cfg.write_text("targets:\n  - name: two\n    url: http://127.0.0.1:1\n    interval: fast\n")
        r = requests.post(base + "/-/reload", timeout=10)
        assert r.status_code == 400 and "targets[0].interval" in r.text
        ss = samples(base)
        assert value(ss, "cardguard_config_last_reload_successful") == 0
        assert value(ss, "cardguard_config_last_reload_success_timestamp_seconds") == good_ts
        assert value(ss, "cardguard_scrape_success", target="one") == 0  # still running
        assert "last reload failed" in requests.get(base + "/", timeout=5).text

        write_config(cfg, [{"name": "two", "url": dead, "profiles": {"enabled": False}}])
        r = requests.post(base + "/-/reload", timeout=10)
        assert r.status_code == 200
        wait_for(
            lambda: value(samples(base), "cardguard_scrape_success", target="two") == 0,
            20,
            "the new target",
        )
        ss = samples(base)
        assert value(ss, "cardguard_config_last_reload_successful") == 1
        assert value(ss, "cardguard_scrape_success", target="one") is None

        # SIGHUP reloads too.
        write_config(cfg, [{"name": "three", "url": dead, "profiles": {"enabled": False}}])
        proc.popen.send_signal(signal.SIGHUP)
        wait_for(
            lambda: value(samples(base), "cardguard_scrape_success", target="three") == 0,
            20,
            "the target after SIGHUP",
        )
        # SIGTERM: a clean exit.
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(timeout=15) == 0
        assert "shutting down" in proc.logs()


# Files that once killed the exporter on reload, with their pinned messages.
BROKEN_FILES = (
    "bad-url-ipv6.yml",
    "bad-deep-nesting.yml",
    "bad-yaml-bomb.yml",
    "bad-recursive-alias.yml",
    "bad-wrong-types.yml",
    "bad-not-utf8.yml",
    "bad-binary.yml",
)


def test_broken_files_never_stop_a_running_exporter(
    demo_service: Callable[..., AbstractContextManager[Process]], tmp_path: Path
) -> None:
    """Reload each broken file by SIGHUP and by POST /-/reload against a real Go target.

    Each time the process lives on, /metrics answers, the running target is still
    scraped, the reload gauge says 0 and every problem is reported as file:line (in
    the log for SIGHUP, in the answer for POST); the next good file brings 1 back.
    """
    from test_config import CONFIGS, EXPECTED

    cfg = tmp_path / "cardguard.yml"
    with demo_service("current", "-healthy") as good:

        def write_good() -> None:
            target = {"name": "good", "url": good.base_url, "profiles": {"enabled": False}}
            write_config(cfg, [target])

        write_good()
        with start_cardguard(cfg, tmp_path / "cardguard.log", "--web.enable-lifecycle") as proc:
            base = proc.base_url

            def scraped_at() -> float:
                ts = value(
                    samples(base),
                    "cardguard_last_scrape_success_timestamp_seconds",
                    target="good",
                    endpoint="metrics",
                )
                return ts or 0.0

            wait_for(lambda: scraped_at() > 0, 30, "the good target to be scraped")

            def still_serving(name: str, how: str) -> None:
                assert proc.popen.poll() is None, (name, how, proc.logs()[-3000:])
                ss = samples(base)  # /metrics answers
                assert value(ss, "cardguard_config_last_reload_successful") == 0, (name, how)
                assert value(ss, "cardguard_scrape_success", target="good") == 1
                assert value(ss, "cardguard_scrape_success", target="api") is None  # not applied
                before = scraped_at()
                wait_for(lambda: scraped_at() > before, 10, f"a scrape after {how} of {name}")
                assert requests.get(base + "/-/healthy", timeout=5).status_code == 200

            for name in BROKEN_FILES:
                expected = [p.replace(name, str(cfg), 1) for p in EXPECTED[name]]

                # SIGHUP: the answer is the log and the gauge.
                cfg.write_bytes((CONFIGS / name).read_bytes())
                proc.popen.send_signal(signal.SIGHUP)
                wait_for(
                    lambda: value(samples(base), "cardguard_config_last_reload_successful") == 0,
                    20,
                    f"SIGHUP with {name} to fail",
                )
                logged = [
                    json.loads(line)
                    for line in proc.logs().splitlines()
                    if line.startswith("{") and "config reload failed" in line
                ]
                assert all(p in logged[-1]["msg"] for p in expected), (expected, logged[-1])
                still_serving(name, "SIGHUP")

                write_good()
                r = requests.post(base + "/-/reload", timeout=10)
                assert r.status_code == 200, r.text
                assert value(samples(base), "cardguard_config_last_reload_successful") == 1

                # POST /-/reload: the answer carries every problem, as check-config prints them.
                cfg.write_bytes((CONFIGS / name).read_bytes())
                r = requests.post(base + "/-/reload", timeout=10)
                assert r.status_code == 400, (name, r.status_code, r.text)
                assert r.text.splitlines() == expected
                still_serving(name, "POST")
                assert "last reload failed" in requests.get(base + "/", timeout=5).text

                write_good()
                assert requests.post(base + "/-/reload", timeout=10).status_code == 200

            ss = samples(base)
            assert value(ss, "cardguard_config_last_reload_successful") == 1
            assert value(ss, "cardguard_scrape_success", target="good") == 1
            assert "Traceback" not in proc.logs()
            proc.popen.send_signal(signal.SIGTERM)
            assert proc.popen.wait(timeout=15) == 0


def test_serve_refuses_invalid_config(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yml"
    cfg.write_text("targets:\n  - name: a\n    url: nope\n    timeout: 1x\n")
    out = subprocess.run(
        cardguard_argv("serve", f"--config.file={cfg}", "--web.listen-address=127.0.0.1:0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert f"{cfg}:3: targets[0].url" in out.stderr
    assert f"{cfg}:4: targets[0].timeout: expected a duration like 30s, got '1x'" in out.stderr


def test_hostile_targets_never_break_the_server(
    demo_service: Callable[..., AbstractContextManager[Process]], tmp_path: Path
) -> None:
    """Broken targets become failure series with a bounded reason; every page stays 200."""
    # The good target is a healthy demo: a leaky one's page soon outgrows the 4MiB limit.
    with demo_service("current", "-healthy") as good, local_http.serve({}) as evil:
        stop = evil.stop_event
        evil.routes.update(
            {
                "/bomb/metrics": local_http.gzip_bomb(256 << 20),
                "/html/metrics": local_http.ok(b"<html>502 Bad Gateway</html>", "text/html"),
                "/drip/metrics": local_http.drip(0.05, stop),
                "/big/metrics": local_http.endless(),
            }
        )
        no_profiles = {"enabled": False}
        cfg = tmp_path / "cardguard.yml"
        targets: list[dict[str, object]] = [
            {"name": name, "url": f"{evil.base_url}/{name}", "profiles": no_profiles}
            for name in ("bomb", "html", "drip", "big")
        ]
        targets.append({"name": "good", "url": good.base_url, "profiles": no_profiles})
        cfg.write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": "1s",
                        "scrape_timeout": "1s",
                        "body_size_limit": "4MiB",
                    },
                    "targets": targets,
                }
            )
        )
        with start_cardguard(cfg, tmp_path / "cardguard.log") as proc:
            expected = {"bomb": "too_large", "html": "parse", "drip": "timeout", "big": "too_large"}

            def all_failed() -> bool:
                ss = samples(proc.base_url)
                return (
                    all(
                        value(
                            ss,
                            "cardguard_scrape_failures_total",
                            target=name,
                            endpoint="metrics",
                            reason=reason,
                        )
                        for name, reason in expected.items()
                    )
                    and value(ss, "cardguard_scrape_success", target="good", endpoint="metrics")
                    == 1
                )

            wait_for(all_failed, 60, "every hostile target to fail with its reason")
            for path in ("/", "/metrics", "/report", "/-/healthy"):
                assert requests.get(proc.base_url + path, timeout=30).status_code == 200, path
            ss = samples(proc.base_url)
            for name in expected:
                assert value(ss, "cardguard_scrape_success", target=name) == 0
            assert (value(ss, "cardguard_target_series", target="good") or 0) > 0
            assert "Traceback" not in proc.logs()
        stop.set()


def test_logfmt_lines_and_listen_address() -> None:
    import logging

    from cardguard.commands.serve import LogfmtFormatter, parse_listen_address

    rec = logging.LogRecord(
        "cardguard.run.scheduler", logging.WARNING, __file__, 1, "%s", ("a b",), None
    )
    rec.target, rec.endpoint, rec.reason = "api", "metrics", "timeout"
    line = LogfmtFormatter().format(rec)
    assert line.startswith("ts=") and " level=warn logger=cardguard.run.scheduler " in line
    assert line.endswith('msg="a b" target=api endpoint=metrics reason=timeout')
    # Control characters never reach the line raw: a value cannot end it, forge another
    # one or drive the terminal that shows it.
    rec.target = "\x00\x1b[2J\r\nlevel=error\u2028\u202e\x7f"
    line = LogfmtFormatter().format(rec)
    assert 'target="\\x00\\x1b[2J\\r\\nlevel=error\\u2028\\u202e\\x7f" endpoint=' in line
    assert line.isprintable()
    assert parse_listen_address("127.0.0.1:10180") == ("127.0.0.1", 10180)
    assert parse_listen_address(":10180") == ("0.0.0.0", 10180)
    assert parse_listen_address("[::1]:10180") == ("::1", 10180)


def test_reload_bug_is_a_500_and_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: loading raises ValueError, as url parsing once did.

    No real file reaches this path any more (test_broken_files_never_stop_a_running_exporter
    covers those); a bug must still answer 500 with its text, keep the running config
    and leave the server up, for POST /-/reload and for SIGHUP (both call App.reload).
    """
    import threading

    from cardguard.expose.app import App
    from cardguard.expose.server import make_server
    from cardguard.run.scheduler import Scheduler
    from cardguard.settings.config import load_config

    cfg_path = tmp_path / "cardguard.yml"
    write_config(cfg_path, [{"name": "one", "url": "http://127.0.0.1:1"}])
    cfg = load_config(cfg_path)
    app = App(cfg_path, cfg, Scheduler(cfg), enable_lifecycle=True)
    httpd = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:

        def broken(path: object) -> object:
            raise ValueError("Invalid IPv6 URL")

        monkeypatch.setattr("cardguard.expose.app.load_config", broken)
        r = requests.post(base + "/-/reload", timeout=10)
        assert r.status_code == 500
        assert r.text == f"{cfg_path}: internal error in cardguard: ValueError: Invalid IPv6 URL\n"
        assert app.config is cfg and not app.reload_status.successful
        ss = samples(base)
        assert value(ss, "cardguard_config_last_reload_successful") == 0
        monkeypatch.undo()
        assert requests.post(base + "/-/reload", timeout=10).status_code == 200
        assert value(samples(base), "cardguard_config_last_reload_successful") == 1
    finally:
        httpd.shutdown()
        httpd.server_close()
