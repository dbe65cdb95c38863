"""Display units for profile values, as ``go tool pprof -unit`` names and scales them.

pprof's memory units are binary multiples with its own names: ``kB`` is
1024 bytes, ``MB`` 1024², up to ``PB``; ``auto`` picks, per value, the largest
unit the value reaches at least once of. Values in units pprof does not
scale (``count``: objects, goroutines) are shown as they are. So
``cardguard heap --unit=MB`` prints the figures ``go tool pprof -unit=MB -top``
prints.

These are display units only; sizes in the config file (``64MiB``) have
their own grammar in :mod:`cardguard.settings.config`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Unit:
    name: str
    factor: int
    aliases: tuple[str, ...]


MEMORY = (
    Unit("B", 1, ("b", "byte")),
    Unit("kB", 1 << 10, ("kb", "kbyte", "kilobyte", "kib")),
    Unit("MB", 1 << 20, ("mb", "mbyte", "megabyte", "mib")),
    Unit("GB", 1 << 30, ("gb", "gbyte", "gigabyte", "gib")),
    Unit("TB", 1 << 40, ("tb", "tbyte", "terabyte", "tib")),
    Unit("PB", 1 << 50, ("pb", "pbyte", "petabyte", "pib")),
)
AUTO = "auto"
CHOICES = (AUTO, *(u.name for u in MEMORY))


def _find(name: str) -> Unit | None:
    key = name.lower()
    if len(key) > 2:
        key = key.removesuffix("s")  # "bytes", "megabytes"
    return next((u for u in MEMORY if key in u.aliases), None)


def canonical(name: str) -> str | None:
    """Return the unit's pprof name (``mb`` -> ``MB``, ``bytes`` -> ``B``), ``auto``, or None."""
    if name.lower() in (AUTO, "minimum"):
        return AUTO
    u = _find(name)
    return u.name if u else None


def scale(value: float, from_unit: str, to_unit: str = AUTO) -> tuple[float, str]:
    """Convert ``value`` in ``from_unit`` (a profile's unit, e.g. ``bytes``) to ``to_unit``.

    Returns the number and the unit's name; the name is ``""`` for values
    pprof does not scale (counts).
    """
    src = _find(from_unit)
    if src is None:
        return float(value), ""
    base = value * src.factor
    if canonical(to_unit) == AUTO:
        best = None
        for u in MEMORY:
            if abs(base) / u.factor >= 1.0:
                best = u
        u = best or MEMORY[0]
        return base / u.factor, u.name
    dst = _find(to_unit) or MEMORY[0]
    return base / dst.factor, dst.name


def label(value: float, from_unit: str, to_unit: str = AUTO) -> str:
    """Render ``value`` as pprof does: two decimals unless whole, then the unit (``8.93MB``)."""
    v, name = scale(value, from_unit, to_unit)
    text = f"{v:.2f}".removesuffix(".00")
    if text in ("0", "-0"):
        return "0"
    return text + name


def signed(value: float, from_unit: str, to_unit: str = AUTO) -> str:
    """Like :func:`label`, with a sign on growth too (``+1.25MB``, ``-512B``)."""
    text = label(value, from_unit, to_unit)
    return text if text.startswith("-") or text == "0" else "+" + text


__all__ = ["AUTO", "CHOICES", "MEMORY", "canonical", "label", "scale", "signed"]
