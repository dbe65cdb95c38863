"""What cardguard saw of one target: the points of a watch and the view detection reads.

Pure. A :class:`TargetView` holds, oldest first, the condensed /metrics
scrapes (:class:`MetricsPoint`), the heap profiles (:class:`HeapPoint`) and
the goroutine groups (:class:`GoroutinePoint`) of one target, with the latest
goroutineleak groups and goroutine profile. :mod:`cardguard.analyse.watch`
builds it, the same way for ``serve``, ``/probe``, ``report`` and fleet;
this module holds the types and the one pass that reads a page's few
runtime and traffic samples (:func:`values_from_page`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter

from cardguard.analyse import patterns
from cardguard.analyse.cardinality import FamilyStats, PageAnalysis
from cardguard.analyse.churn import ChurnReport
from cardguard.parse.blocks import block_raw_values, block_values
from cardguard.parse.exposition import scan
from cardguard.parse.model import Format, Sample, SampleBlock
from cardguard.parse.overflow import OTHER
from cardguard.parse.tsdb import TSDBStatus, split_pair
from cardguard.pprof.goroutines import GoroutineGroup, GoroutineSnapshot, group
from cardguard.pprof.model import Profile
from cardguard.settings.rules import Matcher

# Labels whose values are structural parts of a histogram or summary.
STRUCTURAL_LABELS = frozenset({"le", "quantile"})


MEMORY_METRICS = (
    "process_resident_memory_bytes",
    "go_memstats_heap_inuse_bytes",
    "go_memstats_heap_idle_bytes",
    "go_memstats_heap_released_bytes",
    "go_memstats_heap_sys_bytes",
    "go_memstats_sys_bytes",
    "go_memstats_stack_inuse_bytes",
    "go_memstats_alloc_bytes",
)


@dataclass(frozen=True)
class LabelStat:
    """One label of one family at one scrape, in the form detection needs.

    ``values_added`` (since the previous scrape) and ``growth_per_hour`` come
    from the churn tracker when there is one (``None`` when unknown).
    """

    family: str
    label: str
    metric_type: str
    distinct_values: int
    estimated: bool
    pattern: str
    examples: tuple[str, ...]
    family_series: int
    growth_per_hour: float | None = None
    values_added: int | None = None
    native_histogram_series: int | None = None
    """A classic histogram's series as a native one (``FamilyStats.native_histogram_series``)."""


@dataclass(frozen=True)
class FamilyStat:
    """One family at one scrape: its type, series and children (label sets of a vector)."""

    name: str
    metric_type: str
    series: int
    children: int


@dataclass(frozen=True)
class MetricValues:
    """The few /metrics samples detection reads: runtime memory and traffic counters."""

    memory: Mapping[str, float] = field(default_factory=dict)
    traffic: float | None = None
    traffic_families: tuple[str, ...] = ()
    container_memory_bytes: float | None = None


@dataclass(frozen=True)
class MetricsPoint:
    """What one /metrics scrape showed, taken at ``at`` (unix seconds)."""

    at: float
    total_series: int = 0
    families: tuple[FamilyStat, ...] = ()
    labels: tuple[LabelStat, ...] = ()
    values: MetricValues = MetricValues()


@dataclass(frozen=True)
class HeapPoint:
    """A heap profile taken at ``at``."""

    at: float
    profile: Profile


@dataclass(frozen=True)
class GoroutinePoint:
    """The goroutine groups of one snapshot taken at ``at``."""

    at: float
    total: int
    groups: tuple[GoroutineGroup, ...]

    @classmethod
    def of(cls, snapshot: GoroutineSnapshot, at: float) -> GoroutinePoint:
        return cls(at=at, total=snapshot.total, groups=tuple(group(snapshot)))


@dataclass(frozen=True)
class TargetView:
    """Everything cardguard saw of one target over a window, oldest point first.

    ``leaks`` holds the groups of the latest goroutineleak profile, or
    ``None`` when the target does not serve one. ``goroutine_profile``, the
    latest ``/debug/pprof/goroutine`` in proto form (debug=0) when there is
    one, gives goroutine stacks their file:line and hidden runtime frames.
    """

    target: str
    metrics: tuple[MetricsPoint, ...] = ()
    heaps: tuple[HeapPoint, ...] = ()
    goroutines: tuple[GoroutinePoint, ...] = ()
    leaks: tuple[GoroutineGroup, ...] | None = None
    goroutine_profile: Profile | None = None


def children_of(family: FamilyStats) -> int:
    """Estimate a family's children (label sets without ``le``/``quantile``) from its series.

    A summary child writes one line per quantile plus ``_sum`` and ``_count``;
    a classic histogram child one per bucket plus ``_sum`` and ``_count``
    (counted exactly, from its ``+Inf`` buckets); a native histogram child one.
    """
    if family.native_histogram_series is not None:
        return family.native_histogram_series
    per_child = 1
    if family.type in ("summary", "histogram", "gaugehistogram"):
        structural = "quantile" if family.type == "summary" else "le"
        n = next((lab.distinct_values for lab in family.labels if lab.name == structural), 0)
        # A histogram without buckets is a native one: one series per child.
        per_child = n + 2 if n or family.type == "summary" else 1
    return max(1, round(family.series / per_child)) if family.series else 0


def metrics_point(
    analysis: PageAnalysis,
    at: float,
    values: MetricValues | None = None,
    churn: ChurnReport | None = None,
) -> MetricsPoint:
    """Condense one page's analysis (and its churn report) into a ``MetricsPoint``."""
    families = []
    labels = []
    for fam in analysis.families:
        if fam.name == OTHER:
            continue
        families.append(FamilyStat(fam.name, fam.type, fam.series, children_of(fam)))
        for lab in fam.labels:
            ch = churn.label(fam.name, lab.name) if churn is not None else None
            labels.append(
                LabelStat(
                    family=fam.name,
                    label=lab.name,
                    metric_type=fam.type,
                    distinct_values=lab.distinct_values,
                    estimated=lab.estimated,
                    pattern=lab.pattern,
                    examples=lab.examples,
                    family_series=fam.series,
                    native_histogram_series=fam.native_histogram_series,
                    growth_per_hour=ch.growth_per_hour if ch is not None else None,
                    values_added=(
                        ch.values_added if ch is not None and not churn.baseline else None
                    )
                    if churn is not None
                    else None,
                )
            )
    return MetricsPoint(
        at=at,
        total_series=analysis.total_series,
        families=tuple(families),
        labels=tuple(labels),
        values=values if values is not None else MetricValues(),
    )


def values_from_page(
    data: bytes,
    fmt: Format,
    source: str,
    traffic: Matcher,
    container_memory_bytes: float | None = None,
) -> MetricValues:
    """Read runtime memory gauges and traffic counters from a /metrics page.

    Only the families needed are parsed sample by sample; other runs of
    sample lines are skipped as blocks.

    Raises:
        ParseError: the page is malformed.
    """

    return metric_values(page_samples(data, fmt, source, traffic), traffic, container_memory_bytes)


def page_samples(
    data: bytes, fmt: Format, source: str, traffic: Matcher
) -> Iterator[tuple[str, float]]:
    """The ``(sample name, value)`` pairs :func:`metric_values` reads from a page.

    Raises:
        ParseError: the page is malformed.
    """
    for event in scan(data, fmt, source):
        if isinstance(event, Sample):
            if reads_family(event.family, traffic) or reads_family(event.name, traffic):
                yield event.name, event.value
        elif isinstance(event, SampleBlock) and reads_family(event.family, traffic):
            yield from _block_samples(event)


def plain_samples(data: bytes, start: int, end: int, family: str) -> Iterator[tuple[str, float]]:
    """The pairs of one family's sample lines ``data[start:end]``, all known to have the
    fast path's common shape (``parse.blocks.fast_lines``), read without scanning them again:
    the same pairs :func:`page_samples` gives for them."""
    yield from _block_samples(SampleBlock(family, data, start, end, 0, 0))


def _block_samples(block: SampleBlock) -> Iterator[tuple[str, float]]:
    """The block's ``(name, value)`` pairs; a counter's children as one summed pair.

    A traffic counter with thousands of children is summed in C (``sum`` over the
    finite values, in page order, as :func:`metric_values` would add them one by one)
    instead of one Python step per child.
    """
    pairs = block_raw_values(block)
    names = set(map(itemgetter(0), pairs))
    if len(names) != 1 or len(pairs) < 2:
        yield from block_values(block)
        return
    name = names.pop().decode("ascii")
    if name in MEMORY_METRICS:
        yield from block_values(block)
        return
    finite = list(filter(math.isfinite, map(float, map(itemgetter(1), pairs))))
    if finite:
        yield name, sum(finite)


def reads_family(family: str, traffic: Matcher) -> bool:
    """Whether :func:`values_from_page` reads the samples of ``family`` (memory or traffic)."""
    return family in MEMORY_METRICS or traffic.matches(family) or _traffic_base(family, traffic)


def _traffic_base(name: str, traffic: Matcher) -> bool:
    return name.endswith("_count") and traffic.matches(name[: -len("_count")])


def metric_values(
    samples: Iterable[tuple[str, float]],
    traffic: Matcher,
    container_memory_bytes: float | None = None,
) -> MetricValues:
    """Pick runtime memory gauges and sum traffic counters from ``(sample name, value)`` pairs.

    Traffic is the sum of every sample whose name matches ``traffic`` (for
    example ``*_requests_total``); histogram/summary ``_count`` samples of a
    matching family count too, ``_sum``/``_bucket`` never.
    """
    memory: dict[str, float] = {}
    total = 0.0
    fams: set[str] = set()
    # A counter's children share one sample name: decide once per name, not per sample.
    counted: dict[str, str | None] = {}
    for name, value in samples:
        if math.isnan(value) or math.isinf(value):
            continue
        if name in MEMORY_METRICS:
            memory[name] = value
            continue
        if name in counted:
            base = counted[name]
        else:
            base = name[: -len("_count")] if name.endswith("_count") else name
            if name.endswith(("_bucket", "_sum", "_created")) or not (
                traffic.matches(name) or (base != name and traffic.matches(base))
            ):
                base = None
            counted[name] = base
        if base is not None:
            total += value
            fams.add(base)
    return MetricValues(
        memory=memory,
        traffic=total if fams else None,
        traffic_families=tuple(sorted(fams)),
        container_memory_bytes=container_memory_bytes,
    )


ALL_FAMILIES = "*"


def metrics_point_of_tsdb(status: TSDBStatus, at: float) -> MetricsPoint:
    """Shape a TSDB status like one /metrics scrape so detection applies the same rules.

    Prometheus counts label values across every family, so each label is
    reported for the family ``*``. Its example values (and so its pattern
    class) come from ``seriesCountByLabelValuePair``, which names a few values.
    """
    examples: dict[str, list[str]] = {}
    for pair, _ in status.series_by_pair:
        name, value = split_pair(pair)
        examples.setdefault(name, []).append(value)
    families = tuple(
        FamilyStat(name=n, metric_type="unknown", series=v, children=v)
        for n, v in status.series_by_metric
    )
    labels = tuple(
        LabelStat(
            family=ALL_FAMILIES,
            label=n,
            metric_type="unknown",
            distinct_values=v,
            estimated=False,
            pattern=patterns.classify(examples.get(n, []), v),
            examples=tuple(examples.get(n, [])[:5]),
            family_series=status.head.num_series,
        )
        for n, v in status.values_by_label
        if n != "__name__"
    )
    return MetricsPoint(
        at=at, total_series=status.head.num_series, families=families, labels=labels
    )
