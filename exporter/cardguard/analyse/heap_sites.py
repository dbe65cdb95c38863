"""Where a Go heap is held and who asked for it: the one definition of each.

Pure. Two questions, answered once, here:

* **The owner** of heap bytes is pprof's flat function: the leaf of the
  sample's stack, as ``go tool pprof -top`` ranks it and as
  ``cardguard_heap_owner_inuse_bytes`` exports it (:mod:`cardguard.pprof.heap`).
* **The call site** of a finding is the innermost frame of the service's own
  code on that stack (not the runtime, Go's standard library or the
  Prometheus client library): the line a person changes.

Also here: the client library's heap held for vector children
(:class:`LibraryUse`), the goroutine stacks of a goroutine profile with
file:line, and the Go function-name helpers the detectors share. Results
computed from one profile are memoised while that profile object lives.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cardguard.pprof import heap as hp
from cardguard.pprof.goroutines import group_id, normalise_stack
from cardguard.pprof.heap import normalise_function
from cardguard.pprof.model import Frame, Profile
from cardguard.pprof.stacks import site as source_site

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


MAX_STACK = 12


def is_library(function: str) -> bool:
    return function.startswith(CLIENT_LIBRARY_PREFIXES)


def is_runtime(function: str) -> bool:
    return function.startswith(RUNTIME_PREFIXES) or function == "unknown"


def package_of(function: str) -> str:
    """``github.com/x/y.(*T).F`` -> ``github.com/x/y``; ``net/http.F`` -> ``net/http``."""
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    return function[:dot] if dot > 0 else function


def is_std(function: str) -> bool:
    """Return whether a function is in Go's standard library (its import path has no dot)."""
    pkg = package_of(function)
    return pkg != "main" and "." not in pkg.split("/", 1)[0]


def frame_site(frame: Frame) -> str:
    """``function (file:line)``, the file as ``-trimpath`` would name it (module path)."""
    where = source_site(frame.filename, frame.line)
    return f"{frame.function} ({where})" if where else frame.function


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


def frames_of(profile: Profile, stack: Sequence[int]) -> list[Frame]:
    locs = _memo(profile, "frames", _location_frames)
    out: list[Frame] = []
    for lid in stack:
        out.extend(locs.get(lid, ()))
    return out


def inuse_index(profile: Profile) -> int | None:
    names = [st.type for st in profile.sample_types]
    if "inuse_space" in names:
        return names.index("inuse_space")
    return None


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
        is_library(function) and function.endswith((".Collect", ".Write"))
    )


def _is_child_creation(function: str) -> bool:
    return is_library(function) and any(m in function for m in _CHILD_MARKERS)


def is_own_code(function: str) -> bool:
    """Return whether a frame is the service's own code: not the runtime, Go's standard
    library or the Prometheus client library."""
    return not (is_runtime(function) or is_std(function) or is_library(function))


@dataclass
class LibraryUse:
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


def library_use(profile: Profile) -> LibraryUse:
    return _memo(profile, "library", compute_library_use)


def sampled_allocations(objects: int, space: int, period: int) -> float:
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


def compute_library_use(profile: Profile) -> LibraryUse:
    """Sum in-use bytes held for vector children and find who asks for them."""
    use = LibraryUse()
    index = inuse_index(profile)
    if index is None:
        return use
    names = [st.type for st in profile.sample_types]
    objects_index = names.index("inuse_objects") if "inuse_objects" in names else None
    for smp in profile.samples:
        v = smp.values[index]
        if not v:
            continue
        frames = frames_of(profile, smp.stack)
        if not any(is_library(f.function) for f in frames):
            continue
        if any(_is_exposition(f.function) for f in frames):
            use.transient += v
            continue
        if not any(_is_child_creation(f.function) for f in frames):
            continue
        use.total += v
        if objects_index is not None:
            use.samples += sampled_allocations(smp.values[objects_index], v, profile.period)
        leaf = frames[0].function
        use.owners[leaf] = use.owners.get(leaf, 0) + v
        # The instrumentation call site: the first frame of the service's own code
        # above the outermost library frame (never net/http or another library).
        last_lib = max(i for i, f in enumerate(frames) if is_library(f.function))
        caller = next((f for f in frames[last_lib + 1 :] if is_own_code(f.function)), None)
        if caller is None:
            continue
        key = frame_site(caller)
        use.sites[key] = use.sites.get(key, 0) + v
        # Keep the heaviest stack through each call site as its example.
        if key not in use.site_frames or use.site_weight[key] < v:
            upto = next(i for i, f in enumerate(frames) if f is caller)
            stack = tuple(frame_site(f) for f in frames[: upto + 1])[-MAX_STACK:]
            use.site_frames[key] = (caller.function, frames[last_lib].function, stack)
            use.site_weight[key] = v
    return use


def best_site(use: LibraryUse) -> tuple[str, str, str, tuple[str, ...]] | None:
    """Return (site, caller function, library entry, stack) of the call site holding most."""
    best = max(use.sites.items(), key=lambda kv: kv[1], default=None)
    if best is None:
        return None
    caller, entry, stack = use.site_frames[best[0]]
    return best[0], caller, entry, stack


def other_sites(use: LibraryUse, best: str, limit: int = 4) -> list[tuple[str, int]]:
    """Other call sites that make vector children, heaviest first, with their bytes."""
    sites = sorted(((k, v) for k, v in use.sites.items() if k != best), key=lambda kv: -kv[1])
    return sites[:limit]


@dataclass(frozen=True)
class Owners:
    """The heap owners of one profile: pprof's flat functions, with where their bytes came from.

    ``inuse`` holds each function's flat in-use bytes exactly as ``go tool pprof
    -top -sample_index=inuse_space`` and ``cardguard_heap_owner_inuse_bytes``
    give them; ``stacks`` the heaviest stack each function is the leaf of,
    ``call_sites`` the innermost frame of the service's own code on that stack
    (``None`` when it has none), and ``via_library`` the bytes of its stacks that
    pass through the Prometheus client library (vector children, a scrape).
    """

    inuse: dict[str, int] = field(default_factory=dict)
    stacks: dict[str, list[Frame]] = field(default_factory=dict)
    call_sites: dict[str, Frame | None] = field(default_factory=dict)
    via_library: dict[str, int] = field(default_factory=dict)


def owners(profile: Profile) -> Owners:
    """The heap owners of ``profile`` (memoised while the profile lives)."""
    return _memo(profile, "owners", _compute_owners)


def _compute_owners(profile: Profile) -> Owners:
    out = Owners()
    index = inuse_index(profile)
    if index is None:
        return out
    out.inuse.update(
        (f.name, f.flat) for f in hp.owners(profile, "inuse_space").functions if f.flat > 0
    )
    weight: dict[str, int] = {}
    for smp in profile.samples:
        v = smp.values[index]
        if not v:
            continue
        frames = frames_of(profile, smp.stack)
        if not frames or frames[0].function not in out.inuse:
            continue
        leaf = frames[0].function
        if any(is_library(f.function) for f in frames):
            out.via_library[leaf] = out.via_library.get(leaf, 0) + v
        if weight.get(leaf, -1) < v:
            weight[leaf] = v
            out.stacks[leaf] = frames
            out.call_sites[leaf] = next((f for f in frames if is_own_code(f.function)), None)
    return out


def allocations_of(profile: Profile, names: Sequence[str], callers: set[str]) -> Frame | None:
    """Find where one of ``callers`` calls one of ``names`` (e.g. time.NewTicker) in the heap."""
    for smp in profile.samples:
        frames = frames_of(profile, smp.stack)
        for i, f in enumerate(frames):
            if f.function in names:
                caller = next((g for g in frames[i + 1 :] if not is_runtime(g.function)), None)
                if caller is not None and caller.function in callers:
                    return caller
    return None


def goroutine_sites(profile: Profile) -> dict[str, list[Frame]]:
    """Map each goroutine group id to the full frames (file:line) of its largest stack."""
    return _memo(profile, "goroutine_sites", _compute_goroutine_sites)


def _compute_goroutine_sites(profile: Profile) -> dict[str, list[Frame]]:
    out: dict[str, list[Frame]] = {}
    weight: dict[str, int] = {}
    for smp in profile.samples:
        frames = [f for f in frames_of(profile, smp.stack) if f.function != "runtime.goexit"]
        gid = group_id(normalise_stack([f.function for f in frames]))
        v = smp.values[0] if smp.values else 0
        if gid not in weight or weight[gid] < v:
            weight[gid] = v
            out[gid] = frames
    return out


def short_name(function: str) -> str:
    """Drop the import path: ``github.com/x/y/pkg.F`` -> ``pkg.F``."""
    return function.rsplit("/", 1)[-1]


def enclosing(function: str) -> str:
    """``main.subscribe.func1.2`` -> ``main.subscribe``: the function a closure was written in."""
    return re.sub(r"(\.func\d+|\.gowrap\d+|\.\d+)+$", "", function)
