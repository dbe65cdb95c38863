"""Render offender reports as terminal text, JSON, Markdown or a self-contained HTML page.

Pure: every function takes :class:`TargetReport` objects and returns a string.
The formats are listed in one map, :data:`RENDERERS`. The HTML page (also what
``serve`` shows at ``/report``, via :func:`report_page`) has no external assets:
styles are inline and trends are small inline SVG charts.
"""

from __future__ import annotations

import html
import json
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cardguard.offenders import Offender, sort_offenders
from cardguard.rules import SEVERITIES, SEVERITY_RANK

WIDTH = 100


@dataclass(frozen=True)
class TargetReport:
    """The offenders of one target and how they were found.

    ``notes`` say what could not be read (e.g. a pprof endpoint not served),
    so a short report is never mistaken for a clean bill of health.
    """

    target: str
    offenders: tuple[Offender, ...]
    url: str | None = None
    generated_at: float = field(default_factory=time.time)
    window_seconds: float = 0.0
    snapshots: int = 0
    notes: tuple[str, ...] = ()
    error: str | None = None

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
        "offenders": [o.to_dict() for o in sort_offenders(report.offenders)],
    }


def render_json(reports: Sequence[TargetReport]) -> str:
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


def render_text(reports: Sequence[TargetReport]) -> str:
    """Readable terminal tables: one summary table per target, then each offender in full."""
    out: list[str] = []
    for r in reports:
        title, _, rest = _header(r).partition(": ")
        out += [title, "=" * min(WIDTH, len(title))]
        out += textwrap.wrap(rest, WIDTH)
        if r.error:
            out.append(f"error: {r.error}")
        for note in r.notes:
            out.append(f"note: {note}")
        offenders = sort_offenders(r.offenders)
        if not offenders:
            out.append("No offenders.")
            out.append("")
            continue
        out.append("")
        head = ("#", "SEVERITY", "KIND", "SUBJECT")
        rows = [head, tuple("-" * len(h) for h in head)]
        rows += [(str(i), o.severity, o.kind, subject(o)) for i, o in enumerate(offenders, 1)]
        out += _table(rows, (2, 8, 18, WIDTH - 34))
        for i, o in enumerate(offenders, 1):
            out.append("")
            out.append(f"[{i}] {o.severity.upper()} {o.kind} {subject(o)}  (id {o.id})")
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
            out.append("    fix:")
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


def render_markdown(reports: Sequence[TargetReport]) -> str:
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


# --- html --------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c9d1e0;font-size:13px}
main{max-width:1100px;margin:0 auto;padding:16px 28px 40px}
section.target{margin:18px 0 28px}
section.target>h2{font-size:18px;margin:0 0 4px}
.meta{color:#5a6478;font-size:13px;margin:0 0 10px}
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
article{background:#fff;border:1px solid #dfe3ea;border-radius:6px;margin:14px 0;
 padding:12px 16px}
article.critical{border-left:6px solid #c62828}article.warning{border-left:6px solid #d9822b}
article.info{border-left:6px solid #4f6d9a}
article h3{margin:0 0 6px;font-size:16px}
article .summary{font-size:15px;margin:4px 0 8px;font-weight:500}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f3f4f7;padding:8px 10px;overflow-x:auto;border-radius:4px;margin:6px 0}
.cols{display:flex;gap:18px;flex-wrap:wrap}
.cols>div{flex:1 1 420px;min-width:300px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0;font-size:13px}
dt{color:#5a6478}dd{margin:0;word-break:break-word}
.fix{background:#eef7ee;border-left:4px solid #2e7d32;padding:8px 10px;margin:8px 0 4px}
.fix h4,.ev h4{margin:0 0 4px;font-size:13px;text-transform:uppercase;color:#5a6478}
figure{margin:6px 0}figcaption{font-size:12px;color:#5a6478}
.id{color:#8a93a6;font-size:12px}
.clean{background:#eef7ee;padding:10px 14px;border-radius:6px}
"""


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def svg_chart(trend: Mapping[str, Any], width: int = 360, height: int = 110) -> str:
    """Return an inline SVG line chart of ``trend["points"]`` ([[t, value], ...])."""
    points = [(float(t), float(v)) for t, v in trend.get("points", ())]
    if len(points) < 2:
        return ""
    unit = trend.get("unit") or ""
    fmt: Callable[[float], str] = _bytes if unit == "bytes" else (lambda x: f"{x:,.0f}")
    left, right, top, bottom = 64, 10, 10, 22
    w, h = width - left - right, height - top - bottom
    t0, t1 = points[0][0], points[-1][0]
    lo = min(0.0, min(v for _, v in points))
    hi = max(v for _, v in points)
    if hi == lo:
        hi = lo + 1
    span_t = (t1 - t0) or 1.0

    def xy(t: float, v: float) -> tuple[float, float]:
        return left + (t - t0) / span_t * w, top + h - (v - lo) / (hi - lo) * h

    coords = [xy(t, v) for t, v in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    area = f"{left},{top + h} {line} {left + w},{top + h}"
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#3b63b8"/>' for x, y in coords)
    title = _esc(trend.get("title", "trend"))
    seconds = t1 - t0
    dur = f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f} min"
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#f8f9fb" stroke="#dfe3ea"/>'
        f'<polygon points="{area}" fill="#3b63b8" fill-opacity="0.12"/>'
        f'<polyline points="{line}" fill="none" stroke="#3b63b8" stroke-width="2"/>'
        f"{dots}"
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" font-size="11" '
        f'fill="#5a6478">{_esc(fmt(hi))}</text>'
        f'<text x="{left - 4}" y="{top + h}" text-anchor="end" font-size="11" '
        f'fill="#5a6478">{_esc(fmt(lo))}</text>'
        f'<text x="{left}" y="{height - 6}" font-size="11" fill="#5a6478">start</text>'
        f'<text x="{left + w}" y="{height - 6}" text-anchor="end" font-size="11" '
        f'fill="#5a6478">+{_esc(dur)}</text>'
        f"</svg><figcaption>{title}: {_esc(fmt(points[0][1]))} &#8594; "
        f"{_esc(fmt(points[-1][1]))}</figcaption></figure>"
    )


def _html_offender(i: int, o: Offender) -> str:
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
    parts.append(f'</div><p class="id">id {_esc(o.id)}</p></article>')
    return "".join(parts)


def render_html(reports: Sequence[TargetReport], *, title: str = "cardguard report") -> str:
    """A self-contained HTML page: per target, offenders worst first with evidence and fix."""
    now = max((r.generated_at for r in reports), default=time.time())
    total = {s: sum(r.counts()[s] for r in reports) for s in SEVERITIES}
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_esc(title)}</h1><p>{len(reports)} target(s); "
        + ", ".join(f"{total[s]} {s}" for s in reversed(SEVERITIES))
        + f"; generated {_esc(_when(now))}</p></header><main>",
    ]
    if not reports:
        body.append('<p class="clean">No targets yet.</p>')
    for r in sorted(reports, key=_target_order):
        offenders = sort_offenders(r.offenders)
        body.append(f'<section class="target" id="t-{_esc(r.target)}">')
        body.append(f'<h2>{_esc(r.target)}</h2><p class="meta">{_esc(_header(r))}</p>')
        if r.error:
            body.append(f'<p class="error">{_esc(r.error)}</p>')
        body += [f'<p class="note">{_esc(n)}</p>' for n in r.notes]
        if not offenders:
            body.append('<p class="clean">No offenders.</p></section>')
            continue
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
        body += [_html_offender(i, o) for i, o in enumerate(offenders, 1)]
        body.append("</section>")
    body.append("</main></body></html>")
    return "\n".join(body) + "\n"


def _target_order(r: TargetReport) -> tuple[int, str]:
    worst = max((SEVERITY_RANK[o.severity] for o in r.offenders), default=-1)
    return (-worst, r.target)


def report_page(reports: Sequence[TargetReport]) -> bytes:
    """The ``/report`` page of ``serve``: the HTML report of every target, UTF-8 encoded."""
    return render_html(reports, title="cardguard: offenders").encode("utf-8")


RENDERERS: dict[str, Callable[[Sequence[TargetReport]], str]] = {
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
    "html": render_html,
}


def render(reports: Sequence[TargetReport], fmt: str) -> str:
    """Render ``reports`` in ``fmt`` (a key of :data:`RENDERERS`)."""
    return RENDERERS[fmt](reports)


__all__ = [
    "RENDERERS",
    "TargetReport",
    "render",
    "render_html",
    "render_json",
    "render_markdown",
    "render_text",
    "report_dict",
    "report_page",
    "svg_chart",
]
