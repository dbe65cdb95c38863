"""``cardguard serve``: run the exporter (scheduler + HTTP server) until SIGTERM or SIGINT.

SIGHUP reloads the config file, and ``POST /-/reload`` does with
``--web.enable-lifecycle``; an invalid file is reported and the running config
is kept. Logs are structured (logfmt or
JSON) with ``target``, ``endpoint`` and ``reason`` fields where they apply.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from typing import Any

import click

from cardguard import logfmt
from cardguard.errors import ConfigError
from cardguard.settings.config import load_config

# Attributes every LogRecord has; anything else was passed in ``extra=`` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


_CONTROL_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": logfmt.timestamp(record.created),
        "level": record.levelname.lower().replace("warning", "warn"),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for k, v in vars(record).items():
        if k not in _STANDARD and not k.startswith("_"):
            out[k] = v
    if record.exc_info:
        out["error"] = logging.Formatter().formatException(record.exc_info)
    return out


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=warn logger=... msg="..." target=api endpoint=metrics reason=timeout``."""

    def format(self, record: logging.LogRecord) -> str:
        return logfmt.line(_fields(record))


class JSONFormatter(logging.Formatter):
    """One JSON object per line with the same fields as :class:`LogfmtFormatter`."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


FORMATTERS: dict[str, type[logging.Formatter]] = {"logfmt": LogfmtFormatter, "json": JSONFormatter}


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[fmt]())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    # urllib3 logs retries and pool details at debug/warning; cardguard reports fetches itself.
    logging.getLogger("urllib3").setLevel(logging.ERROR)


# Paths cardguard serves itself; the telemetry path may not take one of them.
_RESERVED_PATHS = ("/", "/report", "/probe", "/-/healthy", "/-/ready", "/-/reload")


def _telemetry_path(path: str) -> str:
    if not path.startswith("/") or any(c.isspace() or c in "?#" for c in path):
        raise click.BadParameter(f"expected a URL path starting with /, got {path!r}")
    if path in _RESERVED_PATHS or path.startswith("/report/"):
        raise click.BadParameter(f"{path} is one of cardguard's own pages")
    return path


def parse_listen_address(text: str) -> tuple[str, int]:
    """Split ``host:port`` (``:10180`` means all interfaces, ``[::1]:10180`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"expected host:port, got {text!r}")
    host = host.strip("[]")
    return (host or "0.0.0.0"), int(port)


@click.command("serve")
@click.option(
    "--config.file",
    "config_file",
    default="cardguard.yml",
    show_default=True,
    help="Configuration file (targets, caps, rules).",
)
@click.option(
    "--web.listen-address",
    "listen",
    default="127.0.0.1:10180",
    show_default=True,
    help="Address to serve /metrics, /report and the landing page on.",
)
@click.option(
    "--log.level",
    "log_level",
    type=click.Choice(sorted(_LEVELS)),
    default="info",
    show_default=True,
)
@click.option(
    "--log.format",
    "log_format",
    type=click.Choice(sorted(FORMATTERS)),
    default="logfmt",
    show_default=True,
)
@click.option(
    "--web.config.file",
    "web_config_file",
    default=None,
    help="exporter-toolkit web config file: TLS and basic auth for cardguard's own server.",
)
@click.option(
    "--web.telemetry-path",
    "telemetry_path",
    default="/metrics",
    show_default=True,
    callback=lambda ctx, param, value: _telemetry_path(value),
    help="Path under which to expose cardguard's own series.",
)
@click.option(
    "--web.enable-lifecycle",
    "enable_lifecycle",
    is_flag=True,
    help="Allow reloading the configuration with POST /-/reload (SIGHUP always reloads).",
)
@click.option(
    "--scrape.concurrency",
    "concurrency",
    type=click.IntRange(min=1, max=1024),
    default=32,
    show_default=True,
    help="Threads fetching from targets: the most fetches in flight at once.",
)
@click.option(
    "--analysis.processes",
    "analysis_processes",
    type=click.IntRange(min=-1, max=256),
    default=-1,
    show_default=True,
    help="Worker processes analysing /metrics pages (0: in the fetch threads; "
    "-1: one per CPU when there are several).",
)
def serve(
    config_file: str,
    listen: str,
    log_level: str,
    log_format: str,
    web_config_file: str | None,
    telemetry_path: str,
    enable_lifecycle: bool,
    concurrency: int,
    analysis_processes: int,
) -> None:
    """Scrape the configured Go services and export what cardguard finds."""
    from cardguard.expose import fleet, probe
    from cardguard.expose.app import App
    from cardguard.expose.server import make_server
    from cardguard.run import malloc
    from cardguard.run.analysis import make_analyser
    from cardguard.run.scheduler import Scheduler
    from cardguard.settings import webconfig

    setup_logging(log_level, log_format)
    malloc.return_large_buffers()
    log = logging.getLogger("cardguard")
    # Block the control signals before any thread starts, so every thread inherits the
    # mask and the main thread alone takes them with sigwait below. (A Python handler
    # would run only when the main thread next executes bytecode; if the kernel hands
    # the signal to another thread while the main thread sleeps, it would never run.)
    signal.pthread_sigmask(signal.SIG_BLOCK, _CONTROL_SIGNALS)
    host, port = parse_listen_address(listen)
    try:
        cfg = load_config(config_file)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        raise SystemExit(1) from None
    # Web config (TLS, basic auth, headers), /probe and fleet mode.
    try:
        web_options = webconfig.server_options(
            webconfig.load(web_config_file) if web_config_file else None
        )
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        raise SystemExit(1) from None
    if analysis_processes < 0:
        cpus = os.cpu_count() or 1
        analysis_processes = cpus if cpus > 1 else 0
    scheduler = Scheduler(cfg, concurrency=concurrency, analyser=make_analyser(analysis_processes))
    app = App(
        config_file,
        cfg,
        scheduler,
        telemetry_path=telemetry_path,
        enable_lifecycle=enable_lifecycle,
    )
    probe.install(app)
    fleet_pollers = fleet.install(app)
    try:
        server = make_server(app, host, port, **web_options)
    except OSError as exc:
        log.error("cannot listen on %s: %s", listen, exc.strerror or exc)
        raise SystemExit(1) from None

    # Serve first (health answers while targets start), then schedule: start() only fills
    # the due-time queue, so it takes no longer with ten thousand targets than with ten.
    thread = threading.Thread(target=server.serve_forever, name="cardguard-http", daemon=True)
    thread.start()
    app.metrics_page.start()
    scheduler.start()
    address = f"{server.server_address[0]!s}:{server.server_address[1]}"
    log.info("cardguard listening", extra={"address": address, "targets": len(scheduler.targets)})
    while True:
        sig = signal.sigwait(_CONTROL_SIGNALS)
        if sig != signal.SIGHUP:
            break
        app.reload()
    log.info("shutting down", extra={"signal": signal.Signals(sig).name})
    server.shutdown()
    server.server_close()
    app.metrics_page.stop()
    scheduler.stop()
    fleet_pollers.stop()
