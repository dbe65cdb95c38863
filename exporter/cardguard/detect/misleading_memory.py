"""``misleading_memory``: resident memory far above the Go heap, explained (never a leak: info).

Pure. Splits the gap between RSS (or container usage) and the heap in use
into idle heap, released memory, runtime memory outside the heap, and memory
outside the Go runtime, from the runtime's own gauges on /metrics.
"""

from __future__ import annotations

from typing import Any

from cardguard.analyse.view import TargetView
from cardguard.detect.offender import Offender, human_bytes, make_offender, trend
from cardguard.settings.rules import TargetRules


def detect(view: TargetView, rules: TargetRules) -> list[Offender]:
    """Explain resident memory far above the heap in use (info, never a leak)."""
    if not view.metrics:
        return []
    rule = rules.misleading_memory
    v = view.metrics[-1].values
    m = v.memory
    heap_inuse = m.get("go_memstats_heap_inuse_bytes")
    rss = m.get("process_resident_memory_bytes")
    looks = v.container_memory_bytes if v.container_memory_bytes is not None else rss
    if heap_inuse is None or looks is None or heap_inuse <= 0:
        return []
    gap = looks - heap_inuse
    if looks / heap_inuse < rule.rss_heap_ratio or gap < rule.min_gap_bytes:
        return []
    sys_b = m.get("go_memstats_sys_bytes", 0.0)
    heap_sys = m.get("go_memstats_heap_sys_bytes", 0.0)
    idle = m.get("go_memstats_heap_idle_bytes", 0.0)
    released = m.get("go_memstats_heap_released_bytes", 0.0)
    stacks = m.get("go_memstats_stack_inuse_bytes", 0.0)
    parts: dict[str, float] = {
        "heap_idle_retained_bytes": max(0.0, idle - released),
        "heap_released_bytes": released,
        "runtime_non_heap_bytes": max(0.0, sys_b - heap_sys),
        "goroutine_stacks_bytes": stacks,
        "outside_go_runtime_bytes": max(0.0, (rss or 0.0) - (sys_b - released)),
    }
    if v.container_memory_bytes is not None and rss is not None:
        parts["container_beyond_rss_bytes"] = max(0.0, v.container_memory_bytes - rss)
    explain = []
    if parts["heap_idle_retained_bytes"] > 0.2 * gap:
        explain.append(
            f"{human_bytes(parts['heap_idle_retained_bytes'])} is idle heap the Go runtime "
            "keeps for reuse"
        )
    if released > 0.2 * gap and rss is not None and rss > sys_b - released:
        explain.append(
            f"{human_bytes(released)} was released to the OS but may still be counted in RSS "
            "until the kernel reclaims it"
        )
    if parts["runtime_non_heap_bytes"] > 0.2 * gap:
        explain.append(
            f"{human_bytes(parts['runtime_non_heap_bytes'])} is runtime memory outside the heap "
            "(stacks, GC metadata, spans)"
        )
    if parts["outside_go_runtime_bytes"] > 0.2 * gap:
        explain.append(
            f"{human_bytes(parts['outside_go_runtime_bytes'])} of RSS is outside the Go runtime "
            "(cgo, mapped files, binary)"
        )
    if parts.get("container_beyond_rss_bytes", 0.0) > 0.2 * gap:
        explain.append(
            f"{human_bytes(parts['container_beyond_rss_bytes'])} of container usage is page cache "
            "the kernel can reclaim"
        )
    if not explain:
        explain.append("the difference is memory the runtime holds outside live heap objects")
    summary = summary_text(v.container_memory_bytes is not None, looks, heap_inuse, explain[0])
    evidence: dict[str, Any] = {
        "resident_bytes": rss,
        "container_memory_bytes": v.container_memory_bytes,
        "heap_inuse_bytes": heap_inuse,
        "ratio": round(looks / heap_inuse, 2),
        "breakdown": {k: round(x) for k, x in parts.items()},
        "explanation": explain,
    }
    if len(view.metrics) >= 2:
        evidence["trend"] = trend(
            "resident memory",
            "bytes",
            [
                (p.at, p.values.memory.get("process_resident_memory_bytes", 0.0))
                for p in view.metrics
            ],
        )
    return [
        make_offender(
            "misleading_memory",
            view.target,
            "memory",
            rule.severity,
            summary,
            evidence,
            fix_text(),
            score=gap,
        )
    ]


def summary_text(container: bool, looks: float, heap_inuse: float, explanation: str) -> str:
    """One sentence: how far memory exceeds the heap, and the first reason why."""
    what = "container usage" if container else "RSS"
    return (
        f"{what} {human_bytes(looks)} is {looks / heap_inuse:.1f}x the Go heap in use "
        f"({human_bytes(heap_inuse)}); this is not a leak: {explanation}"
    )


def fix_text() -> str:
    """Nothing in the code: what to judge memory by instead, and GOMEMLIMIT."""
    return (
        "Nothing to fix in the code for this alone. Judge memory by go_memstats_heap_inuse_bytes "
        "(and the heap profile), not RSS; set GOMEMLIMIT to make the runtime return idle memory "
        "sooner under a container limit."
    )
