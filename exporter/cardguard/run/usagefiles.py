"""Read the rule files and dashboards a ``usage:`` section names, bounded, into a usage index.

The globs of :class:`~cardguard.settings.usage.UsageConfig` are expanded
(relative ones against its ``base_dir``), at most :data:`MAX_FILES` files of at
most :data:`MAX_BYTES` each are read, and :func:`cardguard.analyse.usage.index`
finds the label uses in them. A glob matching nothing, or a file that cannot be
read, is a problem in the index, not an error.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from cardguard.analyse import usage
from cardguard.settings.usage import UsageConfig

MAX_FILES = 500
MAX_BYTES = 16 * 1024 * 1024


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
