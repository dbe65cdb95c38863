"""``label_explosion``: a label whose distinct values are high or growing and look unbounded.

Pure. The fix is a ``metric_relabel_configs`` snippet, which protects
Prometheus but not the target's own heap, plus the instrumentation call site
the heap profile shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cardguard.analyse import heap_sites
from cardguard.analyse.heap_sites import LibraryUse, best_site, other_sites, short_name
from cardguard.analyse.view import STRUCTURAL_LABELS, LabelStat, TargetView
from cardguard.detect import relabel
from cardguard.detect.offender import (
    MAX_EXAMPLES,
    MAX_PER_KIND,
    Offender,
    hours,
    human_bytes,
    make_offender,
    trend,
)
from cardguard.settings.rules import SEVERITY_RANK, LabelExplosionRule, Severity, TargetRules


def _relabel_snippet(family: str, label: str, pattern: str) -> str:
    # Without the live series no rewrite can be shown not to merge series: the
    # snippet drops what explodes (cardguard.detect.remedies rebuilds it from the page).
    return relabel.plan(family, label, pattern, None).snippet()


@dataclass(frozen=True)
class _LabelWindow:
    """One label over the watch: its latest stat and how it changed."""

    stat: LabelStat
    points: tuple[tuple[float, float], ...]
    growth_per_hour: float | None
    new_values: int | None


def may_explode(st: LabelStat, rules: TargetRules) -> bool:
    """Whether any rule could name this label of the latest page (see :func:`label_reasons`
    and the deny rules): only those labels' windows are worth building."""
    if st.label in STRUCTURAL_LABELS or rules.allowed(st.family, st.label):
        return False
    rule = rules.label_rule(st.family, st.label)
    return (
        st.pattern in rule.suspect_patterns
        or st.distinct_values >= rule.distinct_values_any
        or rules.denied_label(st.label)
        or rules.denied_family(st.family)
    )


def label_windows(view: TargetView, rules: TargetRules | None = None) -> list[_LabelWindow]:
    """Each label of the latest page over the watch; with ``rules``, only those that
    :func:`may_explode` (a page has many labels no rule could name, and the watch has
    up to 60 points of each)."""
    last = view.metrics[-1].labels
    if rules is not None:
        last = tuple(st for st in last if may_explode(st, rules))
    keep = {(st.family, st.label) for st in last}
    history: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in keep}
    added: dict[tuple[str, str], int] = {}
    for i, point in enumerate(view.metrics):
        for st in point.labels:
            key = (st.family, st.label)
            pts = history.get(key)
            if pts is None:
                continue
            pts.append((point.at, float(st.distinct_values)))
            if i > 0 and st.values_added is not None:
                added[key] = added.get(key, 0) + st.values_added
    out = []
    for st in last:
        key = (st.family, st.label)
        pts = history[key]
        span = pts[-1][0] - pts[0][0]
        growth = st.growth_per_hour
        seen_growth = (pts[-1][1] - pts[0][1]) / hours(span) if span > 0 else None
        if seen_growth is not None and (growth is None or seen_growth > growth):
            growth = seen_growth
        new: int | None = added.get(key)
        if new is None and len(pts) >= 2:
            new = max(0, int(pts[-1][1] - pts[0][1]))
        out.append(_LabelWindow(st, tuple(pts), growth, new))
    return out


# What a value pattern (cardguard.analyse.patterns) looks like to a reader.
_SHAPES = {
    "url_path": "URL path",
    "uuid": "UUID",
    "hex_id": "hex ID",
    "numeric_id": "numeric ID",
    "ip": "IP address",
    "email": "email address",
    "timestamp": "timestamp",
}


def label_reasons(w: _LabelWindow, rule: LabelExplosionRule, total_series: int) -> list[str]:
    st = w.stat
    suspect = st.pattern in rule.suspect_patterns
    reasons = []
    if suspect and st.distinct_values >= rule.distinct_values:
        shape = _SHAPES.get(st.pattern, st.pattern)
        reasons.append(
            f"{st.distinct_values} distinct {st.label} values, {shape}s "
            f"(limit {rule.distinct_values})"
        )
    if st.distinct_values >= rule.distinct_values_any:
        reasons.append(
            f"{st.distinct_values} distinct values (limit {rule.distinct_values_any} for any label)"
        )
    if (
        suspect
        and w.growth_per_hour is not None
        and w.growth_per_hour >= rule.growth_per_hour
        and (w.new_values or 0) >= rule.min_new_values
    ):
        reasons.append(
            f"growing by {w.growth_per_hour:.0f} values/hour "
            f"(+{w.new_values} during the watch; limit {rule.growth_per_hour:.0f}/hour)"
        )
    if (
        suspect
        and total_series > 0
        and st.family_series / total_series >= rule.series_share
        and st.distinct_values >= rule.min_share_values
    ):
        reasons.append(
            f"its family holds {st.family_series / total_series:.0%} of the target's series "
            f"(limit {rule.series_share:.0%})"
        )
    return reasons


def detect(view: TargetView, rules: TargetRules) -> list[Offender]:
    """Name the labels of the latest page that explode, one offender per family."""
    if not view.metrics:
        return []
    use = heap_sites.library_use(view.heaps[-1].profile) if view.heaps else None
    total_series = view.metrics[-1].total_series
    biggest: dict[str, LabelStat] = {}
    for st in view.metrics[-1].labels:
        if st.label in STRUCTURAL_LABELS:
            continue
        best = biggest.get(st.family)
        if best is None or st.distinct_values > best.distinct_values:
            biggest[st.family] = st
    out: list[Offender] = []
    for w in label_windows(view, rules):
        st = w.stat
        if st.label in STRUCTURAL_LABELS or rules.allowed(st.family, st.label):
            continue
        rule = rules.label_rule(st.family, st.label)
        reasons = label_reasons(w, rule, total_series)
        severity: Severity = rule.severity
        deny = None
        if rules.denied_label(st.label) and st.distinct_values >= rules.deny.min_distinct_values:
            deny = "the rules deny this label"
        elif (
            rules.denied_family(st.family)
            and st is biggest.get(st.family)
            and st.family_series >= rules.deny.min_distinct_values
        ):
            # A denied family is one offender, named after its most varied label.
            deny = "the rules deny this family"
        if deny:
            reasons.insert(0, deny)
            if len(reasons) == 1 or SEVERITY_RANK[rules.deny.severity] > SEVERITY_RANK[severity]:
                severity = rules.deny.severity
        if not reasons:
            continue
        if st.distinct_values >= rule.critical_distinct_values:
            severity = "critical"
        out.append(_label_offender(view.target, w, reasons, severity, use))
    out.sort(key=lambda o: -o.score)
    return out[:MAX_PER_KIND]


def _label_offender(
    target: str,
    w: _LabelWindow,
    reasons: list[str],
    severity: Severity,
    use: LibraryUse | None,
) -> Offender:
    st = w.stat
    shape = _SHAPES.get(st.pattern, "distinct value")
    holder = ""
    site = None
    if use is not None and use.total:
        site = best_site(use)
        if use.owners:
            top = max(use.owners.items(), key=lambda kv: kv[1])[0]
            holder = f"; {short_name(top)} holds them"
    summary = summary_text(st.label, st.family, shape, holder)
    evidence: dict[str, Any] = {
        "family": st.family,
        "label": st.label,
        "metric_type": st.metric_type,
        "distinct_values": st.distinct_values,
        "estimated": st.estimated,
        "pattern": st.pattern,
        "examples": list(st.examples[:MAX_EXAMPLES]),
        "family_series": st.family_series,
        "growth_per_hour": None if w.growth_per_hour is None else round(w.growth_per_hour, 1),
        "new_values": w.new_values,
        "reasons": reasons,
    }
    if len(w.points) >= 2:
        evidence["trend"] = trend(f"distinct {st.label} values on {st.family}", "", w.points)
    others: list[str] = []
    if site is not None and use is not None:
        where, _caller, _entry, stack = site
        evidence["call_site"] = where
        evidence["stack"] = list(stack)
        others = [f"{name}: {human_bytes(v)}" for name, v in other_sites(use, where)]
        if others:
            # The heap cannot tell which vector a child belongs to.
            evidence["other_call_sites"] = others
    native = st.native_histogram_series
    if native is not None and native < st.family_series:
        # Each label value costs a classic histogram a series per bucket; a native one, one.
        evidence["native_histogram_series"] = native
    else:
        native = None
    call = (site[0], site[2], bool(others)) if site is not None and use is not None else None
    fix = fix_text(st, shape, call, native)
    return make_offender(
        "label_explosion",
        target,
        f"{st.family}\x00{st.label}",
        severity,
        summary,
        evidence,
        fix,
        snippet=_relabel_snippet(st.family, st.label, st.pattern),
        score=float(st.distinct_values),
    )


def summary_text(label: str, family: str, shape: str, holder: str) -> str:
    """One sentence: which label makes a series per what, and who holds them."""
    return (
        f"the {label} label on {family} creates a new series per {shape}{holder}; "
        f"drop the label or bound its values"
    )


def fix_text(
    st: LabelStat, shape: str, call: tuple[str, str, bool] | None, native: int | None
) -> str:
    """Drop at the scrape now, fix the instrumentation for good; ``call`` is the call site,
    the library function it calls and whether other call sites make children too."""
    fix = (
        f"Drop the exploding {st.label} series at the scrape with the metric_relabel_configs "
        "below (a rewrite would fold series together unless checked on the live series). "
        "This protects Prometheus but NOT the target's own heap: the process still creates "
        f"and keeps one child per {st.label} value until the instrumentation changes. "
    )
    if call is not None:
        where, entry, others = call
        fix += (
            f"Fix the instrumentation at {where}"
            + (
                " (the heaviest of the call sites the heap shows making vector children)"
                if others
                else ""
            )
            + f", which calls {short_name(entry)}: pass a bounded value (a route template, not "
            f"the raw {shape}) or remove the label."
        )
    else:
        fix += (
            f"Fix the instrumentation that sets {st.label}: pass a bounded value "
            f"(a route template, not the raw {shape}) or remove the label."
        )
    if st.metric_type in ("summary", "histogram"):
        fix += " Series that the rewrite makes identical collide; prefer the code fix."
    if native is not None:
        fix += (
            f" As a native histogram {st.family} would need {native} series instead of "
            f"{st.family_series} (one per label set, not one per bucket plus _sum and _count): "
            "set NativeHistogramBucketFactor in client_golang and scrape with native "
            "histograms on; that shrinks every label value's cost but does not bound the values."
        )
    return fix
