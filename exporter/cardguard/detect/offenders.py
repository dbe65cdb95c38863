"""Offender detection: join /metrics analyses and pprof profiles into findings a person can act on.

Pure: ``detect(view, rules)`` takes a :class:`TargetView` (what cardguard saw of
one target over a watch window) and the rules in force, and returns offenders,
worst first. Each offender has a stable id (a hash of kind, target and
subject, so alert routing and deduplication survive restarts), a severity, a
one-sentence summary, evidence (numbers, example values, stacks with
file:line) and a fix.

Kinds:

``label_explosion``
    A label whose distinct values are high or growing and look unbounded.
    The fix is a ``metric_relabel_configs`` snippet, which protects
    Prometheus but not the target's own heap, plus the instrumentation call
    site the heap profile shows.
``children_heap_cost``
    Heap held by the client library for the children of summary/histogram
    (and other) vectors, joined to the families with the most children; bytes
    per child are estimated from the profile itself.
``goroutine_leak``
    A goroutine group that grows steadily, that is blocked past a limit, or
    that the goroutineleak profile confirms.
``heap_growth``
    A function whose in-use bytes keep growing while the target's traffic
    does not.
``misleading_memory``
    Resident memory far above the Go heap, explained (never a leak: info).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cardguard.analyse.cardinality import OTHER, FamilyStats, PageAnalysis
from cardguard.analyse.churn import ChurnReport
from cardguard.detect import relabel
from cardguard.parse import exposition
from cardguard.parse.exposition import Format
from cardguard.pprof.goroutines import (
    GoroutineGroup,
    GoroutineSnapshot,
    group,
    group_id,
    normalise_stack,
)
from cardguard.pprof.heap import normalise_function
from cardguard.pprof.profile import Frame, Profile
from cardguard.pprof.stacks import site as source_site
from cardguard.pprof.stacks import source_path
from cardguard.settings.rules import (
    DEFAULT_RULES,
    SEVERITY_RANK,
    GoroutineLeakRule,
    LabelExplosionRule,
    Matcher,
    Rules,
    Severity,
    TargetRules,
)

KINDS = (
    "label_explosion",
    "children_heap_cost",
    "goroutine_leak",
    "heap_growth",
    "misleading_memory",
)

# Functions of the Prometheus Go client (and the quantile library its
# summaries use): where metric children live in a Go heap.
CLIENT_LIBRARY_PREFIXES = (
    "github.com/prometheus/client_golang/",
    "github.com/beorn7/perks/",
    "github.com/prometheus/client_model/",
)
# Frames that belong to the runtime or standard plumbing, never an "owner".
RUNTIME_PREFIXES = (
    "runtime.",
    "runtime/",
    "internal/",
    "sync.",
    "sync/",
    "reflect.",
    "strings.",
    "bytes.",
    "fmt.",
    "strconv.",
    "encoding/",
    "unicode/",
    "slices.",
    "maps.",
    "iter.",
)
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

# Caps on what one target can produce, so output stays bounded.
MAX_PER_KIND = 20
MAX_EXAMPLES = 5
MAX_STACK = 12
# Sampled allocations a single heap profile's children bytes must rest on to count
# without a second profile: with k samples the estimate's spread is about 1/sqrt(k).
MIN_SAMPLED_ALLOCATIONS = 16


# --- input ------------------------------------------------------------------


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


# --- output -----------------------------------------------------------------


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


def _offender(
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


# --- building the view -------------------------------------------------------


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

    def samples() -> Iterator[tuple[str, float]]:
        for event in exposition.scan(data, fmt, source):
            if isinstance(event, exposition.Sample):
                if reads_family(event.family, traffic) or reads_family(event.name, traffic):
                    yield event.name, event.value
            elif isinstance(event, exposition.SampleBlock) and reads_family(event.family, traffic):
                yield from _block_samples(event)

    return metric_values(samples(), traffic, container_memory_bytes)


def _block_samples(block: exposition.SampleBlock) -> Iterator[tuple[str, float]]:
    """The block's ``(name, value)`` pairs; a counter's children as one summed pair.

    A traffic counter with thousands of children is summed in C (``sum`` over the
    finite values, in page order, as :func:`metric_values` would add them one by one)
    instead of one Python step per child.
    """
    pairs = exposition.block_raw_values(block)
    names = {n for n, _ in pairs}
    if len(names) != 1 or len(pairs) < 2:
        yield from exposition.block_values(block)
        return
    name = names.pop().decode("ascii")
    if name in MEMORY_METRICS:
        yield from exposition.block_values(block)
        return
    finite = list(filter(math.isfinite, map(float, (v for _, v in pairs))))
    if finite:
        yield name, sum(finite)


def reads_family(family: str, traffic: Matcher) -> bool:
    """Whether :func:`values_from_page` reads the samples of ``family`` (memory or traffic)."""
    return family in MEMORY_METRICS or traffic.matches(family) or _traffic_base(family, traffic)


def _traffic_base(name: str, traffic: Matcher) -> bool:
    return name.endswith("_count") and traffic.matches(name[: -len("_count")])


# --- /metrics values ---------------------------------------------------------


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


# --- helpers ------------------------------------------------------------------


def _is_library(function: str) -> bool:
    return function.startswith(CLIENT_LIBRARY_PREFIXES)


def _is_runtime(function: str) -> bool:
    return function.startswith(RUNTIME_PREFIXES) or function == "unknown"


def _package(function: str) -> str:
    """``github.com/x/y.(*T).F`` -> ``github.com/x/y``; ``net/http.F`` -> ``net/http``."""
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    return function[:dot] if dot > 0 else function


def _is_std(function: str) -> bool:
    """Return whether a function is in Go's standard library (its import path has no dot)."""
    pkg = _package(function)
    return pkg != "main" and "." not in pkg.split("/", 1)[0]


def _short(function: str) -> str:
    """Drop the import path: ``github.com/x/y/pkg.F`` -> ``pkg.F``."""
    return function.rsplit("/", 1)[-1]


def _site(frame: Frame) -> str:
    """``function (file:line)``, the file as ``-trimpath`` would name it (module path)."""
    where = source_site(frame.filename, frame.line)
    return f"{frame.function} ({where})" if where else frame.function


def _human_bytes(n: float) -> str:
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{sign}{n:.0f} {unit}" if unit == "B" else f"{sign}{n:.1f} {unit}"
        n /= 1024
    return f"{sign}{n:.1f} TiB"


# Results computed from one profile, reused while that profile object lives: the
# scheduler runs detection on every scrape over the same few heap profiles.
_MEMO: dict[tuple[int, str], tuple[weakref.ref[Profile], Any]] = {}
_MEMO_MAX = 256
_T = TypeVar("_T")


def _memo(profile: Profile, what: str, compute: Callable[[Profile], _T]) -> _T:
    key = (id(profile), what)
    hit = _MEMO.get(key)
    if hit is not None and hit[0]() is profile:
        value: _T = hit[1]
        return value
    value = compute(profile)
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    _MEMO[key] = (weakref.ref(profile), value)
    return value


def _location_frames(profile: Profile) -> dict[int, tuple[Frame, ...]]:
    return {
        lid: tuple(Frame(normalise_function(f.function), f.filename, f.line) for f in loc.frames)
        for lid, loc in profile.locations.items()
    }


def _frames(profile: Profile, stack: Sequence[int]) -> list[Frame]:
    locs = _memo(profile, "frames", _location_frames)
    out: list[Frame] = []
    for lid in stack:
        out.extend(locs.get(lid, ()))
    return out


def _inuse_index(profile: Profile) -> int | None:
    names = [st.type for st in profile.sample_types]
    if "inuse_space" in names:
        return names.index("inuse_space")
    return None


def _hours(seconds: float) -> float:
    return seconds / 3600.0


def _trend(title: str, unit: str, points: Iterable[tuple[float, float]]) -> dict[str, Any]:
    return {"title": title, "unit": unit, "points": [[round(t, 3), v] for t, v in points]}


def _keeps_growing(steps: Sequence[float]) -> bool:
    """Return whether growth went on to the last interval and in most intervals."""
    up = [d > 0 for d in steps]
    return up[-1] and 2 * sum(up) > len(up)


def _monotonic(values: Sequence[float], tolerance: float = 0.02) -> bool:
    """Return whether the values never fall by more than ``tolerance`` of the previous one."""
    return all(b >= a * (1 - tolerance) for a, b in itertools.pairwise(values))


# --- heap joins -----------------------------------------------------------------

# Frames of a /metrics scrape in flight: Gather copies every child into protobuf
# messages, the encoder and gzip writer buffer the page. Bytes under these are freed
# when the response is written, whatever the vectors hold.
_EXPOSITION_MARKERS = (
    ".(*Registry).Gather",
    ".Gatherers.Gather",
    ".processMetric",
    "/promhttp.",
    "/expfmt.",
    "compress/flate.",
    "compress/gzip.",
    "NewConstMetric",
    "NewConstHistogram",
    "NewConstSummary",
)
# Frames through which the client library makes a child of a vector (one label set).
_CHILD_MARKERS = (
    ".(*MetricVec).",
    ".(*metricVec).",
    ".(*metricMap).",
)


def _is_exposition(function: str) -> bool:
    return any(m in function for m in _EXPOSITION_MARKERS) or (
        _is_library(function) and function.endswith((".Collect", ".Write"))
    )


def _is_child_creation(function: str) -> bool:
    return _is_library(function) and any(m in function for m in _CHILD_MARKERS)


def _is_own_code(function: str) -> bool:
    """Return whether a frame is the service's own code: not the runtime, Go's standard
    library or the Prometheus client library."""
    return not (_is_runtime(function) or _is_std(function) or _is_library(function))


@dataclass
class _LibraryUse:
    """Heap bytes the client library holds for the children of vectors, by call site.

    Only stacks through a vector's child creation count; a scrape in flight
    (Gather, processMetric, the encoder, gzip) is counted apart as
    ``transient`` and never joined to a family. ``samples`` estimates how many
    sampled allocations the bytes rest on (the profile's values are already
    scaled up from them), for a confidence.
    """

    total: int = 0
    transient: int = 0
    samples: float = 0.0
    owners: dict[str, int] = field(default_factory=dict)
    sites: dict[str, int] = field(default_factory=dict)
    site_frames: dict[str, tuple[str, str, tuple[str, ...]]] = field(default_factory=dict)
    site_weight: dict[str, int] = field(default_factory=dict)


def _library_use(profile: Profile) -> _LibraryUse:
    return _memo(profile, "library", _compute_library_use)


def _sampled_allocations(objects: int, space: int, period: int) -> float:
    """How many sampled allocations a scaled (objects, bytes) pair rests on.

    Go scales each sampled allocation of size s by 1/(1-exp(-s/rate)); this
    undoes it. A rate of 1 (or none) records every allocation.
    """
    if objects <= 0:
        return 0.0
    if period <= 1:
        return float(objects)
    size = space / objects
    return objects * -math.expm1(-size / period)


def _compute_library_use(profile: Profile) -> _LibraryUse:
    """Sum in-use bytes held for vector children and find who asks for them."""
    use = _LibraryUse()
    index = _inuse_index(profile)
    if index is None:
        return use
    names = [st.type for st in profile.sample_types]
    objects_index = names.index("inuse_objects") if "inuse_objects" in names else None
    for smp in profile.samples:
        v = smp.values[index]
        if not v:
            continue
        frames = _frames(profile, smp.stack)
        if not any(_is_library(f.function) for f in frames):
            continue
        if any(_is_exposition(f.function) for f in frames):
            use.transient += v
            continue
        if not any(_is_child_creation(f.function) for f in frames):
            continue
        use.total += v
        if objects_index is not None:
            use.samples += _sampled_allocations(smp.values[objects_index], v, profile.period)
        leaf = frames[0].function
        use.owners[leaf] = use.owners.get(leaf, 0) + v
        # The instrumentation call site: the first frame of the service's own code
        # above the outermost library frame (never net/http or another library).
        last_lib = max(i for i, f in enumerate(frames) if _is_library(f.function))
        caller = next((f for f in frames[last_lib + 1 :] if _is_own_code(f.function)), None)
        if caller is None:
            continue
        key = _site(caller)
        use.sites[key] = use.sites.get(key, 0) + v
        # Keep the heaviest stack through each call site as its example.
        if key not in use.site_frames or use.site_weight[key] < v:
            upto = next(i for i, f in enumerate(frames) if f is caller)
            stack = tuple(_site(f) for f in frames[: upto + 1])[-MAX_STACK:]
            use.site_frames[key] = (caller.function, frames[last_lib].function, stack)
            use.site_weight[key] = v
    return use


def _best_site(use: _LibraryUse) -> tuple[str, str, str, tuple[str, ...]] | None:
    """Return (site, caller function, library entry, stack) of the call site holding most."""
    best = max(use.sites.items(), key=lambda kv: kv[1], default=None)
    if best is None:
        return None
    caller, entry, stack = use.site_frames[best[0]]
    return best[0], caller, entry, stack


def _other_sites(use: _LibraryUse, best: str, limit: int = 4) -> list[str]:
    """Other call sites that make vector children, heaviest first."""
    sites = sorted(((k, v) for k, v in use.sites.items() if k != best), key=lambda kv: -kv[1])
    return [f"{name}: {_human_bytes(v)}" for name, v in sites[:limit]]


def _owner_totals(profile: Profile) -> tuple[dict[str, int], dict[str, list[Frame]]]:
    return _memo(profile, "owners", _compute_owner_totals)


def _compute_owner_totals(profile: Profile) -> tuple[dict[str, int], dict[str, list[Frame]]]:
    """In-use bytes by owner: the innermost frame of the program itself (not the standard
    library), else the innermost outside the runtime; client-library stacks are left out."""
    index = _inuse_index(profile)
    totals: dict[str, int] = {}
    stacks: dict[str, tuple[int, list[Frame]]] = {}
    if index is None:
        return totals, {}
    for smp in profile.samples:
        v = smp.values[index]
        if not v:
            continue
        frames = _frames(profile, smp.stack)
        if any(_is_library(f.function) for f in frames):
            continue
        owner = next((f.function for f in frames if not _is_std(f.function)), None)
        if owner is None:
            owner = next((f.function for f in frames if not _is_runtime(f.function)), None)
        if owner is None:
            continue
        totals[owner] = totals.get(owner, 0) + v
        if owner not in stacks or stacks[owner][0] < v:
            stacks[owner] = (v, frames)
    return totals, {k: s[1] for k, s in stacks.items()}


def _allocations_of(profile: Profile, names: Sequence[str], callers: set[str]) -> Frame | None:
    """Find where one of ``callers`` calls one of ``names`` (e.g. time.NewTicker) in the heap."""
    for smp in profile.samples:
        frames = _frames(profile, smp.stack)
        for i, f in enumerate(frames):
            if f.function in names:
                caller = next((g for g in frames[i + 1 :] if not _is_runtime(g.function)), None)
                if caller is not None and caller.function in callers:
                    return caller
    return None


def _goroutine_sites(profile: Profile) -> dict[str, list[Frame]]:
    """Map each goroutine group id to the full frames (file:line) of its largest stack."""
    return _memo(profile, "goroutine_sites", _compute_goroutine_sites)


def _compute_goroutine_sites(profile: Profile) -> dict[str, list[Frame]]:
    out: dict[str, list[Frame]] = {}
    weight: dict[str, int] = {}
    for smp in profile.samples:
        frames = [f for f in _frames(profile, smp.stack) if f.function != "runtime.goexit"]
        gid = group_id(normalise_stack([f.function for f in frames]))
        v = smp.values[0] if smp.values else 0
        if gid not in weight or weight[gid] < v:
            weight[gid] = v
            out[gid] = frames
    return out


# --- label explosion ------------------------------------------------------------


def _relabel_snippet(family: str, label: str, pattern: str) -> str:
    # Without the live series no rewrite can be shown not to merge series: the
    # snippet drops what explodes (cardguard.detect.remedies rebuilds it from the page).
    return relabel.plan(family, label, pattern, None).snippet()


@dataclass(frozen=True)
class _LabelWindow:
    """One label over the watch: its latest stat and how it changed."""

    stat: LabelStat
    points: tuple[tuple[float, float], ...]
    growth_per_hour: float | None
    new_values: int | None


def _label_windows(view: TargetView) -> list[_LabelWindow]:
    history: dict[tuple[str, str], list[tuple[float, float]]] = {}
    added: dict[tuple[str, str], int] = {}
    for i, point in enumerate(view.metrics):
        for st in point.labels:
            key = (st.family, st.label)
            history.setdefault(key, []).append((point.at, float(st.distinct_values)))
            if i > 0 and st.values_added is not None:
                added[key] = added.get(key, 0) + st.values_added
    out = []
    for st in view.metrics[-1].labels:
        key = (st.family, st.label)
        pts = history[key]
        span = pts[-1][0] - pts[0][0]
        growth = st.growth_per_hour
        seen_growth = (pts[-1][1] - pts[0][1]) / _hours(span) if span > 0 else None
        if seen_growth is not None and (growth is None or seen_growth > growth):
            growth = seen_growth
        new: int | None = added.get(key)
        if new is None and len(pts) >= 2:
            new = max(0, int(pts[-1][1] - pts[0][1]))
        out.append(_LabelWindow(st, tuple(pts), growth, new))
    return out


# What a value pattern (cardguard.analyse.patterns) looks like to a reader.
_SHAPES = {
    "url_path": "URL path",
    "uuid": "UUID",
    "hex_id": "hex ID",
    "numeric_id": "numeric ID",
    "ip": "IP address",
    "email": "email address",
    "timestamp": "timestamp",
}


def _label_reasons(w: _LabelWindow, rule: LabelExplosionRule, total_series: int) -> list[str]:
    st = w.stat
    suspect = st.pattern in rule.suspect_patterns
    reasons = []
    if suspect and st.distinct_values >= rule.distinct_values:
        shape = _SHAPES.get(st.pattern, st.pattern)
        reasons.append(
            f"{st.distinct_values} distinct {st.label} values, {shape}s "
            f"(limit {rule.distinct_values})"
        )
    if st.distinct_values >= rule.distinct_values_any:
        reasons.append(
            f"{st.distinct_values} distinct values (limit {rule.distinct_values_any} for any label)"
        )
    if (
        suspect
        and w.growth_per_hour is not None
        and w.growth_per_hour >= rule.growth_per_hour
        and (w.new_values or 0) >= rule.min_new_values
    ):
        reasons.append(
            f"growing by {w.growth_per_hour:.0f} values/hour "
            f"(+{w.new_values} during the watch; limit {rule.growth_per_hour:.0f}/hour)"
        )
    if (
        suspect
        and total_series > 0
        and st.family_series / total_series >= rule.series_share
        and st.distinct_values >= rule.min_share_values
    ):
        reasons.append(
            f"its family holds {st.family_series / total_series:.0%} of the target's series "
            f"(limit {rule.series_share:.0%})"
        )
    return reasons


def _label_explosions(
    view: TargetView, rules: TargetRules, use: _LibraryUse | None
) -> list[Offender]:
    if not view.metrics:
        return []
    total_series = view.metrics[-1].total_series
    biggest: dict[str, LabelStat] = {}
    for st in view.metrics[-1].labels:
        if st.label in STRUCTURAL_LABELS:
            continue
        best = biggest.get(st.family)
        if best is None or st.distinct_values > best.distinct_values:
            biggest[st.family] = st
    out: list[Offender] = []
    for w in _label_windows(view):
        st = w.stat
        if st.label in STRUCTURAL_LABELS or rules.allowed(st.family, st.label):
            continue
        rule = rules.label_rule(st.family, st.label)
        reasons = _label_reasons(w, rule, total_series)
        severity: Severity = rule.severity
        deny = None
        if rules.denied_label(st.label) and st.distinct_values >= rules.deny.min_distinct_values:
            deny = "the rules deny this label"
        elif (
            rules.denied_family(st.family)
            and st is biggest.get(st.family)
            and st.family_series >= rules.deny.min_distinct_values
        ):
            # A denied family is one offender, named after its most varied label.
            deny = "the rules deny this family"
        if deny:
            reasons.insert(0, deny)
            if len(reasons) == 1 or SEVERITY_RANK[rules.deny.severity] > SEVERITY_RANK[severity]:
                severity = rules.deny.severity
        if not reasons:
            continue
        if st.distinct_values >= rule.critical_distinct_values:
            severity = "critical"
        out.append(_label_offender(view.target, w, reasons, severity, use))
    out.sort(key=lambda o: -o.score)
    return out[:MAX_PER_KIND]


def _label_offender(
    target: str,
    w: _LabelWindow,
    reasons: list[str],
    severity: Severity,
    use: _LibraryUse | None,
) -> Offender:
    st = w.stat
    shape = _SHAPES.get(st.pattern, "distinct value")
    holder = ""
    site = None
    if use is not None and use.total:
        site = _best_site(use)
        if use.owners:
            top = max(use.owners.items(), key=lambda kv: kv[1])[0]
            holder = f"; {_short(top)} holds them"
    summary = (
        f"the {st.label} label on {st.family} creates a new series per {shape}{holder}; "
        f"drop the label or bound its values"
    )
    evidence: dict[str, Any] = {
        "family": st.family,
        "label": st.label,
        "metric_type": st.metric_type,
        "distinct_values": st.distinct_values,
        "estimated": st.estimated,
        "pattern": st.pattern,
        "examples": list(st.examples[:MAX_EXAMPLES]),
        "family_series": st.family_series,
        "growth_per_hour": None if w.growth_per_hour is None else round(w.growth_per_hour, 1),
        "new_values": w.new_values,
        "reasons": reasons,
    }
    if len(w.points) >= 2:
        evidence["trend"] = _trend(f"distinct {st.label} values on {st.family}", "", w.points)
    fix = (
        f"Drop the exploding {st.label} series at the scrape with the metric_relabel_configs "
        "below (a rewrite would fold series together unless checked on the live series). "
        "This protects Prometheus but NOT the target's own heap: the process still creates "
        f"and keeps one child per {st.label} value until the instrumentation changes. "
    )
    if site is not None and use is not None:
        where, _caller, entry, stack = site
        evidence["call_site"] = where
        evidence["stack"] = list(stack)
        others = _other_sites(use, where)
        if others:
            # The heap cannot tell which vector a child belongs to.
            evidence["other_call_sites"] = others
        fix += (
            f"Fix the instrumentation at {where}"
            + (
                " (the heaviest of the call sites the heap shows making vector children)"
                if others
                else ""
            )
            + f", which calls {_short(entry)}: pass a bounded value (a route template, not "
            f"the raw {shape}) or remove the label."
        )
    else:
        fix += (
            f"Fix the instrumentation that sets {st.label}: pass a bounded value "
            f"(a route template, not the raw {shape}) or remove the label."
        )
    if st.metric_type in ("summary", "histogram"):
        fix += " Series that the rewrite makes identical collide; prefer the code fix."
    native = st.native_histogram_series
    if native is not None and native < st.family_series:
        # Each label value costs a classic histogram a series per bucket; a native one, one.
        evidence["native_histogram_series"] = native
        fix += (
            f" As a native histogram {st.family} would need {native} series instead of "
            f"{st.family_series} (one per label set, not one per bucket plus _sum and _count): "
            "set NativeHistogramBucketFactor in client_golang and scrape with native "
            "histograms on; that shrinks every label value's cost but does not bound the values."
        )
    return _offender(
        "label_explosion",
        target,
        f"{st.family}\x00{st.label}",
        severity,
        summary,
        evidence,
        fix,
        snippet=_relabel_snippet(st.family, st.label, st.pattern),
        score=float(st.distinct_values),
    )


# --- children heap cost ----------------------------------------------------------


def _growing_or_unbounded(view: TargetView, rules: TargetRules) -> dict[str, str]:
    """Families whose children grew over the watch or that carry an unbounded-looking
    label, each with the reason in words."""
    first, last = view.metrics[0], view.metrics[-1]
    before = {f.name: f.children for f in first.families}
    out: dict[str, str] = {}
    for f in last.families:
        grown = f.children - before.get(f.name, f.children)
        if len(view.metrics) >= 2 and grown > 0 and grown >= 0.05 * f.children:
            out[f.name] = f"its children grew from {before[f.name]} to {f.children}"
    total = last.total_series
    for w in _label_windows(view):
        st = w.stat
        if st.family in out or st.label in STRUCTURAL_LABELS or rules.allowed(st.family, st.label):
            continue
        if _label_reasons(w, rules.label_rule(st.family, st.label), total):
            out[st.family] = f"its {st.label} label looks unbounded ({st.distinct_values} values)"
    return out


def _children_heap_cost(view: TargetView, rules: TargetRules, use: _LibraryUse) -> list[Offender]:
    """Name the heap held for the children of vectors that grow or look unbounded.

    The metric type is the page's; the bytes are the retained children's only
    (never a scrape in flight) and must show in two heap profiles, or rest on
    enough sampled allocations to be more than one sample's noise.
    """
    if not view.heaps or not view.metrics or use.total == 0:
        return []
    rule = rules.children_heap_cost
    profile = view.heaps[-1].profile
    index = _inuse_index(profile)
    heap_total = sum(s.values[index] for s in profile.samples) if index is not None else 0
    held = use.total
    if held < rule.min_bytes or (heap_total and held / heap_total < rule.min_heap_share):
        return []
    # Sampling noise: one or two 512 KiB samples can make a megabyte appear.
    seen_in = sum(1 for h in view.heaps if _library_use(h.profile).total >= rule.min_bytes)
    if seen_in < 2 and use.samples < MIN_SAMPLED_ALLOCATIONS:
        return []
    why = _growing_or_unbounded(view, rules)
    fams = sorted(
        (
            f
            for f in view.metrics[-1].families
            if f.name in why and f.children >= rule.min_children and not rules.allowed(f.name)
        ),
        key=lambda f: (-f.children, f.name),
    )
    if not fams:
        return []
    top = fams[0]
    first = next((f for f in view.metrics[0].families if f.name == top.name), None)
    trend = _library_trend(view)
    grown_children = top.children - first.children if first is not None else 0
    grown_bytes = trend[-1][1] - trend[0][1] if trend else 0.0
    if grown_children > 0 and grown_bytes > 0:
        per_child = grown_bytes / grown_children
        per_how = "heap growth over children growth during the watch"
    else:
        children = sum(f.children for f in view.metrics[-1].families if f.children > 1)
        per_child = held / max(1, children)
        per_how = "children bytes over every vector's children"
    owners = sorted(use.owners.items(), key=lambda kv: -kv[1])[:5]
    site = _best_site(use)
    kind = top.metric_type
    evidence: dict[str, Any] = {
        "family": top.name,
        "metric_type": kind,
        "children": top.children,
        "why": why[top.name],
        "families": [{"family": f.name, "children": f.children} for f in fams[:5]],
        "library_bytes": held,
        "transient_exposition_bytes": use.transient,
        "heap_inuse_bytes": heap_total,
        "heap_share": round(held / heap_total, 4) if heap_total else None,
        "bytes_per_child": round(per_child),
        "bytes_per_child_from": per_how,
        "profiles_with_bytes": seen_in,
        "sampled_allocations": round(use.samples, 1),
        "owners": [{"function": n, "inuse_bytes": b} for n, b in owners],
        "function": owners[0][0] if owners else "",
    }
    if site is not None:
        evidence["call_site"] = site[0]
        evidence["stack"] = list(site[3])
    if len(trend) >= 2:
        evidence["trend"] = _trend("heap held by vector children", "bytes", trend)
    share = f" ({held / heap_total:.0%} of the heap)" if heap_total else ""
    summary = (
        f"{top.children} {kind} children of {top.name} hold heap ({why[top.name]}); "
        f"vector children hold {_human_bytes(held)}{share}, about "
        f"{_human_bytes(per_child)} each"
    )
    if site is not None:
        where = f" at {site[0]}"
    else:
        where = (
            " (the heap profile shows no caller in the service's own code: look for where "
            f"{top.name} is given its label values)"
        )
    fix = (
        f"Cut the children of {top.name}: remove or bound the label that multiplies them "
        f"in the instrumentation{where}. Each child of a {kind} keeps its own "
        + (
            "quantile streams"
            if kind == "summary"
            else "buckets"
            if kind == "histogram"
            else "value"
        )
        + " in the process until it is deleted"
        + (
            "; a histogram (or fewer objectives) costs far less per child than a summary."
            if kind == "summary"
            else "."
        )
    )
    return [
        _offender(
            "children_heap_cost",
            view.target,
            f"{kind}\x00{top.name}",
            rule.severity,
            summary,
            evidence,
            fix,
            score=float(held),
        )
    ]


def _library_trend(view: TargetView) -> list[tuple[float, float]]:
    if len(view.heaps) < 2:
        return []
    return [(h.at, float(_library_use(h.profile).total)) for h in view.heaps]


# --- goroutine leaks -----------------------------------------------------------------

_BLOCKING = (
    (("runtime.chanrecv", "runtime.chanrecv1", "runtime.chanrecv2"), "chan receive"),
    (("runtime.chansend", "runtime.chansend1"), "chan send"),
    (("runtime.selectgo", "runtime.block"), "select"),
    (("sync.(*WaitGroup).Wait",), "WaitGroup.Wait"),
    (("sync.(*Cond).Wait",), "Cond.Wait"),
    (("sync.(*Mutex).Lock", "sync.(*RWMutex).Lock", "sync.(*RWMutex).RLock"), "mutex lock"),
    (("internal/poll.runtime_pollWait", "internal/poll.(*FD).Read"), "network or file IO"),
    (("time.Sleep",), "sleep"),
)
_TICKER_NAMES = ("time.NewTicker", "time.Tick")
_TIMER_NAMES = ("time.NewTimer", "time.After", "time.AfterFunc")


def _enclosing(function: str) -> str:
    """``main.subscribe.func1.2`` -> ``main.subscribe``: the function a closure was written in."""
    return re.sub(r"(\.func\d+|\.gowrap\d+|\.\d+)+$", "", function)


def _blocking_operation(
    g: GoroutineGroup, heap: Profile | None, raw: Sequence[str] = ()
) -> tuple[str, str | None]:
    """Describe what the group waits on (``chan receive on a ticker``) and where that was made.

    The wait state comes from a debug=2 dump; without one, from the frames that
    survive stack normalisation (poll waits, sleeps, locks). A ticker or timer
    is named when the goroutine's stack holds one or the heap profile shows the
    goroutine's function (or its creator) making one.
    """
    seen = (*raw, *g.frames)
    op = g.state or next((what for names, what in _BLOCKING if any(f in names for f in seen)), None)
    frames = set(seen)
    clock: str | None = None
    made_at: str | None = None
    if frames & set(_TICKER_NAMES) or any(f.startswith("time.(*Ticker)") for f in frames):
        clock = "ticker"
    elif heap is not None:
        callers = {g.function, _enclosing(g.function)}
        if g.created_by:
            callers |= {g.created_by, _enclosing(g.created_by)}
        for names, what in ((_TICKER_NAMES, "ticker"), (_TIMER_NAMES, "timer")):
            site = _allocations_of(heap, names, callers)
            if site is not None:
                clock, made_at = what, _site(site)
                break
    if op is None:
        if clock is not None:
            return f"a wait on a {clock} (no debug=2 dump to name the operation)", made_at
        return "an unknown wait (no debug=2 dump to name it)", None
    return (f"{op} on a {clock}" if clock else op), made_at


# Frames of goroutines that serve a connected client: parked in a network read,
# a server's per-connection loop, or an RPC stream. They come and go with clients.
_LIVE_FRAMES = (
    "internal/poll.runtime_pollWait",
    "internal/poll.(*pollDesc).wait",
    "internal/poll.(*FD).Read",
    "net.(*conn).Read",
    "net.(*netFD).Read",
    "crypto/tls.(*Conn).Read",
    "net/http.(*conn).serve",
    "net/http.(*connReader).",
    "net/http.(*persistConn).",
    "golang.org/x/net/http2.(*serverConn).",
    "golang.org/x/net/http2.(*Framer).ReadFrame",
    "net/http.(*http2serverConn).",
    "google.golang.org/grpc/internal/transport.",
    "google.golang.org/grpc.(*Server).handleStream",
    "google.golang.org/grpc.(*Server).serveStreams",
    "google.golang.org/grpc.(*Server).processStreamingRPC",
    "google.golang.org/grpc.(*serverStream).",
    "google.golang.org/grpc.(*clientStream).",
    "github.com/gorilla/websocket.(*Conn).",
    "nhooyr.io/websocket.",
)
_LIVE_STATES = ("IO wait",)


# Libraries whose frames are connection plumbing, like the standard library's.
_PLUMBING_PREFIXES = (
    "google.golang.org/grpc",
    "golang.org/x/net/http2",
    "github.com/gorilla/websocket",
    "nhooyr.io/websocket",
)


def _live_frames(frames: Iterable[str]) -> str | None:
    """Name the connection work a stack (innermost frame first) waits in, if it does.

    Only the frames above the service's own code count: a handler of the service
    that blocks inside ``net/http.(*conn).serve`` waits on its own, not on a client.
    """
    for f in frames:
        for marker in _LIVE_FRAMES:
            if f.startswith(marker) or marker in f:
                if marker.startswith(("internal/poll.", "net.(", "crypto/tls.")):
                    return "parked in a network read"
                if "grpc" in marker or "websocket" in marker:
                    return "serving an RPC stream"
                return "serving a client connection"
        if not (_is_runtime(f) or _is_std(f) or f.startswith(_PLUMBING_PREFIXES)):
            return None
    return None


def _same_curve(a: Sequence[float], b: Sequence[float], tolerance: float = 0.2) -> bool:
    """Return whether two groups grew in step: the same share of their growth at each point,
    and the same share of their last count already there at the first."""
    if len(a) < 2 or len(a) != len(b):
        return False
    da, db = a[-1] - a[0], b[-1] - b[0]
    if da <= 0 or db <= 0:
        return False
    if abs(a[0] / a[-1] - b[0] / b[-1]) > tolerance:
        return False
    return all(
        abs((x - a[0]) / da - (y - b[0]) / db) <= tolerance for x, y in zip(a, b, strict=True)
    )


@dataclass
class _GroupFinding:
    """One goroutine group's numbers and judgement, before groups of one cause are joined."""

    group: GoroutineGroup
    counts: list[float]
    delta: float
    rate: float
    leaked: int
    reasons: list[str]
    severity: Severity | None
    live: str | None
    proof: str | None = None
    op: str = ""
    made_at: str | None = None
    creator: str | None = None
    raw: list[Frame] = field(default_factory=list)


def _goroutine_leaks(view: TargetView, rules: TargetRules) -> list[Offender]:
    if not view.goroutines and not view.leaks:
        return []
    rule = rules.goroutine_leak
    heap = view.heaps[-1].profile if view.heaps else None
    sites = _goroutine_sites(view.goroutine_profile) if view.goroutine_profile else {}
    latest = view.goroutines[-1] if view.goroutines else None
    first = view.goroutines[0] if view.goroutines else None
    leaked = {g.id: g for g in (view.leaks or ())}
    candidates: dict[str, GoroutineGroup] = {}
    if latest is not None:
        candidates.update((g.id, g) for g in latest.groups)
    for gid, g in leaked.items():
        candidates.setdefault(gid, g)
    span = (latest.at - first.at) if latest is not None and first is not None else 0.0
    every: dict[str, _GroupFinding] = {}
    for gid, g in candidates.items():
        counts = [
            float(next((x.count for x in p.groups if x.id == gid), 0)) for p in view.goroutines
        ]
        delta = counts[-1] - counts[0] if counts else 0.0
        rate = delta / span if span > 0 else 0.0
        reasons: list[str] = []
        severity: Severity | None = None
        n_leaked = leaked[gid].count if gid in leaked else (g.leaked or 0)
        if n_leaked > 0:
            reasons.append(f"{n_leaked} goroutines confirmed leaked by the goroutineleak profile")
            severity = rule.leaked_severity
        if (
            len(counts) >= 2
            and delta >= rule.min_growth
            and rate * 3600 >= rule.growth_per_hour
            and _monotonic(counts, 0.0)
        ):
            reasons.append(
                f"grew from {counts[0]:.0f} to {counts[-1]:.0f} in {span:.0f}s "
                f"({rate:.3g}/s, steadily across {len(counts)} snapshots)"
            )
            severity = _worse(severity, rule.severity)
        if (
            g.max_wait_minutes is not None
            and g.max_wait_minutes >= rule.max_wait_minutes
            and g.count >= rule.min_blocked
        ):
            reasons.append(
                f"{g.count} goroutines blocked, the longest for {g.max_wait_minutes} minutes "
                f"(limit {rule.max_wait_minutes:g})"
            )
            severity = _worse(severity, rule.blocked_severity)
        raw = sites.get(gid, [])
        live = (
            _live_frames(f.function for f in raw)
            or _live_frames(g.frames)
            or ("parked in a network read" if g.state in _LIVE_STATES else None)
        )
        every[gid] = _GroupFinding(g, counts, delta, rate, n_leaked, reasons, severity, live)
        every[gid].raw = raw
    # Live work by creator chain: a goroutine started by one that serves a client
    # (a stream's send loop started by its handler) lives as long as that client.
    live_functions = {f.group.function for f in every.values() if f.live}
    changed = True
    while changed:
        changed = False
        for f in every.values():
            creator = f.group.created_by
            if f.live is None and creator is not None and creator in live_functions:
                f.live = f"started by {_short(creator)}, which serves a client"
                live_functions.add(f.group.function)
                changed = True
    flagged = [f for f in every.values() if f.severity is not None]
    if not flagged:
        return []
    # Live work by growth curve: growing in step with connection goroutines.
    live_curves = [f.counts for f in every.values() if f.live and f.delta > 0]
    for f in flagged:
        if f.live is None and any(_same_curve(f.counts, c) for c in live_curves):
            f.live = "grew in step with goroutines that serve client connections"
    for f in flagged:
        g = f.group
        f.op, f.made_at = _blocking_operation(g, heap, [fr.function for fr in f.raw])
        f.creator = g.created_by or _creator_guess(g)
        if f.leaked > 0:
            f.proof = "the goroutineleak profile"
        elif "ticker" in f.op and f.delta >= rule.min_growth and f.live is None:
            f.proof = "each waits on a ticker channel, which Ticker.Stop never closes"
        if f.live is not None and f.leaked <= 0 and f.severity is not None:
            f.severity = "info"
    causes = _join_causes(flagged)
    out = [_goroutine_offender(view, rule, members) for members in causes]
    out.sort(key=lambda o: (-SEVERITY_RANK[o.severity], -o.score))
    return out[:MAX_PER_KIND]


def _join_causes(flagged: list[_GroupFinding]) -> list[list[_GroupFinding]]:
    """Join groups of one cause (one creator chain, or one growth curve), biggest first."""
    order = sorted(flagged, key=lambda f: (-max(f.leaked, f.group.count), f.group.id))
    causes: list[list[_GroupFinding]] = []
    for f in order:
        home = None
        for members in causes:
            for m in members:
                chain = {m.group.function, m.creator, _enclosing(m.group.function)}
                if (
                    (f.creator is not None and f.creator in chain)
                    or (m.creator is not None and m.creator == f.group.function)
                    or _same_curve(f.counts, m.counts)
                ):
                    home = members
                    break
            if home is not None:
                break
        if home is None:
            causes.append([f])
        else:
            home.append(f)
    return causes


def _goroutine_offender(
    view: TargetView, rule: GoroutineLeakRule, members: list[_GroupFinding]
) -> Offender:
    main = max(members, key=lambda m: (SEVERITY_RANK.get(m.severity or "info", 0), m.leaked))
    severity: Severity = "info"
    for m in members:
        if m.severity is not None:
            severity = _worse(severity, m.severity)
    g = main.group
    gid = g.id
    op, made_at, creator = main.op, main.made_at, main.creator
    count = g.count if g.count else main.leaked
    total = sum(m.group.count or m.leaked for m in members)
    live = main.live if all(m.live for m in members) else None
    reasons = [r for m in members for r in (m.reasons if m is main else ())]
    started = f" (started by {creator})" if creator else ""
    also = (
        f", with {total - count} more goroutines of the same cause in "
        f"{len(members) - 1} other group{'s' if len(members) > 2 else ''}"
        if len(members) > 1
        else ""
    )
    if live is not None:
        summary = (
            f"{count} goroutines in {g.function}{started} are live work, {live}{also}; "
            "they follow connected clients and end when the clients leave"
        )
    elif main.proof is not None:
        summary = (
            f"{count} goroutines in {g.function}{started} are stuck on {op}"
            + (" and keep piling up" if main.delta >= rule.min_growth else "")
            + f"{also}; {_short(g.function)} never returns ({main.proof})"
        )
    elif main.delta >= rule.min_growth:
        summary = (
            f"{count} goroutines in {g.function}{started} wait on {op} and keep piling up"
            f"{also}; nothing seen so far ends them"
        )
    else:
        summary = f"{count} goroutines in {g.function}{started} wait on {op}{also}"
    raw = main.raw
    evidence: dict[str, Any] = {
        "function": g.function,
        "group": gid,
        "created_by": creator,
        "goroutines": g.count,
        "leaked": main.leaked if view.leaks is not None or g.leaked is not None else None,
        "blocking": op,
        "state": g.state,
        "max_wait_seconds": None if g.max_wait_minutes is None else 60 * g.max_wait_minutes,
        "growth": main.delta,
        "growth_per_second": round(main.rate, 6),
        "live_work": live,
        "proof": main.proof,
        "stack": [_site(f) for f in raw[:MAX_STACK]] if raw else _group_stack(g),
        "reasons": reasons,
    }
    if len(members) > 1:
        evidence["same_cause"] = [
            {
                "group": m.group.id,
                "function": m.group.function,
                "created_by": m.creator,
                "goroutines": m.group.count,
                "growth": m.delta,
                "reasons": m.reasons,
            }
            for m in members
            if m is not main
        ]
    if made_at:
        evidence["made_at"] = made_at
    if len(main.counts) >= 2:
        evidence["trend"] = _trend(
            f"goroutines in {_short(g.function)}",
            "",
            [(p.at, c) for p, c in zip(view.goroutines, main.counts, strict=True)],
        )
    if live is not None:
        fix = (
            f"Nothing to fix if the clients are expected: {g.function} ends when its client "
            "disconnects. If the clients should not stay connected, bound them (connection "
            "or stream limits, idle timeouts, keepalive) and make sure each stream's context "
            "is cancelled when its client goes."
        )
    elif "ticker" in op:
        fix = (
            f"Give {g.function} a way out: select on the ticker channel together with a done "
            "channel or ctx.Done() and return when it fires. Ticker.Stop does not close the "
            "channel, so a loop ranging over ticker.C waits forever once the ticker stops"
            + "."
            + (f" The ticker is made in {made_at}." if made_at else "")
        )
    else:
        fix = (
            f"Make sure {g.function} returns: close or cancel what it waits on ({op}) when "
            f"its work ends"
            + (f", and have {creator} wait for it or stop it" if creator else "")
            + "."
        )
    return _offender(
        "goroutine_leak",
        view.target,
        gid,
        severity,
        summary,
        evidence,
        fix,
        score=float(max(main.leaked, total, main.delta)),
    )


def _group_stack(g: GoroutineGroup) -> list[str]:
    """The group's frames as ``function (file:line)``, where its input printed the line."""
    out = []
    for i, name in enumerate(g.frames[:MAX_STACK]):
        where = source_path(g.sites[i]) if i < len(g.sites) and g.sites[i] else ""
        out.append(f"{name} ({where})" if where else name)
    return out


def _creator_guess(g: GoroutineGroup) -> str | None:
    """Without a creator in the dump, a closure's enclosing function is the likely creator."""
    enclosing = _enclosing(g.function)
    return enclosing if enclosing != g.function else None


def _worse(a: Severity | None, b: Severity) -> Severity:
    if a is None:
        return b
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b


# --- heap growth ------------------------------------------------------------------------


def _traffic_change(view: TargetView) -> tuple[float | None, list[float], tuple[str, ...]]:
    """Return (relative change of the request rate, first to last interval; rates; families)."""
    pts = [p for p in view.metrics if p.values.traffic is not None]
    rates: list[float] = []
    for a, b in itertools.pairwise(pts):
        dt = b.at - a.at
        if dt > 0 and a.values.traffic is not None and b.values.traffic is not None:
            rates.append(max(0.0, b.values.traffic - a.values.traffic) / dt)
    fams = pts[-1].values.traffic_families if pts else ()
    if len(rates) < 2:
        return None, rates, fams
    if rates[0] == 0:
        return (math.inf if rates[-1] > 0 else 0.0), rates, fams
    return rates[-1] / rates[0] - 1.0, rates, fams


# A request rate that moved less than this (relative) between the first and last interval.
STEADY_TRAFFIC = 0.1


def _per_second(rate: float) -> str:
    return f"{rate:,.1f}/s" if rate < 10 else f"{rate:,.0f}/s"


def _live_goroutines(point: GoroutinePoint) -> int:
    """Goroutines of a snapshot that serve connected clients (network reads, connections)."""
    return sum(
        g.count
        for g in point.groups
        if _live_frames(g.frames) is not None or g.state in _LIVE_STATES
    )


def _clients_change(view: TargetView, start: float, end: float) -> str | None:
    """Say how connected clients grew over [start, end], when they grew markedly."""
    points = [p for p in view.goroutines if start - 1 <= p.at <= end + 1] or list(view.goroutines)
    if len(points) < 2:
        return None
    before, after = _live_goroutines(points[0]), _live_goroutines(points[-1])
    if after - before >= CLIENT_GROWTH_MIN and after >= (1 + CLIENT_GROWTH_RATIO) * before:
        return f"goroutines serving connected clients grew from {before} to {after}"
    return None


# Growth of goroutines serving clients that makes heap growth over the same window "may
# follow load": at least this many more, and this much more than before.
CLIENT_GROWTH_MIN = 50
CLIENT_GROWTH_RATIO = 0.2


def _published(heaps: Sequence[HeapPoint]) -> list[HeapPoint]:
    """The heap points whose profile changed since the one before.

    Go rewrites the heap profile only when a garbage collection completes, so a
    profile equal to the previous one says nothing about its interval: not that
    the heap stopped growing (a leaking heap doubles its GC goal each cycle, and
    the gaps between collections grow with it). The first of equal ones is kept.
    """
    out: list[HeapPoint] = []
    seen: tuple[int, ...] | None = None
    for h in heaps:
        key = tuple(h.profile.total(st.type) for st in h.profile.sample_types)
        if key != seen:
            out.append(h)
        seen = key
    return out


def _heap_growth(view: TargetView, rules: TargetRules) -> list[Offender]:
    heaps = _published(view.heaps)
    if len(heaps) < 2:
        return []
    rule = rules.heap_growth
    series = [_owner_totals(h.profile) for h in heaps]
    first, last = series[0][0], series[-1][0]
    span = heaps[-1].at - heaps[0].at
    change, rates, fams = _traffic_change(view)
    clients = _clients_change(view, heaps[0].at, heaps[-1].at)
    out: list[Offender] = []
    for owner, now in last.items():
        before = first.get(owner, 0)
        grown = now - before
        if grown < rule.min_growth_bytes:
            continue
        if before > 0 and grown / before < rule.min_growth_ratio:
            continue
        values = [float(s[0].get(owner, 0)) for s in series]
        if not _monotonic(values):
            continue
        judged = values
        if values[0] == 0 and len(values) > 2:
            # Absent from the first profile, it appeared during the watch: a start-up
            # allocation reaches heap profiles up to two GC cycles late, so a table
            # made once looks like growth from zero. Growth counts from where it shows.
            judged = values[next(i for i, v in enumerate(values) if v > 0) :]
            if now - judged[0] < rule.min_growth_bytes:
                continue
        steps = [b - a for a, b in itertools.pairwise(judged)]
        if len(steps) >= 2 and not _keeps_growing(steps):
            # One step up, then flat: a one-off allocation (a start-up table, a pool
            # sized once), not something that keeps growing.
            continue
        severity: Severity = rule.severity if len(steps) >= 2 else "info"
        phrase = None  # the summary's short form of ``traffic``
        if change is None:
            traffic = (
                "traffic unknown (no request counter on /metrics)"
                if not fams
                else "traffic trend unknown (need three /metrics scrapes)"
            )
        elif math.isinf(change):
            traffic = "requests started during the watch: the growth may follow load"
            severity = "info"
        elif change > rule.traffic_tolerance:
            traffic = f"request rate rose {change:.0%}: the growth may follow load"
            severity = "info"
        else:
            # Within the tolerance: say which way it went; a falling rate under a growing
            # heap is the strongest sign that the growth is not load.
            moved = f"{_per_second(rates[0])} -> {_per_second(rates[-1])}"
            if abs(change) < STEADY_TRAFFIC:
                traffic = f"request rate steady ({moved})"
                phrase = "the request rate held steady"
            elif change < 0:
                traffic = f"request rate fell {-change:.0%} ({moved})"
                phrase = f"the request rate fell {-change:.0%}"
            else:
                traffic = (
                    f"request rate rose {change:.0%} ({moved}), within the "
                    f"{rule.traffic_tolerance:.0%} the rules allow"
                )
                phrase = f"the request rate rose only {change:.0%}"
        if clients is not None and severity != "info":
            # Heap that grows with connected clients (buffers, watchers, per-stream
            # state) ends with them; say so rather than call it a leak.
            traffic = f"{clients}: the growth may follow them"
            phrase = clients
            severity = "info"
        rate_h = grown / _hours(span) if span > 0 else 0.0
        frames = series[-1][1].get(owner, [])
        evidence: dict[str, Any] = {
            "function": owner,
            "inuse_bytes": now,
            "base_inuse_bytes": before,
            "growth_bytes": grown,
            "growth_per_hour_bytes": round(rate_h),
            "window_seconds": round(span, 1),
            "traffic": traffic,
            "traffic_families": list(fams),
            "traffic_rates_per_second": [round(r, 3) for r in rates],
            "stack": [_site(f) for f in frames[:MAX_STACK]],
            "trend": _trend(
                f"in-use heap owned by {_short(owner)}",
                "bytes",
                [(h.at, v) for h, v in zip(heaps, values, strict=True)],
            ),
        }
        held = next((f for f in frames if f.function == owner), None)
        where = f" ({source_site(held.filename, held.line)})" if held is not None else ""
        summary = (
            f"{owner}{where} holds {_human_bytes(now)} of heap, up {_human_bytes(grown)} "
            f"in {span:.0f}s while {phrase or traffic.split(':')[0]}; "
            "what it allocates is never freed"
        )
        fix = (
            f"Bound what {owner} keeps: give the map or slice it fills an eviction policy "
            "(size limit, LRU or TTL) or delete entries when their work ends. Compare two heap "
            "profiles with `go tool pprof -base` to confirm the growth continues."
        )
        out.append(
            _offender(
                "heap_growth",
                view.target,
                owner,
                severity,
                summary,
                evidence,
                fix,
                score=float(grown),
            )
        )
    out.sort(key=lambda o: -o.score)
    return out[:MAX_PER_KIND]


# --- misleading memory ---------------------------------------------------------------------


def _misleading_memory(view: TargetView, rules: TargetRules) -> list[Offender]:
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
            f"{_human_bytes(parts['heap_idle_retained_bytes'])} is idle heap the Go runtime "
            "keeps for reuse"
        )
    if released > 0.2 * gap and rss is not None and rss > sys_b - released:
        explain.append(
            f"{_human_bytes(released)} was released to the OS but may still be counted in RSS "
            "until the kernel reclaims it"
        )
    if parts["runtime_non_heap_bytes"] > 0.2 * gap:
        explain.append(
            f"{_human_bytes(parts['runtime_non_heap_bytes'])} is runtime memory outside the heap "
            "(stacks, GC metadata, spans)"
        )
    if parts["outside_go_runtime_bytes"] > 0.2 * gap:
        explain.append(
            f"{_human_bytes(parts['outside_go_runtime_bytes'])} of RSS is outside the Go runtime "
            "(cgo, mapped files, binary)"
        )
    if parts.get("container_beyond_rss_bytes", 0.0) > 0.2 * gap:
        explain.append(
            f"{_human_bytes(parts['container_beyond_rss_bytes'])} of container usage is page cache "
            "the kernel can reclaim"
        )
    if not explain:
        explain.append("the difference is memory the runtime holds outside live heap objects")
    what = "container usage" if v.container_memory_bytes is not None else "RSS"
    summary = (
        f"{what} {_human_bytes(looks)} is {looks / heap_inuse:.1f}x the Go heap in use "
        f"({_human_bytes(heap_inuse)}); this is not a leak: {explain[0]}"
    )
    evidence: dict[str, Any] = {
        "resident_bytes": rss,
        "container_memory_bytes": v.container_memory_bytes,
        "heap_inuse_bytes": heap_inuse,
        "ratio": round(looks / heap_inuse, 2),
        "breakdown": {k: round(x) for k, x in parts.items()},
        "explanation": explain,
    }
    if len(view.metrics) >= 2:
        evidence["trend"] = _trend(
            "resident memory",
            "bytes",
            [
                (p.at, p.values.memory.get("process_resident_memory_bytes", 0.0))
                for p in view.metrics
            ],
        )
    fix = (
        "Nothing to fix in the code for this alone. Judge memory by go_memstats_heap_inuse_bytes "
        "(and the heap profile), not RSS; set GOMEMLIMIT to make the runtime return idle memory "
        "sooner under a container limit."
    )
    return [
        _offender(
            "misleading_memory",
            view.target,
            "memory",
            rule.severity,
            summary,
            evidence,
            fix,
            score=gap,
        )
    ]


# --- entry point -------------------------------------------------------------------------


def detect(view: TargetView, rules: Rules | TargetRules = DEFAULT_RULES) -> list[Offender]:
    """Name the offenders of one target, worst first (severity, then magnitude, then id)."""
    tr = rules.for_target(view.target) if isinstance(rules, Rules) else rules
    use = _library_use(view.heaps[-1].profile) if view.heaps else None
    found: list[Offender] = []
    found += _label_explosions(view, tr, use)
    if use is not None:
        found += _fold_into_explosions(found, _children_heap_cost(view, tr, use))
    leaks = _goroutine_leaks(view, tr)
    found += leaks
    found += _fold_into_leaks(leaks, _heap_growth(view, tr))
    found += _misleading_memory(view, tr)
    return sort_offenders(found)


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
                owners.setdefault(_enclosing(str(name)), o)
    rest = []
    for g in growth:
        home = owners.get(g.function)
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


def sort_offenders(offenders: Iterable[Offender]) -> list[Offender]:
    """Order offenders worst first: severity, then kind order, then magnitude, then id."""
    return sorted(
        offenders,
        key=lambda o: (-SEVERITY_RANK[o.severity], KINDS.index(o.kind), -o.score, o.id),
    )
