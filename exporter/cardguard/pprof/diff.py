"""Write the difference of two pprof profiles as a profile.proto that pprof reads.

``go tool pprof -diff_base OLD NEW`` loads both profiles, labels every sample
of OLD ``pprof::base=true``, negates its values and merges the two; its reports
then measure percentages against the base's total. :func:`diff_profile` writes
that merged profile itself, so ``go tool pprof -top diff.pb.gz`` (or ``-http``)
shows, row for row, what ``-top -diff_base OLD NEW`` shows, and the file can be
kept, attached to a ticket or opened in any tool that reads profile.proto.

Nothing is symbolised, pruned or rescaled: locations, functions and mappings
are copied (equal ones once), so pprof applies NEW's ``drop_frames`` to the
result exactly as it would after its own merge. The header follows pprof's
merge: the earliest time, the summed duration, the largest period, NEW's
sample and period types.

Pure: bytes in, bytes out.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable

from google.protobuf.message import DecodeError

from cardguard.errors import ProfileError
from cardguard.pprof import profile_pb2
from cardguard.pprof.model import DEFAULT_MAX_DECODED_BYTES
from cardguard.pprof.profile import unpack

# The label pprof puts on a diff base's samples (profile.Sample.DiffBaseSample).
BASE_LABEL = ("pprof::base", "true")


def parse_proto(
    data: bytes, source: str, max_bytes: int = DEFAULT_MAX_DECODED_BYTES
) -> profile_pb2.Profile:
    """Parse gzip-compressed or raw profile.proto bytes into the protobuf message.

    Raises:
        ProfileError: not a profile.proto (legacy text formats included: a
            diff written for pprof needs the proto's locations and mappings).
    """
    if not data:
        raise ProfileError(source, "empty profile")
    raw = unpack(data, source, max_bytes)
    msg = profile_pb2.Profile()
    try:
        msg.ParseFromString(raw)
    except DecodeError as exc:
        raise ProfileError(source, f"not a profile.proto: {exc}") from exc
    if not msg.string_table or msg.string_table[0] != "" or not msg.sample_type:
        raise ProfileError(source, "not a profile.proto (fetch the profile with debug=0)")
    return msg


class _Merger:
    """Copy profiles into one message, keeping each distinct string, mapping, function once."""

    def __init__(self) -> None:
        self.out = profile_pb2.Profile()
        self.strings: dict[str, int] = {}
        self.mappings: dict[tuple[object, ...], int] = {}
        self.functions: dict[tuple[object, ...], int] = {}
        self.locations: dict[tuple[object, ...], int] = {}
        self.string("")

    def string(self, s: str) -> int:
        i = self.strings.get(s)
        if i is None:
            i = self.strings[s] = len(self.out.string_table)
            self.out.string_table.append(s)
        return i

    def add(self, src: profile_pb2.Profile, source: str, base: bool) -> None:
        table = list(src.string_table)

        def s(i: int) -> int:
            if not 0 <= i < len(table):
                raise ProfileError(source, f"refers to string {i}, table has {len(table)}")
            return self.string(table[i])

        mapping_ids: dict[int, int] = {0: 0}
        for m in src.mapping:
            key: tuple[object, ...] = (
                m.memory_start,
                m.memory_limit,
                m.file_offset,
                s(m.filename),
                s(m.build_id),
                m.has_functions,
                m.has_filenames,
                m.has_line_numbers,
                m.has_inline_frames,
            )
            new_id = self.mappings.get(key)
            if new_id is None:
                new_id = self.mappings[key] = len(self.out.mapping) + 1
                self.out.mapping.add(
                    id=new_id,
                    memory_start=m.memory_start,
                    memory_limit=m.memory_limit,
                    file_offset=m.file_offset,
                    filename=s(m.filename),
                    build_id=s(m.build_id),
                    has_functions=m.has_functions,
                    has_filenames=m.has_filenames,
                    has_line_numbers=m.has_line_numbers,
                    has_inline_frames=m.has_inline_frames,
                )
            mapping_ids[m.id] = new_id
        function_ids: dict[int, int] = {0: 0}
        for f in src.function:
            key = (s(f.name), s(f.system_name), s(f.filename), f.start_line)
            new_id = self.functions.get(key)
            if new_id is None:
                new_id = self.functions[key] = len(self.out.function) + 1
                self.out.function.add(
                    id=new_id,
                    name=key[0],
                    system_name=key[1],
                    filename=key[2],
                    start_line=f.start_line,
                )
            function_ids[f.id] = new_id
        location_ids: dict[int, int] = {}
        for loc in src.location:
            try:
                mapping_id = mapping_ids[loc.mapping_id]
                lines = tuple((function_ids[ln.function_id], ln.line, ln.column) for ln in loc.line)
            except KeyError as exc:
                raise ProfileError(
                    source, f"location {loc.id} refers to a missing mapping or function {exc}"
                ) from None
            key = (mapping_id, loc.address, lines, loc.is_folded)
            new_id = self.locations.get(key)
            if new_id is None:
                new_id = self.locations[key] = len(self.out.location) + 1
                new = self.out.location.add(
                    id=new_id, mapping_id=mapping_id, address=loc.address, is_folded=loc.is_folded
                )
                for fid, line, column in lines:
                    new.line.add(function_id=fid, line=line, column=column)
            location_ids[loc.id] = new_id
        base_key, base_value = (self.string(x) for x in BASE_LABEL)
        for smp in src.sample:
            if not any(smp.value):
                continue  # pprof's merge drops samples that weigh nothing
            try:
                stack = [location_ids[lid] for lid in smp.location_id]
            except KeyError as exc:
                raise ProfileError(source, f"sample refers to missing location {exc}") from None
            new_sample = self.out.sample.add(
                location_id=stack, value=[-v for v in smp.value] if base else list(smp.value)
            )
            for lb in smp.label:
                key_id = s(lb.key)
                if base and key_id == base_key and lb.str:
                    continue  # pprof's SetLabel replaces any earlier value
                new_sample.label.add(key=key_id, str=s(lb.str), num=lb.num, num_unit=s(lb.num_unit))
            if base:
                new_sample.label.add(key=base_key, str=base_value)


def _string(msg: profile_pb2.Profile, i: int, source: str) -> str:
    if not 0 <= i < len(msg.string_table):
        raise ProfileError(source, f"refers to string {i}, table has {len(msg.string_table)}")
    return msg.string_table[i]


def _types(msg: profile_pb2.Profile, source: str) -> list[tuple[str, str]]:
    return [(_string(msg, v.type, source), _string(msg, v.unit, source)) for v in msg.sample_type]


def _first(values: Iterable[str]) -> str:
    return next((v for v in values if v), "")


def diff_profile(
    base: bytes,
    new: bytes,
    base_source: str = "base",
    new_source: str = "new",
    max_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> bytes:
    """Return gzipped profile.proto bytes of ``new`` minus ``base``, as pprof's ``-diff_base``.

    Raises:
        ProfileError: either input is not a profile.proto, or their sample
            types differ (pprof refuses to merge those too).
    """
    b = parse_proto(base, base_source, max_bytes)
    n = parse_proto(new, new_source, max_bytes)
    if _types(b, base_source) != _types(n, new_source):
        show = ", ".join(f"{t}/{u}" for t, u in _types(b, base_source))
        raise ProfileError(
            base_source,
            f"sample types {show} differ from {new_source}'s; compare profiles of one kind",
        )
    m = _Merger()
    m.add(n, new_source, base=False)
    m.add(b, base_source, base=True)
    out = m.out

    def nt(i: int) -> int:
        return m.string(_string(n, i, new_source))

    for vt in n.sample_type:
        out.sample_type.add(type=nt(vt.type), unit=nt(vt.unit))
    if n.HasField("period_type"):
        out.period_type.type = nt(n.period_type.type)
        out.period_type.unit = nt(n.period_type.unit)
    out.drop_frames = nt(n.drop_frames)
    out.keep_frames = nt(n.keep_frames)
    time_nanos = 0
    for p in (n, b):
        if time_nanos == 0 or p.time_nanos < time_nanos:
            time_nanos = p.time_nanos
    out.time_nanos = time_nanos
    out.duration_nanos = n.duration_nanos + b.duration_nanos
    out.period = max(n.period, b.period)
    seen: set[str] = set()
    sources = ((n, new_source), (b, base_source))
    for p, where in sources:
        for c in p.comment:
            text = _string(p, c, where)
            if text not in seen:
                seen.add(text)
                out.comment.append(m.string(text))
    default = _first(_string(p, p.default_sample_type, where) for p, where in sources)
    if default:
        out.default_sample_type = m.string(default)
    doc = _first(_string(p, p.doc_url, where) for p, where in sources)
    if doc:
        out.doc_url = m.string(doc)
    return gzip.compress(out.SerializeToString(), mtime=0)


__all__ = ["BASE_LABEL", "diff_profile", "parse_proto"]
