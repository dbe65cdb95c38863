"""The ``probe:`` section: which targets ``/probe`` may fetch, and how.

The ``probe:`` section of the config::

    probe:
      allow: ["*.svc.cluster.local:6060", "10.0.0.0/8"]
      allow_file_sd: targets/go-services.yml
      cache_ttl: 10s
      state_ttl: 1h
      max_targets: 500
      metrics_path: /metrics
      pprof_path: /debug/pprof
      timeout: 10s
      body_size_limit: 64MiB
      profiles: {interval: 1m, heap: true, goroutine: true}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from yaml.nodes import Node

from cardguard.errors import ConfigError
from cardguard.settings import allowlist
from cardguard.settings.allowlist import AllowList
from cardguard.settings.checker import Ctx
from cardguard.settings.targets import ProfilesConfig, load_profiles, url_path

_PROBE_KEYS = (
    "allow",
    "allow_file_sd",
    "cache_ttl",
    "state_ttl",
    "max_targets",
    "metrics_path",
    "pprof_path",
    "timeout",
    "body_size_limit",
    "profiles",
)


@dataclass(frozen=True)
class ProbeConfig:
    """The ``probe:`` section. With no ``allow`` entries and no file, /probe refuses everything."""

    allow: AllowList = field(default_factory=AllowList)
    allow_entries: tuple[str, ...] = ()
    allow_file_sd: Path | None = None
    cache_ttl: float = 10.0
    state_ttl: float = 3600.0
    max_targets: int = 500
    metrics_path: str = "/metrics"
    pprof_path: str = "/debug/pprof"
    timeout: float = 10.0
    body_size_limit: int = 64 * 1024 * 1024
    profiles: ProfilesConfig = field(default_factory=ProfilesConfig)


def load_probe_config(node: Node | None, ctx: Ctx) -> ProbeConfig:
    """Build a ProbeConfig from the ``probe:`` node, reporting problems on ``ctx``."""
    d = ProbeConfig()
    if node is None:
        return d
    sec = ctx.section(node, "probe", _PROBE_KEYS)
    if sec is None:
        return d
    anode = sec.value_node("allow")
    entries = ctx.strings(anode, "probe.allow")
    allow = AllowList()
    try:
        allow = allowlist.build(entries, source="probe.allow")
    except ConfigError as exc:
        for p in exc.problems:
            ctx.error(anode, "", p)
    sd = sec.optional("allow_file_sd", ctx.file)
    if sd is not None:
        try:
            allowlist.parse_file_sd(sd.read_text(encoding="utf-8"), str(sd))
        except (OSError, UnicodeDecodeError) as exc:
            ctx.error(sec.value_node("allow_file_sd"), "probe.allow_file_sd", f"cannot read: {exc}")
        except ConfigError as exc:
            for p in exc.problems:
                ctx.error(sec.value_node("allow_file_sd"), "probe.allow_file_sd", p)
    timeout = sec.get("timeout", ctx.duration, d.timeout)
    return ProbeConfig(
        allow=allow,
        allow_entries=entries,
        allow_file_sd=sd,
        cache_ttl=sec.get("cache_ttl", ctx.duration, d.cache_ttl),
        state_ttl=sec.get("state_ttl", ctx.duration, d.state_ttl),
        max_targets=sec.get("max_targets", ctx.positive, d.max_targets),
        metrics_path=sec.get("metrics_path", url_path(ctx), d.metrics_path),
        pprof_path=sec.get("pprof_path", url_path(ctx), d.pprof_path),
        timeout=timeout,
        body_size_limit=sec.get("body_size_limit", ctx.size, d.body_size_limit),
        profiles=load_profiles(ctx, sec.value_node("profiles"), "probe.profiles", timeout),
    )
