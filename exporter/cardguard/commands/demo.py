"""``cardguard demo``: run the leaky demo service, cardguard, Prometheus and Alertmanager locally.

Everything runs from this source checkout on 127.0.0.1, on free ports, with
its files in a temporary directory:

- the demo Go service (deploy/demo-service), built with a local Go toolchain
  against Debian's client_golang;
- ``cardguard serve`` watching it;
- Prometheus (Debian's /usr/bin/prometheus) scraping cardguard and the demo
  and evaluating rules/;
- Alertmanager (Debian's /usr/bin/prometheus-alertmanager) with
  deploy/alertmanager/alertmanager.yml, its webhooks pointed at a receiver in
  this process that prints each notification.

The shipped rules wait 15 minutes to an hour before an alert fires; the demo
divides every ``for:`` by ``--for-scale`` in its temporary copy so something
happens within a minute or two. It stays until Ctrl-C, or ``--duration``;
``--once`` exits as soon as the first leak notification arrives.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml

from cardguard.config import parse_duration

CHECKOUT = Path(__file__).resolve().parents[3]
RULES = CHECKOUT / "rules"
DEMO_SRC = CHECKOUT / "deploy" / "demo-service"
ALERTMANAGER_CONFIG = CHECKOUT / "deploy" / "alertmanager" / "alertmanager.yml"
PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
GOCODE = Path("/usr/share/gocode")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cardguard-demo"
# Leaks fast enough to see within a minute.
DEMO_FLAGS = ("-label-rate=100", "-goroutine-rate=20", "-cache-rate=100")
LEAK_ALERTS = {"CardguardLabelExplosion", "CardguardGoroutineLeakConfirmed"}


class DemoError(click.ClickException):
    """A part of the demo could not be set up; the message says which and why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _go_toolchain() -> Path:
    """Prefer a current Go (goroutineleak profile), else Debian's, else any go on PATH."""
    with contextlib.suppress(ImportError):
        import go  # type: ignore[import-untyped]

        candidate = Path(go.__file__).parent / "bin" / "go"
        if candidate.exists():
            return candidate
    for candidate in (Path("/usr/lib/go/bin/go"), Path(shutil.which("go") or "/nonexistent")):
        if candidate.exists():
            return candidate
    raise DemoError("no Go toolchain found: run scripts/bootstrap.sh")


# Stacks then name sources by import path (demo-service/main.go:234), not by the
# temporary GOPATH the binary was built in, which is gone by the time anyone reads them.
BUILD_FLAGS = ("-trimpath",)


def _build_demo(go: Path, echo: Any) -> Path:
    """Build deploy/demo-service once per source and toolchain; return the binary."""
    digest = hashlib.sha256(f"{go} {' '.join(BUILD_FLAGS)}".encode())
    for f in sorted(DEMO_SRC.rglob("*")):
        if f.is_file():
            digest.update(f.name.encode() + f.read_bytes())
    out = CACHE / f"demo-service-{digest.hexdigest()[:12]}"
    if out.exists():
        return out
    echo(f"building the demo service with {go} ...")
    with tempfile.TemporaryDirectory(prefix="cardguard-demo-gopath-") as gopath:
        pkg = Path(gopath) / "src" / "demo-service"
        shutil.copytree(DEMO_SRC, pkg)
        env = dict(os.environ)
        env.update(
            GOPATH=f"{gopath}:{GOCODE}",
            GO111MODULE="off",
            GOFLAGS="",
            GOTOOLCHAIN="local",
            CGO_ENABLED="0",
            GOCACHE=str(CACHE / "gocache"),
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        proc = subprocess.run(
            [str(go), "build", *BUILD_FLAGS, "-o", str(tmp), "."],
            cwd=pkg,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise DemoError(f"building {DEMO_SRC} failed:\n{proc.stderr.strip()}")
        tmp.replace(out)
    return out


@dataclass
class _Service:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


@dataclass
class _Stack:
    workdir: Path
    services: list[_Service] = field(default_factory=list)

    def start(self, name: str, argv: list[str], port: int) -> _Service:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as fh:
            popen = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT)
        svc = _Service(name, popen, log, port)
        self.services.append(svc)
        return svc

    def wait_ready(self, svc: _Service, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if svc.popen.poll() is not None:
                raise DemoError(f"{svc.name} exited at start-up; its log:\n{svc.tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(svc.url + path, timeout=2) as r:
                    if r.status == 200:
                        return
            time.sleep(0.1)
        raise DemoError(f"{svc.name} did not answer {svc.url}{path} within {timeout:.0f}s")

    def stop(self) -> None:
        for svc in reversed(self.services):
            if svc.popen.poll() is None:
                svc.popen.terminate()
        for svc in reversed(self.services):
            try:
                svc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                svc.popen.kill()
                svc.popen.wait()


class _Receiver:
    """Alertmanager webhook receiver that prints every alert it is sent."""

    def __init__(self, echo: Any) -> None:
        self.first_leak = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                for alert in body.get("alerts", []):
                    labels = alert.get("labels", {})
                    echo(
                        f"[alertmanager -> {self.path.strip('/')}] {alert.get('status')}: "
                        f"{labels.get('alertname')} severity={labels.get('severity')}"
                        f" target={labels.get('target', labels.get('instance', ''))}\n"
                        f"    {alert.get('annotations', {}).get('summary', '')}"
                    )
                    if alert.get("status") == "firing" and labels.get("alertname") in LEAK_ALERTS:
                        receiver.first_leak.set()
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _seconds(duration: str) -> float:
    value = parse_duration(duration)
    if value is None:
        raise DemoError(f"{RULES}: cannot read duration {duration!r}")
    return value


def _write_rules(dest: Path, scale: float) -> list[Path]:
    """Copy rules/ into ``dest`` with every ``for:`` divided by ``scale``."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for path in sorted(RULES.glob("*.rules.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = f"{max(1, round(_seconds(rule['for']) / scale))}s"
        (dest / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
        out.append(dest / path.name)
    return out


def _alertmanager_config(receiver_port: int) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for r in config["receivers"]:
        for hook in r.get("webhook_configs", []):
            path = hook["url"].split("/", 3)[3]
            hook["url"] = f"http://127.0.0.1:{receiver_port}/{path}"
    config["route"]["group_wait"] = "2s"
    for child in config["route"].get("routes", []):
        child.pop("group_wait", None)
    return config


@dataclass
class _Running:
    urls: dict[str, str]
    first_leak: threading.Event


@contextlib.contextmanager
def _bring_up(workdir: Path, for_scale: float, echo: Any) -> Iterator[_Running]:
    for binary in (PROMETHEUS, ALERTMANAGER):
        if not Path(binary).exists():
            raise DemoError(f"{binary} not found: run scripts/bootstrap.sh")
    if not RULES.is_dir() or not DEMO_SRC.is_dir():
        raise DemoError(f"{CHECKOUT} is not a cardguard source checkout (no rules/ or deploy/)")
    demo_bin = _build_demo(_go_toolchain(), echo)
    stack = _Stack(workdir)
    receiver = _Receiver(echo)
    try:
        port = _free_port()
        demo = stack.start("demo", [str(demo_bin), f"-listen=127.0.0.1:{port}", *DEMO_FLAGS], port)
        stack.wait_ready(demo, "/metrics")

        cfg = workdir / "cardguard.yml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "5s", "scrape_timeout": "5s"},
                    "targets": [{"name": "demo", "url": demo.url, "profiles": {"interval": "5s"}}],
                },
                sort_keys=False,
            )
        )
        port = _free_port()
        cardguard = stack.start(
            "cardguard",
            [
                sys.executable,
                "-m",
                "cardguard",
                "serve",
                f"--config.file={cfg}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            port,
        )
        stack.wait_ready(cardguard, "/-/healthy")

        am_cfg = workdir / "alertmanager.yml"
        am_cfg.write_text(yaml.safe_dump(_alertmanager_config(receiver.port), sort_keys=False))
        port = _free_port()
        am = stack.start(
            "alertmanager",
            [
                ALERTMANAGER,
                f"--config.file={am_cfg}",
                f"--storage.path={workdir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            port,
        )
        stack.wait_ready(am, "/-/ready")

        rules = _write_rules(workdir / "rules", for_scale)
        prom_cfg = workdir / "prometheus.yml"
        prom_cfg.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
                    "rule_files": [str(p) for p in rules],
                    "alerting": {
                        "alertmanagers": [
                            {"static_configs": [{"targets": [f"127.0.0.1:{am.port}"]}]}
                        ]
                    },
                    "scrape_configs": [
                        {
                            "job_name": "cardguard",
                            "static_configs": [{"targets": [f"127.0.0.1:{cardguard.port}"]}],
                        },
                        {
                            "job_name": "demo",
                            "static_configs": [{"targets": [f"127.0.0.1:{demo.port}"]}],
                        },
                    ],
                },
                sort_keys=False,
            )
        )
        port = _free_port()
        prom = stack.start(
            "prometheus",
            [
                PROMETHEUS,
                f"--config.file={prom_cfg}",
                f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            port,
        )
        stack.wait_ready(prom, "/-/ready")
        urls = {
            "demo": demo.url,
            "cardguard": cardguard.url,
            "prometheus": prom.url,
            "prometheus_alerts": prom.url + _alerts_page(prom.url),
            "alertmanager": am.url,
        }
        yield _Running(urls, receiver.first_leak)
    finally:
        receiver.close()
        stack.stop()


def _alerts_page(base: str) -> str:
    """Return the path of Prometheus' alerts page: Debian's build only has the classic UI."""
    for path in ("/alerts", "/classic/alerts"):
        with contextlib.suppress(OSError, urllib.error.URLError):
            with urllib.request.urlopen(base + path, timeout=5) as r:
                if r.status == 200:
                    return path
    return "/api/v1/alerts"


def _banner(urls: dict[str, str], workdir: Path, for_scale: float) -> str:
    grafana = CHECKOUT / "grafana" / "dashboards"
    return f"""
cardguard demo is running (configs, logs and data in {workdir}).

  demo service   {urls["demo"]}/metrics   {urls["demo"]}/debug/pprof/
  cardguard      {urls["cardguard"]}/   report: {urls["cardguard"]}/report
  Prometheus     {urls["prometheus_alerts"]}   (rules/ loaded, every for: divided by {for_scale:g})
  Alertmanager   {urls["alertmanager"]}/#/alerts   (deploy/alertmanager/alertmanager.yml)
  Grafana        import {grafana}/*.json into a Grafana whose Prometheus is {urls["prometheus"]}

The demo leaks three ways: a path-valued start_point label, goroutines parked
on a stopped ticker, and a cache that never evicts. Alert notifications are
printed below as Alertmanager sends them. Ctrl-C stops everything.
"""


@click.command("demo")
@click.option(
    "--duration",
    default="0s",
    show_default=True,
    help="Stop after this long (e.g. 90s, 5m); 0s runs until Ctrl-C.",
)
@click.option(
    "--once",
    is_flag=True,
    help="Exit once the first leak alert reaches the receiver (exit 1 if --duration passes first).",
)
@click.option(
    "--for-scale",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Divide every for: of the shipped rules by this, so alerts fire within minutes.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep configs, logs and data here instead of a temporary directory.",
)
def demo(duration: str, once: bool, for_scale: float, workdir: Path | None) -> None:
    """Run the leaky demo with cardguard, Prometheus and Alertmanager; print where to look."""
    limit = parse_duration(duration)
    if limit is None:
        raise click.BadParameter(f"expected a duration like 90s or 5m, got {duration!r}")
    with contextlib.ExitStack() as cleanup:
        if workdir is None:
            workdir = Path(
                cleanup.enter_context(tempfile.TemporaryDirectory(prefix="cardguard-demo-"))
            )
        workdir.mkdir(parents=True, exist_ok=True)
        echo = click.echo
        # SIGTERM (and a SIGINT before the stack is up) still unwinds through
        # the ExitStack, so every process started is stopped.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        running = cleanup.enter_context(_bring_up(workdir, for_scale, echo))
        echo(_banner(running.urls, workdir, for_scale))
        deadline = time.monotonic() + limit if limit else None
        try:
            while True:
                if once and running.first_leak.is_set():
                    echo("cardguard demo: a leak alert reached the receiver; stopping (--once).")
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    if once:
                        raise DemoError(f"no leak alert reached the receiver within {duration}")
                    echo(f"cardguard demo: {duration} passed; stopping.")
                    return
                running.first_leak.wait(0.5)
        except KeyboardInterrupt:
            echo("\ncardguard demo: stopping.")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
