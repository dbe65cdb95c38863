"""Durations and sizes as the config file and the command line write them (one grammar).

Kept apart from :mod:`cardguard.settings.config` so that a command parsing
``--timeout 30s`` does not import the configuration loader, YAML and the rule
set at start-up.
"""

from __future__ import annotations

import re

_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
# Longer text is no duration or size; shorter, int() never meets its 4,300-digit limit.
_MAX_NUMBER_TEXT = 100
_DURATION_UNITS = (365 * 86400.0, 7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)


def parse_duration(text: str) -> float | None:
    """Return seconds for a Prometheus-style duration (``15s``, ``1m30s``, ``2h``), else None."""
    m = _DURATION_RE.match(text) if len(text) <= _MAX_NUMBER_TEXT else None
    if not text or m is None or not any(m.groups()):
        return None
    return sum(int(g) * u for g, u in zip(m.groups(), _DURATION_UNITS, strict=True) if g)


def format_duration(seconds: float) -> str:
    """Render seconds the way a user would write them in the config (``90s`` -> ``1m30s``)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


_SIZE_RE = re.compile(r"^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}


def parse_size(text: str) -> int | None:
    """Return bytes for a size such as ``64MiB``, ``500KB`` or ``1048576``, else None."""
    m = _SIZE_RE.match(text.strip()) if len(text) <= _MAX_NUMBER_TEXT else None
    if m is None:
        return None
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]
