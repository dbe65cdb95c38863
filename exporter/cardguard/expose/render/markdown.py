"""Reports as Markdown: a table of offenders per target, then each one's evidence and fix."""

from __future__ import annotations

from collections.abc import Sequence

from cardguard.detect.offender import sort_offenders
from cardguard.expose.render.report import TargetReport, details, headline, subject


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(reports: Sequence[TargetReport], *, colour: bool = False) -> str:
    """A Markdown document: a table of offenders per target, then each one's evidence and fix."""
    out = ["# cardguard report", ""]
    for r in reports:
        out += [f"## {r.target}", "", headline(r), ""]
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
            out += [f"| {k} | {_md_cell(v)} |" for k, v in details(o)]
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
