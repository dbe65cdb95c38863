"""Run the operations kit for real in tests: cardguard serve, Prometheus with rules/, Alertmanager.

Everything listens on 127.0.0.1 on port 0 (the bound port is read back) and
keeps its files in the test's temporary directory. Two things are changed for tests only, in
temporary copies, never in the shipped files:

- ``for:`` durations in rules/ are divided by ``FOR_SCALE`` (30m -> 15s), so an
  alert meant to need half an hour of evidence needs 15 seconds;
- Alertmanager's grouping waits are cut to a second or two, so a notification
  is sent as soon as the alert arrives.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import yaml

import promstack
from promstack import need
from support import REPO, Process, cardguard_argv, running_cardguard, running_on_port_0

RULES = REPO / "rules"
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
FOR_SCALE = 120
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    parts = _DURATION.findall(duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * _UNIT[u] for n, u in parts)


def shortened_rules(dest: Path, scale: int = FOR_SCALE) -> list[Path]:
    """Copy rules/*.rules.yml into ``dest`` with every ``for:`` divided by ``scale``.

    Expressions, labels and annotations stay exactly as shipped.
    """
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for path in sorted(RULES.glob("*.rules.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = f"{max(1, round(seconds(rule['for']) / scale))}s"
        copy = dest / path.name
        copy.write_text(yaml.safe_dump(doc, sort_keys=False))
        out.append(copy)
    return out


def longest_for(scale: int = FOR_SCALE) -> float:
    """Longest shortened ``for:`` of any alert, in seconds."""
    longest = 0.0
    for path in RULES.glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    longest = max(longest, max(1, round(seconds(rule["for"]) / scale)))
    return longest


class WebhookReceiver:
    """An Alertmanager webhook receiver: records every notification, by URL path."""

    def __init__(self) -> None:
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.notifications.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """(receiver path, alert) for every alert in every notification so far."""
        with self._lock:
            return [(path, a) for path, n in self.notifications for a in n["alerts"]]


@contextlib.contextmanager
def metrics_only_target(page: Path) -> Iterator[str]:
    """Serve ``page`` (a recorded /metrics page) at /metrics and 404 elsewhere: no pprof."""
    body = page.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def alertmanager(workdir: Path, receiver: WebhookReceiver) -> Iterator[Process]:
    """Run Alertmanager with the shipped config, its webhooks pointed at ``receiver``."""
    need(ALERTMANAGER)
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for r in config["receivers"]:
        for hook in r.get("webhook_configs", []):
            path = hook["url"].split("/", 3)[3]
            hook["url"] = f"http://127.0.0.1:{receiver.port}/{path}"

    def quicken(route: dict[str, Any]) -> None:
        # Test-only: send at once instead of batching for 30s-5m.
        for key, value in (("group_wait", "1s"), ("group_interval", "2s")):
            if key in route:
                route[key] = value
        for child in route.get("routes", []):
            quicken(child)

    quicken(config["route"])
    d = workdir / "alertmanager"
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "alertmanager.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [
        ALERTMANAGER,
        f"--config.file={cfg}",
        f"--storage.path={d / 'data'}",
        "--web.listen-address=127.0.0.1:0",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with running_on_port_0(argv, d / "alertmanager.log", ready_path="/-/ready") as proc:
        yield proc


@contextlib.contextmanager
def cardguard_serve(
    workdir: Path,
    targets: dict[str, str],
    interval: str = "2s",
    profile_interval: str = "2s",
    extra_global: dict[str, Any] | None = None,
) -> Iterator[Process]:
    """Run ``cardguard serve`` watching ``targets`` (name -> base URL) on short intervals."""
    d = workdir / "cardguard"
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "cardguard.yml"
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, **(extra_global or {})},
        "targets": [
            {"name": name, "url": url, "profiles": {"interval": profile_interval}}
            for name, url in targets.items()
        ],
    }
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = cardguard_argv(
        "serve",
        f"--config.file={cfg}",
        "--web.listen-address=127.0.0.1:0",
        "--web.enable-lifecycle",  # the alert tests reload a broken file with POST /-/reload
    )
    with running_cardguard(argv, d / "cardguard.log", ready_path="/-/healthy") as proc:
        yield proc


@contextlib.contextmanager
def prometheus(
    workdir: Path,
    scrape: dict[str, str],
    rule_files: list[Path],
    alertmanager_port: int | None = None,
) -> Iterator[Process]:
    """Run Prometheus scraping ``scrape`` (job -> host:port) every second with ``rule_files``."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [address]}]}
            for job, address in scrape.items()
        ],
    }
    if alertmanager_port is not None:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        }
    with promstack.prometheus(workdir, config) as proc:
        yield proc


def query(prom: Process, expr: str) -> list[dict[str, Any]]:
    """Run an instant query; raise with Prometheus' error text if it does not parse or fails."""
    r = requests.get(f"{prom.base_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    if body.get("status") != "success":
        raise AssertionError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
    return list(body["data"]["result"])


def prometheus_alerts(prom: Process) -> list[dict[str, Any]]:
    r = requests.get(f"{prom.base_url}/api/v1/alerts", timeout=10)
    r.raise_for_status()
    return list(r.json()["data"]["alerts"])


def address(proc: Process) -> str:
    return f"127.0.0.1:{proc.port}"
