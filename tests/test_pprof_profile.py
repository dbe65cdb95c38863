"""Decoding pprof profiles recorded from real Go processes, and refusing bad ones."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

from cardguard.errors import ProfileError
from cardguard.pprof import profile, profile_pb2
from pprof_support import version_dirs, version_ids
from support import TESTDATA


@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_heap_profile_decodes(vdir: Path) -> None:
    path = vdir / "heap.pb.gz"
    prof = profile.decode(path.read_bytes(), str(path))
    assert [(t.type, t.unit) for t in prof.sample_types] == [
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ]
    assert prof.period_type is not None and prof.period_type.type == "space"
    assert prof.period == 4096  # the demo ran with -mem-profile-rate=4096
    assert prof.samples and all(len(s.values) == 4 for s in prof.samples)
    assert all(lid in prof.locations for s in prof.samples for lid in s.stack)
    assert prof.time_nanos > 0
    # Without -sample_index pprof shows the last type for Go heap profiles.
    assert prof.sample_types[prof.value_index(None)].type == "inuse_space"
    assert prof.value_index("1") == 1


@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_goroutine_profile_decodes(vdir: Path) -> None:
    path = vdir / "goroutine.pb.gz"
    prof = profile.decode(path.read_bytes(), str(path))
    assert [(t.type, t.unit) for t in prof.sample_types] == [("goroutine", "count")]
    header = (vdir / "goroutine.debug1.txt").read_text().splitlines()[0]
    # Same process state, fetched one after the other: same total as Go printed.
    assert prof.total() == int(header.rsplit(" ", 1)[1])


def test_raw_uncompressed_profile_decodes() -> None:
    path = version_dirs()[0] / "heap.pb.gz"
    raw = gzip.decompress(path.read_bytes())
    a = profile.decode(raw, "raw")
    b = profile.decode(path.read_bytes(), "gz")
    assert a.samples == b.samples and a.sample_types == b.sample_types


def _heap_bytes() -> bytes:
    return (version_dirs()[0] / "heap.pb.gz").read_bytes()


def test_truncated_gzip_names_the_source() -> None:
    data = _heap_bytes()
    with pytest.raises(ProfileError, match=r"^cut\.pb\.gz: truncated gzip data") as exc:
        profile.decode(data[: len(data) // 2], "cut.pb.gz")
    assert exc.value.source == "cut.pb.gz"


def test_corrupt_gzip_names_the_source() -> None:
    data = bytearray(_heap_bytes())
    for i in range(40, 80):
        data[i] ^= 0x5A
    with pytest.raises(ProfileError, match=r"^bad\.pb\.gz: (corrupt gzip data|not a valid)"):
        profile.decode(bytes(data), "bad.pb.gz")


def test_non_gzip_text_is_refused() -> None:
    # Go's debug=1 text is a legacy profile pprof reads (tests/test_legacy_profiles.py);
    # an HTML page is neither that nor a profile.proto.
    text = b"<html><body>404 page not found</body></html>\n"
    with pytest.raises(ProfileError, match=r"^page\.html: not a .*nor a legacy profile"):
        profile.decode(text, "page.html")


def test_gzip_of_something_else_is_refused() -> None:
    with pytest.raises(ProfileError, match=r"^x: not a"):
        profile.decode(gzip.compress(b"<html>404 page not found</html>"), "x")


def test_empty_input_is_refused() -> None:
    with pytest.raises(ProfileError, match=r"^empty: empty profile"):
        profile.decode(b"", "empty")


def _bomb(size: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [c.compress(block) for _ in range(size >> 20)]
    parts.append(c.flush())
    return b"".join(parts)


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = _bomb(64 << 20)
    assert len(bomb) < 100_000
    with pytest.raises(ProfileError, match=r"^bomb: decompressed profile exceeds the limit"):
        profile.decode(bomb, "bomb", max_bytes=8 << 20)


def test_default_limit_refuses_a_multi_member_bomb_past_it() -> None:
    # gzip members concatenate: 1 MiB of zeros repeated past the default limit.
    member = _bomb(1 << 20)
    bomb = member * ((profile.DEFAULT_MAX_DECODED_BYTES >> 20) + 1)
    assert len(bomb) < 1_000_000
    with pytest.raises(ProfileError, match=r"^bomb: decompressed profile exceeds the limit"):
        profile.decode(bomb, "bomb")


def test_dangling_references_are_refused() -> None:
    msg = profile_pb2.Profile()
    msg.string_table.extend(["", "inuse_space", "bytes"])
    msg.sample_type.add(type=1, unit=2)
    msg.sample.add(location_id=[7], value=[10])
    with pytest.raises(ProfileError, match="missing location 7"):
        profile.decode(msg.SerializeToString(), "dangling")
    msg.sample_type[0].unit = 99
    with pytest.raises(ProfileError, match="refers to string 99"):
        profile.decode(msg.SerializeToString(), "dangling")


def test_value_count_mismatch_is_refused() -> None:
    msg = profile_pb2.Profile()
    msg.string_table.extend(["", "inuse_space", "bytes"])
    msg.sample_type.add(type=1, unit=2)
    msg.sample.add(location_id=[], value=[1, 2])
    with pytest.raises(ProfileError, match="2 values, profile has 1 sample types"):
        profile.decode(msg.SerializeToString(), "mismatch")


@pytest.mark.parametrize("vdir", version_dirs(), ids=version_ids())
def test_profiler_labels_are_kept_on_request(vdir: Path) -> None:
    path = vdir / "goroutine.pb.gz"
    data = path.read_bytes()
    labelled = profile.decode(data, str(path), keep_labels=True)
    tagged = [s for s in labelled.samples if s.labels]
    # The demo's pollers run under pprof.Do(..., Labels("feature", "subscriptions")).
    assert tagged and {s.labels for s in tagged} == {(("feature", "subscriptions"),)}
    debug1 = (vdir / "goroutine.debug1.txt").read_text()
    assert '# labels: {"feature":"subscriptions"}' in debug1
    assert sum(s.values[0] for s in tagged) >= 100
    plain = profile.decode(data, str(path))
    assert all(s.labels == () for s in plain.samples)
    assert [(s.stack, s.values) for s in plain.samples] == [
        (s.stack, s.values) for s in labelled.samples
    ]


# --- the message classes --------------------------------------------------------------

# The FileDescriptorProto protoc made of cardguard's profile.proto (taken from the
# profile_pb2.py protoc 7.35.1 generated, before the schema moved into Python).
PROTOC_DESCRIPTOR = TESTDATA / "pprof" / "profile.proto.descriptor.pb"


def test_schema_is_the_one_protoc_compiled() -> None:
    """The messages built at import time have protoc's wire layout, field by field."""
    want = descriptor_pb2.FileDescriptorProto.FromString(PROTOC_DESCRIPTOR.read_bytes())
    assert profile_pb2.file_descriptor_proto() == want
    assert profile_pb2.Profile.DESCRIPTOR.file.name == want.name


def test_type_stub_is_current() -> None:
    """profile_pb2.pyi is what `make proto` writes from profile_pb2.SCHEMA."""
    stub = Path(profile_pb2.__file__).with_suffix(".pyi")
    assert stub.read_text() == profile_pb2.stub(), "run `make proto`"


def test_classes_live_in_a_pool_of_their_own() -> None:
    """pprof's own generated module, or another copy, in the process cannot clash with them."""
    default = descriptor_pool.Default()
    with pytest.raises(KeyError):
        default.FindMessageTypeByName("cardguard.pprof.Profile")
    # The same file added to the default pool is simply another, independent copy.
    default.AddSerializedFile(PROTOC_DESCRIPTOR.read_bytes())
    other = default.FindMessageTypeByName("cardguard.pprof.Profile")
    assert other is not profile_pb2.Profile.DESCRIPTOR
    msg = profile_pb2.Profile(string_table=["", "x"])
    assert profile_pb2.Profile.FromString(msg.SerializeToString()).string_table == ["", "x"]
