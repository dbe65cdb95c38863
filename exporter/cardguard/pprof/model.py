"""What a decoded pprof profile is: sample types, samples, locations and their frames.

Every reader of the pprof layer builds these types (:mod:`cardguard.pprof.proto`
from profile.proto, :mod:`cardguard.pprof.legacy` from the older formats) and
every analysis reads them, so they sit below both.

A location holds several frames when the compiler inlined calls into it; the
first frame is the innermost (the leaf), as in the pprof format. A location
without symbols is named after the binary it lies in, ``[libc.so.6]``, or
``<unknown>`` when no mapping names one (:func:`unsymbolised_name`): pprof
folds unsymbolised addresses of one binary into one node at its default
(function) granularity, and so does every analysis here.
"""

from __future__ import annotations

import gc
import posixpath
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from operator import eq, itemgetter
from typing import NamedTuple, overload

from cardguard.errors import ProfileError

# A heap or goroutine profile of a large service is a few MB decompressed;
# anything far beyond this is a mistake or an attack (gzip bomb). Every reader
# of profile bytes, text or proto, refuses more.
DEFAULT_MAX_DECODED_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ValueType:
    """What one sample value measures, e.g. ``inuse_space`` in ``bytes``."""

    type: str
    unit: str


class Frame(NamedTuple):
    """One function call site: a Line entry of a location.

    A named tuple, as :class:`Location` and :class:`Sample` are: a large
    profile holds tens of thousands, and a frozen dataclass builds three
    times slower.
    """

    function: str
    filename: str
    line: int


class Location(NamedTuple):
    """A program counter and the frames it stands for, innermost (leaf) first.

    ``mapping`` is the file of the binary the address lies in (``""`` when
    unknown). A location without symbols has one frame named as pprof names
    it (:func:`unsymbolised_name`).
    """

    id: int
    address: int
    frames: tuple[Frame, ...]
    mapping: str = ""


class Sample(NamedTuple):
    """One sample: its stack as location ids (leaf first) and one value per sample type.

    ``labels`` holds string labels (pprof.Do labels on goroutines) and is
    filled only when decoding with ``keep_labels=True``; numeric labels such
    as the heap profile's ``bytes`` are never kept. A label with neither a
    string nor a number is a string label whose value is ``""`` (Go writes
    it so; the encoding omits the zero). A named tuple because a profile can
    hold hundreds of thousands of samples.
    """

    stack: tuple[int, ...]
    values: tuple[int, ...]
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Profile:
    """A decoded pprof profile.

    Go writes heap values already scaled up for sampling (the runtime
    unsamples before encoding), so the values are the profile's own.
    """

    source: str
    sample_types: tuple[ValueType, ...]
    samples: tuple[Sample, ...]
    locations: Mapping[int, Location]
    default_sample_type: str | None = None
    period_type: ValueType | None = None
    period: int = 0
    time_nanos: int = 0
    duration_nanos: int = 0
    comments: tuple[str, ...] = ()

    def value_index(self, sample_index: str | None = None) -> int:
        """Return the position of ``sample_index`` among the sample types.

        ``sample_index`` is a type name such as ``inuse_space`` or a number as a
        string; ``None`` picks the profile's default type, else the last one
        (what ``go tool pprof`` does).

        Raises:
            ProfileError: the profile has no such sample type.
        """
        names = [st.type for st in self.sample_types]
        if sample_index is None or sample_index == "":
            if self.default_sample_type and self.default_sample_type in names:
                return names.index(self.default_sample_type)
            return len(names) - 1
        if sample_index in names:
            return names.index(sample_index)
        if sample_index.isdigit() and int(sample_index) < len(names):
            return int(sample_index)
        raise ProfileError(
            self.source,
            f"no sample type {sample_index!r}; this profile has {', '.join(names)}",
        )

    def total(self, sample_index: str | None = None) -> int:
        """Return the sum of one sample type over all samples."""
        i = self.value_index(sample_index)
        return sum(s.values[i] for s in self.samples)


def unsymbolised_name(mapping_file: str) -> str:
    """Name a location without symbols as ``go tool pprof -top`` does.

    ``[base name of the binary]``, or ``<unknown>`` when no mapping names one.
    """
    base = posixpath.basename(mapping_file.rstrip("/")) if mapping_file else ""
    if not base and mapping_file:
        base = "/"
    return f"[{base}]" if base else "<unknown>"


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects that hold no cycles.

    Each collection would otherwise walk every young tuple again, which costs
    more than building them (a profile's stacks, a dump's records). The
    collector's previous state returns; what was built is collected as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class PackedStacks(Sequence[tuple[int, ...]]):
    """Stacks whose location ids are all below 128, each kept as the bytes of its ids.

    That is how profile.proto encodes such a stack (packed varints of one byte
    each), so the bytes are taken from the encoded sample as they are. Each
    item reads as the tuple of ids it holds, and the whole compares equal to
    a list of those tuples; :mod:`cardguard.pprof.heap` counts the bytes
    themselves (iterating bytes gives the ids, in C, as small ints).
    """

    __slots__ = ("packed",)

    def __init__(self, packed: list[bytes]) -> None:
        self.packed = packed

    def __len__(self) -> int:
        return len(self.packed)

    @overload
    def __getitem__(self, i: int) -> tuple[int, ...]: ...

    @overload
    def __getitem__(self, i: slice) -> list[tuple[int, ...]]: ...

    def __getitem__(self, i: int | slice) -> tuple[int, ...] | list[tuple[int, ...]]:
        if isinstance(i, slice):
            return list(map(tuple, self.packed[i]))
        return tuple(self.packed[i])

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        return map(tuple, self.packed)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedStacks):
            return self.packed == other.packed
        if isinstance(other, Sequence):
            return len(other) == len(self) and all(map(eq, self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def __repr__(self) -> str:
        return f"PackedStacks({list(self)!r})"


@dataclass(frozen=True)
class Column:
    """One sample type of a profile, sample by sample: each stack and its value.

    ``profile`` holds everything else (sample types, locations, period...) and
    no samples; ``stacks[i]`` (location ids, leaf first) weighs ``values[i]``
    in sample type ``index``.
    """

    profile: Profile
    index: int
    stacks: Sequence[tuple[int, ...]]
    values: list[int]


_SAMPLE_STACK = itemgetter(0)  # Sample.stack, without the named tuple's property
_SAMPLE_VALUES = itemgetter(1)  # Sample.values


def column(profile: Profile, sample_index: str | None = None) -> Column:
    """Take one sample type's column out of a decoded profile.

    Raises:
        ProfileError: the profile has no such sample type.
    """
    return column_at(profile, profile.value_index(sample_index))


def column_at(profile: Profile, index: int) -> Column:
    """Take the column of the sample type at position ``index`` out of a decoded profile."""
    samples = profile.samples
    with collector_paused():
        stacks = list(map(_SAMPLE_STACK, samples))
        values = list(map(itemgetter(index), map(_SAMPLE_VALUES, samples)))
    return Column(replace(profile, samples=()), index, stacks, values)
