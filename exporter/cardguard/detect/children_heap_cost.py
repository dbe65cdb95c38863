"""``children_heap_cost``: heap the client library holds for the children of vectors.

Pure. The bytes held for summary, histogram and other vector children are
joined to the families with the most children; bytes per child are estimated
from the profile itself, and only counted when enough sampled allocations
back them.
"""

from __future__ import annotations

from typing import Any

from cardguard.analyse.heap_sites import LibraryUse, best_site, inuse_index, library_use
from cardguard.analyse.view import STRUCTURAL_LABELS, TargetView
from cardguard.detect.label_explosion import label_reasons, label_windows
from cardguard.detect.offender import Offender, human_bytes, make_offender, trend
from cardguard.settings.rules import TargetRules

# Sampled allocations a single heap profile's children bytes must rest on to count
# without a second profile: with k samples the estimate's spread is about 1/sqrt(k).
MIN_SAMPLED_ALLOCATIONS = 16


def _growing_or_unbounded(view: TargetView, rules: TargetRules) -> dict[str, str]:
    """Families whose children grew over the watch or that carry an unbounded-looking
    label, each with the reason in words."""
    first, last = view.metrics[0], view.metrics[-1]
    before = {f.name: f.children for f in first.families}
    out: dict[str, str] = {}
    for f in last.families:
        grown = f.children - before.get(f.name, f.children)
        if len(view.metrics) >= 2 and grown > 0 and grown >= 0.05 * f.children:
            out[f.name] = f"its children grew from {before[f.name]} to {f.children}"
    total = last.total_series
    for w in label_windows(view, rules):
        st = w.stat
        if st.family in out or st.label in STRUCTURAL_LABELS or rules.allowed(st.family, st.label):
            continue
        if label_reasons(w, rules.label_rule(st.family, st.label), total):
            out[st.family] = f"its {st.label} label looks unbounded ({st.distinct_values} values)"
    return out


def detect(view: TargetView, rules: TargetRules) -> list[Offender]:
    """Name the heap the latest profile holds for vector children, if it counts."""
    if not view.heaps:
        return []
    return _children_heap_cost(view, rules, library_use(view.heaps[-1].profile))


def _children_heap_cost(view: TargetView, rules: TargetRules, use: LibraryUse) -> list[Offender]:
    """Name the heap held for the children of vectors that grow or look unbounded.

    The metric type is the page's; the bytes are the retained children's only
    (never a scrape in flight) and must show in two heap profiles, or rest on
    enough sampled allocations to be more than one sample's noise.
    """
    if not view.heaps or not view.metrics or use.total == 0:
        return []
    rule = rules.children_heap_cost
    profile = view.heaps[-1].profile
    index = inuse_index(profile)
    heap_total = sum(s.values[index] for s in profile.samples) if index is not None else 0
    held = use.total
    if held < rule.min_bytes or (heap_total and held / heap_total < rule.min_heap_share):
        return []
    # Sampling noise: one or two 512 KiB samples can make a megabyte appear.
    seen_in = sum(1 for h in view.heaps if library_use(h.profile).total >= rule.min_bytes)
    if seen_in < 2 and use.samples < MIN_SAMPLED_ALLOCATIONS:
        return []
    why = _growing_or_unbounded(view, rules)
    fams = sorted(
        (
            f
            for f in view.metrics[-1].families
            if f.name in why and f.children >= rule.min_children and not rules.allowed(f.name)
        ),
        key=lambda f: (-f.children, f.name),
    )
    if not fams:
        return []
    top = fams[0]
    first = next((f for f in view.metrics[0].families if f.name == top.name), None)
    held_trend = _library_trend(view)
    grown_children = top.children - first.children if first is not None else 0
    grown_bytes = held_trend[-1][1] - held_trend[0][1] if held_trend else 0.0
    if grown_children > 0 and grown_bytes > 0:
        per_child = grown_bytes / grown_children
        per_how = "heap growth over children growth during the watch"
    else:
        children = sum(f.children for f in view.metrics[-1].families if f.children > 1)
        per_child = held / max(1, children)
        per_how = "children bytes over every vector's children"
    owners = sorted(use.owners.items(), key=lambda kv: -kv[1])[:5]
    site = best_site(use)
    kind = top.metric_type
    evidence: dict[str, Any] = {
        "family": top.name,
        "metric_type": kind,
        "children": top.children,
        "why": why[top.name],
        "families": [{"family": f.name, "children": f.children} for f in fams[:5]],
        "library_bytes": held,
        "transient_exposition_bytes": use.transient,
        "heap_inuse_bytes": heap_total,
        "heap_share": round(held / heap_total, 4) if heap_total else None,
        "bytes_per_child": round(per_child),
        "bytes_per_child_from": per_how,
        "profiles_with_bytes": seen_in,
        "sampled_allocations": round(use.samples, 1),
        "owners": [{"function": n, "inuse_bytes": b} for n, b in owners],
        "function": owners[0][0] if owners else "",
    }
    if site is not None:
        evidence["call_site"] = site[0]
        evidence["stack"] = list(site[3])
    if len(held_trend) >= 2:
        evidence["trend"] = trend("heap held by vector children", "bytes", held_trend)
    share = held / heap_total if heap_total else None
    summary = summary_text(top.children, kind, top.name, why[top.name], held, share, per_child)
    fix = fix_text(kind, top.name, site[0] if site is not None else None)
    return [
        make_offender(
            "children_heap_cost",
            view.target,
            f"{kind}\x00{top.name}",
            rule.severity,
            summary,
            evidence,
            fix,
            score=float(held),
        )
    ]


def _library_trend(view: TargetView) -> list[tuple[float, float]]:
    if len(view.heaps) < 2:
        return []
    return [(h.at, float(library_use(h.profile).total)) for h in view.heaps]


def summary_text(
    children: int,
    kind: str,
    family: str,
    why: str,
    held: float,
    share: float | None,
    per_child: float,
) -> str:
    """One sentence: how many children, why they count, and what they hold."""
    of_heap = f" ({share:.0%} of the heap)" if share is not None else ""
    return (
        f"{children} {kind} children of {family} hold heap ({why}); "
        f"vector children hold {human_bytes(held)}{of_heap}, about "
        f"{human_bytes(per_child)} each"
    )


def fix_text(kind: str, family: str, call_site: str | None) -> str:
    """Cut the children at the instrumentation's call site; what each child of the type keeps."""
    if call_site is not None:
        where = f" at {call_site}"
    else:
        where = (
            " (the heap profile shows no caller in the service's own code: look for where "
            f"{family} is given its label values)"
        )
    keeps = {"summary": "quantile streams", "histogram": "buckets"}.get(kind, "value")
    cheaper = (
        "; a histogram (or fewer objectives) costs far less per child than a summary."
        if kind == "summary"
        else "."
    )
    return (
        f"Cut the children of {family}: remove or bound the label that multiplies them "
        f"in the instrumentation{where}. Each child of a {kind} keeps its own {keeps} "
        f"in the process until it is deleted{cheaper}"
    )
