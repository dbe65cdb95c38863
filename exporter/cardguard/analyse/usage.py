"""Find the rules and Grafana panels that use a label, so "drop it" says what it breaks.

Pure: takes the text of Prometheus rule files and Grafana dashboard JSON and
returns plain data. PromQL is parsed with ``promql-parser`` (a binding to the
Rust PromQL parser of GreptimeDB); Grafana's template variables
(``$__rate_interval``, ``$target``, ``${cluster:regex}``, ``[[var]]``) are
substituted first (a duration in range brackets, a plain word elsewhere), as
Grafana would before sending the query.

A label is *used* by an expression when it appears as a label matcher of a
selector, in ``by``/``without`` of an aggregation, in ``on``/``ignoring``/
``group_left``/``group_right`` of a binary operation, or as a source label of
``label_replace``/``label_join``, over a selector that can reach the family
(its metric name, one of its sample names, a ``__name__`` regex that matches
them, or no metric name at all).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import promql_parser as pq
import yaml

SUFFIXES = ("", "_total", "_created", "_sum", "_count", "_bucket", "_info")
_DURATION_VARS = re.compile(r"\$\{?__(?:rate_interval|interval|range|interval_ms|range_s)\}?")
_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\[\[(\w+)\]\]")
_RANGE = re.compile(r"\[([^\]]*)\]")


@dataclass(frozen=True)
class Expr:
    """One PromQL expression and where it was found."""

    source: str
    """``rules.yml: group/alert Name`` or ``dashboard.json: panel "Title"``."""
    expr: str


@dataclass(frozen=True)
class Selector:
    name: str | None
    name_regex: str | None = None

    def reaches(self, family: str) -> bool:
        names = [family + s for s in SUFFIXES]
        if self.name is not None:
            return self.name in names
        if self.name_regex is not None:
            try:
                rx = re.compile(self.name_regex)
            except re.error:
                return True
            return any(rx.fullmatch(n) for n in names)
        return True


@dataclass(frozen=True)
class LabelUse:
    """One use of one label in one expression."""

    label: str
    how: str
    selectors: tuple[Selector, ...]


@dataclass(frozen=True)
class Use:
    """A rule or panel that uses a label on a family."""

    source: str
    how: str
    expr: str


@dataclass
class Index:
    """Every label use found in the given rules and dashboards, and what could not be read."""

    uses: list[tuple[Expr, LabelUse]] = field(default_factory=list)
    expressions: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, exprs: Iterable[Expr]) -> None:
        for e in exprs:
            self.expressions += 1
            try:
                found = label_uses(e.expr)
            except ValueError as exc:
                self.problems.append(f"{e.source}: {exc}")
                continue
            self.uses += [(e, u) for u in found]

    def of(self, family: str, label: str) -> list[Use]:
        """The rules and panels using ``label`` on ``family``, one entry per source and way."""
        out: dict[tuple[str, str], Use] = {}
        for e, u in self.uses:
            if u.label == label and any(s.reaches(family) for s in u.selectors):
                out.setdefault((e.source, u.how), Use(e.source, u.how, e.expr))
        return list(out.values())


# --- Grafana -----------------------------------------------------------------------------


def substitute(expr: str) -> str:
    """Replace Grafana template variables as Grafana would before running the query."""
    expr = _DURATION_VARS.sub("5m", expr)

    def in_range(m: re.Match[str]) -> str:
        inner = m.group(1)
        if ":" in inner:  # a subquery [range:step]
            return "[" + ":".join(_VARIABLE.sub("5m", x) for x in inner.split(":")) + "]"
        return "[" + _VARIABLE.sub("5m", inner) + "]"

    expr = _RANGE.sub(in_range, expr)
    return _VARIABLE.sub("x", expr)


def dashboard_exprs(text: str, source: str) -> list[Expr]:
    """Return the PromQL of every panel target (rows and nested panels), annotation and variable.

    Raises:
        ValueError: the text is not dashboard JSON.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not JSON: {exc}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("dashboard"), dict):
        doc = doc["dashboard"]  # the API's {"dashboard": ..., "meta": ...} form
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: not a Grafana dashboard")
    out: list[Expr] = []

    def panels(items: Any) -> Iterator[Mapping[str, Any]]:
        for p in items if isinstance(items, list) else ():
            if isinstance(p, dict):
                yield p
                yield from panels(p.get("panels"))

    for p in panels(doc.get("panels")):
        title = str(p.get("title") or p.get("id") or "untitled")
        for t in p.get("targets") or ():
            if isinstance(t, dict) and isinstance(t.get("expr"), str) and t["expr"].strip():
                out.append(Expr(f'{source}: panel "{title}"', substitute(t["expr"])))
    for a in (doc.get("annotations") or {}).get("list") or ():
        if isinstance(a, dict) and isinstance(a.get("expr"), str) and a["expr"].strip():
            out.append(Expr(f'{source}: annotation "{a.get("name")}"', substitute(a["expr"])))
    for v in (doc.get("templating") or {}).get("list") or ():
        q = v.get("query") if isinstance(v, dict) else None
        if isinstance(q, dict):
            q = q.get("query")
        if isinstance(q, str):
            m = re.fullmatch(r"\s*(label_values|query_result)\((.*)\)\s*", q, re.S)
            if m is None:
                continue
            inner = m.group(2)
            if m.group(1) == "label_values":
                # label_values(selector, label): the selector is PromQL; label_values(label) is not
                sel = re.fullmatch(r"(.*),\s*[A-Za-z_]\w*\s*", inner, re.S)
                if sel is None:
                    continue
                inner = sel.group(1)
            out.append(Expr(f'{source}: variable "{v.get("name")}"', substitute(inner)))
    return out


# --- rule files --------------------------------------------------------------------------------


def rule_exprs(text: str, source: str) -> list[Expr]:
    """Return the expression of every alerting and recording rule of a Prometheus rule file.

    Raises:
        ValueError: the text is not a rule file.
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not YAML: {exc}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("spec"), dict):
        doc = doc["spec"]  # a PrometheusRule object
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        raise ValueError(f"{source}: no groups: (not a Prometheus rule file)")
    out = []
    for g in doc["groups"]:
        if not isinstance(g, dict):
            continue
        for r in g.get("rules") or ():
            if not isinstance(r, dict) or not isinstance(r.get("expr"), str | int | float):
                continue
            what = f"alert {r['alert']}" if "alert" in r else f"record {r.get('record')}"
            out.append(Expr(f"{source}: {g.get('name')}/{what}", str(r["expr"])))
    return out


# --- PromQL -----------------------------------------------------------------------------------


def label_uses(expr: str) -> list[LabelUse]:
    """Parse one expression and return every label it uses, with the selectors it uses it on.

    Raises:
        ValueError: PromQL the parser rejects.
    """
    try:
        tree = pq.parse(expr)
    except ValueError as exc:
        raise ValueError(f"cannot parse {expr!r}: {exc}") from None
    out: list[LabelUse] = []
    _walk(tree, out)
    return out


def _walk(node: Any, out: list[LabelUse]) -> list[Selector]:
    """Collect label uses under ``node``; return the selectors it reads."""
    if isinstance(node, pq.VectorSelector):
        name_regex = None
        for m in node.matchers.matchers:
            if m.name == "__name__":
                name_regex = m.value if m.op in (pq.MatchOp.Re,) else name_regex
                if m.op == pq.MatchOp.Equal:
                    return _with_matchers(node, Selector(m.value), out)
        return _with_matchers(node, Selector(node.name, name_regex), out)
    if isinstance(node, pq.MatrixSelector):
        return _walk(node.vector_selector, out)
    if isinstance(node, pq.AggregateExpr):
        sels = _walk(node.expr, out)
        if node.param is not None:
            _walk(node.param, out)
        mod = node.modifier
        if mod is not None:
            how = "without" if mod.type == pq.AggModifierType.Without else "by"
            out += [LabelUse(lab, how, tuple(sels)) for lab in mod.labels]
        return sels
    if isinstance(node, pq.BinaryExpr):
        sels = _walk(node.lhs, out) + _walk(node.rhs, out)
        bmod = node.modifier
        if bmod is not None:
            if bmod.matching is not None:
                how = "on" if bmod.matching.type == pq.LabelModifierType.Include else "ignoring"
                out += [LabelUse(lab, how, tuple(sels)) for lab in bmod.matching.labels]
            side = "group_left" if "ManyToOne" in str(bmod.card) else "group_right"
            out += [LabelUse(lab, side, tuple(sels)) for lab in bmod.group_labels or ()]
        return sels
    if isinstance(node, pq.Call):
        sels = []
        for a in node.args:
            sels += _walk(a, out)
        name = node.func.name
        strings = [a.val for a in node.args if isinstance(a, pq.StringLiteral)]
        if name == "label_replace" and len(strings) >= 4 and strings[2]:
            out.append(LabelUse(strings[2], "label_replace", tuple(sels)))
        elif name == "label_join" and len(strings) >= 3:
            out += [LabelUse(s, "label_join", tuple(sels)) for s in strings[2:] if s]
        return sels
    for attr in ("expr",):  # ParenExpr, UnaryExpr, SubqueryExpr
        child = getattr(node, attr, None)
        if child is not None:
            return _walk(child, out)
    return []


def _with_matchers(node: Any, sel: Selector, out: list[LabelUse]) -> list[Selector]:
    for m in node.matchers.matchers:
        if m.name != "__name__":
            out.append(LabelUse(m.name, "matcher", (sel,)))
    for group in node.matchers.or_matchers or ():
        for m in group:
            if m.name != "__name__":
                out.append(LabelUse(m.name, "matcher", (sel,)))
    return [sel]


def index(rule_files: Sequence[tuple[str, str]], dashboards: Sequence[tuple[str, str]]) -> Index:
    """Build the index from ``(source name, text)`` of rule files and dashboards."""
    idx = Index()
    for source, text in rule_files:
        try:
            idx.add(rule_exprs(text, source))
        except ValueError as exc:
            idx.problems.append(str(exc))
    for source, text in dashboards:
        try:
            idx.add(dashboard_exprs(text, source))
        except ValueError as exc:
            idx.problems.append(str(exc))
    return idx
