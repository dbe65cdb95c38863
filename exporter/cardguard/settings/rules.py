"""Offender rules: the ``rules:`` section of the config, loaded into frozen dataclasses.

Admins tune what counts as an offender here without touching code. Every
field has a default that works untuned, so an empty or missing ``rules:``
section is valid. The shape::

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
                    traffic_metric: "", traffic_tolerance: 0.5}
      misleading_memory: {severity: info, rss_heap_ratio: 2.0, min_gap_bytes: 64MiB}
      targets:                    # per-target overrides, same keys as above
        api: {label_explosion: {distinct_values: 1000}}

Errors are collected on a ``ProblemSink`` (``error(node, message)``) so the
config loader reports them all at once with file and line; ``load_rules_file``
does the same for a standalone rules file.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from cardguard.analyse import patterns
from cardguard.errors import ConfigError
from cardguard.settings import yamlfile

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}

# The value classes of cardguard.analyse.patterns that can be named as suspect.
PATTERN_NAMES: tuple[str, ...] = patterns.CLASSES
DEFAULT_SUSPECT: tuple[str, ...] = (
    "url_path",
    "uuid",
    "hex_id",
    "numeric_id",
    "ip",
    "email",
    "timestamp",
)

# Request counters that stand for a target's traffic when none is configured.
DEFAULT_TRAFFIC_METRIC = (
    r"re:.*(_requests_total|_requests|http_server_requests.*|_http_requests_total|"
    r"_handled_total|_rpcs_total)"
)


class ProblemSink(Protocol):
    """Where validation problems go (``cardguard.settings.config.Ctx`` is one); adds file:line."""

    def error(self, node: yaml.Node | None, path: str, message: str) -> None: ...


# --- matchers ---------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    """A name pattern: a shell glob, or a regular expression written ``re:<regex>``."""

    pattern: str
    regex: re.Pattern[str] = field(compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Compile ``text``; raises ``re.error`` on a bad regex."""
        if text.startswith("re:"):
            return cls(text, re.compile(text[3:]))
        return cls(text, re.compile(fnmatch.translate(text)))

    def matches(self, name: str) -> bool:
        return self.regex.fullmatch(name) is not None


def _any_match(matchers: Iterable[Matcher], name: str) -> bool:
    return any(m.matches(name) for m in matchers)


# --- the rule sections ------------------------------------------------------


@dataclass(frozen=True)
class LabelExplosionRule:
    """When a label's distinct values make it an offender."""

    severity: Severity = "warning"
    distinct_values: int = 200
    distinct_values_any: int = 2000
    growth_per_hour: float = 600.0
    min_new_values: int = 20
    series_share: float = 0.5
    min_share_values: int = 50
    critical_distinct_values: int = 10000
    suspect_patterns: tuple[str, ...] = DEFAULT_SUSPECT


@dataclass(frozen=True)
class LabelOverride:
    """Thresholds for the families and labels that match; ``None`` keeps the base value."""

    family: Matcher | None = None
    label: Matcher | None = None
    ignore: bool = False
    severity: Severity | None = None
    distinct_values: int | None = None
    distinct_values_any: int | None = None
    growth_per_hour: float | None = None
    min_new_values: int | None = None
    series_share: float | None = None
    critical_distinct_values: int | None = None

    def applies(self, family: str, label: str | None) -> bool:
        if self.family is not None and not self.family.matches(family):
            return False
        if self.label is not None and (label is None or not self.label.matches(label)):
            return False
        return True


@dataclass(frozen=True)
class NameLists:
    """Families and labels named in an allow- or deny-list."""

    families: tuple[Matcher, ...] = ()
    labels: tuple[Matcher, ...] = ()


@dataclass(frozen=True)
class DenyList(NameLists):
    """Families and labels that are offenders as soon as they show values."""

    severity: Severity = "warning"
    min_distinct_values: int = 2


@dataclass(frozen=True)
class ChildrenHeapCostRule:
    """When summary/histogram children held by the client library cost too much heap."""

    severity: Severity = "warning"
    min_children: int = 50
    min_bytes: int = 1 << 20
    min_heap_share: float = 0.05


@dataclass(frozen=True)
class GoroutineLeakRule:
    """Goroutine-group growth and wait-time limits."""

    severity: Severity = "warning"
    leaked_severity: Severity = "critical"
    blocked_severity: Severity = "info"
    min_growth: int = 50
    growth_per_hour: float = 600.0
    max_wait_minutes: float = 10.0
    min_blocked: int = 10


@dataclass(frozen=True)
class HeapGrowthRule:
    """Heap-owner growth limits, judged against the target's traffic."""

    severity: Severity = "warning"
    min_growth_bytes: int = 4 << 20
    min_growth_ratio: float = 0.1
    traffic_metric: Matcher = field(default_factory=lambda: Matcher.parse(DEFAULT_TRAFFIC_METRIC))
    traffic_tolerance: float = 0.5


@dataclass(frozen=True)
class MisleadingMemoryRule:
    """When resident memory far above the Go heap deserves an explanation (never a leak)."""

    severity: Severity = "info"
    rss_heap_ratio: float = 2.0
    min_gap_bytes: int = 64 << 20


@dataclass(frozen=True)
class TargetRules:
    """The rules in force for one target (defaults, then per-target overrides)."""

    label_explosion: LabelExplosionRule = LabelExplosionRule()
    overrides: tuple[LabelOverride, ...] = ()
    allow: NameLists = NameLists()
    deny: DenyList = DenyList()
    children_heap_cost: ChildrenHeapCostRule = ChildrenHeapCostRule()
    goroutine_leak: GoroutineLeakRule = GoroutineLeakRule()
    heap_growth: HeapGrowthRule = HeapGrowthRule()
    misleading_memory: MisleadingMemoryRule = MisleadingMemoryRule()

    def allowed(self, family: str, label: str | None = None) -> bool:
        """Return whether the family (or its label) is allow-listed or ignored by an override."""
        if _any_match(self.allow.families, family):
            return True
        if label is not None and _any_match(self.allow.labels, label):
            return True
        return any(o.ignore and o.applies(family, label) for o in self.overrides)

    def denied(self, family: str, label: str | None = None) -> bool:
        """Return whether the family, or this label, is deny-listed."""
        if _any_match(self.deny.families, family):
            return True
        return label is not None and _any_match(self.deny.labels, label)

    def denied_family(self, family: str) -> bool:
        return _any_match(self.deny.families, family)

    def denied_label(self, label: str) -> bool:
        return _any_match(self.deny.labels, label)

    def label_rule(self, family: str, label: str) -> LabelExplosionRule:
        """Return the label-explosion thresholds for one label, overrides applied in order."""
        rule = self.label_explosion
        for o in self.overrides:
            if o.ignore or not o.applies(family, label):
                continue
            changes = {
                f.name: getattr(o, f.name)
                for f in fields(LabelExplosionRule)
                if hasattr(o, f.name) and getattr(o, f.name) is not None
            }
            rule = replace(rule, **changes)
        return rule


@dataclass(frozen=True)
class Rules:
    """All offender rules: the defaults and the per-target overrides."""

    defaults: TargetRules = TargetRules()
    targets: Mapping[str, TargetRules] = field(default_factory=dict)

    def for_target(self, name: str) -> TargetRules:
        return self.targets.get(name, self.defaults)


DEFAULT_RULES = Rules()


# --- loading ----------------------------------------------------------------

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"

# Digit counts are bounded: int() refuses strings of more than 4,300 digits.
_SIZE_RE = re.compile(r"^\s*(\d{1,18}(?:\.\d{1,18})?)\s*(B|KB|MB|GB|KiB|MiB|GiB|kB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "kB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_DURATION_RE = re.compile(r"^(?:(\d{1,18})h)?(?:(\d{1,18})m)?(?:(\d{1,18})s)?$")


class _Reader:
    """Typed reads of YAML nodes that report a problem instead of raising."""

    def __init__(self, sink: ProblemSink) -> None:
        self.sink = sink

    def fail(self, node: yaml.Node, path: str, message: str) -> None:
        self.sink.error(node, path, message)

    def mapping(
        self, node: yaml.Node, path: str, known: Sequence[str]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Return key -> (key node, value node); report non-mappings, unknown and repeated keys."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, f"expected a mapping, got {_describe(node)}")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.fail(key_node, path, "keys must be strings")
                continue
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"expected one of: {', '.join(known)}"
                )
                self.fail(key_node, f"{path}.{key}", f"unknown key; {hint}")
                continue
            if key in out:
                self.fail(key_node, f"{path}.{key}", "key given twice")
                continue
            out[key] = (key_node, value_node)
        return out

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return node
        return _plain(node)

    def integer(self, node: yaml.Node, path: str, minimum: int = 0) -> int | None:
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, path, f"expected a whole number, got {_describe(node)}")
            return None
        if value < minimum:
            self.fail(node, path, f"must be at least {minimum}, got {value}")
            return None
        return value

    def number(
        self, node: yaml.Node, path: str, minimum: float = 0.0, maximum: float | None = None
    ) -> float | None:
        value = self.scalar(node)
        if isinstance(value, str) and _FLOAT_RE.match(value):
            value = float(value)  # YAML 1.1 reads 1e6 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(node, path, f"expected a number, got {_describe(node)}")
            return None
        try:
            value = float(value)
        except OverflowError:  # an int too large for a float
            value = math.inf
        if not math.isfinite(value):
            self.fail(node, path, f"expected a finite number, got {_describe(node)}")
            return None
        if value < minimum or (maximum is not None and value > maximum):
            bound = (
                f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
            )
            self.fail(node, path, f"must be {bound}, got {value:g}")
            return None
        return value

    def ratio(self, node: yaml.Node, path: str) -> float | None:
        return self.number(node, path, 0.0, 1.0)

    def boolean(self, node: yaml.Node, path: str) -> bool | None:
        value = self.scalar(node)
        if not isinstance(value, bool):
            self.fail(node, path, f"expected true or false, got {_describe(node)}")
            return None
        return value

    def severity(self, node: yaml.Node, path: str) -> Severity | None:
        value = self.scalar(node)
        if value not in SEVERITIES:
            self.fail(
                node,
                path,
                f"expected one of info, warning, critical, got {_describe(node)}",
            )
            return None
        sev: Severity = value
        return sev

    def size(self, node: yaml.Node, path: str) -> int | None:
        value = self.scalar(node)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        m = _SIZE_RE.match(value) if isinstance(value, str) else None
        if m is None:
            self.fail(node, path, f"expected a size like 64MiB, got {_describe(node)}")
            return None
        return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])  # finite: 18 digits at most

    def minutes(self, node: yaml.Node, path: str) -> float | None:
        value = self.scalar(node)
        m = _DURATION_RE.match(value) if isinstance(value, str) and value else None
        if m is None or not any(m.groups()):
            self.fail(node, path, f"expected a duration like 10m, got {_describe(node)}")
            return None
        h, mi, s = (int(g) if g else 0 for g in m.groups())
        return h * 60 + mi + s / 60

    def matcher(self, node: yaml.Node, path: str) -> Matcher | None:
        value = self.scalar(node)
        if not isinstance(value, str) or not value:
            self.fail(node, path, f"expected a glob or re:<regex>, got {_describe(node)}")
            return None
        try:
            return Matcher.parse(value)
        except re.error as exc:
            shown = yamlfile.clip(repr(value[3:]))
            self.fail(node, path, f"invalid regular expression {shown}: {exc}")
            return None
        except (RecursionError, OverflowError) as exc:
            # The re module's parser recurses per group and refuses huge repeat counts.
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            shown = yamlfile.clip(repr(value[3:]))
            self.fail(node, path, f"invalid regular expression {shown}: {reason}")
            return None

    def sequence(self, node: yaml.Node, path: str) -> list[yaml.Node]:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, f"expected a list, got {_describe(node)}")
            return []
        return list(node.value)

    def matchers(self, node: yaml.Node, path: str) -> tuple[Matcher, ...]:
        out = []
        for i, item in enumerate(self.sequence(node, path)):
            m = self.matcher(item, f"{path}[{i}]")
            if m is not None:
                out.append(m)
        return tuple(out)

    def patterns(self, node: yaml.Node, path: str) -> tuple[str, ...] | None:
        out: list[str] = []
        ok = True
        for i, item in enumerate(self.sequence(node, path)):
            value = self.scalar(item)
            if value not in PATTERN_NAMES:
                self.fail(
                    item,
                    f"{path}[{i}]",
                    f"unknown pattern {_describe(item)} (expected one of: "
                    f"{', '.join(PATTERN_NAMES)})",
                )
                ok = False
                continue
            out.append(value)
        return tuple(out) if ok else None


def _plain(node: yaml.ScalarNode) -> Any:
    """Construct a plain scalar with YAML 1.1 resolution (ints, floats, bools, nulls)."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return node.value  # text that does not fit its tag (``!!int abc``, 5,000 digits)


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return yamlfile.clip(repr(node.value) if node.tag == _STR else str(node.value))


# Field readers per section: field name -> reader(reader, node, path) -> value | None.
_FieldReader = Callable[[_Reader, yaml.Node, str], Any]


def _r_sev(r: _Reader, n: yaml.Node, p: str) -> Any:
    return r.severity(n, p)


def _r_int(r: _Reader, n: yaml.Node, p: str) -> Any:
    return r.integer(n, p)


def _r_pos_int(r: _Reader, n: yaml.Node, p: str) -> Any:
    return r.integer(n, p, minimum=1)


def _r_num(r: _Reader, n: yaml.Node, p: str) -> Any:
    return r.number(n, p)


def _r_ratio(r: _Reader, n: yaml.Node, p: str) -> Any:
    return r.ratio(n, p)


def _r_size(r: _Reader, n: yaml.Node, p: str) -> Any:
    return r.size(n, p)


def _r_minutes(r: _Reader, n: yaml.Node, p: str) -> Any:
    return r.minutes(n, p)


def _r_matcher(r: _Reader, n: yaml.Node, p: str) -> Any:
    return r.matcher(n, p)


def _r_patterns(r: _Reader, n: yaml.Node, p: str) -> Any:
    return r.patterns(n, p)


def _r_factor(r: _Reader, n: yaml.Node, p: str) -> Any:
    return r.number(n, p, minimum=1.0)


_LABEL_FIELDS: dict[str, _FieldReader] = {
    "severity": _r_sev,
    "distinct_values": _r_pos_int,
    "distinct_values_any": _r_pos_int,
    "growth_per_hour": _r_num,
    "min_new_values": _r_int,
    "series_share": _r_ratio,
    "min_share_values": _r_int,
    "critical_distinct_values": _r_pos_int,
    "suspect_patterns": _r_patterns,
}
_CHILDREN_FIELDS: dict[str, _FieldReader] = {
    "severity": _r_sev,
    "min_children": _r_pos_int,
    "min_bytes": _r_size,
    "min_heap_share": _r_ratio,
}
_GOROUTINE_FIELDS: dict[str, _FieldReader] = {
    "severity": _r_sev,
    "leaked_severity": _r_sev,
    "blocked_severity": _r_sev,
    "min_growth": _r_pos_int,
    "growth_per_hour": _r_num,
    "max_wait": _r_minutes,
    "min_blocked": _r_pos_int,
}
_HEAP_FIELDS: dict[str, _FieldReader] = {
    "severity": _r_sev,
    "min_growth_bytes": _r_size,
    "min_growth_ratio": _r_num,
    "traffic_metric": _r_matcher,
    "traffic_tolerance": _r_num,
}
_MEMORY_FIELDS: dict[str, _FieldReader] = {
    "severity": _r_sev,
    "rss_heap_ratio": _r_factor,
    "min_gap_bytes": _r_size,
}
# YAML key -> dataclass field, where they differ.
_RENAMES = {"max_wait": "max_wait_minutes"}

_OVERRIDE_FIELDS = (
    "family",
    "label",
    "ignore",
    *[k for k in _LABEL_FIELDS if k != "suspect_patterns" and k != "min_share_values"],
)
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


def _section(
    r: _Reader, node: yaml.Node, path: str, readers: Mapping[str, _FieldReader], base: Any
) -> Any:
    changes: dict[str, Any] = {}
    for key, (_, value_node) in r.mapping(node, path, list(readers)).items():
        value = readers[key](r, value_node, f"{path}.{key}")
        if value is not None:
            changes[_RENAMES.get(key, key)] = value
    return replace(base, **changes)


def _override(r: _Reader, node: yaml.Node, path: str) -> LabelOverride | None:
    entries = r.mapping(node, path, _OVERRIDE_FIELDS)
    if not entries:
        if isinstance(node, yaml.MappingNode):
            r.fail(node, path, "an override needs family or label")
        return None
    changes: dict[str, Any] = {}
    for key, (_, value_node) in entries.items():
        where = f"{path}.{key}"
        if key in ("family", "label"):
            value: Any = r.matcher(value_node, where)
        elif key == "ignore":
            value = r.boolean(value_node, where)
        else:
            value = _LABEL_FIELDS[key](r, value_node, where)
        if value is not None:
            changes[key] = value
    if "family" not in entries and "label" not in entries:
        r.fail(node, path, "an override needs family or label")
        return None
    return LabelOverride(**changes)


def _name_lists(r: _Reader, node: yaml.Node, path: str, deny: bool) -> dict[str, Any]:
    known = ["families", "labels"] + (["severity", "min_distinct_values"] if deny else [])
    out: dict[str, Any] = {}
    for key, (_, value_node) in r.mapping(node, path, known).items():
        where = f"{path}.{key}"
        if key in ("families", "labels"):
            out[key] = r.matchers(value_node, where)
        elif key == "severity":
            sev = r.severity(value_node, where)
            if sev is not None:
                out[key] = sev
        else:
            n = r.integer(value_node, where, minimum=1)
            if n is not None:
                out[key] = n
    return out


def _target_rules(
    r: _Reader, items: Mapping[str, tuple[yaml.Node, yaml.Node]], path: str, base: TargetRules
) -> TargetRules:
    """Apply one level of sections (the defaults, or one target's overrides) on ``base``."""
    out = base
    for key, (_, node) in items.items():
        where = f"{path}.{key}"
        if key == "label_explosion":
            out = replace(
                out, label_explosion=_section(r, node, where, _LABEL_FIELDS, out.label_explosion)
            )
        elif key == "children_heap_cost":
            out = replace(
                out,
                children_heap_cost=_section(
                    r, node, where, _CHILDREN_FIELDS, out.children_heap_cost
                ),
            )
        elif key == "goroutine_leak":
            out = replace(
                out, goroutine_leak=_section(r, node, where, _GOROUTINE_FIELDS, out.goroutine_leak)
            )
        elif key == "heap_growth":
            out = replace(out, heap_growth=_section(r, node, where, _HEAP_FIELDS, out.heap_growth))
        elif key == "misleading_memory":
            mm = _section(r, node, where, _MEMORY_FIELDS, out.misleading_memory)
            if mm.severity != "info":
                sev_node = next(v for k, v in node.value if k.value == "severity")
                r.fail(
                    sev_node,
                    f"{where}.severity",
                    "must be info: memory that only looks large is not a leak",
                )
                mm = replace(mm, severity="info")
            out = replace(out, misleading_memory=mm)
        elif key == "overrides":
            added = []
            for i, item in enumerate(r.sequence(node, where)):
                o = _override(r, item, f"{where}[{i}]")
                if o is not None:
                    added.append(o)
            out = replace(out, overrides=out.overrides + tuple(added))
        elif key == "allow":
            lists = _name_lists(r, node, where, deny=False)
            out = replace(
                out,
                allow=NameLists(
                    families=out.allow.families + lists.get("families", ()),
                    labels=out.allow.labels + lists.get("labels", ()),
                ),
            )
        elif key == "deny":
            lists = _name_lists(r, node, where, deny=True)
            out = replace(
                out,
                deny=DenyList(
                    families=out.deny.families + lists.get("families", ()),
                    labels=out.deny.labels + lists.get("labels", ()),
                    severity=lists.get("severity", out.deny.severity),
                    min_distinct_values=lists.get(
                        "min_distinct_values", out.deny.min_distinct_values
                    ),
                ),
            )
    return out


def load_rules(node: yaml.Node | None, ctx: ProblemSink, path: str = "rules") -> Rules:
    """Build ``Rules`` from the ``rules:`` node, reporting every problem on ``ctx``.

    A missing node gives the defaults. Returns the best-effort rules even when
    problems were reported; the caller decides whether to reject the file.
    """
    if node is None:
        return DEFAULT_RULES
    if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
        return _include(node, ctx, path)
    r = _Reader(ctx)
    items = r.mapping(node, path, [*_SECTIONS, "targets"])
    defaults = _target_rules(
        r, {k: v for k, v in items.items() if k != "targets"}, path, TargetRules()
    )
    targets: dict[str, TargetRules] = {}
    if "targets" in items:
        tnode = items["targets"][1]
        tpath = f"{path}.targets"
        if isinstance(tnode, yaml.MappingNode):
            for key_node, value_node in tnode.value:
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(name, str) or not name:
                    r.fail(key_node, tpath, "target names must be strings")
                    continue
                if name in targets:
                    r.fail(key_node, f"{tpath}.{name}", "target given twice")
                    continue
                sub = r.mapping(value_node, f"{tpath}.{name}", _SECTIONS)
                targets[name] = _target_rules(r, sub, f"{tpath}.{name}", defaults)
        else:
            r.mapping(tnode, tpath, [])
    return Rules(defaults=defaults, targets=targets)


class FileProblems:
    """A ``ProblemSink`` that records ``file:line: path: message``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def error(self, node: yaml.Node | None, path: str, message: str) -> None:
        self.problems.append(yamlfile.problem(self.source, node, path, message))


def _include(node: yaml.ScalarNode, ctx: ProblemSink, path: str) -> Rules:
    """Load ``rules: other.yml``: the file's own problems are reported with its name."""
    base = getattr(ctx, "base_dir", None)
    target = Path(node.value)
    if not target.is_absolute() and base is not None:
        target = Path(base) / target
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
        collected = getattr(ctx, "problems", None)
        if isinstance(collected, list):
            collected.extend(exc.problems)
        else:
            for problem in exc.problems:
                ctx.error(node, path, problem)
        return DEFAULT_RULES


def load_rules_file(path: str | Path) -> Rules:
    """Load a standalone rules file; raise ``ConfigError`` listing every problem with file:line.

    The file holds either a top-level ``rules:`` key or the rule sections directly.
    """
    source = str(path)
    text = yamlfile.read(path, source)
    sink = FileProblems(source)
    root = yamlfile.compose(text, source)
    rules_node: yaml.Node | None = root
    if isinstance(root, yaml.MappingNode) and [k.value for k, _ in root.value] == ["rules"]:
        rules_node = root.value[0][1]
    if isinstance(rules_node, yaml.ScalarNode) and rules_node.tag == _STR:
        sink.error(rules_node, "rules", "an included rules file cannot include another")
        rules_node = None
    rules = load_rules(rules_node, sink)
    if sink.problems:
        raise ConfigError(source, yamlfile.limited(source, sink.problems))
    return rules


def worse(a: Severity, b: Severity) -> Severity:
    """Return the more serious of two severities."""
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b
