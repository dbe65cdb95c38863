"""The events every exposition parser yields: families, samples and validated sample blocks.

The text, OpenMetrics and protobuf parsers (``text``, ``openmetrics``,
``protobuf``) all return these types, and so does their entry point
``exposition``; the layers above read them without knowing the format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Format = Literal["text", "openmetrics", "protobuf"]


@dataclass(frozen=True, slots=True)
class Family:
    """Start of a metric family: its name, type, and metadata as far as known.

    ``type`` is ``untyped`` (text) or ``unknown`` (OpenMetrics) when the page
    gave no TYPE line. ``line`` is where the family starts (1-based).
    """

    name: str
    type: str
    help: str | None
    unit: str | None
    line: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample line. ``timestamp`` is in seconds, ``None`` when absent.

    A native histogram is one sample whose ``value`` is its count of
    observations.
    """

    family: str
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp: float | None
    line: int


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """Validated sample lines of one family, as the byte range ``data[start:end]``.

    ``end`` is the offset of the last line's end (its newline, or the end of
    the data). ``lines`` counts the sample lines in the range; ``first_line``
    is the 1-based number of the first. ``blocks`` reads one without
    creating a Python object per sample. ``labels`` maps each label name to
    its distinct values (unescaped UTF-8) where the parser gathered them while
    validating the lines, else None (``blocks.label_values`` reads them then).
    """

    family: str
    data: bytes
    start: int
    end: int
    first_line: int
    lines: int
    labels: dict[bytes, set[bytes]] | None = field(default=None, compare=False, repr=False)


Event = Family | Sample
ScanEvent = Family | Sample | SampleBlock
