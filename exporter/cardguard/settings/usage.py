"""The ``usage:`` config section: the rule files and dashboards to look in for a label's uses.

```yaml
usage:
  rule_files: [rules/*.rules.yml]          # globs, relative to the config file
  dashboards: [grafana/dashboards/*.json]
```

``load_usage_config`` validates the section (every problem on the config
context, with file:line); :func:`cardguard.run.usagefiles.read` reads the
files the globs match.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import Node

from cardguard.settings.checker import Ctx

KEYS = ("rule_files", "dashboards")


@dataclass(frozen=True)
class UsageConfig:
    """Globs of Prometheus rule files and Grafana dashboard JSON, absolute or config-relative."""

    rule_files: tuple[str, ...] = ()
    dashboards: tuple[str, ...] = ()
    base_dir: Path = Path(".")


def load_usage_config(node: Node | None, ctx: Ctx) -> UsageConfig:
    """Build the ``usage:`` section, reporting every problem on ``ctx``."""
    sec = ctx.section(node, "usage", KEYS)
    if sec is None:
        return UsageConfig(base_dir=ctx.base_dir)
    rule_files = ctx.strings(sec.value_node("rule_files"), sec.key_path("rule_files"))
    dashboards = ctx.strings(sec.value_node("dashboards"), sec.key_path("dashboards"))
    return UsageConfig(rule_files, dashboards, ctx.base_dir)
