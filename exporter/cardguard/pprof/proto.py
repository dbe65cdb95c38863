"""Read a parsed profile.proto message into a :class:`~cardguard.pprof.model.Profile`.

The message is resolved table by table (strings, functions, mappings,
locations) once, then the samples are built column by column in C: a large
profile holds hundreds of thousands of samples, each a stack of tens of ids.
Every reference is checked; a profile that names a string, function or
location it lacks is refused with what it lacks.

A location without symbols is named after the binary it lies in, as
``go tool pprof -top`` names it; the profile's ``drop_frames``/``keep_frames``
patterns are applied as pprof applies them (:mod:`cardguard.pprof.prune`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import chain, compress, repeat
from operator import add, attrgetter, getitem, itemgetter
from typing import Any, cast

from google.protobuf.message import DecodeError

from cardguard.errors import ProfileError
from cardguard.pprof import profile_pb2
from cardguard.pprof.model import (
    Column,
    Frame,
    Location,
    PackedStacks,
    Profile,
    Sample,
    ValueType,
    collector_paused,
    unsymbolised_name,
)
from cardguard.pprof.prune import prune

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
# Builds a named tuple from one tuple of its fields without the Python-level __new__.
_new_tuple = tuple.__new__

_StringAt = Callable[[int, str], str]
# The tables are read alike from a whole profile and from one whose samples are bytes.
_Message = profile_pb2.Profile | profile_pb2.ProfileHead


def _tables(
    msg: _Message, source: str, gzipped: bool
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
    funcs = list(msg.function)  # each message's wrapper made once, not once per column
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
    msg: _Message,
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
    locs = list(msg.location)  # each message's wrapper made once, not once per column
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
    plain = list(compress(locs, ones))
    rows = zip(
        map(_ID, plain),
        map(_ADDRESS, plain),
        zip(frames),  # each location's frames: a tuple of its one frame
        map(mapping_files.get, map(_MAPPING_ID, plain), repeat("")),
        strict=True,
    )
    built = list(map(_new_tuple, repeat(Location), rows))
    if len(built) == len(locs):
        return dict(zip(map(_ID, built), built, strict=True))
    located = iter(built)
    locations: dict[int, Location] = {}
    for loc, one in zip(locs, ones, strict=True):
        got = next(located) if one else _location(loc, functions, mapping_files, source)
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
    if set(locations).issuperset(chain.from_iterable(stacks)):
        return
    missing = set(chain.from_iterable(stacks)).difference(locations)
    if missing:
        raise ProfileError(source, f"samples refer to missing location {min(missing)}")


def _profile(
    msg: _Message,
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


def convert(msg: profile_pb2.Profile, source: str, gzipped: bool, keep_labels: bool) -> Profile:
    """Build the profile a message holds, every sample with all its values.

    Args:
        gzipped: whether the bytes came gzip-compressed (an error then says
            less about what the input might have been).
        keep_labels: also keep each sample's string labels (slower).

    Raises:
        ProfileError: the message is not a profile, or refers to strings,
            functions or locations it lacks.
    """
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


def stacks_of(
    msg: profile_pb2.Profile, source: str, gzipped: bool
) -> tuple[Profile, list[tuple[int, ...]], list[Any]] | None:
    """Return the profile without its samples, every sample's stack, and its values.

    What one sample type's column needs (:func:`values_of` takes its values
    out of the third item, each sample's repeated value field), with no
    :class:`~cardguard.pprof.model.Sample` built. ``None`` when the profile
    carries ``drop_frames``: pprof's pruning rewrites whole samples, so
    :func:`convert` must build them.

    Raises:
        ProfileError: as :func:`convert`.
    """
    s, sample_types, locations = _tables(msg, source, gzipped)
    samples = list(msg.sample)  # each message's wrapper made once
    with collector_paused():
        stacks = list(map(tuple, map(_LOCATION_IDS, samples)))
        values = list(map(_VALUES, samples))
    _check_samples(source, stacks, map(len, values), len(sample_types), locations)
    if s(msg.drop_frames, "drop_frames"):
        return None
    return _profile(msg, s, source, sample_types, (), locations), stacks, values


def values_of(values: list[Any], index: int) -> list[int]:
    """Return the value at position ``index`` of each sample's values (from :func:`stacks_of`)."""
    with collector_paused():
        return list(map(itemgetter(index), values))


_BYTE0 = itemgetter(0)
_BYTE1 = itemgetter(1)


def packed_column(
    raw: bytes, source: str, gzipped: bool, sample_index: str | None
) -> Column | None:
    """Read one sample type of a profile whose location ids are all below 128, stacks as bytes.

    Such a profile (a few dozen locations, such as a program allocating through
    many paths of a few functions) encodes each stack as one byte per id; the
    samples are read as their encoded bytes
    (:class:`~cardguard.pprof.profile_pb2.ProfileHead`) and each stack taken
    from them as it is (:class:`~cardguard.pprof.model.PackedStacks`), so no
    id becomes a Python object. The rest of each sample (values and labels) is
    parsed once per distinct bytes. What comes out equals
    ``column(convert(msg), sample_index)``.

    ``None`` for any other profile, or one this cannot read the same way
    (larger ids, stacks Go writes unpacked, ``drop_frames``, anything
    refused): :func:`stacks_of` and :func:`convert` read those, and say what
    is wrong.
    """
    try:
        head = profile_pb2.ProfileHead.FromString(raw)
        if len(head.location) >= 128 or max(map(_ID, head.location), default=128) >= 128:
            return None
        s, sample_types, locations = _tables(head, source, gzipped)
        if s(head.drop_frames, "drop_frames"):
            return None
        cut = _cut_stacks(list(head.sample))
        if cut is None:
            return None
        stacks, rests = cut
        ids = b"".join(stacks)
        if not ids.isascii() or ids.translate(None, bytes(locations)):
            return None  # an id of more than one byte, or a location the profile lacks
        values: dict[bytes, tuple[int, ...]] = {}
        for rest in dict.fromkeys(rests):
            sample = profile_pb2.Sample.FromString(rest)
            if sample.location_id or len(sample.value) != len(sample_types):
                return None  # more ids outside the packed ones, or the wrong number of values
            values[rest] = tuple(sample.value)
        prof = _profile(head, s, source, sample_types, (), locations)
        index = prof.value_index(sample_index)
    except (DecodeError, ProfileError):
        return None
    with collector_paused():
        column = list(map(itemgetter(index), map(values.__getitem__, rests)))
    return Column(prof, index, PackedStacks(stacks), column)


def _cut_stacks(samples: list[bytes]) -> tuple[list[bytes], list[bytes]] | None:
    """Cut encoded samples into their stacks' packed ids and the rest of each sample.

    Each sample must hold one packed record of ids (``0x0a``, its length below
    128, the ids), either first (as google/pprof writes samples) or right after
    one packed record of values (as Go's runtime does). ``None`` otherwise.
    Every cut is made in C, sample by sample.
    """
    n = len(samples)
    try:
        firsts = bytes(map(_BYTE0, samples))
        if n and firsts == b"\x0a" * n:
            starts = [0] * n
        elif n and firsts == b"\x12" * n:
            # The values first: their record's length is one byte below 128.
            value_lengths = bytes(map(_BYTE1, samples))
            if not value_lengths.isascii():
                return None
            starts = list(map(add, value_lengths, repeat(2)))
        else:
            return None
        if bytes(map(getitem, samples, starts)) != b"\x0a" * n:
            return None
        lengths = bytes(map(getitem, samples, map(add, starts, repeat(1))))
    except IndexError:
        return None  # a sample shorter than its records
    if not lengths.isascii():
        return None  # more than 127 ids: a length of two bytes
    firsts_id = list(map(add, starts, repeat(2)))
    ends = list(map(add, firsts_id, lengths))
    cut = cast("Callable[[bytes, slice], bytes]", getitem)
    stacks = list(map(cut, samples, map(slice, firsts_id, ends)))
    if sum(map(len, stacks)) != sum(lengths):
        return None  # a sample cut short
    rests = list(
        map(
            add,
            map(cut, samples, map(slice, repeat(0), starts)),
            map(cut, samples, map(slice, ends, repeat(None))),
        )
    )
    return stacks, rests
