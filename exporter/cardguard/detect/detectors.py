"""Offender detection: every kind in one map, run over one view of a target.

Pure. ``detect(view, rules)`` takes a :class:`~cardguard.analyse.view.TargetView`
(what cardguard saw of one target over a watch window) and the rules in
force, runs each detector of :data:`DETECTORS` (one module per kind, each
with the same signature, as blackbox_exporter keeps its probers), folds the
findings of one cause into one offender, and returns them worst first.

Kinds, in :data:`~cardguard.detect.offender.KINDS` order:

``label_explosion``
    A label whose distinct values are high or growing and look unbounded.
``children_heap_cost``
    Heap held by the client library for the children of vectors.
``goroutine_leak``
    A goroutine group that grows steadily, is blocked past a limit, or that
    the goroutineleak profile confirms.
``heap_growth``
    A function whose in-use bytes keep growing while the traffic does not.
``misleading_memory``
    Resident memory far above the Go heap, explained (never a leak: info).

A new kind is one module with ``detect(view, rules) -> list[Offender]``, one
entry here and in ``KINDS``, and its rule schema in :mod:`cardguard.settings.rules`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from cardguard.analyse.heap_sites import enclosing
from cardguard.analyse.view import TargetView
from cardguard.detect import (
    children_heap_cost,
    goroutine_leak,
    heap_growth,
    label_explosion,
    misleading_memory,
)
from cardguard.detect.offender import KINDS, Offender, sort_offenders
from cardguard.settings.rules import DEFAULT_RULES, Rules, TargetRules

Detector = Callable[[TargetView, TargetRules], list[Offender]]

DETECTORS: Mapping[str, Detector] = MappingProxyType(
    {
        "label_explosion": label_explosion.detect,
        "children_heap_cost": children_heap_cost.detect,
        "goroutine_leak": goroutine_leak.detect,
        "heap_growth": heap_growth.detect,
        "misleading_memory": misleading_memory.detect,
    }
)
assert tuple(DETECTORS) == KINDS, "DETECTORS and KINDS list the same kinds in the same order"


def detect(view: TargetView, rules: Rules | TargetRules = DEFAULT_RULES) -> list[Offender]:
    """Name the offenders of one target, worst first (severity, then magnitude, then id)."""
    tr = rules.for_target(view.target) if isinstance(rules, Rules) else rules
    found = {kind: run(view, tr) for kind, run in DETECTORS.items()}
    explosions = found.pop("label_explosion")
    leaks = found.pop("goroutine_leak")
    out = [*explosions, *leaks]
    out += _fold_into_explosions(explosions, found.pop("children_heap_cost"))
    out += _fold_into_leaks(leaks, found.pop("heap_growth"))
    for rest in found.values():
        out += rest
    return sort_offenders(out)


def _fold_into_explosions(explosions: list[Offender], costs: list[Offender]) -> list[Offender]:
    """One cause, one offender: the heap cost of a family that has a label explosion
    becomes evidence of that explosion (``heap_cost``) instead of a second offender."""
    by_family = {o.family: o for o in explosions if o.kind == "label_explosion"}
    rest = []
    for c in costs:
        home = by_family.get(c.family)
        if home is None:
            rest.append(c)
            continue
        ev = c.evidence
        home.evidence["heap_cost"] = {  # type: ignore[index]
            "summary": c.summary,
            "children": ev.get("children"),
            "library_bytes": ev.get("library_bytes"),
            "heap_share": ev.get("heap_share"),
            "bytes_per_child": ev.get("bytes_per_child"),
            "call_site": ev.get("call_site"),
        }
    return rest


def _fold_into_leaks(leaks: list[Offender], growth: list[Offender]) -> list[Offender]:
    """One cause, one offender: heap that grows in the function a leaking goroutine group
    runs in, or in the one that starts it (a ticker per leaked poller), is evidence of that
    leak (``heap_growth``), not a second offender."""
    owners: dict[str, Offender] = {}
    for o in leaks:
        if o.severity == "info":
            continue
        for name in (o.function, o.evidence.get("created_by")):
            if name:
                owners.setdefault(str(name), o)
                owners.setdefault(enclosing(str(name)), o)
    rest = []
    for g in growth:
        site = str(g.evidence.get("call_site") or "").split(" (", 1)[0]
        home = owners.get(g.function) or (owners.get(site) if site else None)
        if home is None:
            rest.append(g)
            continue
        home.evidence.setdefault("heap_growth", []).append(  # type: ignore[attr-defined]
            {
                "function": g.function,
                "growth_bytes": g.evidence.get("growth_bytes"),
                "inuse_bytes": g.evidence.get("inuse_bytes"),
                "summary": g.summary,
            }
        )
    return rest
