"""Links from a report to the per-target Grafana dashboard, over the time range that matters."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from cardguard.detect.offender import Offender
from cardguard.expose.render.report import TargetReport

# The per-target dashboard (grafana/dashboards/cardguard-target.json): its uid
# and the variable that selects the target. A test pins both to the file.
DASHBOARD_UID = "cardguard-target"
DASHBOARD_TARGET_VAR = "target"
# Grafana's range around a watch: scrapes every 15-60s need minutes to show a trend.
DASHBOARD_BEFORE_SECONDS = 15 * 60.0
DASHBOARD_AFTER_SECONDS = 5 * 60.0


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
