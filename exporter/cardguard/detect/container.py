"""Container memory: usage, working set, page cache and limit, from a cgroup or from cAdvisor.

Pure: the parsers take the text of cgroup files (v1 and v2) or cAdvisor
sample values and return a ``ContainerMemory``; ``explain`` and ``refine``
turn it into the ``misleading_memory`` sentence and limit forecasts.

A container's usage counts page cache: a nightly backup that reads large
files can push usage up while the process' memory stays flat. The figure
that matters is the working set, usage minus inactive file pages (what
cAdvisor exports as ``container_memory_working_set_bytes``, what the
kubelet evicts on): inactive file pages are reclaimed before the OOM killer
runs.

cgroup v1 (``memory.usage_in_bytes``, ``memory.limit_in_bytes``,
``memory.stat`` with ``total_cache``, ``total_rss``, ``total_inactive_file``)
is tested against a real cgroup; cgroup v2 (``memory.current``,
``memory.max``, ``memory.stat`` with ``anon``, ``file``, ``inactive_file``)
follows the kernel's Documentation/admin-guide/cgroup-v2.rst, tested on text
in that format only (this machine has no v2 memory controller).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cardguard.detect.offender import Offender, slope_per_hour

# Page-counter "no limit" in v1 (PAGE_COUNTER_MAX * page size, rounded): anything this big.
UNLIMITED = 1 << 62
CADVISOR = (
    "container_memory_usage_bytes",
    "container_memory_working_set_bytes",
    "container_memory_cache",
    "container_memory_rss",
    "container_spec_memory_limit_bytes",
)


@dataclass(frozen=True)
class ContainerMemory:
    """One reading of a container's memory, in bytes; ``limit_bytes`` None when unlimited."""

    usage_bytes: float
    working_set_bytes: float
    cache_bytes: float
    """Page cache (file pages), active and inactive."""
    rss_bytes: float | None
    """Anonymous memory of the container's processes."""
    limit_bytes: float | None
    source: str
    """``cgroup v1 PATH``, ``cgroup v2 PATH`` or ``cadvisor``."""

    @property
    def reclaimable_bytes(self) -> float:
        """Usage beyond the working set: inactive page cache the kernel reclaims first."""
        return max(0.0, self.usage_bytes - self.working_set_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "reclaimable_bytes": self.reclaimable_bytes}


def _stat(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return out


def _number(text: str, what: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{what}: expected a number, got {text.strip()[:40]!r}") from None


def from_v1(files: Mapping[str, str], source: str = "cgroup v1") -> ContainerMemory:
    """Read cgroup v1 files: ``memory.usage_in_bytes``, ``memory.limit_in_bytes``, ``memory.stat``.

    Raises:
        ValueError: a file is missing or malformed.
    """
    try:
        usage = _number(files["memory.usage_in_bytes"], "memory.usage_in_bytes")
        stat = _stat(files["memory.stat"])
    except KeyError as exc:
        raise ValueError(f"{source}: {exc.args[0]} missing") from None
    limit_text = files.get("memory.limit_in_bytes")
    limit = _number(limit_text, "memory.limit_in_bytes") if limit_text is not None else None
    # total_* include descendant cgroups (use_hierarchy), as usage_in_bytes does.
    inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0.0))
    cache = stat.get("total_cache", stat.get("cache", 0.0))
    rss = stat.get("total_rss", stat.get("rss"))
    return ContainerMemory(
        usage_bytes=usage,
        working_set_bytes=max(0.0, usage - inactive),
        cache_bytes=cache,
        rss_bytes=rss,
        limit_bytes=limit if limit is not None and limit < UNLIMITED else None,
        source=source,
    )


def from_v2(files: Mapping[str, str], source: str = "cgroup v2") -> ContainerMemory:
    """Read cgroup v2 files: ``memory.current``, ``memory.max``, ``memory.stat``.

    Raises:
        ValueError: a file is missing or malformed.
    """
    try:
        usage = _number(files["memory.current"], "memory.current")
        stat = _stat(files["memory.stat"])
    except KeyError as exc:
        raise ValueError(f"{source}: {exc.args[0]} missing") from None
    max_text = (files.get("memory.max") or "max").strip()
    limit = None if max_text == "max" else _number(max_text, "memory.max")
    return ContainerMemory(
        usage_bytes=usage,
        working_set_bytes=max(0.0, usage - stat.get("inactive_file", 0.0)),
        cache_bytes=stat.get("file", 0.0),
        rss_bytes=stat.get("anon"),
        limit_bytes=limit,
        source=source,
    )


def from_cadvisor(values: Mapping[str, float], source: str = "cadvisor") -> ContainerMemory | None:
    """Build a reading from cAdvisor's series (one value each, for one container).

    ``container_spec_memory_limit_bytes`` 0 means no limit. None without usage.
    """
    usage = values.get("container_memory_usage_bytes")
    if usage is None:
        return None
    ws = values.get("container_memory_working_set_bytes", usage)
    limit = values.get("container_spec_memory_limit_bytes")
    return ContainerMemory(
        usage_bytes=usage,
        working_set_bytes=ws,
        cache_bytes=values.get("container_memory_cache", max(0.0, usage - ws)),
        rss_bytes=values.get("container_memory_rss"),
        limit_bytes=limit if limit and limit < UNLIMITED else None,
        source=source,
    )


# --- wording -----------------------------------------------------------------------------


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def explain(c: ContainerMemory, rss: float | None, heap: float | None) -> str:
    """Return "usage X = working set Y + page cache Z; process RSS R; Go heap H"."""
    parts = [
        f"container usage {human(c.usage_bytes)} = working set {human(c.working_set_bytes)} "
        f"+ reclaimable page cache {human(c.reclaimable_bytes)}"
        f" (page cache in all {human(c.cache_bytes)})"
    ]
    if rss is not None:
        parts.append(f"process RSS {human(rss)}")
    if heap is not None:
        parts.append(f"Go heap in use {human(heap)}")
    if c.limit_bytes is not None:
        parts.append(f"limit {human(c.limit_bytes)}")
    return "; ".join(parts)


def eta_seconds(c: ContainerMemory, slope_per_hour: float) -> float | None:
    """Seconds until the working set reaches the limit at ``slope_per_hour`` bytes, if it will."""
    if c.limit_bytes is None or slope_per_hour <= 0:
        return None
    left = c.limit_bytes - c.working_set_bytes
    return max(0.0, left / slope_per_hour * 3600.0)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# --- offenders ------------------------------------------------------------------------------

GROWING = ("label_explosion", "goroutine_leak", "heap_growth")


def refine(
    found: Sequence[Offender],
    readings: Sequence[tuple[float, ContainerMemory]],
    rss: float | None,
    heap: float | None,
) -> list[Offender]:
    """Explain ``misleading_memory`` with the container's figures; forecast the limit.

    ``readings`` are ``(unix seconds, reading)`` over the watch, oldest first.
    """
    if not readings:
        return list(found)
    c = readings[-1][1]
    ws_slope = slope_per_hour([(t, r.working_set_bytes) for t, r in readings])
    out = []
    for o in found:
        if o.kind == "misleading_memory":
            o = _explain_offender(o, c, rss, heap, ws_slope)
        elif o.kind in GROWING and c.limit_bytes is not None and o.severity != "info":
            slope = o.evidence.get("growth_per_hour_bytes") if o.kind == "heap_growth" else None
            what = "its heap growth" if slope else "the container's working set"
            slope = float(slope) if slope else ws_slope
            eta = eta_seconds(c, slope) if slope is not None else None
            if eta is not None and slope is not None:
                ev = dict(o.evidence)
                ev["limit"] = {
                    "limit_bytes": c.limit_bytes,
                    "working_set_bytes": c.working_set_bytes,
                    "slope_bytes_per_hour": round(slope, 1),
                    "eta_seconds": round(eta),
                }
                fix = (
                    f"{o.fix} At the current slope ({what}, +{human(slope)}/hour) the container's "
                    f"working set ({human(c.working_set_bytes)}) reaches its "
                    f"{human(c.limit_bytes)} limit in about {_duration(eta)}."
                )
                o = dataclasses.replace(o, evidence=ev, fix=fix)
        out.append(o)
    return out


def _explain_offender(
    o: Offender, c: ContainerMemory, rss: float | None, heap: float | None, ws_slope: float | None
) -> Offender:
    ev = dict(o.evidence)
    ev["container"] = c.to_dict()
    ev["alert_on"] = "container_memory_working_set_bytes"
    figures = explain(c, rss, heap)
    process = rss if rss is not None else (c.rss_bytes or 0.0)
    if c.reclaimable_bytes >= 0.5 * max(0.0, c.usage_bytes - process):
        why = (
            "not a leak: most of the usage is page cache (files read or written in the "
            "container, such as a backup), which the kernel reclaims before it would OOM-kill"
        )
    else:
        why = "not a leak by itself: " + str(o.summary).split("this is not a leak: ", 1)[-1]
    summary = f"{figures}; {why}"
    fix = (
        f"Alert on the working set ({human(c.working_set_bytes)}: "
        "container_memory_working_set_bytes, what the kubelet evicts on), and on "
        "go_memstats_heap_inuse_bytes for the Go heap, "
        "not on container usage (container_memory_usage_bytes), which counts page cache the "
        "kernel drops under pressure."
    )
    if c.limit_bytes is not None and ws_slope is not None and ws_slope > 0:
        eta = eta_seconds(c, ws_slope)
        if eta is not None:
            fix += (
                f" The working set grows {human(ws_slope)}/hour: the {human(c.limit_bytes)} limit "
                f"is about {_duration(eta)} away."
            )
    return dataclasses.replace(o, summary=summary, evidence=ev, fix=fix)
