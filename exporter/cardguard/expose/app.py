"""What cardguard serves: landing page, /metrics, /report, health, readiness and reload.

Handlers are thin: each route is a function ``(app, request) -> Response`` in
one map (:data:`ROUTES`); the :class:`App` holds the registry, the scheduler
and the config, and :func:`cardguard.expose.server.make_server` serves it.
More routes (``/probe``) are added with ``App.routes[("GET", "/probe")] = handler``;
a route for everything under a path goes in ``App.subtrees`` (key ending in
``/``, as Go's ServeMux patterns), e.g. ``/report/<target>/heap.pb.gz``.

Target failures are data in the snapshots, never a 500: a route that raises is
a bug in cardguard, answered 500 and logged with its traceback by the server.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, unquote

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)

from cardguard import __version__
from cardguard.analyse.view import GoroutinePoint, TargetView
from cardguard.errors import ConfigError
from cardguard.expose import flamegraph
from cardguard.expose.collectors import (
    BuildInfoCollector,
    ReloadCollector,
    ReloadStatus,
    ScheduleCollector,
)
from cardguard.expose.metricspage import MetricsPage
from cardguard.expose.render.formats import render
from cardguard.expose.render.html import report_page
from cardguard.expose.render.json import report_dict
from cardguard.expose.render.page import page
from cardguard.expose.render.report import TargetReport
from cardguard.expose.server import Request, Response
from cardguard.gunzip import MAGIC as GZIP_MAGIC
from cardguard.quantities import format_duration
from cardguard.run.scheduler import Scheduler
from cardguard.run.snapshot import ENDPOINTS, RawProfile, TargetSnapshot
from cardguard.settings.config import Config, load_config
from cardguard.version import build_info

log = logging.getLogger("cardguard.expose.app")

Route = Callable[["App", Request], Response]


class App:
    """What the handlers need: config file, scheduler, registry, reload status.

    ``telemetry_path`` is where cardguard's own series are served (``--web.telemetry-path``);
    ``enable_lifecycle`` lets ``POST /-/reload`` reload (``--web.enable-lifecycle``, off by
    default as in Prometheus and its exporters: 403 otherwise; SIGHUP always reloads).
    """

    def __init__(
        self,
        config_path: str | Path,
        config: Config,
        scheduler: Scheduler,
        *,
        telemetry_path: str = "/metrics",
        enable_lifecycle: bool = False,
    ) -> None:
        self.config_path = str(config_path)
        self.scheduler = scheduler
        self.telemetry_path = telemetry_path
        self.enable_lifecycle = enable_lifecycle
        self.reload_status = ReloadStatus(successful=True, success_timestamp=time.time())
        self.registry = CollectorRegistry(auto_describe=False)
        # The per-target series are prebuilt (metricspage); the registry holds the live ones.
        self.metrics_page = MetricsPage(
            self.scheduler.snapshots, lambda: self.scheduler.config.global_.caps.offenders
        )
        self.registry.register(ScheduleCollector(self.scheduler.view))
        self.registry.register(ReloadCollector(self.reload_status))
        self.registry.register(BuildInfoCollector(build_info()))
        for c in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(c)
        self.routes: dict[tuple[str, str], Route] = dict(ROUTES)
        if telemetry_path != "/metrics":
            self.routes[("GET", telemetry_path)] = self.routes.pop(("GET", "/metrics"))
        self.subtrees: dict[tuple[str, str], Route] = dict(SUBTREES)
        self._reload_lock = threading.Lock()
        self.started = time.time()
        _ = config

    @property
    def config(self) -> Config:
        return self.scheduler.config

    def route(self, method: str, path: str) -> Route | None:
        """The route for ``path``: an exact one, else the longest subtree holding it."""
        exact = self.routes.get((method, path))
        if exact is not None:
            return exact
        best = None
        for (m, prefix), handler in self.subtrees.items():
            if m == method and path.startswith(prefix) and len(path) > len(prefix):
                if best is None or len(prefix) > len(best[0]):
                    best = (prefix, handler)
        return best[1] if best else None

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
            n = len(self.scheduler.targets)
            log.info("config reloaded", extra={"targets": n})
            return 200, f"reloaded {self.config_path}: {n} target(s)"

    def _reload_failed(self, status: int, problems: list[str]) -> tuple[int, str]:
        message = "\n".join(problems)
        self.reload_status.successful = False
        self.reload_status.last_error = message
        return status, message

    def reports(self) -> list[TargetReport]:
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
                TargetReport(
                    target=snap.target,
                    offenders=snap.offenders,
                    url=snap.url,
                    generated_at=snap.updated or time.time(),
                    window_seconds=snap.window_seconds,
                    snapshots=snap.snapshots,
                    notes=notes,
                    error=snap.offenders_error,
                    flames=flamegraph.for_view(_pictured(snap)),
                    downloads=tuple(
                        (f"{name} ({_clock(raw.at)})", _download_href(snap.target, name))
                        for name, raw in _downloads(snap).items()
                    ),
                    grafana_url=self.config.global_.grafana_url,
                )
            )
        return out


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(ts))


def _pictured(snap: TargetSnapshot) -> TargetView:
    """What the flame graphs of one target are drawn from, out of its published snapshot."""
    goroutines: tuple[GoroutinePoint, ...] = ()
    if snap.goroutines is not None:
        g = snap.goroutines
        goroutines = (GoroutinePoint(at=g.at, total=g.total, groups=g.groups),)
    return TargetView(target=snap.target, heaps=snap.heap_window, goroutines=goroutines)


def _download_name(kind: str, raw: RawProfile) -> str | None:
    """The name on the page and in the URL of a kept profile, after what it holds.

    The goroutine profile is the full dump (``debug=2``, text) or the counted
    proto form (``debug=0``), whichever the last round read.
    """
    if kind == "heap":
        return "heap.pb.gz"
    if kind == "goroutine":
        return "goroutine.pb.gz" if raw.body.startswith(GZIP_MAGIC) else "goroutine.txt"
    return None


def _downloads(snap: TargetSnapshot) -> dict[str, RawProfile]:
    out = {}
    for kind, raw in snap.raw_profiles.items():
        name = _download_name(kind, raw)
        if name is not None:
            out[name] = raw
    return out


def _download_href(target: str, name: str) -> str:
    # Relative to /report, so the page works behind a reverse proxy's path prefix too.
    return f"report/{quote(target, safe='')}/{name}"


# --- routes -------------------------------------------------------------------------


def _metrics(app: App, req: Request) -> Response:
    body, content_type, headers = app.metrics_page.response(
        app.registry, req.headers.get("accept", ""), req.headers.get("accept-encoding", "")
    )
    return Response(200, body, content_type, headers=headers)


def _healthy(app: App, req: Request) -> Response:
    return Response(200, b"cardguard is healthy.\n")


def _ready(app: App, req: Request) -> Response:
    # Ready once the config is loaded (it is before the server starts) and every target
    # had its first round, so a new replica does not answer with empty series.
    if app.scheduler.ready():
        return Response(200, b"cardguard is ready.\n")
    waiting = ", ".join(app.scheduler.waiting_for()) or "the scheduler to start"
    return Response(503, f"cardguard is not ready: first round of {waiting}\n"[:2000].encode())


def _reload(app: App, req: Request) -> Response:
    if not app.enable_lifecycle:
        # As Prometheus: reloading over HTTP is opt-in (--web.enable-lifecycle).
        return Response(403, b"Lifecycle API is not enabled.\n")
    # 400 when the file on disk is wrong: cardguard is fine and keeps the old config.
    status, message = app.reload()
    return Response(status, (message + "\n").encode())


# ``/report?format=``: the page, or the reports as ``cardguard report`` writes them.
REPORT_TYPES = {
    "html": "text/html; charset=utf-8",
    "json": "application/json",
    "markdown": "text/markdown; charset=utf-8",
    "text": "text/plain; charset=utf-8",
}


def _report(app: App, req: Request) -> Response:
    fmt = (req.query.get("format") or ["html"])[-1]
    if fmt not in REPORT_TYPES:
        known = ", ".join(REPORT_TYPES)
        return Response(400, f"unknown format {fmt[:40]!r}; one of {known}\n".encode())
    reports = app.reports()
    if fmt == "html":
        return Response(200, report_page(reports), REPORT_TYPES[fmt])
    if fmt == "json":
        # Always {"targets": [...]}, however many targets serve watches.
        doc = {"targets": [report_dict(r) for r in reports]}
        return Response(200, (json.dumps(doc, indent=2) + "\n").encode(), REPORT_TYPES[fmt])
    return Response(200, render(reports, fmt).encode(), REPORT_TYPES[fmt])


def _report_file(app: App, req: Request) -> Response:
    """``/report/<target>/heap.pb.gz`` or ``goroutine.txt``: the last profile serve kept."""
    target, _, name = req.path.removeprefix("/report/").partition("/")
    target = unquote(target)
    snap = next((s for s in app.scheduler.snapshots() if s.target == target), None)
    raw = _downloads(snap).get(name) if snap is not None else None
    if snap is None or raw is None:
        return Response(404, b"no such target or profile; see /report\n")
    body = raw.body
    if name.endswith(".gz") and not body.startswith(GZIP_MAGIC):
        body = gzip.compress(body, mtime=0)  # the target sent it Content-Encoding: gzip
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(raw.at))
    stem, dot, ext = name.partition(".")
    filename = f"{snap.target}-{stem}-{stamp}{dot}{ext}".replace('"', "")
    kind = "application/octet-stream" if name.endswith(".gz") else "text/plain; charset=utf-8"
    return Response(
        200, body, kind, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


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


def _reload_hint(app: App) -> str:
    if app.enable_lifecycle:
        return "POST <code>/-/reload</code> or SIGHUP to reload"
    return (
        "SIGHUP to reload (POST <code>/-/reload</code> needs <code>--web.enable-lifecycle</code>)"
    )


def _landing(app: App, req: Request) -> Response:
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
    # Targets from target files too, found by name at once (a fleet has thousands).
    targets = {t.name: t for t in app.scheduler.targets}
    for snap in app.scheduler.snapshots():
        t = targets.get(snap.target)
        every = format_duration(t.interval) if t else "?"
        analysis = snap.analysis
        series = f"{analysis.total_series:,}" if analysis is not None else "-"
        rows.append(
            "<tr>"
            f'<td><a href="report#t-{html.escape(snap.target, quote=True)}">'
            f"{html.escape(snap.target)}</a></td>"
            f"<td>{html.escape(snap.url)}</td><td>{every}</td>"
            f"<td>{_health_cell(snap)}</td><td>{series}</td>"
            f"<td>{len(snap.offenders)}</td>"
            "</tr>"
        )
    body = f"""<h2>Configuration</h2>
<p><code>{html.escape(app.config_path)}</code>: {status}
({_reload_hint(app)})</p>
<h2>Targets</h2>
<table><thead><tr><th>target</th><th>url</th><th>interval</th><th>health</th>
<th>series</th><th>offenders</th></tr></thead>
<tbody>
{"".join(rows) or '<tr><td colspan="6">no targets configured</td></tr>'}
</tbody></table>
<h2>Pages</h2>
<ul>
<li><a href="report">/report</a>: offenders with evidence, fixes, trends and flame graphs</li>
<li><a href="{html.escape(app.telemetry_path.lstrip("/"), quote=True)}">\
{html.escape(app.telemetry_path)}</a>: cardguard's series</li>
<li><a href="-/healthy">/-/healthy</a>, <a href="-/ready">/-/ready</a></li>
</ul>"""
    landing = page(
        f"cardguard {__version__}",
        "Prometheus exporter and cardinality guard for Go services.",
        body,
        nav=(("targets", "./"), ("report", "report"), ("metrics", app.telemetry_path.lstrip("/"))),
    )
    return Response(200, landing.encode(), "text/html; charset=utf-8")


# Routes for every path under a prefix (the key ends in "/"), tried after ROUTES.
SUBTREES: dict[tuple[str, str], Route] = {("GET", "/report/"): _report_file}

ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/"): _landing,
    ("GET", "/metrics"): _metrics,
    ("GET", "/report"): _report,
    ("GET", "/-/healthy"): _healthy,
    ("GET", "/-/ready"): _ready,
    ("POST", "/-/reload"): _reload,
    ("PUT", "/-/reload"): _reload,
}
