"""Reports as a self-contained HTML page, also what ``serve`` shows at ``/report``.

The page loads nothing at view time: styles and the flame graphs' search script
are inline, trends are SVG charts with a time axis and hover values, and each
target's flame graphs (:mod:`cardguard.expose.flamegraph`) are inline SVG.
Links lead to the target's Grafana dashboard over the watched time range (when
a Grafana URL is set) and, on ``serve``, to the raw profiles it kept.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cardguard.detect.offender import Offender, sort_offenders
from cardguard.expose import flamegraph
from cardguard.expose.flamegraph import Flame
from cardguard.expose.render.links import offender_dashboard, target_dashboard
from cardguard.expose.render.page import esc, page
from cardguard.expose.render.report import (
    TargetReport,
    details,
    format_bytes,
    format_time,
    headline,
    subject,
)
from cardguard.settings.rules import SEVERITIES, SEVERITY_RANK


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
    fmt: Callable[[float], str] = format_bytes if unit == "bytes" else _count
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
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(fmt(v))}</text>'
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
        f'<g class="pt"><title>{_clock(t)} UTC: {esc(fmt(v))}</title>'
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="transparent"/>'
        f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#3b63b8"/></g>'
        for (t, v), (x, y) in zip(points, coords, strict=True)
    )
    title = esc(trend.get("title", "trend"))
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
        f"</svg><figcaption>{title}: {esc(fmt(points[0][1]))} &#8594; "
        f"{esc(fmt(points[-1][1]))} in {esc(_span(t1 - t0))}</figcaption></figure>"
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
        return format_bytes
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
    return f'<a href="#{fid}" data-search="{esc(search)}">show in the flame graph</a>'


def _html_offender(i: int, o: Offender, r: TargetReport | None = None) -> str:
    ev = o.evidence
    parts = [
        f'<article class="{esc(o.severity)}" id="o-{esc(o.id)}">',
        f'<h3><span class="sev {esc(o.severity)}">{esc(o.severity)}</span> '
        f"{i}. {esc(o.kind.replace('_', ' '))}: <code>{esc(subject(o))}</code></h3>",
        f'<p class="summary">{esc(o.summary)}</p>',
        '<div class="cols"><div class="ev"><h4>Evidence</h4>',
    ]
    reasons = ev.get("reasons") or ev.get("explanation") or []
    if reasons:
        parts.append("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul>")
    parts.append(
        "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in details(o)) + "</dl>"
    )
    if ev.get("examples"):
        parts.append(
            "<p>Examples: " + ", ".join(f"<code>{esc(x)}</code>" for x in ev["examples"]) + "</p>"
        )
    parts.append("</div><div>")
    if ev.get("trend"):
        parts.append(svg_chart(ev["trend"]))
    parts.append("</div></div>")
    if ev.get("stack"):
        parts.append(
            '<div class="ev"><h4>Stack</h4><pre>' + esc("\n".join(ev["stack"])) + "</pre></div>"
        )
    parts.append(f'<div class="fix"><h4>Fix</h4><p>{esc(o.fix)}</p>')
    if o.fix_snippet:
        parts.append(f"<pre>{esc(o.fix_snippet)}</pre>")
    parts.append("</div>")
    actions = []
    if r is not None:
        flame = _flame_link(r, o)
        if flame:
            actions.append(flame)
        dash = offender_dashboard(r, o)
        if dash:
            actions.append(f'<a href="{esc(dash)}">Grafana dashboard over this trend</a>')
    if actions:
        parts.append(f'<p class="actions">{"".join(actions)}</p>')
    parts.append(f'<p class="id">id {esc(o.id)}</p></article>')
    return "".join(parts)


def _html_target(r: TargetReport) -> list[str]:
    offenders = sort_offenders(r.offenders)
    anchor = _anchor(r.target)
    body = [f'<section class="target" id="t-{esc(r.target)}">']
    body.append(f'<h2>{esc(r.target)}</h2><p class="meta">{esc(headline(r))}</p>')
    links = []
    dash = target_dashboard(r)
    if dash:
        links.append(f'<a href="{esc(dash)}">Grafana: cardguard / Target</a>')
    links += [f'<a href="{esc(h)}" download>{esc(n)}</a>' for n, h in r.downloads]
    if links:
        body.append(f'<p class="links">{"".join(links)}</p>')
    if r.error:
        body.append(f'<p class="error">{esc(r.error)}</p>')
    body += [f'<p class="note">{esc(n)}</p>' for n in r.notes]
    if not offenders:
        body.append('<p class="clean">No offenders.</p>')
    else:
        body.append(
            "<table><thead><tr><th>#</th><th>severity</th><th>kind</th><th>subject</th>"
            "<th>summary</th></tr></thead><tbody>"
        )
        for i, o in enumerate(offenders, 1):
            body.append(
                f'<tr><td><a href="#o-{esc(o.id)}">{i}</a></td>'
                f'<td><span class="sev {esc(o.severity)}">{esc(o.severity)}</span></td>'
                f"<td>{esc(o.kind)}</td><td><code>{esc(subject(o))}</code></td>"
                f"<td>{esc(o.summary)}</td></tr>"
            )
        body.append("</tbody></table>")
    # The pictures come between the summary and the details: what the target's heap
    # and goroutines look like is the context every offender below is read in.
    figures = [flamegraph.figure(f, _flame_unit(f), anchor) for f in r.flames]
    figures = [f for f in figures if f]
    if figures:
        body.append(f'<h3 id="flames-{esc(anchor)}">Flame graphs</h3>')
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
        + f"; generated {esc(format_time(now))}"
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
