"""Offender rules: the frozen objects the ``rules:`` section is loaded into, with their defaults.

Admins tune what counts as an offender without touching code; every field has
a default that works untuned, so an empty or missing ``rules:`` section gives
:data:`DEFAULT_RULES`. :mod:`cardguard.settings.rulefile` reads the section (or
a rules file) into these objects; docs/offenders.md shows the schema.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Literal

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}

# What a label's values can look like: the classes cardguard.analyse.patterns names
# (it takes them from here), the ones a rule can name as suspect.
PATTERN_NAMES: tuple[str, ...] = (
    "url_path",
    "uuid",
    "hex_id",
    "numeric_id",
    "ip",
    "email",
    "timestamp",
    "enum",
    "other",
)
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
    """``max_wait`` (a duration) in minutes, the unit Go prints a goroutine's wait in."""
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
