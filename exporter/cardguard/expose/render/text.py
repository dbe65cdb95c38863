"""Reports as terminal text: a summary table per target, then each offender in full."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from cardguard.detect.offender import sort_offenders
from cardguard.expose import ansi
from cardguard.expose.render.links import offender_dashboard, target_dashboard
from cardguard.expose.render.report import (
    TargetReport,
    details,
    format_bytes,
    headline,
    subject,
)
from cardguard.settings.rules import SEVERITIES

WIDTH = 100


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
        title, _, rest = headline(r).partition(": ")
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
            kw = max((len(k) for k, _ in details(o)), default=0)
            for k, v in details(o):
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
    fmt = format_bytes if unit == "bytes" else (lambda x: f"{x:,.0f}")
    return f"{bars} {fmt(values[0])} -> {fmt(values[-1])}"
