"""Decode a pprof profile from bytes: profile.proto, gzip-compressed or raw, or a legacy format.

The one entry point for profile bytes. It inflates gzip within a limit
(:mod:`cardguard.gunzip`), reads a profile.proto (:mod:`cardguard.pprof.proto`)
and, when the input is not one, what ``go tool pprof`` also reads: Go's
``debug=1`` heap, count and contention text and old binary CPU profiles
(:mod:`cardguard.pprof.legacy`). Either way the result is a
:class:`~cardguard.pprof.model.Profile` whose figures match ``go tool pprof``'s
``-top``.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from cardguard.errors import ProfileError
from cardguard.gunzip import MAGIC, GzipError, gunzip
from cardguard.pprof import profile_pb2, proto
from cardguard.pprof.model import DEFAULT_MAX_DECODED_BYTES, Column, Profile, column


def unpack(data: bytes, source: str, max_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> bytes:
    """Return a profile's bytes: inflated when gzip-compressed (every member), else as they are.

    Raises:
        ProfileError: corrupt or truncated gzip data, or more than
            ``max_bytes`` once inflated.
    """
    if not data.startswith(MAGIC):
        if len(data) > max_bytes:
            raise ProfileError(source, f"profile exceeds the limit of {max_bytes} bytes")
        return data
    try:
        return gunzip(data, max_bytes)
    except GzipError as exc:
        if exc.reason == "too_large":
            raise ProfileError(
                source,
                f"decompressed profile exceeds the limit of {max_bytes} bytes "
                f"(compressed size {len(data)} bytes)",
            ) from None
        raise ProfileError(source, exc.message) from None  # corrupt or truncated gzip data


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
    gzipped = data.startswith(MAGIC)
    raw = unpack(data, source, max_bytes)
    msg = profile_pb2.Profile()
    try:
        msg.ParseFromString(raw)
        return proto.convert(msg, source, gzipped, keep_labels)
    except (DecodeError, ProfileError) as exc:
        # Imported here: the legacy readers compile their patterns at import, which
        # every command would pay at start-up, though nearly every input is a proto.
        from cardguard.pprof import legacy

        prof = legacy.parse(raw, source)
        if prof is not None:
            return prof
        if isinstance(exc, ProfileError):
            raise
        what = "profile.proto" if gzipped else "gzip-compressed or raw profile.proto"
        raise ProfileError(
            source, f"not a valid {what} nor a legacy profile pprof reads: {exc}"
        ) from exc


def decode_column(
    data: bytes,
    source: str,
    sample_index: str | None = None,
    max_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> Column:
    """Decode one sample type of a profile: what ``column(decode(data), sample_index)`` gives.

    In one pass over the samples, with no :class:`~cardguard.pprof.model.Sample`
    (nor the other sample types' values) built for each: what an analysis of
    one value, such as a heap top, needs of a large profile. Reads the same
    inputs and refuses them with the same errors as :func:`decode`.
    """
    if not data:
        raise ProfileError(source, "empty profile")
    gzipped = data.startswith(MAGIC)
    raw = unpack(data, source, max_bytes)
    packed = proto.packed_column(raw, source, gzipped, sample_index)
    if packed is not None:
        return packed
    msg = profile_pb2.Profile()
    try:
        msg.ParseFromString(raw)
        got = proto.stacks_of(msg, source, gzipped)
        if got is None:
            # pprof's frame pruning rewrites whole samples: take the usual path.
            return column(proto.convert(msg, source, gzipped, False), sample_index)
    except (DecodeError, ProfileError):
        # Not a profile.proto: decode() says what it is or why it is refused.
        return column(decode(data, source, max_bytes), sample_index)
    head, stacks, values = got
    index = head.value_index(sample_index)
    return Column(head, index, stacks, proto.values_of(values, index))
