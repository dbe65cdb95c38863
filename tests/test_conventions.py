"""Exporter conventions (Prometheus, node_exporter, blackbox) on a real ``cardguard serve``.

``--version`` on every command, ``cardguard_build_info``, ``--web.telemetry-path``,
``/-/ready`` waiting for every target's first round, and ``--web.enable-lifecycle``
gating ``POST /-/reload`` while SIGHUP always reloads.
"""

from __future__ import annotations

import platform
import re
import signal
import subprocess
import threading
from pathlib import Path

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

import local_http
from cardguard import __version__
from cardguard.cli import COMMANDS
from cardguard.version import git_head
from support import REPO, cardguard_argv, running_cardguard_serve, wait_for

PROMTOOL = "/usr/bin/promtool"


def test_version_is_the_same_on_every_command() -> None:
    texts = {}
    for args in ([], *([name] for name in sorted(COMMANDS))):
        proc = subprocess.run(
            cardguard_argv(*args, "--version"), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, (args, proc.stderr)
        texts[" ".join(args) or "cardguard"] = proc.stdout
    assert len(set(texts.values())) == 1, texts
    text = texts["cardguard"]
    head = git_head(REPO)
    revision, branch = head if head is not None else ("unknown", "unknown")
    # Prometheus' version.Print layout: "prometheus, version 2.42.0 (branch: ..., revision: ...)".
    assert text.splitlines()[0] == (
        f"cardguard, version {__version__} (branch: {branch}, revision: {revision})"
    )
    assert re.search(rf"^  python version: +{re.escape(platform.python_version())} \(", text, re.M)
    assert re.search(r"^  protobuf version: +\d+\.\d+", text, re.M)
    assert (
        "--version"
        in subprocess.run(
            cardguard_argv("serve", "--help"), capture_output=True, text=True, timeout=60
        ).stdout
    )


def test_build_info_on_a_custom_telemetry_path(tmp_path: Path) -> None:
    (tmp_path / "cardguard.yml").write_text("targets: []\n")
    args = (f"--config.file={tmp_path / 'cardguard.yml'}", "--web.telemetry-path=/internal/m")
    with running_cardguard_serve(tmp_path / "serve.log", *args) as cg:
        page = requests.get(f"{cg.base_url}/internal/m", timeout=10)
        assert page.status_code == 200
        assert requests.get(f"{cg.base_url}/metrics", timeout=10).status_code == 404
        landing = requests.get(cg.base_url + "/", timeout=10).text
        assert 'href="internal/m"' in landing and 'href="metrics"' not in landing
        [info] = [
            s
            for f in text_string_to_metric_families(page.text)
            for s in f.samples
            if s.name == "cardguard_build_info"
        ]
        head = git_head(REPO)
        assert info.value == 1.0
        assert info.labels["version"] == __version__
        assert info.labels["revision"] == (head[0] if head else "unknown")
        assert info.labels["python_version"] == platform.python_version()
        assert set(info.labels) == {
            "version",
            "revision",
            "branch",
            "python_version",
            "python_implementation",
            "protobuf_version",
            "platform",
        }
        # promtool's linter (the naming conventions) has nothing to say about it.
        lint = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=page.text, capture_output=True, text=True
        )
        assert "cardguard_build_info" not in lint.stdout + lint.stderr


def test_a_telemetry_path_may_not_hide_a_page(tmp_path: Path) -> None:
    for path, message in (("/report", "one of cardguard's own pages"), ("metrics", "starting")):
        proc = subprocess.run(
            cardguard_argv("serve", f"--web.telemetry-path={path}"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_ready_waits_for_every_targets_first_round(tmp_path: Path) -> None:
    """503 while a target's first /metrics fetch or first profile round is in flight, then 200."""
    metrics_go, profiles_go = threading.Event(), threading.Event()

    def held(event: threading.Event, body: bytes) -> local_http.Route:
        def route(h: local_http.Handler) -> None:
            event.wait(60)
            h.send_body(200, body)

        return route

    page = b"# TYPE up gauge\nup 1\n"
    routes = {
        "/metrics": held(metrics_go, page),
        "/debug/pprof/heap": held(profiles_go, b"not a profile"),
    }
    with local_http.serve(routes) as target:
        cfg = {
            "targets": [
                {"name": "quick", "url": target.base_url, "profiles": {"enabled": False}},
                {"name": "slow", "url": target.base_url, "timeout": "30s", "interval": "30s"},
            ]
        }
        (tmp_path / "cardguard.yml").write_text(yaml.safe_dump(cfg))
        args = (f"--config.file={tmp_path / 'cardguard.yml'}",)
        try:
            with running_cardguard_serve(tmp_path / "serve.log", *args) as cg:
                ready = f"{cg.base_url}/-/ready"
                wait_for(lambda: len(target.server.requests) >= 3, 30, "the first fetches")
                r = requests.get(ready, timeout=10)
                assert r.status_code == 503 and "slow" in r.text and "quick" in r.text, r.text
                assert requests.get(f"{cg.base_url}/-/healthy", timeout=10).status_code == 200

                metrics_go.set()
                wait_for(lambda: "quick" not in requests.get(ready, timeout=10).text, 30, "quick")
                r = requests.get(ready, timeout=10)
                assert r.status_code == 503 and "slow" in r.text, r.text  # profiles still out

                profiles_go.set()
                wait_for(lambda: requests.get(ready, timeout=10).status_code == 200, 30, "ready")
                assert r"first round" not in requests.get(ready, timeout=10).text
        finally:
            metrics_go.set()
            profiles_go.set()


def _reload_config(path: Path, name: str) -> None:
    cfg = {"targets": [{"name": name, "url": "http://127.0.0.1:9", "profiles": {"enabled": False}}]}
    path.write_text(yaml.safe_dump(cfg))


def _targets(base: str) -> set[str]:
    text = requests.get(f"{base}/metrics", timeout=10).text
    return {
        s.labels["target"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "cardguard_scrape_success"
    }


def test_reload_over_http_needs_the_lifecycle_flag_and_sighup_always_works(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "cardguard.yml"
    _reload_config(cfg, "one")
    with running_cardguard_serve(tmp_path / "off.log", f"--config.file={cfg}") as cg:
        wait_for(lambda: _targets(cg.base_url) == {"one"}, 30, "the first target")
        _reload_config(cfg, "two")
        r = requests.post(f"{cg.base_url}/-/reload", timeout=10)
        assert (r.status_code, r.text) == (403, "Lifecycle API is not enabled.\n")
        assert _targets(cg.base_url) == {"one"}
        assert "--web.enable-lifecycle" in requests.get(cg.base_url + "/", timeout=10).text
        cg.popen.send_signal(signal.SIGHUP)
        wait_for(lambda: _targets(cg.base_url) == {"two"}, 30, "the target after SIGHUP")

    args = (f"--config.file={cfg}", "--web.enable-lifecycle")
    with running_cardguard_serve(tmp_path / "on.log", *args) as cg:
        wait_for(lambda: _targets(cg.base_url) == {"two"}, 30, "the first target")
        _reload_config(cfg, "three")
        r = requests.post(f"{cg.base_url}/-/reload", timeout=10)
        assert r.status_code == 200, r.text
        # /metrics is built in the background (serve's metrics page): wait for the next one.
        wait_for(lambda: _targets(cg.base_url) == {"three"}, 30, "the target after POST")
