"""``cardguard demo``: run the leaky demo service, cardguard, Prometheus and Alertmanager locally.

Everything runs on 127.0.0.1, on free ports, with its files in a temporary
directory, from the repository files cardguard ships (:mod:`cardguard.shipped`:
a source checkout's own, or the copies a wheel carries, so ``pip install
cardguard`` is enough):

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

``--service-only`` runs the demo service alone, on ``--listen`` (default
127.0.0.1:6060, where the README's examples point), until Ctrl-C.

The parts that are not Python come from Debian (:data:`SYSTEM_PARTS`); when one
is missing the error names every missing package and the ``apt-get`` line.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import signal
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

from cardguard import shipped
from cardguard.quantities import parse_duration
from cardguard.run.procfs import listening_ports

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
GOCODE = Path("/usr/share/gocode")
CLIENT_GOLANG = GOCODE / "src" / "github.com" / "prometheus" / "client_golang" / "prometheus"
# What the demo needs outside Python: what it is, and the Debian package that has it.
SYSTEM_PARTS = {
    "go": ("a Go toolchain", "golang-go"),
    "client_golang": (
        "client_golang for GOPATH builds",
        "golang-github-prometheus-client-golang-dev",
    ),
    "prometheus": ("Prometheus", "prometheus"),
    "alertmanager": ("Alertmanager", "prometheus-alertmanager"),
}
DEFAULT_SERVICE_LISTEN = "127.0.0.1:6060"  # where the README's examples point
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cardguard-demo"
# Leaks fast enough to see within a minute.
DEMO_FLAGS = ("-label-rate=100", "-goroutine-rate=20", "-cache-rate=100")
LEAK_ALERTS = {"CardguardLabelExplosion", "CardguardGoroutineLeakConfirmed"}
# The offender alerts are the primary ones (they inhibit the threshold alerts above on
# the same target), so one naming a leak kind counts as a leak alert too.
OFFENDER_ALERTS = {"CardguardOffenderCritical", "CardguardOffenderWarning"}
LEAK_KINDS = {"label_explosion", "goroutine_leak", "heap_growth", "children_heap_cost"}


def is_leak_alert(labels: dict[str, str]) -> bool:
    """Whether a firing alert's labels name one of the demo's leaks."""
    name = labels.get("alertname")
    return name in LEAK_ALERTS or (name in OFFENDER_ALERTS and labels.get("kind") in LEAK_KINDS)


class DemoError(click.ClickException):
    """A part of the demo could not be set up; the message says which and why."""


@dataclass(frozen=True)
class _Files:
    """The shipped repository files the demo reads (see cardguard.shipped)."""

    root: Path

    @property
    def demo_src(self) -> Path:
        return self.root / "deploy" / "demo-service"

    @property
    def rules(self) -> Path:
        return self.root / "rules"

    @property
    def alertmanager_config(self) -> Path:
        return self.root / "deploy" / "alertmanager" / "alertmanager.yml"

    @property
    def dashboards(self) -> Path:
        return self.root / "grafana" / "dashboards"


def _files() -> _Files:
    root = shipped.root()
    if root is None:
        raise DemoError(
            "this cardguard carries none of the demo's files (cardguard/_shipped): install it "
            "from a wheel or sdist, or run it from a source checkout"
        )
    return _Files(root)


def _check_system(parts: list[str]) -> Path:
    """Return the Go toolchain; fail naming every missing part and its Debian package."""
    go = _go_toolchain()
    where = {
        "go": ("/usr/lib/go/bin/go or go on PATH", go is not None),
        "client_golang": (str(CLIENT_GOLANG), CLIENT_GOLANG.is_dir()),
        "prometheus": (PROMETHEUS, Path(PROMETHEUS).exists()),
        "alertmanager": (ALERTMANAGER, Path(ALERTMANAGER).exists()),
    }
    missing = [p for p in parts if not where[p][1]]
    if not missing and go is not None:
        return go
    lines = [
        f"  {SYSTEM_PARTS[p][0]} (looked for {where[p][0]}): Debian package {SYSTEM_PARTS[p][1]}"
        for p in missing
    ]
    raise DemoError(
        "cardguard demo needs parts that are not installed:\n"
        + "\n".join(lines)
        + "\nInstall them with: sudo apt-get install "
        + " ".join(SYSTEM_PARTS[p][1] for p in missing)
        + "\n(in a source checkout, scripts/bootstrap.sh installs everything)"
    )


def _go_toolchain() -> Path | None:
    """Prefer a current Go (goroutineleak profile), else Debian's, else any go on PATH."""
    with contextlib.suppress(ImportError):
        import go  # type: ignore[import-untyped]

        candidate = Path(go.__file__).parent / "bin" / "go"
        if candidate.exists():
            return candidate
    for candidate in (Path("/usr/lib/go/bin/go"), Path(shutil.which("go") or "/nonexistent")):
        if candidate.exists():
            return candidate
    return None


# Stacks then name sources by import path (demo-service/main.go:234), not by the
# temporary GOPATH the binary was built in, which is gone by the time anyone reads them.
BUILD_FLAGS = ("-trimpath",)


def _build_demo(go: Path, src: Path, echo: Any) -> Path:
    """Build the demo service in ``src`` once per source and toolchain; return the binary."""
    digest = hashlib.sha256(f"{go} {' '.join(BUILD_FLAGS)}".encode())
    for f in sorted(src.rglob("*")):
        if f.is_file():
            digest.update(f.name.encode() + f.read_bytes())
    out = CACHE / f"demo-service-{digest.hexdigest()[:12]}"
    if out.exists():
        return out
    echo(f"building the demo service in {src} with {go} ...")
    with tempfile.TemporaryDirectory(prefix="cardguard-demo-gopath-") as gopath:
        pkg = Path(gopath) / "src" / "demo-service"
        shutil.copytree(src, pkg)
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
            raise DemoError(f"building {src} failed:\n{proc.stderr.strip()}")
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

    def start(self, name: str, argv: list[str], port: int = 0, timeout: float = 60) -> _Service:
        """Start ``argv``; with ``port`` 0 (it listens on 127.0.0.1:0), read its port back."""
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as fh:
            popen = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT)
        svc = _Service(name, popen, log, port)
        self.services.append(svc)
        deadline = time.monotonic() + timeout
        while not svc.port:
            if popen.poll() is not None:
                raise DemoError(f"{name} exited at start-up; its log:\n{svc.tail()}")
            if time.monotonic() > deadline:
                raise DemoError(f"{name} did not listen within {timeout:.0f}s")
            with contextlib.suppress(OSError):
                svc.port = next(iter(listening_ports(popen.pid)), 0)
            time.sleep(0.05)
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
                    if alert.get("status") == "firing" and is_leak_alert(labels):
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


def _seconds(duration: str, where: Path) -> float:
    value = parse_duration(duration)
    if value is None:
        raise DemoError(f"{where}: cannot read duration {duration!r}")
    return value


def _write_rules(dest: Path, rules: Path, scale: float) -> list[Path]:
    """Copy the rule files in ``rules`` into ``dest`` with every ``for:`` divided by ``scale``."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for path in sorted(rules.glob("*.rules.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    seconds = _seconds(rule["for"], path)
                    rule["for"] = f"{max(1, round(seconds / scale))}s"
        (dest / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
        out.append(dest / path.name)
    return out


def _alertmanager_config(path: Path, receiver_port: int) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(path.read_text())
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
    files: _Files


@contextlib.contextmanager
def _bring_up(
    workdir: Path, for_scale: float, echo: Any, listen: str | None = None
) -> Iterator[_Running]:
    files = _files()
    go = _check_system(["go", "client_golang", "prometheus", "alertmanager"])
    demo_bin = _build_demo(go, files.demo_src, echo)
    stack = _Stack(workdir)
    receiver = _Receiver(echo)
    try:
        address = listen or "127.0.0.1:0"
        port = int(address.rpartition(":")[2])
        demo = stack.start("demo", [str(demo_bin), f"-listen={address}", *DEMO_FLAGS], port)
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
        cardguard = stack.start(
            "cardguard",
            [
                sys.executable,
                "-m",
                "cardguard",
                "serve",
                f"--config.file={cfg}",
                "--web.listen-address=127.0.0.1:0",
            ],
        )
        stack.wait_ready(cardguard, "/-/healthy")

        am_cfg = workdir / "alertmanager.yml"
        am_config = _alertmanager_config(files.alertmanager_config, receiver.port)
        am_cfg.write_text(yaml.safe_dump(am_config, sort_keys=False))
        am = stack.start(
            "alertmanager",
            [
                ALERTMANAGER,
                f"--config.file={am_cfg}",
                f"--storage.path={workdir / 'alertmanager-data'}",
                "--web.listen-address=127.0.0.1:0",
                "--cluster.listen-address=",
            ],
        )
        stack.wait_ready(am, "/-/ready")

        rules = _write_rules(workdir / "rules", files.rules, for_scale)
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
        prom = stack.start(
            "prometheus",
            [
                PROMETHEUS,
                f"--config.file={prom_cfg}",
                f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                "--web.listen-address=127.0.0.1:0",
            ],
        )
        stack.wait_ready(prom, "/-/ready")
        urls = {
            "demo": demo.url,
            "cardguard": cardguard.url,
            "prometheus": prom.url,
            "prometheus_alerts": prom.url + _alerts_page(prom.url),
            "alertmanager": am.url,
        }
        yield _Running(urls, receiver.first_leak, files)
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


def _banner(urls: dict[str, str], workdir: Path, for_scale: float, files: _Files) -> str:
    grafana = files.dashboards
    return f"""
cardguard demo is running (configs, logs and data in {workdir}).

  demo service   {urls["demo"]}/metrics   {urls["demo"]}/debug/pprof/
  cardguard      {urls["cardguard"]}/   report: {urls["cardguard"]}/report
  Prometheus     {urls["prometheus_alerts"]}   (rules/ loaded, every for: divided by {for_scale:g})
  Alertmanager   {urls["alertmanager"]}/#/alerts   ({files.alertmanager_config})
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
@click.option(
    "--service-only",
    is_flag=True,
    help="Run only the leaky demo service (on --listen), for cardguard report/heap/goroutines.",
)
@click.option(
    "--listen",
    default=None,
    help=f"host:port of the demo service (--service-only: {DEFAULT_SERVICE_LISTEN}; "
    "else a free port). Port 0 picks a free one.",
)
def demo(
    duration: str,
    once: bool,
    for_scale: float,
    workdir: Path | None,
    service_only: bool,
    listen: str | None,
) -> None:
    """Run the leaky demo with cardguard, Prometheus and Alertmanager; print where to look."""
    limit = parse_duration(duration)
    if limit is None:
        raise click.BadParameter(f"expected a duration like 90s or 5m, got {duration!r}")
    if listen is not None:
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise click.BadParameter(f"expected host:port, got {listen!r}", param_hint="--listen")
    if service_only:
        if once:
            raise click.UsageError("--once waits for an alert; --service-only runs no alerting")
        _service_only(listen or DEFAULT_SERVICE_LISTEN, limit)
        return
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
        running = cleanup.enter_context(_bring_up(workdir, for_scale, echo, listen))
        echo(_banner(running.urls, workdir, for_scale, running.files))
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


def _service_only(listen: str, limit: float) -> None:
    """Build and run the demo service alone in the foreground until Ctrl-C, SIGTERM or ``limit``."""
    files = _files()
    binary = _build_demo(_check_system(["go", "client_golang"]), files.demo_src, click.echo)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    click.echo(
        f"cardguard demo: the leaky demo service ({files.demo_src}); it prints its address. "
        "Try: cardguard report http://ADDRESS --duration 2m. Ctrl-C stops it.",
    )
    # Its stdout is ours: it prints "listening on HOST:PORT" (port 0 picks one).
    proc = subprocess.Popen([str(binary), f"-listen={listen}", *DEMO_FLAGS])
    try:
        proc.wait(timeout=limit or None)
        raise DemoError(f"the demo service exited with status {proc.returncode}")
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        click.echo("cardguard demo: stopping the demo service.")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
