"""Durations and sizes as the config files and the command line write them: the one grammar.

Every duration and size cardguard reads goes through this module: the config
file (``global``, targets, ``target_defaults``, ``probe``, ``fleet``), the
``rules:`` section and rules files, and the command line's ``--timeout``,
``--duration`` and ``--interval``. Both follow Prometheus.

Durations are Prometheus' (``model.ParseDuration``, as in ``scrape_interval``):
whole numbers with the units ``y`` (365 days), ``w``, ``d``, ``h``, ``m``,
``s`` and ``ms``, each at most once and in that order, so ``500ms``, ``30s``,
``1h30m``, ``1d`` and ``2w``; ``0`` needs no unit. No fractions (``1.5h`` is
``1h30m``), no spaces, no sign.

Sizes are Prometheus' ``body_size_limit`` (``units.Base2Bytes``): a number,
optionally with a fraction, and a unit ``B``, ``KiB``, ``MiB``, ``GiB``,
``TiB``, ``PiB`` or ``EiB``, the older ``KB``, ``MB``, ``GB``, ``TB``, ``PB``
and ``EB`` meaning the same powers of 1024, so ``64MiB``, ``64MB``,
``1.5MiB`` and ``512KiB``; a fraction of a byte is dropped. Beyond
Prometheus, a whole number without a unit is a number of bytes (``1048576``)
and a space may separate number and unit (``64 MiB``). SI's ``kB`` is not
accepted, as in Prometheus.

Kept in the base layer, apart from :mod:`cardguard.settings`, so that a command
parsing ``--timeout 30s`` does not import the configuration loader and YAML at
start-up.
"""

from __future__ import annotations

import re
from fractions import Fraction

_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
# Longer text is no duration or size; shorter, int() never meets its 4,300-digit limit.
_MAX_NUMBER_TEXT = 100
_DURATION_UNITS = (365 * 86400.0, 7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)


def parse_duration(text: str) -> float | None:
    """Return seconds for a Prometheus duration (``15s``, ``1m30s``, ``1d``, ``0``), else None."""
    if text == "0":
        return 0.0
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


_SIZE_RE = re.compile(r"^(\d+)$|^(\d+(?:\.\d+)?)\s*([KMGTPE]i?B|B)$")
_SIZE_POWERS = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def parse_size(text: str) -> int | None:
    """Return bytes for a size such as ``64MiB``, ``1.5MiB``, ``64MB`` or ``1048576``, else None."""
    m = _SIZE_RE.match(text.strip()) if len(text) <= _MAX_NUMBER_TEXT else None
    if m is None:
        return None
    whole, number, unit = m.groups()
    if whole is not None:
        return int(whole)
    return int(Fraction(number) * 1024 ** _SIZE_POWERS[unit[0]])
