"""Fleet cardinality from a central Prometheus: ``/api/v1/status/tsdb`` parsed and bounded.

Pure: :func:`parse` takes the response body, :class:`Selection` decides which
entries become series. Prometheus returns top-N lists (``?limit=N``), and a
top-N list churns: an entry drops out when another overtakes it, which would
make cardguard's own output churn too. So, as for direct targets, an entry is
shown once it passes a threshold and stays shown (sticky) while it is still
reported; new entries past the cap are summed into ``__other__``.

Series exported from one status (``target`` is the configured name of the
Prometheus server)::

    cardguard_tsdb_head_series{target="central"} 48213
    cardguard_tsdb_family_series{target="central",family="http_requests_total"} 9120
    cardguard_tsdb_label_distinct_values{target="central",label="path"} 3012
    cardguard_tsdb_label_memory_bytes{target="central",label="path"} 120480
    cardguard_tsdb_label_pair_series{target="central",label="job",value="api"} 20112
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cardguard.errors import ParseError
from cardguard.parse.overflow import OTHER

LISTS = (
    "seriesCountByMetricName",
    "labelValueCountByLabelName",
    "memoryInBytesByLabelName",
    "seriesCountByLabelValuePair",
)


@dataclass(frozen=True)
class HeadStats:
    """``headStats``: totals for the head block."""

    num_series: int = 0
    num_label_pairs: int = 0
    chunk_count: int = 0
    min_time_ms: int = 0
    max_time_ms: int = 0


@dataclass(frozen=True)
class TSDBStatus:
    """One ``/api/v1/status/tsdb`` answer; each list is ``(name, value)`` largest first."""

    head: HeadStats
    series_by_metric: tuple[tuple[str, int], ...] = ()
    values_by_label: tuple[tuple[str, int], ...] = ()
    memory_by_label: tuple[tuple[str, int], ...] = ()
    series_by_pair: tuple[tuple[str, int], ...] = ()


def _int(value: object, where: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(source, 0, f"{where}: expected a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ParseError(source, 0, f"{where}: expected a finite number, got {value}")
    if value < 0:
        raise ParseError(source, 0, f"{where}: expected a non-negative number, got {value}")
    return int(value)


def _entries(
    data: Mapping[str, object], key: str, source: str, limit: int
) -> tuple[tuple[str, int], ...]:
    raw = data.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ParseError(source, 0, f"data.{key}: expected a list, got {type(raw).__name__}")
    out: list[tuple[str, int]] = []
    for i, item in enumerate(raw[:limit]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ParseError(source, 0, f"data.{key}[{i}]: expected {{name, value}}")
        out.append((item["name"], _int(item.get("value"), f"data.{key}[{i}].value", source)))
    out.sort(key=lambda e: (-e[1], e[0]))
    return tuple(out)


def parse(body: bytes, source: str, limit: int = 100) -> TSDBStatus:
    """Parse a ``/api/v1/status/tsdb`` body; raise ParseError naming ``source``.

    At most ``limit`` entries of each list are kept, whatever the server sent.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(source, 0, f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ParseError(source, 0, "expected a JSON object")
    if doc.get("status") != "success":
        err = str(doc.get("error", "no error given"))[:200]
        raise ParseError(source, 0, f"status is {doc.get('status')!r}: {err}")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise ParseError(source, 0, "data: expected an object")
    hs = data.get("headStats") or {}
    if not isinstance(hs, dict):
        raise ParseError(source, 0, "data.headStats: expected an object")

    def stat(key: str) -> int:
        v = hs.get(key, 0)
        if isinstance(v, int | float) and not isinstance(v, bool) and not math.isfinite(v):
            return 0  # Prometheus reports +/-Inf times for an empty head
        if isinstance(v, int | float) and not isinstance(v, bool) and key.endswith("Time"):
            return int(v)
        return _int(v, f"data.headStats.{key}", source)

    head = HeadStats(
        num_series=stat("numSeries"),
        num_label_pairs=stat("numLabelPairs"),
        chunk_count=stat("chunkCount"),
        min_time_ms=stat("minTime"),
        max_time_ms=stat("maxTime"),
    )
    return TSDBStatus(
        head=head,
        series_by_metric=_entries(data, "seriesCountByMetricName", source, limit),
        values_by_label=_entries(data, "labelValueCountByLabelName", source, limit),
        memory_by_label=_entries(data, "memoryInBytesByLabelName", source, limit),
        series_by_pair=_entries(data, "seriesCountByLabelValuePair", source, limit),
    )


def split_pair(pair: str) -> tuple[str, str]:
    """Split ``job=api`` (as Prometheus writes label pairs) into ``("job", "api")``."""
    name, _, value = pair.partition("=")
    return name, value


@dataclass
class Selection:
    """Which names of one list are shown: sticky once past ``threshold``, at most ``cap``.

    Entries below the threshold, and new ones once the cap is full, are summed
    into ``__other__`` so that the total is never lost.
    """

    cap: int
    threshold: int
    shown: dict[str, None] = field(default_factory=dict)

    def apply(self, entries: Iterable[tuple[str, int]]) -> tuple[list[tuple[str, int]], bool]:
        """Return the rows to export (shown names, then ``__other__``) and whether we capped."""
        rows: list[tuple[str, int]] = []
        other = 0
        capped = False
        for name, value in entries:
            if name in self.shown:
                rows.append((name, value))
            elif value >= self.threshold and len(self.shown) < self.cap:
                self.shown[name] = None
                rows.append((name, value))
            else:
                capped = capped or value >= self.threshold
                other += value
        if other or capped:
            rows.append((OTHER, other))
        return rows, capped


@dataclass
class TSDBView:
    """The bounded re-export of one Prometheus server's TSDB status across polls."""

    families: Selection
    labels: Selection
    pairs: Selection

    @classmethod
    def new(cls, cap: int, family_threshold: int, label_threshold: int) -> TSDBView:
        return cls(
            families=Selection(cap, family_threshold),
            labels=Selection(cap, label_threshold),
            pairs=Selection(cap, family_threshold),
        )

    def rows(self, status: TSDBStatus) -> dict[str, tuple[list[tuple[str, int]], bool]]:
        """Return each list's rows (and whether it was capped), keyed like Prometheus' fields."""
        labels = self.labels.apply(status.values_by_label)
        # Memory per label is shown for exactly the labels shown above, so the two line up.
        memory: list[tuple[str, int]] = []
        other = 0
        for name, value in status.memory_by_label:
            if name in self.labels.shown:
                memory.append((name, value))
            else:
                other += value
        if other:
            memory.append((OTHER, other))
        return {
            "seriesCountByMetricName": self.families.apply(status.series_by_metric),
            "labelValueCountByLabelName": labels,
            "memoryInBytesByLabelName": (memory, labels[1]),
            "seriesCountByLabelValuePair": self.pairs.apply(status.series_by_pair),
        }
