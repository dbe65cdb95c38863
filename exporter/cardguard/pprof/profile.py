"""Decode pprof ``profile.proto`` data (gzip-compressed or raw) into plain objects.

The decoded :class:`Profile` keeps what analysis needs: sample types, every
sample's stack (location ids, leaf first) and values, and each location's
frames. A location holds several frames when the compiler inlined calls into
it; the first frame is the innermost (the leaf), as in the pprof format.

Go writes heap values already scaled up for sampling (the runtime unsamples
before encoding), so nothing here rescales values.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

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


@dataclass(frozen=True, slots=True)
class Frame:
    """One function call site: a Line entry of a location."""

    function: str
    filename: str
    line: int


@dataclass(frozen=True, slots=True)
class Location:
    """A program counter and the frames it stands for, innermost (leaf) first."""

    id: int
    address: int
    frames: tuple[Frame, ...]


class Sample(NamedTuple):
    """One sample: its stack as location ids (leaf first) and one value per sample type.

    ``labels`` holds string labels (pprof.Do labels on goroutines) and is
    filled only when decoding with ``keep_labels=True``; numeric labels such
    as the heap profile's ``bytes`` are never kept. A named tuple because a
    profile can hold hundreds of thousands of samples.
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


def decode(
    data: bytes,
    source: str,
    max_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    keep_labels: bool = False,
) -> Profile:
    """Decode a pprof profile from gzip-compressed or raw protobuf bytes.

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
    except DecodeError as exc:
        what = "profile.proto" if gzipped else "gzip-compressed or raw profile.proto"
        raise ProfileError(source, f"not a valid {what}: {exc}") from exc
    return _convert(msg, source, gzipped, keep_labels)


def _convert(msg: profile_pb2.Profile, source: str, gzipped: bool, keep_labels: bool) -> Profile:
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
    nvalues = len(sample_types)

    functions: dict[int, tuple[str, str]] = {}
    for f in msg.function:
        functions[f.id] = (s(f.name, "function name"), s(f.filename, "function filename"))

    locations: dict[int, Location] = {}
    for loc in msg.location:
        frames = []
        for ln in loc.line:
            fn = functions.get(ln.function_id)
            if fn is None:
                raise ProfileError(
                    source, f"location {loc.id} refers to missing function {ln.function_id}"
                )
            frames.append(Frame(fn[0], fn[1], ln.line))
        if not frames:
            # Unsymbolized: pprof shows the address in place of a name.
            frames.append(Frame(f"{loc.address:#x}", "", 0))
        locations[loc.id] = Location(loc.id, loc.address, tuple(frames))

    if keep_labels:
        samples = [
            Sample(
                tuple(smp.location_id),
                tuple(smp.value),
                tuple((s(lb.key, "label"), s(lb.str, "label")) for lb in smp.label if lb.str),
            )
            for smp in msg.sample
        ]
    else:
        samples = [Sample(tuple(smp.location_id), tuple(smp.value)) for smp in msg.sample]
    for smp2 in samples:
        if len(smp2.values) != nvalues:
            raise ProfileError(
                source, f"sample has {len(smp2.values)} values, profile has {nvalues} sample types"
            )
    missing = set().union(*[smp2.stack for smp2 in samples]).difference(locations)
    if missing:
        raise ProfileError(source, f"samples refer to missing location {min(missing)}")

    period_type = None
    if msg.HasField("period_type"):
        period_type = ValueType(
            s(msg.period_type.type, "period_type"), s(msg.period_type.unit, "period_type")
        )
    default = s(msg.default_sample_type, "default_sample_type") or None
    return Profile(
        source=source,
        sample_types=sample_types,
        samples=tuple(samples),
        locations=locations,
        default_sample_type=default,
        period_type=period_type,
        period=msg.period,
        time_nanos=msg.time_nanos,
        duration_nanos=msg.duration_nanos,
        comments=tuple(s(c, "comment") for c in msg.comment),
    )
