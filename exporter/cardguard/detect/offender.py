"""An offender: one finding about one target, its stable id, and the order findings sort in.

Pure. Also the small helpers every detector's wording shares (bytes for
people, trends for charts, whether a series keeps growing).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cardguard.settings.rules import SEVERITY_RANK, Severity

KINDS = (
    "label_explosion",
    "children_heap_cost",
    "goroutine_leak",
    "heap_growth",
    "misleading_memory",
)


# Caps on what one target can produce, so output stays bounded.
MAX_PER_KIND = 20


MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Offender:
    """One finding about one target.

    ``evidence`` is plain JSON-able data and carries ``family``/``label`` or
    ``function`` as they apply; ``evidence["trend"]`` (when present) is
    ``{"title", "unit", "points": [[unix_seconds, value], ...]}`` for a chart.
    ``fix_snippet`` is ready-to-paste configuration when the fix has one.
    """

    id: str
    kind: str
    severity: Severity
    target: str
    summary: str
    evidence: Mapping[str, Any] = field(compare=False, hash=False)
    fix: str = ""
    fix_snippet: str | None = None
    score: float = 0.0

    @property
    def family(self) -> str:
        return str(self.evidence.get("family") or "")

    @property
    def label(self) -> str:
        return str(self.evidence.get("label") or "")

    @property
    def function(self) -> str:
        return str(self.evidence.get("function") or "")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": dict(self.evidence),
            "fix": self.fix,
        }
        if self.fix_snippet is not None:
            out["fix_snippet"] = self.fix_snippet
        return out


def offender_id(kind: str, target: str, subject: str) -> str:
    """Return the stable id of an offender: 12 hex digits of a hash of what it is about."""
    h = hashlib.blake2b(f"{kind}\x00{target}\x00{subject}".encode(), digest_size=6)
    return h.hexdigest()


def make_offender(
    kind: str,
    target: str,
    subject: str,
    severity: Severity,
    summary: str,
    evidence: dict[str, Any],
    fix: str,
    *,
    snippet: str | None = None,
    score: float = 0.0,
) -> Offender:
    return Offender(
        id=offender_id(kind, target, subject),
        kind=kind,
        severity=severity,
        target=target,
        summary=summary,
        evidence=evidence,
        fix=fix,
        fix_snippet=snippet,
        score=score,
    )


def human_bytes(n: float) -> str:
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{sign}{n:.0f} {unit}" if unit == "B" else f"{sign}{n:.1f} {unit}"
        n /= 1024
    return f"{sign}{n:.1f} TiB"


def hours(seconds: float) -> float:
    return seconds / 3600.0


def trend(title: str, unit: str, points: Iterable[tuple[float, float]]) -> dict[str, Any]:
    return {"title": title, "unit": unit, "points": [[round(t, 3), v] for t, v in points]}


def keeps_growing(steps: Sequence[float]) -> bool:
    """Return whether growth went on to the last interval and in most intervals."""
    up = [d > 0 for d in steps]
    return up[-1] and 2 * sum(up) > len(up)


def monotonic(values: Sequence[float], tolerance: float = 0.02) -> bool:
    """Return whether the values never fall by more than ``tolerance`` of the previous one."""
    return all(b >= a * (1 - tolerance) for a, b in itertools.pairwise(values))


def worse(a: Severity | None, b: Severity) -> Severity:
    if a is None:
        return b
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b


def sort_offenders(offenders: Iterable[Offender]) -> list[Offender]:
    """Order offenders worst first: severity, then kind order, then magnitude, then id."""
    return sorted(
        offenders,
        key=lambda o: (-SEVERITY_RANK[o.severity], KINDS.index(o.kind), -o.score, o.id),
    )


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(unix seconds, value)`` points, per hour; None under two times."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in points) / var * 3600.0
