"""The config file: YAML into typed, frozen dataclasses, every error with file:line.

The loader works on PyYAML's node graph (``yaml.compose``) rather than on plain
Python objects, so each value still knows the line it came from. Validation
never stops at the first problem: the :class:`~cardguard.settings.checker.Ctx`
collects every problem as ``file:line: path: message`` and :func:`parse_config`
raises one :class:`~cardguard.errors.ConfigError` carrying all of them.

Defaults live in one place: the dataclass field defaults (here, and in the
section modules); target-level values that default to a ``global`` value are
filled in from it.

This module holds the top level and the ``global:`` section; each other
section has its own module, handed its node and the same ``Ctx`` so that its
problems are reported with ours: targets and ``target_defaults``
(:mod:`cardguard.settings.targets`), ``rules`` (:mod:`cardguard.settings.rulefile`),
``probe``, ``fleet`` and ``usage`` (:mod:`cardguard.settings.probe`,
:mod:`~cardguard.settings.fleet`, :mod:`~cardguard.settings.usage`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode

from cardguard.errors import ConfigError
from cardguard.quantities import format_duration
from cardguard.settings import yamlfile
from cardguard.settings.checker import Ctx, Section, describe, is_null, join
from cardguard.settings.fleet import FleetServer, load_fleet_config
from cardguard.settings.probe import ProbeConfig, load_probe_config
from cardguard.settings.rulefile import load_rules
from cardguard.settings.rules import DEFAULT_RULES, Rules
from cardguard.settings.targets import TargetConfig, check_url, load_target
from cardguard.settings.usage import UsageConfig, load_usage_config


@dataclass(frozen=True)
class Caps:
    """Per-target caps on cardguard's own output; entries past a cap fold into ``__other__``."""

    families: int = 200
    labels: int = 500
    heap_owners: int = 30
    goroutine_groups: int = 30
    offenders: int = 50


@dataclass(frozen=True)
class Thresholds:
    """When a family or label becomes visible in cardguard's output (sticky afterwards)."""

    min_family_series: int = 100
    min_label_values: int = 50
    min_heap_owner_share: float = 0.01
    """A function shows once its flat in-use bytes reach this share of the heap."""
    min_goroutine_group: int = 10
    """A goroutine group shows once it holds this many goroutines (leaked ones always show)."""


@dataclass(frozen=True)
class GlobalConfig:
    """The ``global`` section: defaults for every target and the output bounds."""

    scrape_interval: float = 30.0
    scrape_timeout: float = 10.0
    body_size_limit: int = 64 * 1024 * 1024
    exact_count_cap: int = 10_000
    native_histograms: bool = False
    """Ask for protobuf first and count native histograms, as Prometheus with them on."""
    grafana_url: str | None = None
    """Grafana that /report links to (the cardguard / Target dashboard per target)."""
    caps: Caps = field(default_factory=Caps)
    thresholds: Thresholds = field(default_factory=Thresholds)

    def target_base(self) -> TargetConfig:
        """What a target takes from here when it does not set it itself."""
        return TargetConfig(
            name="",
            url="",
            interval=self.scrape_interval,
            timeout=self.scrape_timeout,
            body_size_limit=self.body_size_limit,
            native_histograms=self.native_histograms,
        )


@dataclass(frozen=True)
class TargetFiles:
    """``target_files``: Prometheus file_sd files listing more targets, re-read when they change.

    ``patterns`` are globs (relative ones against the config file's directory);
    every target found gets ``template``'s settings (``target_defaults:``, else
    the ``global:`` ones) with its own name and URL (:mod:`cardguard.settings.file_sd`).
    """

    patterns: tuple[str, ...]
    template: TargetConfig


@dataclass(frozen=True)
class Config:
    """A whole validated configuration file."""

    source: str
    global_: GlobalConfig
    targets: tuple[TargetConfig, ...]
    rules: Rules = DEFAULT_RULES
    probe: ProbeConfig | None = None
    fleet: tuple[FleetServer, ...] = ()
    usage: UsageConfig | None = None
    target_files: TargetFiles | None = None  # read at run time by cardguard.run.targetfiles

    def target(self, name: str) -> TargetConfig | None:
        for t in self.targets:
            if t.name == name:
                return t
        return None


_TOP_KEYS = (
    "global",
    "targets",
    "target_files",
    "target_defaults",
    "rules",
    "probe",
    "fleet",
    "usage",
)
_GLOBAL_KEYS = (
    "scrape_interval",
    "scrape_timeout",
    "body_size_limit",
    "exact_count_cap",
    "native_histograms",
    "grafana_url",
    "caps",
    "thresholds",
)
_CAPS_KEYS = ("families", "labels", "heap_owners", "goroutine_groups", "offenders")
_THRESHOLD_KEYS = (
    "min_family_series",
    "min_label_values",
    "min_heap_owner_share",
    "min_goroutine_group",
)


def _grafana_url(ctx: Ctx) -> Callable[[Node, str], str | None]:
    """A Grafana base URL: checked like a target URL, but a path (a sub-path install) is fine."""

    def convert(node: Node, path: str) -> str | None:
        text = ctx.string(node, path)
        if text is None or not check_url(ctx, node, path, text):
            return None
        return text.rstrip("/")

    return convert


def _load_global(ctx: Ctx, node: Node | None) -> GlobalConfig:
    d = GlobalConfig()
    sec = ctx.section(node, "global", _GLOBAL_KEYS)
    if sec is None:
        return d
    caps_sec = ctx.section(sec.value_node("caps"), "global.caps", _CAPS_KEYS)
    caps = Caps()
    if caps_sec is not None:
        caps = Caps(
            families=caps_sec.get("families", ctx.positive, caps.families),
            labels=caps_sec.get("labels", ctx.positive, caps.labels),
            heap_owners=caps_sec.get("heap_owners", ctx.positive, caps.heap_owners),
            goroutine_groups=caps_sec.get("goroutine_groups", ctx.positive, caps.goroutine_groups),
            offenders=caps_sec.get("offenders", ctx.positive, caps.offenders),
        )
    th_sec = ctx.section(sec.value_node("thresholds"), "global.thresholds", _THRESHOLD_KEYS)
    th = Thresholds()
    if th_sec is not None:
        th = Thresholds(
            min_family_series=th_sec.get("min_family_series", ctx.integer, th.min_family_series),
            min_label_values=th_sec.get("min_label_values", ctx.integer, th.min_label_values),
            min_heap_owner_share=th_sec.get(
                "min_heap_owner_share", ctx.ratio, th.min_heap_owner_share
            ),
            min_goroutine_group=th_sec.get(
                "min_goroutine_group", ctx.positive, th.min_goroutine_group
            ),
        )
    g = GlobalConfig(
        scrape_interval=sec.get("scrape_interval", ctx.duration, d.scrape_interval),
        scrape_timeout=sec.get("scrape_timeout", ctx.duration, d.scrape_timeout),
        body_size_limit=sec.get("body_size_limit", ctx.size, d.body_size_limit),
        exact_count_cap=sec.get("exact_count_cap", ctx.positive, d.exact_count_cap),
        native_histograms=sec.get("native_histograms", ctx.boolean, d.native_histograms),
        grafana_url=sec.get("grafana_url", _grafana_url(ctx), d.grafana_url),
        caps=caps,
        thresholds=th,
    )
    if g.scrape_timeout > g.scrape_interval and sec.has("scrape_timeout"):
        ctx.error(
            sec.value_node("scrape_timeout"),
            "global.scrape_timeout",
            f"must not exceed global.scrape_interval ({format_duration(g.scrape_interval)})",
        )
    return g


def _load_target_files(ctx: Ctx, top: Section, base: TargetConfig) -> TargetFiles | None:
    """``target_files`` (a list of globs) and ``target_defaults`` (a target without name/url)."""
    patterns = []
    fnode = top.value_node("target_files")
    for i, item in enumerate(ctx.sequence(fnode, "target_files")):
        text = ctx.string(item, join("target_files", i))
        if text is not None:
            patterns.append(text if Path(text).is_absolute() else str(ctx.base_dir / text))
    dnode = top.value_node("target_defaults")
    template = TargetConfig(name="target_defaults", url="http://target-defaults.invalid")
    if dnode is not None and not is_null(dnode):
        if isinstance(dnode, MappingNode):
            for knode, _ in dnode.value:
                if isinstance(knode, ScalarNode) and knode.value in ("name", "url"):
                    ctx.error(
                        knode,
                        join("target_defaults", str(knode.value)),
                        "set per target by the target files, not here",
                    )
            # Validated as a target, with placeholders for what each file target sets.
            mark = dnode.start_mark
            placeholders = [
                (
                    ScalarNode("tag:yaml.org,2002:str", k, mark, mark),
                    ScalarNode("tag:yaml.org,2002:str", v, mark, mark),
                )
                for k, v in (("name", template.name), ("url", "https://target-defaults.invalid"))
            ]
            kept = [
                (k, v)
                for k, v in dnode.value
                if not (isinstance(k, ScalarNode) and k.value in ("name", "url"))
            ]
            node = MappingNode(dnode.tag, placeholders + kept, mark, dnode.end_mark)
            loaded = load_target(ctx, node, "target_defaults", base)
            if loaded is not None:
                template = loaded
        else:
            ctx.error(dnode, "target_defaults", f"expected a mapping, got {describe(dnode)}")
    else:
        # No target_defaults: a target with only a name and URL, so the global defaults apply
        # exactly as they do to a configured target.
        mark = top.node.start_mark if top.node is not None else None
        bare = [
            (
                ScalarNode("tag:yaml.org,2002:str", k, mark, mark),
                ScalarNode("tag:yaml.org,2002:str", v, mark, mark),
            )
            for k, v in (("name", template.name), ("url", template.url))
        ]
        loaded = load_target(ctx, MappingNode("tag:yaml.org,2002:map", bare, mark, mark), "", base)
        template = loaded if loaded is not None else template
    if fnode is None:
        if dnode is not None:
            ctx.error(dnode, "target_defaults", "applies to target_files, which is not set")
        return None
    return TargetFiles(tuple(patterns), template)


def parse_config(text: str, source: str, base_dir: Path | None = None) -> Config:
    """Parse and validate config ``text``; ``source`` names it in every message.

    Raises:
        ConfigError: with every problem found, each as ``source:line: path: message``
            (the first :data:`~cardguard.settings.yamlfile.MAX_PROBLEMS` of them), and for any
            text that is not a valid config: bad YAML, too deep, too large, wrong types.
    """
    ctx = Ctx(source, base_dir)
    root = yamlfile.compose(text, source)
    if root is None:
        raise ConfigError(source, [f"{source}: the file is empty; at least targets is required"])
    top = ctx.section(root, "", _TOP_KEYS)
    if top is None:
        raise ConfigError(source, yamlfile.limited(source, ctx.problems))
    g = _load_global(ctx, top.value_node("global"))
    base = g.target_base()
    targets: list[TargetConfig] = []
    seen: dict[str, int] = {}
    tnode = top.value_node("targets")
    if tnode is None and not any(top.has(k) for k in ("probe", "fleet", "target_files")):
        ctx.error(
            root, "targets", "required (or target_files, or a probe section for /probe-only use)"
        )
    for i, item in enumerate(ctx.sequence(tnode, "targets")):
        t = load_target(ctx, item, join("targets", i), base)
        if t is None:
            continue
        if t.name in seen:
            ctx.error(
                item,
                join(join("targets", i), "name"),
                f"duplicate target name {t.name!r} (also targets[{seen[t.name]}])",
            )
            continue
        seen[t.name] = i
        targets.append(t)
    target_files = _load_target_files(ctx, top, base)
    rules = load_rules(top.value_node("rules"), ctx)
    probe = load_probe_config(top.value_node("probe"), ctx) if top.has("probe") else None
    fleet = load_fleet_config(top.value_node("fleet"), ctx) if top.has("fleet") else ()
    usage = load_usage_config(top.value_node("usage"), ctx) if top.has("usage") else None
    if ctx.problems:
        raise ConfigError(source, yamlfile.limited(source, ctx.problems))
    return Config(
        source=source,
        global_=g,
        targets=tuple(targets),
        rules=rules,
        probe=probe,
        fleet=fleet,
        usage=usage,
        target_files=target_files,
    )


def load_config(path: str | Path) -> Config:
    """Read and validate the config file at ``path``.

    Relative file paths inside the config (CA files, password files) are
    resolved against the config file's directory.
    """
    p = Path(path)
    text = yamlfile.read(p, str(path))
    return parse_config(text, str(path), base_dir=p.resolve().parent)
