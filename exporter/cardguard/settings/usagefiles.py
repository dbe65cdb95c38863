"""The ``usage:`` config section and reading the rule files and dashboards it names.

```yaml
usage:
  rule_files: [rules/*.rules.yml]          # globs, relative to the config file
  dashboards: [grafana/dashboards/*.json]
```

``load_usage_config`` validates the section (every problem on the config
context, with file:line); ``read`` expands the globs and reads the files
(bounded in count and size) into a ``cardguard.analyse.usage.Index``.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import Node

from cardguard.analyse import usage
from cardguard.settings.config import Ctx, join

KEYS = ("rule_files", "dashboards")
MAX_FILES = 500
MAX_BYTES = 16 * 1024 * 1024


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
    lists: dict[str, tuple[str, ...]] = {}
    for key in KEYS:
        got: list[str] = []
        for i, item in enumerate(ctx.sequence(sec.value_node(key), join("usage", key))):
            text = ctx.string(item, join(join("usage", key), i))
            if text is not None:
                got.append(text)
        lists[key] = tuple(got)
    return UsageConfig(lists["rule_files"], lists["dashboards"], ctx.base_dir)


def _expand(patterns: Sequence[str], base: Path, problems: list[str]) -> list[Path]:
    out: list[Path] = []
    for pat in patterns:
        full = pat if Path(pat).is_absolute() else str(base / pat)
        hits = sorted(glob.glob(full, recursive=True))
        if not hits:
            problems.append(f"{pat}: no file matches")
        out += [Path(h) for h in hits if Path(h).is_file()]
    return out[:MAX_FILES]


def _read(paths: Sequence[Path], problems: list[str]) -> list[tuple[str, str]]:
    out = []
    for p in paths:
        try:
            with open(p, "rb") as fh:
                data = fh.read(MAX_BYTES + 1)
        except OSError as exc:
            problems.append(f"{p}: cannot read: {exc.strerror or exc}")
            continue
        if len(data) > MAX_BYTES:
            problems.append(f"{p}: larger than {MAX_BYTES} bytes, skipped")
            continue
        out.append((str(p), data.decode("utf-8", "replace")))
    return out


def read(cfg: UsageConfig) -> usage.Index:
    """Read every rule file and dashboard the globs match; unreadable ones become problems."""
    problems: list[str] = []
    rules = _read(_expand(cfg.rule_files, cfg.base_dir, problems), problems)
    boards = _read(_expand(cfg.dashboards, cfg.base_dir, problems), problems)
    idx = usage.index(rules, boards)
    idx.problems[:0] = problems
    return idx
