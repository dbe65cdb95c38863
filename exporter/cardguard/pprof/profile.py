"""Decode pprof profiles (``profile.proto``, gzip-compressed or raw, or a legacy format).

The decoded :class:`Profile` keeps what analysis needs: sample types, every
sample's stack (location ids, leaf first) and values, and each location's
frames. A location holds several frames when the compiler inlined calls into
it; the first frame is the innermost (the leaf), as in the pprof format.

What ``go tool pprof`` reads besides profile.proto (Go's ``debug=1`` heap,
count and contention text, old binary CPU profiles) is read by
:mod:`cardguard.pprof.legacy` into the same :class:`Profile`; :func:`decode`
tries it when the input is not a profile.proto.

Two things follow ``go tool pprof`` so that figures match its ``-top``:

- a location without symbols is named after the binary it lies in,
  ``[libc.so.6]``, or ``<unknown>`` when no mapping names one; pprof folds
  unsymbolised addresses of one binary into one node at its default
  (function) granularity, and so does every analysis here;
- the profile's ``drop_frames``/``keep_frames`` patterns are applied as
  pprof applies them (legacy heap profiles carry pprof's pattern for Go's
  allocation frames).

Go writes heap values already scaled up for sampling (the runtime unsamples
before encoding), so nothing here rescales proto values.
"""

from __future__ import annotations

import gc
import posixpath
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import chain, compress, repeat
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, cast

from google.protobuf.message import DecodeError

from cardguard.errors import ProfileError
from cardguard.pprof import profile_pb2

# A heap or goroutine profile of a large service is a few MB decompressed;
# anything far beyond this is a mistake or an attack (gzip bomb).
DEFAULT_MAX_DECODED_BYTES = 256 * 1024 * 1024

GZIP_MAGIC = b"\x1f\x8b"


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
    """A decoded pprof profile."""

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


_LOCATION_IDS = attrgetter("location_id")
_VALUES = attrgetter("value")
_LINES = attrgetter("line")
_LINE = attrgetter("line")  # of a Line message: the line number
_FUNCTION_ID = attrgetter("function_id")
_ID = attrgetter("id")
_NAME = attrgetter("name")
_FILENAME = attrgetter("filename")
_ADDRESS = attrgetter("address")
_MAPPING_ID = attrgetter("mapping_id")
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_SAMPLE_STACK = itemgetter(0)  # Sample.stack, without the named tuple's property
_SAMPLE_VALUES = itemgetter(1)  # Sample.values
# Builds a named tuple from one tuple of its fields without the Python-level __new__.
_new_tuple = tuple.__new__


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


def decompress(data: bytes, source: str, max_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> bytes:
    """Gunzip ``data`` (all members), refusing output larger than ``max_bytes``.

    Raises:
        ProfileError: corrupt or truncated gzip data, or output past the limit.
    """
    out: list[bytes] = []
    size = 0
    rest = data
    while rest:
        d = zlib.decompressobj(wbits=31)
        try:
            chunk = d.decompress(rest, max_bytes - size + 1)
        except zlib.error as exc:
            raise ProfileError(source, f"corrupt gzip data: {exc}") from exc
        size += len(chunk)
        if size > max_bytes or d.unconsumed_tail:
            raise ProfileError(
                source,
                f"decompressed profile exceeds the limit of {max_bytes} bytes "
                f"(compressed size {len(data)} bytes)",
            )
        out.append(chunk)
        if not d.eof:
            raise ProfileError(source, "truncated gzip data (stream ends early)")
        rest = d.unused_data
        # Padding after the last member is tolerated, as gzip(1) does.
        if rest and not rest.startswith(GZIP_MAGIC):
            break
    return b"".join(out)


def unsymbolised_name(mapping_file: str) -> str:
    """Name a location without symbols as ``go tool pprof -top`` does.

    ``[base name of the binary]``, or ``<unknown>`` when no mapping names one.
    """
    base = posixpath.basename(mapping_file.rstrip("/")) if mapping_file else ""
    if not base and mapping_file:
        base = "/"
    return f"[{base}]" if base else "<unknown>"


def decode(
    data: bytes,
    source: str,
    max_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    keep_labels: bool = False,
) -> Profile:
    """Decode a pprof profile from gzip-compressed or raw bytes.

    profile.proto first; when the input is not one, the legacy formats
    ``go tool pprof`` also reads (:mod:`cardguard.pprof.legacy`).

    Args:
        data: the body of e.g. ``/debug/pprof/heap`` or a ``.pb.gz`` file.
        source: what the bytes came from (file path or URL), used in errors.
        max_bytes: refuse profiles larger than this once decompressed.
        keep_labels: also keep each sample's string labels (slower).

    Raises:
        ProfileError: the data is empty, corrupt, truncated, too large, not a
            profile, or refers to locations/functions/strings it lacks.
    """
    if not data:
        raise ProfileError(source, "empty profile")
    gzipped = data.startswith(GZIP_MAGIC)
    if gzipped:
        raw = decompress(data, source, max_bytes)
    else:
        if len(data) > max_bytes:
            raise ProfileError(source, f"profile exceeds the limit of {max_bytes} bytes")
        raw = data
    msg = profile_pb2.Profile()
    try:
        msg.ParseFromString(raw)
        return _convert(msg, source, gzipped, keep_labels)
    except (DecodeError, ProfileError) as exc:
        # Imported here: legacy builds this module's types.
        from cardguard.pprof.legacy import parse as parse_legacy

        prof = parse_legacy(raw, source)
        if prof is not None:
            return prof
        if isinstance(exc, ProfileError):
            raise
        what = "profile.proto" if gzipped else "gzip-compressed or raw profile.proto"
        raise ProfileError(
            source, f"not a valid {what} nor a legacy profile pprof reads: {exc}"
        ) from exc


_StringAt = Callable[[int, str], str]


def _tables(
    msg: profile_pb2.Profile, source: str, gzipped: bool
) -> tuple[_StringAt, tuple[ValueType, ...], dict[int, Location]]:
    """Check the string table; resolve sample types, functions, mappings and locations once."""
    strings = list(msg.string_table)
    if not strings or strings[0] != "":
        hint = "" if gzipped else " (input is neither gzip nor a raw profile)"
        raise ProfileError(source, f"not a pprof profile: string table must start with ''{hint}")
    nstr = len(strings)

    def s(i: int, what: str) -> str:
        if 0 <= i < nstr:
            return strings[i]
        raise ProfileError(source, f"{what} refers to string {i}, table has {nstr}")

    sample_types = tuple(
        ValueType(s(v.type, "sample_type"), s(v.unit, "sample_type")) for v in msg.sample_type
    )
    if not sample_types:
        raise ProfileError(source, "not a pprof profile: no sample types")

    functions = _functions(msg, strings)
    if functions is None:
        functions = {}
        for f in msg.function:
            functions[f.id] = (s(f.name, "function name"), s(f.filename, "function filename"))
    mapping_files = {m.id: s(m.filename, "mapping filename") for m in msg.mapping}

    return s, sample_types, _locations(msg, functions, mapping_files, source)


def _functions(msg: Any, strings: list[str]) -> dict[int, tuple[str, str]] | None:
    """Each function's (name, file) by id, column by column in C; None if a string is missing.

    The loop in :func:`_tables` then says which.
    """
    funcs = msg.function
    name_ids = list(map(_NAME, funcs))
    file_ids = list(map(_FILENAME, funcs))
    if not funcs or min(min(name_ids), min(file_ids)) < 0:
        return None if funcs else {}
    if max(max(name_ids), max(file_ids)) >= len(strings):
        return None
    at = strings.__getitem__
    return dict(
        zip(map(_ID, funcs), zip(map(at, name_ids), map(at, file_ids), strict=True), strict=True)
    )


def _location(
    loc: Any,
    functions: Mapping[int, tuple[str, str]],
    mapping_files: Mapping[int, str],
    source: str,
) -> Location:
    """Build one location from its Line entries (inlined calls give several frames)."""
    file = mapping_files.get(loc.mapping_id, "")
    frames = []
    for ln in loc.line:
        fn = functions.get(ln.function_id)
        if fn is None:
            if ln.function_id == 0:
                continue  # a line without a function names nothing
            raise ProfileError(
                source, f"location {loc.id} refers to missing function {ln.function_id}"
            )
        frames.append(_new_tuple(Frame, (fn[0] or unsymbolised_name(file), fn[1], ln.line)))
    if not frames:
        frames.append(Frame(unsymbolised_name(file), "", 0))
    return _new_tuple(Location, (loc.id, loc.address, tuple(frames), file))


def _locations(
    msg: profile_pb2.Profile,
    functions: Mapping[int, tuple[str, str]],
    mapping_files: Mapping[int, str],
    source: str,
) -> dict[int, Location]:
    """Build every location, by id; the plain ones column by column, in C.

    Plain: one Line naming a function that has a name, as nearly every
    location of a Go profile is (tens of thousands in a large one). The
    others, and every location of a profile with a fault, go one by one
    through :func:`_location`, which says what is wrong.
    """
    locs = msg.location
    lines = list(map(_LINES, locs))
    ones = list(map((1).__eq__, map(len, lines)))
    first = list(map(_FIRST, compress(lines, ones)))
    named = list(map(functions.get, map(_FUNCTION_ID, first)))
    if None in named or "" in set(map(_FIRST, cast("list[tuple[str, str]]", named))):
        return {loc.id: _location(loc, functions, mapping_files, source) for loc in locs}
    fns = cast("list[tuple[str, str]]", named)
    frames = map(
        _new_tuple,
        repeat(Frame),
        zip(map(_FIRST, fns), map(_SECOND, fns), map(_LINE, first), strict=True),
    )
    plain = compress(locs, ones)
    rows = zip(
        map(_ID, plain),
        map(_ADDRESS, compress(locs, ones)),
        zip(frames),  # each location's frames: a tuple of its one frame
        map(mapping_files.get, map(_MAPPING_ID, compress(locs, ones)), repeat("")),
        strict=True,
    )
    built = iter(list(map(_new_tuple, repeat(Location), rows)))
    locations: dict[int, Location] = {}
    for loc, one in zip(locs, ones, strict=True):
        got = next(built) if one else _location(loc, functions, mapping_files, source)
        locations[got.id] = got
    return locations


def _check_samples(
    source: str,
    stacks: list[tuple[int, ...]],
    arities: Iterable[int],
    nvalues: int,
    locations: Mapping[int, Location],
) -> None:
    """Refuse samples with the wrong number of values or a location the profile lacks."""
    arity = list(arities)
    if set(arity) - {nvalues}:
        bad = next(n for n in arity if n != nvalues)
        raise ProfileError(source, f"sample has {bad} values, profile has {nvalues} sample types")
    missing = set(chain.from_iterable(stacks)).difference(locations)
    if missing:
        raise ProfileError(source, f"samples refer to missing location {min(missing)}")


def _profile(
    msg: profile_pb2.Profile,
    s: _StringAt,
    source: str,
    sample_types: tuple[ValueType, ...],
    samples: tuple[Sample, ...],
    locations: Mapping[int, Location],
) -> Profile:
    period_type = None
    if msg.HasField("period_type"):
        period_type = ValueType(
            s(msg.period_type.type, "period_type"), s(msg.period_type.unit, "period_type")
        )
    default = s(msg.default_sample_type, "default_sample_type") or None
    return Profile(
        source=source,
        sample_types=sample_types,
        samples=samples,
        locations=locations,
        default_sample_type=default,
        period_type=period_type,
        period=msg.period,
        time_nanos=msg.time_nanos,
        duration_nanos=msg.duration_nanos,
        comments=tuple(s(c, "comment") for c in msg.comment),
    )


def _convert(msg: profile_pb2.Profile, source: str, gzipped: bool, keep_labels: bool) -> Profile:
    s, sample_types, locations = _tables(msg, source, gzipped)
    # Samples are the bulk of a profile (hundreds of thousands, each a stack of
    # tens of ids): built with C-level iteration only, and without the cyclic
    # collector rescanning the millions of new tuples on the way.
    with collector_paused():
        stacks = list(map(tuple, map(_LOCATION_IDS, msg.sample)))
        values = list(map(tuple, map(_VALUES, msg.sample)))
        if keep_labels:
            labels = [
                tuple(
                    (s(lb.key, "label"), s(lb.str, "label"))
                    for lb in smp.label
                    if lb.str or not (lb.num or lb.num_unit)
                )
                for smp in msg.sample
            ]
            samples = list(
                map(_new_tuple, repeat(Sample), zip(stacks, values, labels, strict=True))
            )
        else:
            samples = list(map(_new_tuple, repeat(Sample), zip(stacks, values, repeat(()))))
    _check_samples(source, stacks, map(len, values), len(sample_types), locations)
    del stacks, values

    drop = s(msg.drop_frames, "drop_frames")
    if drop:
        samples, locations = prune(samples, locations, drop, s(msg.keep_frames, "keep_frames"))
    return _profile(msg, s, source, sample_types, tuple(samples), locations)


@dataclass(frozen=True)
class Column:
    """One sample type of a profile, sample by sample: each stack and its value.

    ``profile`` holds everything else (sample types, locations, period...) and
    no samples; ``stacks[i]`` (location ids, leaf first) weighs ``values[i]``
    in sample type ``index``.
    """

    profile: Profile
    index: int
    stacks: list[tuple[int, ...]]
    values: list[int]


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


def decode_column(
    data: bytes,
    source: str,
    sample_index: str | None = None,
    max_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> Column:
    """Decode one sample type of a profile: what ``column(decode(data), sample_index)`` gives.

    In one pass over the samples, with no :class:`Sample` (nor the other
    sample types' values) built for each: what an analysis of one value, such
    as a heap top, needs of a large profile. Reads the same inputs and refuses
    them with the same errors as :func:`decode`.
    """
    if not data:
        raise ProfileError(source, "empty profile")
    gzipped = data.startswith(GZIP_MAGIC)
    if gzipped:
        raw = decompress(data, source, max_bytes)
    else:
        if len(data) > max_bytes:
            raise ProfileError(source, f"profile exceeds the limit of {max_bytes} bytes")
        raw = data
    msg = profile_pb2.Profile()
    try:
        msg.ParseFromString(raw)
        s, sample_types, locations = _tables(msg, source, gzipped)
        with collector_paused():
            stacks = list(map(tuple, map(_LOCATION_IDS, msg.sample)))
        _check_samples(
            source, stacks, map(len, map(_VALUES, msg.sample)), len(sample_types), locations
        )
        if s(msg.drop_frames, "drop_frames"):
            # pprof's frame pruning rewrites whole samples: take the usual path.
            return column(_convert(msg, source, gzipped, False), sample_index)
        head = _profile(msg, s, source, sample_types, (), locations)
    except (DecodeError, ProfileError):
        # Not a profile.proto: decode() says what it is or why it is refused.
        return column(decode(data, source, max_bytes), sample_index)
    index = head.value_index(sample_index)
    with collector_paused():
        values = list(map(itemgetter(index), map(_VALUES, msg.sample)))
    return Column(head, index, stacks, values)


# pprof compares a frame's function name with drop_frames/keep_frames after
# cutting it at its first "(", except where the "(" begins one of these.
_RESERVED_PARENS = re.compile(r"\(anonymous namespace\)|operator\(\)|\(")


def _simplify(name: str) -> str:
    name = name.removeprefix(".")
    for m in _RESERVED_PARENS.finditer(name):
        if m.group(0) == "(":
            return name[: m.start()]
    return name


def prune(
    samples: Sequence[Sample], locations: Mapping[int, Location], drop: str, keep: str = ""
) -> tuple[list[Sample], dict[int, Location]]:
    """Remove what pprof calls uninteresting frames: those matching ``drop`` and what they called.

    ``drop`` and ``keep`` are a profile's ``drop_frames``/``keep_frames``
    patterns, matched against whole (simplified) function names. Scanning
    each stack from its root, the first location with a dropped frame below
    a location without one is cut, with everything it called; so a stack
    that starts in dropped frames keeps them. Inside a location, the
    dropped frame and the frames inlined into it go. Patterns that do not
    compile are ignored, as pprof ignores them.
    """
    try:
        drop_rx = re.compile(f"^(?:{drop})$")
        keep_rx = re.compile(f"^(?:{keep})$") if keep else None
    except re.error:
        return list(samples), dict(locations)
    cache: dict[str, bool] = {}

    def dropped(name: str) -> bool:
        hit = cache.get(name)
        if hit is None:
            simple = _simplify(name)
            hit = cache[name] = bool(drop_rx.match(simple)) and not (
                keep_rx is not None and keep_rx.match(simple)
            )
        return hit

    whole: set[int] = set()  # locations to remove entirely
    beneath: set[int] = set()  # locations below which the stack is cut
    out_locations: dict[int, Location] = {}
    for lid, loc in locations.items():
        frames = loc.frames
        for i in range(len(frames) - 1, -1, -1):
            if not _is_unnamed(frames[i]) and dropped(frames[i].function):
                beneath.add(lid)
                if i == len(frames) - 1:
                    whole.add(lid)
                else:
                    loc = Location(loc.id, loc.address, frames[i + 1 :], loc.mapping)
                break
        out_locations[lid] = loc
    if not beneath:
        return list(samples), out_locations
    out: list[Sample] = []
    for smp in samples:
        stack = smp.stack
        found_user = False
        for i in range(len(stack) - 1, -1, -1):
            lid = stack[i]
            if lid not in beneath:
                found_user = True
                continue
            if not found_user:
                continue
            stack = stack[i + 1 :] if lid in whole else stack[i:]
            break
        out.append(smp if stack is smp.stack else smp._replace(stack=stack))
    return out, out_locations


def _is_unnamed(frame: Frame) -> bool:
    """Return whether ``frame`` stands for an address without a function name."""
    name = frame.function
    return not frame.filename and (name == "<unknown>" or (name[:1] == "[" and name[-1:] == "]"))
