"""The ``rules:`` section and standalone rules files, read into :mod:`cardguard.settings.rules`.

The shape (every key optional; docs/offenders.md has the whole schema)::

    rules:                        # or ``rules: rules.yml`` to keep them in their own file
      label_explosion:            # thresholds for every family and label
        severity: warning
        distinct_values: 200      # a label whose values look unbounded (suspect pattern)
        distinct_values_any: 2000 # any label, whatever its values look like
        growth_per_hour: 600      # distinct values gained per hour ...
        min_new_values: 20        # ... and at least this many during the watch
        series_share: 0.5         # a suspect label on a family holding half the target's series
        critical_distinct_values: 10000
        suspect_patterns: [url_path, uuid, hex_id, numeric_id, ip, email, timestamp]
      overrides:                  # per family and per label (globs, or "re:<regex>")
        - {family: "http_*", label: handler, distinct_values: 500}
        - {family: "re:^grpc_.*", ignore: true}
      allow: {families: [...], labels: [...]}   # never an offender
      deny:  {families: [...], labels: [...],  # offenders once a denied label has 2 values
              severity: warning, min_distinct_values: 2}  # (or a denied family 2 series)
      children_heap_cost: {severity: warning, min_children: 50, min_bytes: 1MiB,
                           min_heap_share: 0.05}
      goroutine_leak: {severity: warning,          # a group growing steadily
                       leaked_severity: critical,  # confirmed by the goroutineleak profile
                       blocked_severity: info,     # blocked past max_wait (may be a worker pool)
                       min_growth: 50, growth_per_hour: 600, max_wait: 10m, min_blocked: 10}
      heap_growth: {severity: warning, min_growth_bytes: 4MiB, min_growth_ratio: 0.1,
                    traffic_metric: "re:.*_requests_total", traffic_tolerance: 0.5}
      misleading_memory: {severity: info, rss_heap_ratio: 2.0, min_gap_bytes: 64MiB}
      targets:                    # per-target overrides, same keys as above
        api: {label_explosion: {distinct_values: 1000}}

Sizes and durations are the config file's (:mod:`cardguard.quantities`). Every
problem goes on the :class:`~cardguard.settings.checker.Ctx` it is given, so the
config loader reports them with its own; :func:`load_rules_file` does the same
for a standalone rules file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, cast

from yaml.nodes import MappingNode, Node, ScalarNode

from cardguard.errors import ConfigError
from cardguard.settings import yamlfile
from cardguard.settings.checker import Ctx, Section, describe, is_text, join
from cardguard.settings.rules import (
    DEFAULT_RULES,
    PATTERN_NAMES,
    SEVERITIES,
    DenyList,
    LabelOverride,
    Matcher,
    NameLists,
    Rules,
    Severity,
    TargetRules,
)

# --- readers for what only rules hold -------------------------------------------

Reader = Callable[[Ctx, Node, str], Any]


def _severity(ctx: Ctx, node: Node, path: str) -> Severity | None:
    return cast("Severity | None", ctx.choice(node, path, SEVERITIES))


def _bytes(ctx: Ctx, node: Node, path: str) -> int | None:
    return ctx.size(node, path, minimum=0)


def _minutes(ctx: Ctx, node: Node, path: str) -> float | None:
    seconds = ctx.duration(node, path)
    return None if seconds is None else seconds / 60


def _factor(ctx: Ctx, node: Node, path: str) -> float | None:
    return ctx.number(node, path, minimum=1.0)


def _matcher(ctx: Ctx, node: Node, path: str) -> Matcher | None:
    if not is_text(node) or not node.value:
        ctx.error(node, path, f"expected a glob or re:<regex>, got {describe(node)}")
        return None
    value = str(node.value)
    try:
        return Matcher.parse(value)
    except re.error as exc:
        reason = str(exc)
    except (RecursionError, OverflowError) as exc:
        # The re module's parser recurses per group and refuses huge repeat counts.
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
    shown = yamlfile.clip(repr(value[3:]))
    ctx.error(node, path, f"invalid regular expression {shown}: {reason}")
    return None


def _matchers(ctx: Ctx, sec: Section, key: str) -> tuple[Matcher, ...]:
    path = sec.key_path(key)
    out = []
    for i, item in enumerate(ctx.sequence(sec.value_node(key), path)):
        m = _matcher(ctx, item, join(path, i))
        if m is not None:
            out.append(m)
    return tuple(out)


def _patterns(ctx: Ctx, node: Node, path: str) -> tuple[str, ...] | None:
    """Suspect pattern names; None (the base list kept) when any is unknown."""
    out: list[str] = []
    ok = True
    for i, item in enumerate(ctx.sequence(node, path)):
        if not is_text(item) or item.value not in PATTERN_NAMES:
            ctx.error(
                item,
                join(path, i),
                f"unknown pattern {describe(item)} (expected one of: {', '.join(PATTERN_NAMES)})",
            )
            ok = False
            continue
        out.append(str(item.value))
    return tuple(out) if ok else None


# --- the sections: YAML key -> reader -------------------------------------------

_LABEL_FIELDS: dict[str, Reader] = {
    "severity": _severity,
    "distinct_values": Ctx.positive,
    "distinct_values_any": Ctx.positive,
    "growth_per_hour": Ctx.number,
    "min_new_values": Ctx.integer,
    "series_share": Ctx.ratio,
    "min_share_values": Ctx.integer,
    "critical_distinct_values": Ctx.positive,
    "suspect_patterns": _patterns,
}
_CHILDREN_FIELDS: dict[str, Reader] = {
    "severity": _severity,
    "min_children": Ctx.positive,
    "min_bytes": _bytes,
    "min_heap_share": Ctx.ratio,
}
_GOROUTINE_FIELDS: dict[str, Reader] = {
    "severity": _severity,
    "leaked_severity": _severity,
    "blocked_severity": _severity,
    "min_growth": Ctx.positive,
    "growth_per_hour": Ctx.number,
    "max_wait": _minutes,
    "min_blocked": Ctx.positive,
}
_HEAP_FIELDS: dict[str, Reader] = {
    "severity": _severity,
    "min_growth_bytes": _bytes,
    "min_growth_ratio": Ctx.number,
    "traffic_metric": _matcher,
    "traffic_tolerance": Ctx.number,
}
_MEMORY_FIELDS: dict[str, Reader] = {
    "severity": _severity,
    "rss_heap_ratio": _factor,
    "min_gap_bytes": _bytes,
}
# YAML key -> dataclass field, where they differ.
_RENAMES = {"max_wait": "max_wait_minutes"}

_OVERRIDE_FIELDS: dict[str, Reader] = {
    "family": _matcher,
    "label": _matcher,
    "ignore": Ctx.boolean,
    **{k: r for k, r in _LABEL_FIELDS.items() if k not in ("suspect_patterns", "min_share_values")},
}
_SECTIONS = (
    "label_explosion",
    "overrides",
    "allow",
    "deny",
    "children_heap_cost",
    "goroutine_leak",
    "heap_growth",
    "misleading_memory",
)
# The sections whose keys are read with one table into one rule object.
_TABLES: dict[str, dict[str, Reader]] = {
    "label_explosion": _LABEL_FIELDS,
    "children_heap_cost": _CHILDREN_FIELDS,
    "goroutine_leak": _GOROUTINE_FIELDS,
    "heap_growth": _HEAP_FIELDS,
    "misleading_memory": _MEMORY_FIELDS,
}


def _read(ctx: Ctx, sec: Section, readers: Mapping[str, Reader]) -> dict[str, Any]:
    """Every key of ``sec`` read with its reader; the keys that were wrong are left out."""
    changes: dict[str, Any] = {}
    for key in sec.items:
        value = sec.optional(key, partial(readers[key], ctx))
        if value is not None:
            changes[_RENAMES.get(key, key)] = value
    return changes


def _override(ctx: Ctx, node: Node, path: str) -> LabelOverride | None:
    sec = ctx.section(node, path, _OVERRIDE_FIELDS)
    if sec is None:
        return None
    if not sec.has("family") and not sec.has("label"):
        ctx.error(node, path, "an override needs family or label")
        return None
    return LabelOverride(**_read(ctx, sec, _OVERRIDE_FIELDS))


def _allow(ctx: Ctx, node: Node, path: str, base: NameLists) -> NameLists:
    sec = ctx.section(node, path, ("families", "labels"))
    if sec is None:
        return base
    return NameLists(
        families=base.families + _matchers(ctx, sec, "families"),
        labels=base.labels + _matchers(ctx, sec, "labels"),
    )


def _deny(ctx: Ctx, node: Node, path: str, base: DenyList) -> DenyList:
    sec = ctx.section(node, path, ("families", "labels", "severity", "min_distinct_values"))
    if sec is None:
        return base
    return DenyList(
        families=base.families + _matchers(ctx, sec, "families"),
        labels=base.labels + _matchers(ctx, sec, "labels"),
        severity=sec.get("severity", partial(_severity, ctx), base.severity),
        min_distinct_values=sec.get("min_distinct_values", ctx.positive, base.min_distinct_values),
    )


def _target_rules(ctx: Ctx, sec: Section, base: TargetRules) -> TargetRules:
    """Apply one level of sections (the defaults, or one target's overrides) on ``base``."""
    out = base
    for key, (_, node) in sec.items.items():
        where = sec.key_path(key)
        if key in _TABLES:
            part = ctx.section(node, where, _TABLES[key])
            if part is None:
                continue
            rule = replace(getattr(out, key), **_read(ctx, part, _TABLES[key]))
            if key == "misleading_memory" and rule.severity != "info":
                ctx.error(
                    part.value_node("severity"),
                    join(where, "severity"),
                    "must be info: memory that only looks large is not a leak",
                )
                rule = replace(rule, severity="info")
            out = replace(out, **{key: rule})
        elif key == "overrides":
            added = []
            for i, item in enumerate(ctx.sequence(node, where)):
                o = _override(ctx, item, join(where, i))
                if o is not None:
                    added.append(o)
            out = replace(out, overrides=out.overrides + tuple(added))
        elif key == "allow":
            out = replace(out, allow=_allow(ctx, node, where, out.allow))
        elif key == "deny":
            out = replace(out, deny=_deny(ctx, node, where, out.deny))
    return out


def load_rules(node: Node | None, ctx: Ctx, path: str = "rules") -> Rules:
    """Build ``Rules`` from the ``rules:`` node, reporting every problem on ``ctx``.

    A missing node gives the defaults; a string names a rules file to include
    (relative to ``ctx.base_dir``). Returns the best-effort rules even when
    problems were reported; the caller decides whether to reject the file.
    """
    if node is None:
        return DEFAULT_RULES
    if is_text(node):
        assert isinstance(node, ScalarNode)
        return _include(node, ctx, path)
    sec = ctx.section(node, path, (*_SECTIONS, "targets"))
    if sec is None:
        return Rules()
    tnode = sec.value_node("targets")
    defaults = _target_rules(ctx, _without(sec, "targets"), TargetRules())
    targets: dict[str, TargetRules] = {}
    if tnode is not None:
        tpath = sec.key_path("targets")
        if isinstance(tnode, MappingNode):
            for key_node, value_node in tnode.value:
                name = str(key_node.value) if isinstance(key_node, ScalarNode) else ""
                if not name:
                    ctx.error(key_node, tpath, "target names must be strings")
                    continue
                if name in targets:
                    ctx.error(key_node, join(tpath, name), "target given twice")
                    continue
                sub = ctx.section(value_node, join(tpath, name), _SECTIONS)
                targets[name] = defaults if sub is None else _target_rules(ctx, sub, defaults)
        else:
            ctx.section(tnode, tpath, ())
    return Rules(defaults=defaults, targets=targets)


def _without(sec: Section, key: str) -> Section:
    items = {k: v for k, v in sec.items.items() if k != key}
    return Section(sec.ctx, sec.path, items, sec.node)


def _include(node: ScalarNode, ctx: Ctx, path: str) -> Rules:
    """Load ``rules: other.yml``: the file's own problems are reported with its name."""
    target = Path(node.value)
    if not target.is_absolute():
        target = ctx.base_dir / target
    try:
        found = target.is_file()
    except (OSError, ValueError):  # a name too long for the OS, or with a NUL in it
        found = False
    if not found:
        shown = yamlfile.clip(repr(str(target)), 200)
        ctx.error(node, path, f"cannot read included rules file {shown}")
        return DEFAULT_RULES
    try:
        return load_rules_file(target)
    except ConfigError as exc:
        ctx.problems.extend(exc.problems)
        return DEFAULT_RULES


def load_rules_file(path: str | Path) -> Rules:
    """Load a standalone rules file; raise ``ConfigError`` listing every problem with file:line.

    The file holds either a top-level ``rules:`` key or the rule sections directly.
    """
    source = str(path)
    text = yamlfile.read(path, source)
    ctx = Ctx(source, Path(path).resolve().parent)
    root = yamlfile.compose(text, source)
    rules_node: Node | None = root
    if isinstance(root, MappingNode) and [k.value for k, _ in root.value] == ["rules"]:
        rules_node = root.value[0][1]
    if rules_node is not None and is_text(rules_node):
        ctx.error(rules_node, "rules", "an included rules file cannot include another")
        rules_node = None
    rules = load_rules(rules_node, ctx)
    if ctx.problems:
        raise ConfigError(source, yamlfile.limited(source, ctx.problems))
    return rules
