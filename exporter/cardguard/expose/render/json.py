"""Reports as JSON: one object per target, offenders worst first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cardguard.detect.offender import sort_offenders
from cardguard.expose.render.links import target_dashboard
from cardguard.expose.render.report import TargetReport


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
