"""The pprof ``profile.proto`` messages, built at import time from the schema written here.

Field numbers and types are those of pprof's published schema
(github.com/google/pprof, ``proto/profile.proto``, proto3); only the wire layout
matters, so the names are cardguard's. Every string in a profile is an index
into ``Profile.string_table``, and index 0 is "".

Why not protoc's output: generated modules check the runtime they run on
(the one generated for protobuf 7.35.1 refused anything older), so cardguard
could not be installed beside a library that pins protobuf 5.x or 6.x. A
``FileDescriptorProto`` assembled from :data:`SCHEMA` and turned into classes
by ``message_factory.GetMessageClass`` works on every protobuf from 5.26 on,
with the upb or the pure-Python backend, as
``benchmarks/bench_exposition_proto.py`` builds client_model's messages. The
classes live in a descriptor pool of their own, so pprof's own generated module
(or another copy of this one) in the same process cannot clash with them.

``profile_pb2.pyi`` gives mypy their types. It is generated from :data:`SCHEMA`
by ``make proto`` (``python -m cardguard.pprof.profile_pb2``), and
tests/test_pprof_profile.py checks it is current.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "cardguard.pprof"
FILE_NAME = "cardguard/pprof/profile.proto"

_F = descriptor_pb2.FieldDescriptorProto
INT64, UINT64, BOOL, STRING = _F.TYPE_INT64, _F.TYPE_UINT64, _F.TYPE_BOOL, _F.TYPE_STRING
BYTES = _F.TYPE_BYTES
MESSAGE = _F.TYPE_MESSAGE

# message -> fields: (name, number, type, repeated, message type for MESSAGE fields).
SCHEMA: dict[str, tuple[tuple[str, int, int, bool, str], ...]] = {
    "Profile": (
        ("sample_type", 1, MESSAGE, True, "ValueType"),
        ("sample", 2, MESSAGE, True, "Sample"),
        ("mapping", 3, MESSAGE, True, "Mapping"),
        ("location", 4, MESSAGE, True, "Location"),
        ("function", 5, MESSAGE, True, "Function"),
        ("string_table", 6, STRING, True, ""),
        ("drop_frames", 7, INT64, False, ""),
        ("keep_frames", 8, INT64, False, ""),
        ("time_nanos", 9, INT64, False, ""),
        ("duration_nanos", 10, INT64, False, ""),
        ("period_type", 11, MESSAGE, False, "ValueType"),
        ("period", 12, INT64, False, ""),
        ("comment", 13, INT64, True, ""),
        ("default_sample_type", 14, INT64, False, ""),
        ("doc_url", 15, INT64, False, ""),
    ),
    "ValueType": (("type", 1, INT64, False, ""), ("unit", 2, INT64, False, "")),
    "Sample": (
        ("location_id", 1, UINT64, True, ""),
        ("value", 2, INT64, True, ""),
        ("label", 3, MESSAGE, True, "Label"),
    ),
    "Label": (
        ("key", 1, INT64, False, ""),
        ("str", 2, INT64, False, ""),
        ("num", 3, INT64, False, ""),
        ("num_unit", 4, INT64, False, ""),
    ),
    "Mapping": (
        ("id", 1, UINT64, False, ""),
        ("memory_start", 2, UINT64, False, ""),
        ("memory_limit", 3, UINT64, False, ""),
        ("file_offset", 4, UINT64, False, ""),
        ("filename", 5, INT64, False, ""),
        ("build_id", 6, INT64, False, ""),
        ("has_functions", 7, BOOL, False, ""),
        ("has_filenames", 8, BOOL, False, ""),
        ("has_line_numbers", 9, BOOL, False, ""),
        ("has_inline_frames", 10, BOOL, False, ""),
    ),
    "Location": (
        ("id", 1, UINT64, False, ""),
        ("mapping_id", 2, UINT64, False, ""),
        ("address", 3, UINT64, False, ""),
        ("line", 4, MESSAGE, True, "Line"),
        ("is_folded", 5, BOOL, False, ""),
    ),
    "Line": (
        ("function_id", 1, UINT64, False, ""),
        ("line", 2, INT64, False, ""),
        ("column", 3, INT64, False, ""),
    ),
    "Function": (
        ("id", 1, UINT64, False, ""),
        ("name", 2, INT64, False, ""),
        ("system_name", 3, INT64, False, ""),
        ("filename", 4, INT64, False, ""),
        ("start_line", 5, INT64, False, ""),
    ),
}


# A Profile whose samples are left as their encoded bytes, in a file of its own
# beside profile.proto: the tables are read as usual, and a large profile's
# samples cost a copy of their bytes instead of a message each
# (:func:`cardguard.pprof.proto.packed_column`).
HEAD_FILE_NAME = "cardguard/pprof/profile_head.proto"
HEAD_SCHEMA: dict[str, tuple[tuple[str, int, int, bool, str], ...]] = {
    "ProfileHead": tuple(
        ("sample", 2, BYTES, True, "") if name == "sample" else (name, number, kind, repeated, ty)
        for name, number, kind, repeated, ty in SCHEMA["Profile"]
    ),
}


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """The schema as a ``FileDescriptorProto``, as protoc would describe ``profile.proto``."""
    return _file(FILE_NAME, SCHEMA)


def _file(file_name: str, schema: dict[str, tuple[tuple[str, int, int, bool, str], ...]]) -> Any:
    fdp = descriptor_pb2.FileDescriptorProto(name=file_name, package=PACKAGE, syntax="proto3")
    if file_name != FILE_NAME:
        fdp.dependency.append(FILE_NAME)
    for message, fields in schema.items():
        m = fdp.message_type.add(name=message)
        for name, number, kind, repeated, type_name in fields:
            label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            f = m.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = f".{PACKAGE}.{type_name}"
    return fdp


_pool = descriptor_pool.DescriptorPool()
_pool.AddSerializedFile(file_descriptor_proto().SerializeToString())
_pool.AddSerializedFile(_file(HEAD_FILE_NAME, HEAD_SCHEMA).SerializeToString())
DESCRIPTOR = _pool.FindFileByName(FILE_NAME)


def _message(name: str) -> Any:
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))


Profile = _message("Profile")
ValueType = _message("ValueType")
Sample = _message("Sample")
Label = _message("Label")
Mapping = _message("Mapping")
Location = _message("Location")
Line = _message("Line")
Function = _message("Function")
ProfileHead = _message("ProfileHead")


# --- the type stub --------------------------------------------------------------------

_SCALARS = {INT64: "int", UINT64: "int", BOOL: "bool", STRING: "str", BYTES: "bytes"}


def stub() -> str:
    """Return ``profile_pb2.pyi``: the classes above as mypy should see them."""
    out = [
        "# Generated from SCHEMA in profile_pb2.py by `make proto`. Do not edit.",
        "from collections.abc import Iterable",
        "from collections.abc import Mapping as _Mapping",
        "from typing import Any",
        "",
        "from google.protobuf import descriptor as _descriptor",
        "from google.protobuf import message as _message",
        "from google.protobuf.internal import containers as _containers",
        "",
        "DESCRIPTOR: _descriptor.FileDescriptor",
    ]
    for message, fields in {**SCHEMA, **HEAD_SCHEMA}.items():
        out += ["", f"class {message}(_message.Message):"]
        params = []
        for name, _, kind, repeated, type_name in fields:
            if kind == MESSAGE and repeated:
                attr = f"_containers.RepeatedCompositeFieldContainer[{type_name}]"
                arg = f"Iterable[{type_name} | _Mapping[str, Any]] | None"
            elif kind == MESSAGE:
                attr, arg = type_name, f"{type_name} | _Mapping[str, Any] | None"
            elif repeated:
                attr = f"_containers.RepeatedScalarFieldContainer[{_SCALARS[kind]}]"
                arg = f"Iterable[{_SCALARS[kind]}] | None"
            else:
                attr, arg = _SCALARS[kind], f"{_SCALARS[kind]} | None"
            out.append(f"    {name}: {attr}")
            params.append(f"        {name}: {arg} = ...,")
        out += ["    def __init__(", "        self,", "        *,", *params, "    ) -> None: ..."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(stub(), end="")
