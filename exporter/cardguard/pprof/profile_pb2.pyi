# Generated from SCHEMA in profile_pb2.py by `make proto`. Do not edit.
from collections.abc import Iterable
from collections.abc import Mapping as _Mapping
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers

DESCRIPTOR: _descriptor.FileDescriptor

class Profile(_message.Message):
    sample_type: _containers.RepeatedCompositeFieldContainer[ValueType]
    sample: _containers.RepeatedCompositeFieldContainer[Sample]
    mapping: _containers.RepeatedCompositeFieldContainer[Mapping]
    location: _containers.RepeatedCompositeFieldContainer[Location]
    function: _containers.RepeatedCompositeFieldContainer[Function]
    string_table: _containers.RepeatedScalarFieldContainer[str]
    drop_frames: int
    keep_frames: int
    time_nanos: int
    duration_nanos: int
    period_type: ValueType
    period: int
    comment: _containers.RepeatedScalarFieldContainer[int]
    default_sample_type: int
    doc_url: int
    def __init__(
        self,
        *,
        sample_type: Iterable[ValueType | _Mapping[str, Any]] | None = ...,
        sample: Iterable[Sample | _Mapping[str, Any]] | None = ...,
        mapping: Iterable[Mapping | _Mapping[str, Any]] | None = ...,
        location: Iterable[Location | _Mapping[str, Any]] | None = ...,
        function: Iterable[Function | _Mapping[str, Any]] | None = ...,
        string_table: Iterable[str] | None = ...,
        drop_frames: int | None = ...,
        keep_frames: int | None = ...,
        time_nanos: int | None = ...,
        duration_nanos: int | None = ...,
        period_type: ValueType | _Mapping[str, Any] | None = ...,
        period: int | None = ...,
        comment: Iterable[int] | None = ...,
        default_sample_type: int | None = ...,
        doc_url: int | None = ...,
    ) -> None: ...

class ValueType(_message.Message):
    type: int
    unit: int
    def __init__(
        self,
        *,
        type: int | None = ...,
        unit: int | None = ...,
    ) -> None: ...

class Sample(_message.Message):
    location_id: _containers.RepeatedScalarFieldContainer[int]
    value: _containers.RepeatedScalarFieldContainer[int]
    label: _containers.RepeatedCompositeFieldContainer[Label]
    def __init__(
        self,
        *,
        location_id: Iterable[int] | None = ...,
        value: Iterable[int] | None = ...,
        label: Iterable[Label | _Mapping[str, Any]] | None = ...,
    ) -> None: ...

class Label(_message.Message):
    key: int
    str: int
    num: int
    num_unit: int
    def __init__(
        self,
        *,
        key: int | None = ...,
        str: int | None = ...,
        num: int | None = ...,
        num_unit: int | None = ...,
    ) -> None: ...

class Mapping(_message.Message):
    id: int
    memory_start: int
    memory_limit: int
    file_offset: int
    filename: int
    build_id: int
    has_functions: bool
    has_filenames: bool
    has_line_numbers: bool
    has_inline_frames: bool
    def __init__(
        self,
        *,
        id: int | None = ...,
        memory_start: int | None = ...,
        memory_limit: int | None = ...,
        file_offset: int | None = ...,
        filename: int | None = ...,
        build_id: int | None = ...,
        has_functions: bool | None = ...,
        has_filenames: bool | None = ...,
        has_line_numbers: bool | None = ...,
        has_inline_frames: bool | None = ...,
    ) -> None: ...

class Location(_message.Message):
    id: int
    mapping_id: int
    address: int
    line: _containers.RepeatedCompositeFieldContainer[Line]
    is_folded: bool
    def __init__(
        self,
        *,
        id: int | None = ...,
        mapping_id: int | None = ...,
        address: int | None = ...,
        line: Iterable[Line | _Mapping[str, Any]] | None = ...,
        is_folded: bool | None = ...,
    ) -> None: ...

class Line(_message.Message):
    function_id: int
    line: int
    column: int
    def __init__(
        self,
        *,
        function_id: int | None = ...,
        line: int | None = ...,
        column: int | None = ...,
    ) -> None: ...

class Function(_message.Message):
    id: int
    name: int
    system_name: int
    filename: int
    start_line: int
    def __init__(
        self,
        *,
        id: int | None = ...,
        name: int | None = ...,
        system_name: int | None = ...,
        filename: int | None = ...,
        start_line: int | None = ...,
    ) -> None: ...

class ProfileHead(_message.Message):
    sample_type: _containers.RepeatedCompositeFieldContainer[ValueType]
    sample: _containers.RepeatedScalarFieldContainer[bytes]
    mapping: _containers.RepeatedCompositeFieldContainer[Mapping]
    location: _containers.RepeatedCompositeFieldContainer[Location]
    function: _containers.RepeatedCompositeFieldContainer[Function]
    string_table: _containers.RepeatedScalarFieldContainer[str]
    drop_frames: int
    keep_frames: int
    time_nanos: int
    duration_nanos: int
    period_type: ValueType
    period: int
    comment: _containers.RepeatedScalarFieldContainer[int]
    default_sample_type: int
    doc_url: int
    def __init__(
        self,
        *,
        sample_type: Iterable[ValueType | _Mapping[str, Any]] | None = ...,
        sample: Iterable[bytes] | None = ...,
        mapping: Iterable[Mapping | _Mapping[str, Any]] | None = ...,
        location: Iterable[Location | _Mapping[str, Any]] | None = ...,
        function: Iterable[Function | _Mapping[str, Any]] | None = ...,
        string_table: Iterable[str] | None = ...,
        drop_frames: int | None = ...,
        keep_frames: int | None = ...,
        time_nanos: int | None = ...,
        duration_nanos: int | None = ...,
        period_type: ValueType | _Mapping[str, Any] | None = ...,
        period: int | None = ...,
        comment: Iterable[int] | None = ...,
        default_sample_type: int | None = ...,
        doc_url: int | None = ...,
    ) -> None: ...
