"""Fixes chosen from what cardguard saw: safe relabelling, code changes, wording for the source.

Pure. ``refine(found, context)`` takes the offenders ``offenders.detect``
returned and the page-level facts detection does not keep (``Context``: the
latest page's series of the exploding families, which children stopped
being updated during the watch, where the page came from, which rules and
dashboards use a label), and returns the offenders with their ``fix`` and
``fix_snippet`` rebuilt for ``label_explosion``:

- the relabel snippet offers only what ``cardguard.detect.relabel`` proved never
  merges series on the live series set;
- an instrumented service gets a constrained-label normaliser derived from the
  observed values (``cardguard.analyse.templates``), ``DeletePartialMatch`` when its
  children stop being updated, and a native-histogram configuration for
  histogram and summary families, each at the call site the heap profile names;
- a Pushgateway group or a textfile collector gets the fix that fits it;
- the rules and panels that use the label (``cardguard.analyse.usage``) are named before "drop it".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cardguard.analyse import origin as org
from cardguard.analyse import templates, usage
from cardguard.analyse.view import MetricsPoint
from cardguard.detect import relabel
from cardguard.detect.offender import Offender
from cardguard.detect.relabel import Labels, parse_key
from cardguard.parse.exposition import scan
from cardguard.parse.model import Format, Sample, SampleBlock

# Routes a normaliser lists before it folds the rest into "other".
MAX_ROUTES = 20
# Children that must be stale (and their share) before DeletePartialMatch is advised.
MIN_STALE = 50
MIN_STALE_SHARE = 0.5
# Uses of one label named in a fix.
MAX_USES = 5
STRUCTURAL = frozenset({"__name__", "le", "quantile"})


@dataclass(frozen=True)
class Stale:
    """Children of a family that no new observation reached between two pages."""

    children: int
    """Children on the later page."""
    observed: int
    """Children on both pages."""
    stale: int
    """Children on both pages whose count did not move."""
    seconds: float


@dataclass(frozen=True)
class Context:
    """What ``refine`` knows beyond the offenders themselves."""

    origin: org.Origin = field(default_factory=lambda: org.Origin(org.INSTRUMENTED))
    series: Mapping[str, Sequence[Labels]] = field(default_factory=dict)
    """The latest page's series per exploding family (``relabel.series_of``)."""
    truncated: frozenset[str] = frozenset()
    stale: Mapping[str, Stale] = field(default_factory=dict)
    total_series: int = 0
    label_families: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Families on the page carrying each label."""
    uses: usage.Index | None = None
    """Label uses in rules and dashboards; ``None`` when none were given."""


# --- facts from pages ----------------------------------------------------------------------


def _child(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] not in STRUCTURAL)


def child_counts(
    data: bytes,
    fmt: Format,
    source: str,
    families: Mapping[str, str],
    cap: int = relabel.MAX_SERIES,
) -> dict[str, dict[Labels, float]]:
    """Return each family's children with the value that moves on every observation.

    ``families`` maps a family to its type: a summary's or histogram's
    ``_count``, a counter's value (``_total``). Gauges and other types are skipped.

    Raises:
        ParseError: the page is malformed.
    """
    want: dict[str, str] = {}
    for fam, kind in families.items():
        if kind in ("summary", "histogram", "gaugehistogram"):
            want[fam + "_count"] = fam
            want[fam + "_gcount"] = fam
        elif kind == "counter":
            want[fam + "_total"] = fam
            want[fam] = fam
    out: dict[str, dict[Labels, float]] = {f: {} for f in set(want.values())}

    def add(name: str, labels: Labels, value: float) -> None:
        fam = want.get(name)
        if fam is not None and len(out[fam]) < cap:
            out[fam][_child(labels)] = value

    for event in scan(data, fmt, source):
        if isinstance(event, SampleBlock):
            if event.family not in out:
                continue
            text = event.data[event.start : event.end].decode("utf-8", "replace")
            for line in text.split("\n"):
                if not line:
                    continue
                end = line.rfind("}")
                key = line[: end + 1] if end >= 0 else line.split(" ", 1)[0]
                value = line[len(key) :].split()[0]
                labels = parse_key(key)
                add(dict(labels)["__name__"], labels, float(value))
        elif isinstance(event, Sample) and event.family in out:
            add(event.name, tuple(sorted(event.labels)), event.value)
    return out


def stale_children(
    first: Mapping[Labels, float], last: Mapping[Labels, float], seconds: float
) -> Stale:
    """Count the children present at both ends of a watch whose count did not move."""
    both = [k for k in last if k in first]
    stale = sum(1 for k in both if last[k] == first[k])
    return Stale(children=len(last), observed=len(both), stale=stale, seconds=seconds)


def label_families(point: MetricsPoint) -> dict[str, tuple[str, ...]]:
    """Map each label to the families on the page that carry it."""
    out: dict[str, list[str]] = {}
    for st in point.labels:
        out.setdefault(st.label, []).append(st.family)
    return {k: tuple(sorted(set(v))) for k, v in out.items()}


def page_origin(point: MetricsPoint) -> org.Origin:
    return org.classify((st.family, st.label, st.examples) for st in point.labels)


@dataclass(frozen=True)
class Page:
    """One raw /metrics page and when it was read."""

    data: bytes
    fmt: Format
    source: str
    at: float


@dataclass(frozen=True)
class Children:
    """A family's children on one page, with the value that moves on every observation."""

    at: float
    counts: Mapping[Labels, float]


def children_of(page: Page, families: Mapping[str, str], cap: int) -> dict[str, Children]:
    """Read the children of ``families`` (family -> type) on ``page``, at most ``cap`` each.

    Raises:
        ParseError: the page is malformed.
    """
    counts = child_counts(page.data, page.fmt, page.source, families, cap)
    return {fam: Children(page.at, c) for fam, c in counts.items()}


def exploding(found: Sequence[Offender], point: MetricsPoint) -> dict[str, str]:
    """The families of ``label_explosion`` offenders, with their types on ``point``."""
    fams = {str(o.evidence["family"]) for o in found if o.kind == "label_explosion"}
    return {f.name: f.metric_type for f in point.families if f.name in fams}


def build_context(
    found: Sequence[Offender],
    point: MetricsPoint,
    last: Page,
    first: Page | Mapping[str, Children] | None = None,
    uses: usage.Index | None = None,
    cap: int = relabel.MAX_SERIES,
) -> Context:
    """Read what ``refine`` needs from the latest page, and the first one of a watch.

    Only the families of ``label_explosion`` offenders are read series by series,
    at most ``cap`` series each. ``first`` is the first page of the watch, or the
    children each family had when it was first seen exploding (what serve keeps
    instead of a page).

    Raises:
        ParseError: a page is malformed.
    """
    types = exploding(found, point)
    if not types:
        return Context(origin=page_origin(point), uses=uses)
    series = relabel.series_of(last.data, last.fmt, last.source, types, cap)
    stale: dict[str, Stale] = {}
    before: Mapping[str, Children] = {}
    if isinstance(first, Page):
        before = children_of(first, types, cap) if first.at < last.at else {}
    elif first is not None:
        before = {f: c for f, c in first.items() if f in types and c.at < last.at}
    if before:
        now = children_of(last, {f: types[f] for f in before}, cap)
        for fam, b in now.items():
            a = before[fam]
            stale[fam] = stale_children(a.counts, b.counts, last.at - a.at)
    return Context(
        origin=page_origin(point),
        series=series,
        truncated=frozenset(f for f, rows in series.items() if len(rows) >= cap),
        stale=stale,
        total_series=point.total_series,
        label_families=label_families(point),
        uses=uses,
    )


# --- code-level remedies -----------------------------------------------------------------------


def go_name(label: str) -> str:
    """``start_point`` -> ``normaliseStartPoint``."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", label) if p]
    return "normalise" + "".join(p[:1].upper() + p[1:] for p in parts)


def _go_string(s: str) -> str:
    return (
        "`" + s + "`" if "`" not in s else '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    )


def normaliser(label: str, pattern: str, values: Sequence[str]) -> tuple[str, list[str]] | None:
    """Return Go source of a function mapping raw values to their templates, and the templates.

    ``None`` when the values have no bounded form (UUIDs, IDs): then the label
    should go, not be normalised into a single placeholder.
    """
    groups = [g for g in templates.group(values, pattern) if not g.bounded]
    if pattern != "url_path" or not groups:
        return None
    routes = sorted({g.template for g in groups[:MAX_ROUTES]})
    # Longer templates first, so a prefix never shadows a longer route.
    routes.sort(key=lambda t: (-t.count("/"), t))
    fn = go_name(label)
    var = fn[len("normalise") :][:1].lower() + fn[len("normalise") + 1 :] + "Routes"
    lines = [
        f"// {fn} maps a raw {label} to its route template (derived by cardguard from "
        f"{len(values)} observed values), so the label stays bounded.",
        f"var {var} = []struct {{",
        "\tre    *regexp.Regexp",
        "\troute string",
        "}{",
    ]
    for t in routes:
        regex = "^" + templates.template_regex(t) + "$"
        lines.append(f"\t{{regexp.MustCompile({_go_string(regex)}), {_go_string(t)}}},")
    lines += [
        "}",
        "",
        f"func {fn}(v string) string {{",
        f"\tfor _, r := range {var} {{",
        "\t\tif r.re.MatchString(v) {",
        "\t\t\treturn r.route",
        "\t\t}",
        "\t}",
        '\tif len(v) <= 64 && !strings.ContainsAny(v, "0123456789") {',
        "\t\treturn v // a fixed route with no ID in it",
        "\t}",
        '\treturn "other"',
        "}",
    ]
    return "\n".join(lines) + "\n", routes


def native_histogram_options(kind: str) -> str:
    """The client_golang (1.14+) options that make a histogram native, as Go source."""
    opts = (
        "\tNativeHistogramBucketFactor:     1.1,\n"
        "\tNativeHistogramMaxBucketNumber:  100,\n"
        "\tNativeHistogramMinResetDuration: time.Hour,\n"
    )
    head = (
        "prometheus.HistogramOpts{ // replaces the SummaryOpts\n"
        if kind == "summary"
        else ("prometheus.HistogramOpts{\n")
    )
    return (
        head + "\t// ...Name, Help as before; Buckets may stay for classic scrapers\n" + opts + "}"
    )


# --- wording and assembly ------------------------------------------------------------------------


def _uses_sentence(
    label: str, uses: Sequence[usage.Use] | None
) -> tuple[str, list[dict[str, str]]]:
    if uses is None:
        return (
            f" Check your rules and dashboards before dropping {label} (give them to "
            "cardguard with usage: rule_files/dashboards to have them checked).",
            [],
        )
    if not uses:
        return f" No given rule or dashboard uses {label}.", []
    listed = [{"source": u.source, "how": u.how, "expr": u.expr} for u in uses]
    named = "; ".join(f"{u.source} ({u.how})" for u in uses[:MAX_USES])
    more = f" and {len(uses) - MAX_USES} more" if len(uses) > MAX_USES else ""
    return (
        f" Dropping or rewriting {label} breaks what uses it: {named}{more}.",
        listed,
    )


def _relabel_sentence(plan: relabel.Plan) -> str:
    rewrites = [c for c in plan.offered if c.kind in ("rewrite", "remove_label")]
    if rewrites:
        c = rewrites[0]
        return (
            f" At the scrape, {c.description} keeps every one of the {plan.series} series "
            "distinct (checked on the live series), see the snippet."
        )
    refused = [c for c in plan.refused if c.kind in ("rewrite", "remove_label")]
    worst = max((c.outcome.largest_merge for c in refused), default=0)
    head = (
        f" No relabel rewrite is safe: on the {plan.series} live series each one folds up to "
        f"{worst} series into one, and Prometheus would keep one arbitrary sample of each."
        if plan.checked
        else " A relabel rewrite was not checked against the live series, so none is offered."
    )
    return (
        head
        + " The snippet drops the exploding series or keeps an allow-list at the scrape (their "
        "data is lost); aggregate in the code or in recording rules after ingestion."
    )


def _instrumented_fix(o: Offender, ctx: Context, code: dict[str, Any]) -> str:
    ev = o.evidence
    label, family = str(ev["label"]), str(ev["family"])
    site = ev.get("call_site")
    where = f"at {site}" if site else f"where {family} is observed (no heap profile named it)"
    parts = []
    norm = code.get("normaliser")
    if norm is not None:
        routes = code["routes"]
        shown = ", ".join(routes[:3]) + (f" and {len(routes) - 3} more" if len(routes) > 3 else "")
        parts.append(
            f"Fix the instrumentation {where}: pass {code['function']}(value) for {label}, "
            f'which maps each raw value to its route ({shown}; anything else to "other"); '
            f"with client_golang 1.15+ declare it on the vector instead "
            f'(VariableLabels: prometheus.ConstrainedLabels{{{{Name: "{label}", '
            f"Constraint: {code['function']}}}}})."
        )
    else:
        parts.append(
            f"Fix the instrumentation {where}: {label} holds "
            f"{ev.get('pattern', 'unbounded')} values with no bounded form; remove the label "
            "(record the value in a log or trace instead)."
        )
    parts.append(
        "Relabelling protects Prometheus but NOT the target's own heap: the process still "
        f"creates and keeps one child per {label} value until the instrumentation changes."
    )
    stale = code.get("stale")
    if stale is not None:
        parts.append(
            f"{stale['stale']} of the {stale['observed']} children of {family} seen at the start "
            f"were not updated during the {stale['seconds']:.0f}s watch, and client_golang keeps "
            f'each until deleted: call DeletePartialMatch(prometheus.Labels{{"{label}": v}}) '
            f"on the vector (or DeleteLabelValues) when a {label} value's work ends."
        )
    native = code.get("native_histogram")
    if native is not None:
        parts.append(
            f"As a native histogram (NativeHistogramBucketFactor 1.1, MaxBucketNumber 100, "
            f"MinResetDuration 1h) {family} needs {native['series']} series instead of "
            f"{native['series_now']}: one per child, not one per "
            + ("quantile" if ev.get("metric_type") == "summary" else "bucket")
            + " plus _sum and _count; Prometheus 2.42 must run with "
            "--enable-feature=native-histograms. It shrinks each value's cost but does not "
            "bound the values."
        )
    return " ".join(parts)


def _pushgateway_fix(o: Offender, ctx: Context) -> str:
    label, family = str(o.evidence["label"]), str(o.evidence["family"])
    grouping = [g for g in ctx.origin.grouping_labels if g not in ("instance",)]
    if label in ctx.origin.grouping_labels:
        return (
            f"{label} is part of the Pushgateway grouping key ({', '.join(grouping)}): every push "
            f"with a new {label} creates a group that the Pushgateway keeps, and exposes on every "
            "scrape, until it is deleted. Fix the pushing job: push to a stable grouping key "
            f"(drop {label} from the push URL, so each run replaces the last), or delete the "
            f"group when the run is done (DELETE /metrics/job/<job>/{label}/<value>). No process "
            "heap is involved: the Pushgateway holds the groups."
        )
    return (
        f"{label} on {family} is pushed to the Pushgateway by a batch job: each value is kept "
        "in its group until the group is replaced or deleted. Fix the pushing job: push a bounded "
        f"{label} (or none), and delete groups that are no longer pushed."
    )


def _textfile_fix(o: Offender, ctx: Context) -> str:
    label, family = str(o.evidence["label"]), str(o.evidence["family"])
    files = ", ".join(ctx.origin.files[:3]) or "a *.prom file"
    return (
        f"{family} comes from node_exporter's textfile collector ({files}): node_exporter only "
        f"reads the file, so nothing in its process grows per value. Fix the script that writes "
        f"the file: write one line per bounded {label} (aggregate in the script), or write the "
        "raw values somewhere other than metrics."
    )


def refine(found: Sequence[Offender], ctx: Context) -> list[Offender]:
    """Rebuild the fix of every ``label_explosion`` offender from the context; others pass."""
    out = []
    for o in found:
        out.append(_refine_label(o, ctx) if o.kind == "label_explosion" else o)
    return out


def _refine_label(o: Offender, ctx: Context) -> Offender:
    ev = dict(o.evidence)
    family, label, pattern = str(ev["family"]), str(ev["label"]), str(ev.get("pattern", ""))
    rows = ctx.series.get(family)
    plan = relabel.plan(
        family,
        label,
        pattern,
        rows,
        examples=tuple(ev.get("examples") or ()),
        total_series=ctx.total_series,
        other_families=ctx.label_families.get(label, ()),
        truncated=family in ctx.truncated,
    )
    ev["relabel"] = plan.to_dict()
    kind = ctx.origin.writes(family)
    ev["source"] = kind
    uses = None if ctx.uses is None else ctx.uses.of(family, label)
    used, listed = _uses_sentence(label, uses)
    if uses is not None:
        ev["used_by"] = listed
    snippet = plan.snippet()
    if kind == org.PUSHGATEWAY:
        fix = _pushgateway_fix(o, ctx)
    elif kind == org.TEXTFILE:
        fix = _textfile_fix(o, ctx)
    else:
        code: dict[str, Any] = {}
        values = sorted({v for s in rows or () for k, v in s if k == label})
        made = normaliser(label, pattern, values) if values else None
        if made is not None:
            code.update(function=go_name(label), normaliser=made[0], routes=made[1])
        st = ctx.stale.get(family)
        if st is not None and st.stale >= MIN_STALE and st.stale >= MIN_STALE_SHARE * st.observed:
            code["stale"] = dataclasses.asdict(st)
        if ev.get("metric_type") in ("summary", "histogram"):
            native = ev.get("native_histogram_series") or _children(rows)
            if native:
                code["native_histogram"] = {
                    "series": int(native),
                    "series_now": int(ev.get("family_series") or 0),
                    "options": native_histogram_options(str(ev["metric_type"])),
                }
        if ev.get("call_site"):
            code["call_site"] = ev["call_site"]
        ev["code"] = code
        fix = _instrumented_fix(o, ctx, code)
        snippet += _go_comment(code)
    fix += _relabel_sentence(plan) + used
    return dataclasses.replace(o, evidence=ev, fix=fix, fix_snippet=snippet)


def _children(rows: Sequence[Labels] | None) -> int:
    return len({_child(s) for s in rows or ()})


def _go_comment(code: Mapping[str, Any]) -> str:
    """The Go changes as comment lines, so the snippet stays valid YAML."""
    blocks = []
    where = f" at {code['call_site']}" if code.get("call_site") else ""
    if code.get("normaliser"):
        blocks.append(f"Go{where}: bound the label (import regexp, strings)\n" + code["normaliser"])
    if code.get("native_histogram"):
        blocks.append(
            "Go: the family as a native histogram\n" + code["native_histogram"]["options"]
        )
    if not blocks:
        return ""
    lines = [ln for b in blocks for ln in ("", *b.rstrip("\n").split("\n"))]
    return "\n".join(("# " + ln.replace("\t", "    ")).rstrip() for ln in lines) + "\n"
