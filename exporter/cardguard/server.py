"""cardguard's own HTTP server: landing page, /metrics, /report, health, readiness and reload.

Handlers are thin: each route is a function ``(app, request) -> Response`` in
one map (:data:`ROUTES`); the :class:`App` holds the registry, the scheduler
and the config. Plug-in points for later layers:

* more routes (``/probe``): ``App.routes[("GET", "/probe")] = handler``;
* TLS: pass an ``ssl.SSLContext`` to :func:`make_server`, which wraps the
  listening socket;
* authentication: pass ``authenticate(handler) -> bool`` to :func:`make_server`;
  it runs before every route and a false answer gives 401;
* extra response headers (web config ``http_server_config.headers``).

A 500 from this server means a bug in cardguard, never a bad target: target
failures are data in the snapshots, and route errors are logged with a
traceback.
"""

from __future__ import annotations

import html
import http.server
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)
from prometheus_client.exposition import choose_encoder

from cardguard import __version__, render
from cardguard.collectors import ReloadCollector, ReloadStatus, target_collectors
from cardguard.config import Config, format_duration, load_config
from cardguard.errors import ConfigError
from cardguard.scheduler import ENDPOINTS, Scheduler, TargetSnapshot

log = logging.getLogger("cardguard.server")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


Route = Callable[["App", Request], Response]


class App:
    """What the handlers need: config file, scheduler, registry, reload status."""

    def __init__(self, config_path: str | Path, config: Config, scheduler: Scheduler) -> None:
        self.config_path = str(config_path)
        self.scheduler = scheduler
        self.reload_status = ReloadStatus(successful=True, success_timestamp=time.time())
        self.registry = CollectorRegistry(auto_describe=False)
        for c in target_collectors(
            self.scheduler.snapshots, lambda: self.scheduler.config.global_.caps.offenders
        ):
            self.registry.register(c)
        self.registry.register(ReloadCollector(self.reload_status))
        for c in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(c)
        self.routes: dict[tuple[str, str], Route] = dict(ROUTES)
        self._reload_lock = threading.Lock()
        self.started = time.time()
        _ = config

    @property
    def config(self) -> Config:
        return self.scheduler.config

    def reload(self) -> tuple[int, str]:
        """Reload the config file; keep the running config when the new one cannot be used.

        Never raises: SIGHUP and ``POST /-/reload`` both land here, and neither may end
        the process or the server. Returns the HTTP status for ``/-/reload`` and a
        message: 200, 400 when the file is wrong (every problem as file:line), 500 when
        cardguard itself failed (a bug, logged with its traceback).
        """
        with self._reload_lock:
            try:
                cfg = load_config(self.config_path)
                self.scheduler.apply(cfg)
            except ConfigError as exc:
                log.error(
                    "config reload failed; keeping the previous config: %s",
                    "; ".join(exc.problems),
                    extra={"reason": "config"},
                )
                return self._reload_failed(400, exc.problems)
            except Exception as exc:
                log.exception(
                    "config reload failed with an internal error; keeping the previous config",
                    extra={"reason": "internal"},
                )
                what = f"{type(exc).__name__}: {exc}"[:300]
                return self._reload_failed(
                    500, [f"{self.config_path}: internal error in cardguard: {what}"]
                )
            self.reload_status.successful = True
            self.reload_status.success_timestamp = time.time()
            self.reload_status.last_error = None
            log.info("config reloaded", extra={"targets": len(cfg.targets)})
            return 200, f"reloaded {self.config_path}: {len(cfg.targets)} target(s)"

    def _reload_failed(self, status: int, problems: list[str]) -> tuple[int, str]:
        message = "\n".join(problems)
        self.reload_status.successful = False
        self.reload_status.last_error = message
        return status, message

    def reports(self) -> list[render.TargetReport]:
        """One report per target for the /report page, built from the current snapshots."""
        out = []
        for snap in self.scheduler.snapshots():
            notes = tuple(
                f"{e}: {h.last_error}"
                for e, h in snap.health.items()
                if h.attempted and not h.success and h.last_error
            )
            if snap.goroutineleak_supported is False:
                notes += ("goroutineleak: not served by this target (Go < 1.26)",)
            out.append(
                render.TargetReport(
                    target=snap.target,
                    offenders=snap.offenders,
                    url=snap.url,
                    generated_at=snap.updated or time.time(),
                    window_seconds=snap.window_seconds,
                    snapshots=snap.snapshots,
                    notes=notes,
                    error=snap.offenders_error,
                )
            )
        return out


# --- routes -------------------------------------------------------------------------


def _metrics(app: App, req: Request) -> Response:
    encoder, content_type = choose_encoder(req.headers.get("accept", ""))
    return Response(200, encoder(app.registry), content_type)


def _healthy(app: App, req: Request) -> Response:
    return Response(200, b"cardguard is healthy.\n")


def _ready(app: App, req: Request) -> Response:
    return Response(200, b"cardguard is ready.\n")


def _reload(app: App, req: Request) -> Response:
    # 400 when the file on disk is wrong: cardguard is fine and keeps the old config.
    status, message = app.reload()
    return Response(status, (message + "\n").encode())


def _report(app: App, req: Request) -> Response:
    return Response(200, render.report_page(app.reports()), "text/html; charset=utf-8")


def _health_cell(snap: TargetSnapshot) -> str:
    parts = []
    for endpoint in ENDPOINTS:
        h = snap.health.get(endpoint)
        if h is None or not h.attempted:
            continue
        state = "ok" if h.success else f"failing ({h.last_reason})"
        cls = "ok" if h.success else "bad"
        title = html.escape(h.last_error or "", quote=True)
        parts.append(f'<span class="{cls}" title="{title}">{endpoint}: {state}</span>')
    return "<br>".join(parts) or "not scraped yet"


def _landing(app: App, req: Request) -> Response:
    cfg = app.config
    rs = app.reload_status
    if rs.successful:
        status = (
            f'<span class="ok">loaded</span> at '
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(rs.success_timestamp))}"
        )
    else:
        status = (
            '<span class="bad">last reload failed; running the previous config</span>'
            f"<pre>{html.escape(rs.last_error or '')}</pre>"
        )
    rows = []
    for snap in app.scheduler.snapshots():
        t = cfg.target(snap.target)
        every = format_duration(t.interval) if t else "?"
        page = snap.analysis
        series = f"{page.total_series:,}" if page is not None else "-"
        rows.append(
            "<tr>"
            f"<td>{html.escape(snap.target)}</td>"
            f"<td>{html.escape(snap.url)}</td><td>{every}</td>"
            f"<td>{_health_cell(snap)}</td><td>{series}</td>"
            f"<td>{len(snap.offenders)}</td>"
            "</tr>"
        )
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cardguard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3em .6em; }}
.ok {{ color: #17702a; }} .bad {{ color: #b00020; }}
</style></head>
<body>
<h1>cardguard {html.escape(__version__)}</h1>
<p>Prometheus exporter and cardinality guard for Go services.</p>
<ul>
<li><a href="metrics">/metrics</a>: cardguard's series</li>
<li><a href="report">/report</a>: offenders with evidence and fixes</li>
<li><a href="-/healthy">/-/healthy</a>, <a href="-/ready">/-/ready</a></li>
</ul>
<h2>Configuration</h2>
<p><code>{html.escape(app.config_path)}</code>: {status}
(POST <code>/-/reload</code> or SIGHUP to reload)</p>
<h2>Targets</h2>
<table><thead><tr><th>target</th><th>url</th><th>interval</th><th>health</th>
<th>series</th><th>offenders</th></tr></thead>
<tbody>
{"".join(rows) or '<tr><td colspan="6">no targets configured</td></tr>'}
</tbody></table>
</body></html>
"""
    return Response(200, body.encode(), "text/html; charset=utf-8")


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/"): _landing,
    ("GET", "/metrics"): _metrics,
    ("GET", "/report"): _report,
    ("GET", "/-/healthy"): _healthy,
    ("GET", "/-/ready"): _ready,
    ("POST", "/-/reload"): _reload,
    ("PUT", "/-/reload"): _reload,
}


# --- HTTP plumbing ----------------------------------------------------------------------

MAX_REQUEST_BODY = 64 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    """Turn an HTTP request into a :class:`Request`, dispatch, write the :class:`Response`."""

    server: Server
    protocol_version = "HTTP/1.1"
    server_version = f"cardguard/{__version__}"

    timeout = 30  # seconds a client may take to send its request

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            # Handshake here, in the request's own thread, so a client that never
            # completes it cannot stall the accept loop.
            self.connection.do_handshake()

    def handle(self) -> None:
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.debug("client connection ended: %s", type(exc).__name__)

    def _dispatch(self, method: str, head_only: bool = False) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        if self.server.authenticate is not None and not self.server.authenticate(self):
            self._send(
                Response(
                    401, b"Unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="cardguard"'}
                )
            )
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BODY:
            self._send(Response(413, b"request body too large\n"))
            return
        body = self.rfile.read(length) if length > 0 else b""
        route = app.routes.get((method, url.path))
        if route is None:
            allowed = sorted(m for (m, p) in app.routes if p == url.path)
            if allowed:
                self._send(
                    Response(405, b"method not allowed\n", headers={"Allow": ", ".join(allowed)})
                )
            else:
                self._send(Response(404, b"not found\n"))
            return
        req = Request(
            method=method,
            path=url.path,
            query=parse_qs(url.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            resp = route(app, req)
        except Exception:
            # Reaching this is a bug in cardguard: say so, with the traceback in the log.
            log.exception("internal error serving %s", url.path, extra={"endpoint": url.path})
            resp = Response(500, b"internal error in cardguard; see its log\n")
        self._send(resp, head_only=head_only)

    def _send(self, resp: Response, head_only: bool = False) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in {**self.server.extra_headers, **resp.headers}.items():
            self.send_header(k, v)
        self.end_headers()
        if not head_only:
            self.wfile.write(resp.body)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET", head_only=True)

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    app: App
    authenticate: Callable[[Handler], bool] | None
    extra_headers: Mapping[str, str]


def make_server(
    app: App,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    authenticate: Callable[[Handler], bool] | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> Server:
    """Bind the server (port 0 picks a free port); TLS and auth are optional seams."""
    server = Server((host, port), Handler)
    server.app = app
    server.authenticate = authenticate
    server.extra_headers = dict(extra_headers or {})
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    return server
