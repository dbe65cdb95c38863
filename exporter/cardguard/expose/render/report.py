"""What a report of one target holds, and the wording every output format shares.

:class:`TargetReport` is the input of every renderer; :func:`headline`,
:func:`subject` and :func:`details` give its summary line, an offender's short
name and its evidence as ``(key, value)`` rows, formatted the same in every format.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cardguard.detect.offender import Offender
from cardguard.expose.flamegraph import Flame
from cardguard.settings.rules import SEVERITIES


@dataclass(frozen=True)
class TargetReport:
    """The offenders of one target and how they were found.

    ``notes`` say what could not be read (e.g. a pprof endpoint not served),
    so a short report is never mistaken for a clean bill of health.
    ``flames`` are the target's flame graphs, ``downloads`` its raw profiles
    as ``(file name, link)`` and ``grafana_url`` the Grafana to link to.
    """

    target: str
    offenders: tuple[Offender, ...]
    url: str | None = None
    generated_at: float = field(default_factory=time.time)
    window_seconds: float = 0.0
    snapshots: int = 0
    notes: tuple[str, ...] = ()
    error: str | None = None
    flames: tuple[Flame, ...] = ()
    downloads: tuple[tuple[str, str], ...] = ()
    grafana_url: str | None = None

    @property
    def started_at(self) -> float:
        return self.generated_at - self.window_seconds

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
        for o in self.offenders:
            out[o.severity] += 1
        return out


# Evidence keys shown elsewhere (or too bulky) in the detail lists.
_HIDDEN = frozenset({"trend", "stack", "reasons", "examples", "explanation"})


def subject(o: Offender) -> str:
    """A short name for what the offender is about: ``family{label}`` or a function."""
    ev = o.evidence
    if ev.get("family") and ev.get("label"):
        return f"{ev['family']}{{{ev['label']}}}"
    if ev.get("family"):
        return str(ev["family"])
    if ev.get("function"):
        return str(ev["function"])
    return o.kind.replace("_", " ")


def _value(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float) and key.endswith("bytes"):
        return format_bytes(float(v))
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_value(str(k), x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return ", ".join(_value(key, x) for x in v)
    return str(v)


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units: ``512 B``, ``1.5 MiB``."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{sign}{n:.0f} {unit}" if unit == "B" else f"{sign}{n:.1f} {unit}"
        n /= 1024
    return f"{sign}{n:.1f} TiB"


def format_time(ts: float) -> str:
    """``ts`` as a UTC date and time: ``2027-01-15 08:00:00 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def details(o: Offender) -> list[tuple[str, str]]:
    """The offender's evidence as ``(key, value)`` rows; lists of records come last."""
    rows = []
    for key, v in o.evidence.items():
        if key in _HIDDEN or (isinstance(v, list | tuple) and v and isinstance(v[0], Mapping)):
            continue
        rows.append((key, _value(key, v)))
    for key, v in o.evidence.items():
        if isinstance(v, list | tuple) and v and isinstance(v[0], Mapping):
            rows.append((key, "; ".join(_value(key, x) for x in v)))
    return rows


def headline(r: TargetReport) -> str:
    """One line on the target: offenders per severity, how long it was watched, when."""
    c = r.counts()
    parts = [f"{c[s]} {s}" for s in reversed(SEVERITIES)]
    where = f" ({r.url})" if r.url and r.url != r.target else ""
    watched = (
        f"watched {r.window_seconds:.0f}s, {r.snapshots} snapshots"
        if r.snapshots
        else "no snapshots"
    )
    return f"{r.target}{where}: {', '.join(parts)}; {watched}; {format_time(r.generated_at)}"
