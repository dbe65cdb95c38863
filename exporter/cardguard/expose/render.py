"""Render offender reports as terminal text, JSON, Markdown or a self-contained HTML page.

Pure: every function takes :class:`TargetReport` objects and returns a string.
The formats are listed in one map, :data:`RENDERERS`. The HTML page (also what
``serve`` shows at ``/report``, via :func:`report_page`) loads nothing at view
time: styles and the flame graphs' search script are inline, trends are SVG
charts with a time axis and hover values, and each target's flame graphs
(:mod:`cardguard.expose.flamegraph`) are inline SVG. Links lead to the target's
Grafana dashboard over the watched time range (when a Grafana URL is set)
and, on ``serve``, to the raw profiles it kept. :func:`page` wraps any body in
the same look, so ``/`` and ``/report`` share one style.
"""

from __future__ import annotations

import html
import json
import math
import re
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from cardguard.detect.offenders import Offender, sort_offenders
from cardguard.expose import ansi, flamegraph
from cardguard.expose.flamegraph import Flame
from cardguard.settings.rules import SEVERITIES, SEVERITY_RANK

WIDTH = 100

# The per-target dashboard (grafana/dashboards/cardguard-target.json): its uid
# and the variable that selects the target. A test pins both to the file.
DASHBOARD_UID = "cardguard-target"
DASHBOARD_TARGET_VAR = "target"
# Grafana's range around a watch: scrapes every 15-60s need minutes to show a trend.
DASHBOARD_BEFORE_SECONDS = 15 * 60.0
DASHBOARD_AFTER_SECONDS = 5 * 60.0


@dataclass(frozen=True)
class TargetReport:
    """The offenders of one target and how they were found.

    ``notes`` say what could not be read (e.g. a pprof endpoint not served),
    so a short report is never mistaken for a clean bill of health.
    ``flames`` are the target's flame graphs, ``downloads`` its raw profiles
    as ``(file name, link)`` and ``grafana_url`` the Grafana to link to.
    """

    target: str
    offenders: tuple[Offender, ...]
    url: str | None = None
    generated_at: float = field(default_factory=time.time)
    window_seconds: float = 0.0
    snapshots: int = 0
    notes: tuple[str, ...] = ()
    error: str | None = None
    flames: tuple[Flame, ...] = ()
    downloads: tuple[tuple[str, str], ...] = ()
    grafana_url: str | None = None

    @property
    def started_at(self) -> float:
        return self.generated_at - self.window_seconds

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
        for o in self.offenders:
            out[o.severity] += 1
        return out


def report_dict(report: TargetReport) -> dict[str, Any]:
    """Return the JSON shape of one report: ``{"target", "offenders": [...], ...}``."""
    return {
        "target": report.target,
        "url": report.url,
        "generated_at": round(report.generated_at, 3),
        "window_seconds": round(report.window_seconds, 3),
        "snapshots": report.snapshots,
        "notes": list(report.notes),
        "error": report.error,
        "counts": report.counts(),
        "dashboard_url": target_dashboard(report),
        "downloads": [{"name": n, "href": h} for n, h in report.downloads],
        "offenders": [o.to_dict() for o in sort_offenders(report.offenders)],
    }


def render_json(reports: Sequence[TargetReport], *, colour: bool = False) -> str:
    """One report as an object; several as ``{"targets": [...]}``."""
    if len(reports) == 1:
        doc: Any = report_dict(reports[0])
    else:
        doc = {"targets": [report_dict(r) for r in reports]}
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


# --- shared formatting ------------------------------------------------------------------

_SUBJECT_KEYS = ("family", "label", "function")
# Evidence keys shown elsewhere (or too bulky) in the detail lists.
_HIDDEN = frozenset({"trend", "stack", "reasons", "examples", "explanation"})


def subject(o: Offender) -> str:
    """A short name for what the offender is about: ``family{label}`` or a function."""
    ev = o.evidence
    if ev.get("family") and ev.get("label"):
        return f"{ev['family']}{{{ev['label']}}}"
    if ev.get("family"):
        return str(ev["family"])
    if ev.get("function"):
        return str(ev["function"])
    return o.kind.replace("_", " ")


def _value(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float) and key.endswith("bytes"):
        return _bytes(float(v))
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_value(str(k), x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return ", ".join(_value(key, x) for x in v)
    return str(v)


def _bytes(n: float) -> str:
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{sign}{n:.0f} {unit}" if unit == "B" else f"{sign}{n:.1f} {unit}"
        n /= 1024
    return f"{sign}{n:.1f} TiB"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _details(o: Offender) -> list[tuple[str, str]]:
    rows = []
    for key, v in o.evidence.items():
        if key in _HIDDEN or (isinstance(v, list | tuple) and v and isinstance(v[0], Mapping)):
            continue
        rows.append((key, _value(key, v)))
    for key, v in o.evidence.items():
        if isinstance(v, list | tuple) and v and isinstance(v[0], Mapping):
            rows.append((key, "; ".join(_value(key, x) for x in v)))
    return rows


def _header(r: TargetReport) -> str:
    c = r.counts()
    parts = [f"{c[s]} {s}" for s in reversed(SEVERITIES)]
    where = f" ({r.url})" if r.url and r.url != r.target else ""
    watched = (
        f"watched {r.window_seconds:.0f}s, {r.snapshots} snapshots"
        if r.snapshots
        else "no snapshots"
    )
    return f"{r.target}{where}: {', '.join(parts)}; {watched}; {_when(r.generated_at)}"


# --- text ----------------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]], widths: Sequence[int]) -> list[str]:
    """Lay rows out in columns; the last column wraps."""
    out = []
    for row in rows:
        cells = [textwrap.wrap(c, w) or [""] for c, w in zip(row, widths, strict=True)]
        for i in range(max(len(c) for c in cells)):
            parts = [
                (c[i] if i < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=True)
            ]
            out.append("  ".join(parts).rstrip())
    return out


def render_text(reports: Sequence[TargetReport], *, colour: bool = False) -> str:
    """Readable terminal tables: one summary table per target, then each offender in full.

    ``colour`` adds ANSI colour (severities, headings) after layout, so widths
    and wrapping are those of the plain text.
    """

    def paint(text: str, style: str) -> str:
        return ansi.paint(text, style, colour)

    out: list[str] = []
    for r in reports:
        title, _, rest = _header(r).partition(": ")
        out += [paint(title, "bold"), "=" * min(WIDTH, len(title))]
        out += textwrap.wrap(rest, WIDTH)
        dash = target_dashboard(r)
        if dash:
            out.append(f"grafana: {dash}")
        if r.error:
            out.append(paint(f"error: {r.error}", "red"))
        for note in r.notes:
            out.append(f"note: {note}")
        offenders = sort_offenders(r.offenders)
        if not offenders:
            out.append(paint("No offenders.", "green"))
            out.append("")
            continue
        out.append("")
        head = ("#", "SEVERITY", "KIND", "SUBJECT")
        rows = [head, tuple("-" * len(h) for h in head)]
        rows += [(str(i), o.severity, o.kind, subject(o)) for i, o in enumerate(offenders, 1)]
        table = _table(rows, (2, 8, 18, WIDTH - 34))
        sev = re.compile(r"^(\d+ +)(" + "|".join(SEVERITIES) + ")")
        out += [sev.sub(lambda m: m.group(1) + paint(m.group(2), m.group(2)), t) for t in table]
        for i, o in enumerate(offenders, 1):
            out.append("")
            out.append(
                f"[{i}] {paint(o.severity.upper(), o.severity)} "
                + paint(f"{o.kind} {subject(o)}", "bold")
                + f"  (id {o.id})"
            )
            out += textwrap.wrap(o.summary, WIDTH, initial_indent="    ", subsequent_indent="    ")
            reasons = o.evidence.get("reasons") or o.evidence.get("explanation") or []
            for reason in reasons:
                out += textwrap.wrap(
                    reason, WIDTH, initial_indent="    - ", subsequent_indent="      "
                )
            out.append("    evidence:")
            kw = max((len(k) for k, _ in _details(o)), default=0)
            for k, v in _details(o):
                out += textwrap.wrap(
                    v,
                    WIDTH,
                    initial_indent=f"      {k.ljust(kw)}  ",
                    subsequent_indent=" " * (8 + kw),
                    break_on_hyphens=False,
                )
            if o.evidence.get("examples"):
                out.append("      examples:")
                out += [f"        {x}" for x in o.evidence["examples"]]
            trend = o.evidence.get("trend")
            if trend and len(trend.get("points", ())) >= 2:
                out += textwrap.wrap(
                    f"trend ({trend['title']}): {_spark(trend)}",
                    WIDTH,
                    initial_indent="      ",
                    subsequent_indent="        ",
                )
            if o.evidence.get("stack"):
                out.append("      stack:")
                out += [f"        {f}" for f in o.evidence["stack"]]
            dash = offender_dashboard(r, o)
            if dash:
                out.append(f"      grafana: {dash}")
            out.append("    " + paint("fix:", "green"))
            out += textwrap.wrap(o.fix, WIDTH, initial_indent="      ", subsequent_indent="      ")
            if o.fix_snippet:
                out += ["      " + line for line in o.fix_snippet.rstrip("\n").split("\n")]
        out.append("")
    return "\n".join(out) + "\n"


_BARS = "▁▂▃▄▅▆▇█"


def _spark(trend: Mapping[str, Any]) -> str:
    values = [float(p[1]) for p in trend["points"]]
    lo, hi = min(values), max(values)
    span = hi - lo
    bars = "".join(
        _BARS[0] if span == 0 else _BARS[min(7, int((v - lo) / span * 7.999))] for v in values
    )
    unit = trend.get("unit") or ""
    fmt = _bytes if unit == "bytes" else (lambda x: f"{x:,.0f}")
    return f"{bars} {fmt(values[0])} -> {fmt(values[-1])}"


# --- markdown ---------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(reports: Sequence[TargetReport], *, colour: bool = False) -> str:
    """A Markdown document: a table of offenders per target, then each one's evidence and fix."""
    out = ["# cardguard report", ""]
    for r in reports:
        out += [f"## {r.target}", "", _header(r), ""]
        if r.error:
            out += [f"**error:** {r.error}", ""]
        for note in r.notes:
            out.append(f"> note: {note}")
        if r.notes:
            out.append("")
        offenders = sort_offenders(r.offenders)
        if not offenders:
            out += ["No offenders.", ""]
            continue
        out += ["| # | severity | kind | subject | summary |", "|---|---|---|---|---|"]
        for i, o in enumerate(offenders, 1):
            out.append(
                f"| {i} | {o.severity} | {o.kind} | `{_md_cell(subject(o))}` | "
                f"{_md_cell(o.summary)} |"
            )
        out.append("")
        for i, o in enumerate(offenders, 1):
            out += [f"### {i}. {o.severity}: {o.kind} `{subject(o)}`", "", o.summary, ""]
            for reason in o.evidence.get("reasons") or o.evidence.get("explanation") or []:
                out.append(f"- {reason}")
            out += ["", "| evidence | value |", "|---|---|"]
            out += [f"| {k} | {_md_cell(v)} |" for k, v in _details(o)]
            out.append("")
            if o.evidence.get("examples"):
                out += ["Examples: " + ", ".join(f"`{x}`" for x in o.evidence["examples"]), ""]
            if o.evidence.get("stack"):
                out += ["```", *o.evidence["stack"], "```", ""]
            out += [f"**Fix.** {o.fix}", ""]
            if o.fix_snippet:
                out += ["```yaml", o.fix_snippet.rstrip("\n"), "```", ""]
            out += [f"<sub>id {o.id}</sub>", ""]
    return "\n".join(out)


# --- links ------------------------------------------------------------------------------


def dashboard_url(grafana_url: str, target: str, start: float, end: float) -> str:
    """Link to the per-target Grafana dashboard, ``target`` selected, over ``start``..``end``.

    The range is widened (:data:`DASHBOARD_BEFORE_SECONDS` before, :data:`DASHBOARD_AFTER_SECONDS`
    after) so the dashboard's rates have scrapes to work with.
    """
    query = urlencode(
        {
            f"var-{DASHBOARD_TARGET_VAR}": target,
            "from": int((start - DASHBOARD_BEFORE_SECONDS) * 1000),
            "to": int((end + DASHBOARD_AFTER_SECONDS) * 1000),
        }
    )
    return f"{grafana_url.rstrip('/')}/d/{DASHBOARD_UID}/{DASHBOARD_UID}?{query}"


def target_dashboard(r: TargetReport) -> str | None:
    """The dashboard link over the whole watch of ``r``, or None without a Grafana URL."""
    if not r.grafana_url:
        return None
    return dashboard_url(r.grafana_url, r.target, r.started_at, r.generated_at)


def offender_dashboard(r: TargetReport, o: Offender) -> str | None:
    """The dashboard link over the offender's trend (else the watch), or None without Grafana."""
    if not r.grafana_url:
        return None
    points: Sequence[Sequence[float]] = (o.evidence.get("trend") or {}).get("points") or []
    if len(points) >= 2:
        return dashboard_url(r.grafana_url, r.target, float(points[0][0]), float(points[-1][0]))
    return target_dashboard(r)


# --- html --------------------------------------------------------------------------------

CSS = """
:root{--ink:#1d2330;--muted:#5a6478;--line:#dfe3ea;--bg:#f6f7f9;--accent:#3b63b8}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 background:var(--bg);color:var(--ink)}
header.top{background:var(--ink);color:#fff;padding:14px 28px}
header.top h1{margin:0;font-size:20px}
header.top p{margin:4px 0 0;color:#c9d1e0;font-size:13px}
header.top nav{margin-top:6px;font-size:13px}
header.top nav a{color:#fff;margin-right:14px}
main{max-width:1240px;margin:0 auto;padding:16px 28px 40px}
h2{font-size:18px;margin:18px 0 6px}
a{color:var(--accent)}
section.target{margin:18px 0 28px}
section.target>h2{margin:0 0 4px}
.meta,.muted{color:var(--muted);font-size:13px}
.meta{margin:0 0 10px}
.links{font-size:13px;margin:0 0 10px}
.links a{margin-right:12px}
.note{background:#fff8e1;border-left:4px solid #e0b400;padding:6px 10px;margin:6px 0;
 font-size:13px}
.error{background:#fdecea;border-left:4px solid #c62828;padding:6px 10px;margin:6px 0}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e3e6ec;vertical-align:top;
 font-size:14px}
th{background:#eef0f4;font-weight:600}
.sev{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:700;
 color:#fff;text-transform:uppercase;letter-spacing:.03em}
.sev.critical{background:#c62828}.sev.warning{background:#d9822b}.sev.info{background:#4f6d9a}
.ok{color:#17702a}.bad{color:#b00020}
article{background:#fff;border:1px solid var(--line);border-radius:6px;margin:14px 0;
 padding:12px 16px}
article.critical{border-left:6px solid #c62828}article.warning{border-left:6px solid #d9822b}
article.info{border-left:6px solid #4f6d9a}
article h3{margin:0 0 6px;font-size:16px}
article .summary{font-size:15px;margin:4px 0 8px;font-weight:500}
article .actions{font-size:13px;margin:4px 0 0}
article .actions a{margin-right:14px}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f3f4f7;padding:8px 10px;overflow-x:auto;border-radius:4px;margin:6px 0}
.cols{display:flex;gap:18px;flex-wrap:wrap}
.cols>div{flex:1 1 420px;min-width:300px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0;font-size:13px}
dt{color:var(--muted)}dd{margin:0;word-break:break-word}
.fix{background:#eef7ee;border-left:4px solid #2e7d32;padding:8px 10px;margin:8px 0 4px}
.fix h4,.ev h4{margin:0 0 4px;font-size:13px;text-transform:uppercase;color:var(--muted)}
figure{margin:6px 0}figcaption{font-size:12px;color:var(--muted)}
svg.chart{display:block;font:11px system-ui,sans-serif}
svg.chart text{fill:var(--muted)}
svg.chart .pt:hover circle.dot{r:4.5}
.id{color:#8a93a6;font-size:12px}
.clean{background:#eef7ee;padding:10px 14px;border-radius:6px}
"""
CSS += flamegraph.CSS


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def page(title: str, subtitle: str, body: str, *, nav: Sequence[tuple[str, str]] = ()) -> str:
    """Wrap ``body`` (HTML) in cardguard's page: header, navigation, the one stylesheet.

    ``nav`` links are ``(text, href)``; the flame graphs' search script is
    added only when the body holds a flame graph.
    """
    links = "".join(f'<a href="{_esc(h)}">{_esc(t)}</a>' for t, h in nav)
    script = f"<script>{flamegraph.SCRIPT}</script>" if 'class="flamegraph"' in body else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>\n"
        f'<header class="top"><h1>{_esc(title)}</h1><p>{subtitle}</p>'
        + (f"<nav>{links}</nav>" if links else "")
        + f"</header><main>\n{body}\n</main>{script}</body></html>\n"
    )


def _nice(step: float) -> float:
    """Round ``step`` up to 1, 2 or 5 times a power of ten."""
    if step <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(step))
    for m in (1, 2, 5, 10):
        if step <= m * mag:
            return m * mag
    return 10 * mag


# Steps for the time axis, in seconds: clock-friendly, not decimal.
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)


def _time_ticks(t0: float, t1: float, most: int = 6) -> tuple[list[float], str]:
    span = max(t1 - t0, 1e-9)
    step = next((s for s in _TIME_STEPS if span / s <= most), 86400)
    first = math.ceil(t0 / step) * step
    ticks = []
    t = float(first)
    while t <= t1 + 1e-9:
        ticks.append(t)
        t += step
    return ticks, ("%H:%M:%S" if step < 60 else "%H:%M")


def _clock(ts: float, fmt: str = "%H:%M:%S") -> str:
    return time.strftime(fmt, time.gmtime(ts))


def svg_chart(trend: Mapping[str, Any], width: int = 520, height: int = 170) -> str:
    """Return an inline SVG line chart of ``trend["points"]`` ([[t, value], ...]).

    The x axis is clock time (UTC) with round ticks, the y axis has gridlines
    at round values, and every point names its time and value on hover.
    """
    points = [(float(t), float(v)) for t, v in trend.get("points", ())]
    if len(points) < 2:
        return ""
    unit = trend.get("unit") or ""
    fmt: Callable[[float], str] = _bytes if unit == "bytes" else _count
    left, right, top, bottom = 70, 30, 10, 34
    w, h = width - left - right, height - top - bottom
    t0, t1 = points[0][0], points[-1][0]
    lo = min(0.0, min(v for _, v in points))
    hi = max(v for _, v in points)
    step = _nice((hi - lo) / 4 if hi > lo else 1.0)
    hi = max(step * math.ceil(hi / step), lo + step)
    span_t = (t1 - t0) or 1.0

    def x_of(t: float) -> float:
        return left + (t - t0) / span_t * w

    def y_of(v: float) -> float:
        return top + h - (v - lo) / (hi - lo) * h

    grid = []
    v = lo
    while v <= hi + step / 2:
        y = y_of(v)
        grid.append(
            f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e9ef"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_esc(fmt(v))}</text>'
        )
        v += step
    ticks, tfmt = _time_ticks(t0, t1)
    for t in ticks:
        x = x_of(t)
        grid.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + h}" y2="{top + h + 4}" stroke="#9aa3b5"/>'
            f'<text x="{x:.1f}" y="{top + h + 16}" text-anchor="middle">{_clock(t, tfmt)}</text>'
        )
    coords = [(x_of(t), y_of(v)) for t, v in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    area = f"{left},{top + h} {line} {left + w},{top + h}"
    dots = "".join(
        f'<g class="pt"><title>{_clock(t)} UTC: {_esc(fmt(v))}</title>'
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="transparent"/>'
        f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#3b63b8"/></g>'
        for (t, v), (x, y) in zip(points, coords, strict=True)
    )
    title = _esc(trend.get("title", "trend"))
    day = time.strftime("%Y-%m-%d", time.gmtime(t0))
    return (
        f'<figure><svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fafbfc"/>'
        + "".join(grid)
        + f'<line x1="{left}" x2="{left + w}" y1="{top + h}" y2="{top + h}" stroke="#9aa3b5"/>'
        f'<polygon points="{area}" fill="#3b63b8" fill-opacity="0.12"/>'
        f'<polyline points="{line}" fill="none" stroke="#3b63b8" stroke-width="2"/>'
        f"{dots}"
        f'<text x="{left + w}" y="{height - 3}" text-anchor="end">{day}, UTC</text>'
        f"</svg><figcaption>{title}: {_esc(fmt(points[0][1]))} &#8594; "
        f"{_esc(fmt(points[-1][1]))} in {_esc(_span(t1 - t0))}</figcaption></figure>"
    )


def _count(x: float) -> str:
    if abs(x) >= 10_000:
        return f"{x / 1000:,.0f}k" if abs(x) < 10_000_000 else f"{x / 1e6:,.1f}M"
    return f"{x:,.0f}" if x == int(x) else f"{x:,.2f}"


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _flame_unit(flame: Flame) -> Callable[[float], str]:
    if flame.unit == "bytes":
        return _bytes
    return lambda x: f"{x:,.0f} {flame.unit}"


def _anchor(target: str) -> str:
    """An id-safe form of a target name (names allow ``.:-``; ids are kept simple)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", target)


def _flame_link(r: TargetReport, o: Offender) -> str:
    """A link that shows the offender's function in the target's most telling flame graph."""
    func = o.evidence.get("function") or ""
    keys = {f.key for f in r.flames}
    if o.kind == "heap_growth":
        key = "heap-diff" if "heap-diff" in keys else "heap"
    elif o.kind == "goroutine_leak":
        key = "goroutines"
    elif o.kind in ("label_explosion", "children_heap_cost"):
        key = "heap"
        func = "quantile.newStream|newSummary|newHistogram|NewCounterVec|NewGaugeVec"
    else:
        return ""
    if key not in keys or not func:
        return ""
    fid = f"flame-{_anchor(r.target)}-{key}"
    search = func if "|" in func else "^" + re.escape(func) + "$"
    return f'<a href="#{fid}" data-search="{_esc(search)}">show in the flame graph</a>'


def _html_offender(i: int, o: Offender, r: TargetReport | None = None) -> str:
    ev = o.evidence
    parts = [
        f'<article class="{_esc(o.severity)}" id="o-{_esc(o.id)}">',
        f'<h3><span class="sev {_esc(o.severity)}">{_esc(o.severity)}</span> '
        f"{i}. {_esc(o.kind.replace('_', ' '))}: <code>{_esc(subject(o))}</code></h3>",
        f'<p class="summary">{_esc(o.summary)}</p>',
        '<div class="cols"><div class="ev"><h4>Evidence</h4>',
    ]
    reasons = ev.get("reasons") or ev.get("explanation") or []
    if reasons:
        parts.append("<ul>" + "".join(f"<li>{_esc(r)}</li>" for r in reasons) + "</ul>")
    parts.append(
        "<dl>" + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in _details(o)) + "</dl>"
    )
    if ev.get("examples"):
        parts.append(
            "<p>Examples: " + ", ".join(f"<code>{_esc(x)}</code>" for x in ev["examples"]) + "</p>"
        )
    parts.append("</div><div>")
    if ev.get("trend"):
        parts.append(svg_chart(ev["trend"]))
    parts.append("</div></div>")
    if ev.get("stack"):
        parts.append(
            '<div class="ev"><h4>Stack</h4><pre>' + _esc("\n".join(ev["stack"])) + "</pre></div>"
        )
    parts.append(f'<div class="fix"><h4>Fix</h4><p>{_esc(o.fix)}</p>')
    if o.fix_snippet:
        parts.append(f"<pre>{_esc(o.fix_snippet)}</pre>")
    parts.append("</div>")
    actions = []
    if r is not None:
        flame = _flame_link(r, o)
        if flame:
            actions.append(flame)
        dash = offender_dashboard(r, o)
        if dash:
            actions.append(f'<a href="{_esc(dash)}">Grafana dashboard over this trend</a>')
    if actions:
        parts.append(f'<p class="actions">{"".join(actions)}</p>')
    parts.append(f'<p class="id">id {_esc(o.id)}</p></article>')
    return "".join(parts)


def _html_target(r: TargetReport) -> list[str]:
    offenders = sort_offenders(r.offenders)
    anchor = _anchor(r.target)
    body = [f'<section class="target" id="t-{_esc(r.target)}">']
    body.append(f'<h2>{_esc(r.target)}</h2><p class="meta">{_esc(_header(r))}</p>')
    links = []
    dash = target_dashboard(r)
    if dash:
        links.append(f'<a href="{_esc(dash)}">Grafana: cardguard / Target</a>')
    links += [f'<a href="{_esc(h)}" download>{_esc(n)}</a>' for n, h in r.downloads]
    if links:
        body.append(f'<p class="links">{"".join(links)}</p>')
    if r.error:
        body.append(f'<p class="error">{_esc(r.error)}</p>')
    body += [f'<p class="note">{_esc(n)}</p>' for n in r.notes]
    if not offenders:
        body.append('<p class="clean">No offenders.</p>')
    else:
        body.append(
            "<table><thead><tr><th>#</th><th>severity</th><th>kind</th><th>subject</th>"
            "<th>summary</th></tr></thead><tbody>"
        )
        for i, o in enumerate(offenders, 1):
            body.append(
                f'<tr><td><a href="#o-{_esc(o.id)}">{i}</a></td>'
                f'<td><span class="sev {_esc(o.severity)}">{_esc(o.severity)}</span></td>'
                f"<td>{_esc(o.kind)}</td><td><code>{_esc(subject(o))}</code></td>"
                f"<td>{_esc(o.summary)}</td></tr>"
            )
        body.append("</tbody></table>")
    # The pictures come between the summary and the details: what the target's heap
    # and goroutines look like is the context every offender below is read in.
    figures = [flamegraph.figure(f, _flame_unit(f), anchor) for f in r.flames]
    figures = [f for f in figures if f]
    if figures:
        body.append(f'<h3 id="flames-{_esc(anchor)}">Flame graphs</h3>')
        body += figures
    body += [_html_offender(i, o, r) for i, o in enumerate(offenders, 1)]
    body.append("</section>")
    return body


def render_html(
    reports: Sequence[TargetReport],
    *,
    title: str = "cardguard report",
    colour: bool = False,
    nav: Sequence[tuple[str, str]] = (),
) -> str:
    """A self-contained HTML page: per target, offenders worst first with evidence and fix."""
    now = max((r.generated_at for r in reports), default=time.time())
    total = {s: sum(r.counts()[s] for r in reports) for s in SEVERITIES}
    subtitle = (
        f"{len(reports)} target(s); "
        + ", ".join(f"{total[s]} {s}" for s in reversed(SEVERITIES))
        + f"; generated {_esc(_when(now))}"
    )
    body: list[str] = []
    if not reports:
        body.append('<p class="clean">No targets yet.</p>')
    for r in sorted(reports, key=_target_order):
        body += _html_target(r)
    return page(title, subtitle, "\n".join(body), nav=nav)


def _target_order(r: TargetReport) -> tuple[int, str]:
    worst = max((SEVERITY_RANK[o.severity] for o in r.offenders), default=-1)
    return (-worst, r.target)


def report_page(reports: Sequence[TargetReport]) -> bytes:
    """The ``/report`` page of ``serve``: the HTML report of every target, UTF-8 encoded."""
    nav = (("targets", "./"), ("report", "report"), ("metrics", "metrics"))
    return render_html(reports, title="cardguard: offenders", nav=nav).encode("utf-8")


class Renderer(Protocol):
    def __call__(self, reports: Sequence[TargetReport], *, colour: bool = False) -> str: ...


RENDERERS: dict[str, Renderer] = {
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
    "html": render_html,
}


def render(reports: Sequence[TargetReport], fmt: str, *, colour: bool = False) -> str:
    """Render ``reports`` in ``fmt`` (a key of :data:`RENDERERS`); ``colour``: ANSI, text only."""
    return RENDERERS[fmt](reports, colour=colour)


__all__ = [
    "RENDERERS",
    "TargetReport",
    "dashboard_url",
    "page",
    "render",
    "render_html",
    "render_json",
    "render_markdown",
    "render_text",
    "report_dict",
    "report_page",
    "svg_chart",
]
