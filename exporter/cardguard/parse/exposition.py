"""Read a Prometheus exposition page in whichever format it comes, as Prometheus reads it.

Pure: bytes in, ``model`` events out; no I/O. The entry point above the
per-format parsers (``text``, ``openmetrics``, ``protobuf``): it chooses the
format, dispatches to its parser, and gives the Accept headers Prometheus
sends. Two ways to read a page:

``parse(data, fmt, source)``
    Stream of ``Family`` and ``Sample`` events, one ``Sample`` per sample line,
    with labels unescaped and values as floats. Rejects a page Prometheus
    would not ingest with ``ParseError(source, line, message)``.

``scan(data, fmt, source)``
    The same stream, except that runs of sample lines of one family that have
    the common shape (``name{l="v",...} value [timestamp]``) come as one
    ``SampleBlock`` that refers to a byte range of ``data`` instead of as
    per-line ``Sample`` objects. Every line of a block has been validated with
    one regular expression pass over the range (which also refuses a label
    name repeated within a line), so a block is exactly as trustworthy as the
    per-line samples; lines of any other shape go through the strict per-line
    parser. Consumers that count (``cardinality``) read a block with
    ``blocks.block_label_pairs`` / ``blocks.block_series_keys`` without
    creating a Python object per sample. The protobuf format has no blocks.

Leniency is Prometheus' scrape parser's: a page Prometheus ingests is read
and counted as Prometheus counts it; a page Prometheus refuses is refused,
naming the line and the reason (in Prometheus' words where it has them). The
reference is Prometheus 2.42 (``model/textparse`` and the checks of its scrape
loop and TSDB, which the tests run as an oracle), widened to what later
Prometheus reads and 2.42 refuses: quoted UTF-8 metric and label names
(Prometheus 3), exemplars on any sample (2.43), and native histograms in
OpenMetrics text (Prometheus' OpenMetrics 2.0 parser). Each format's module
says what it accepts.

Format choice follows Prometheus: ``detect_format`` looks at the
Content-Type (``application/openmetrics-text`` means OpenMetrics, the
protobuf media type protobuf, anything else the text format). Without one (a
file or stdin) a page that ends with ``# EOF`` is OpenMetrics if it parses as
OpenMetrics, else text: a text-format page may end with a ``# EOF`` comment.
``accept_header`` gives what Prometheus 2.42 sends when scraping, preferring
OpenMetrics, or protobuf with native histograms on.
"""

from __future__ import annotations

from collections.abc import Iterator

from cardguard.errors import ParseError
from cardguard.parse import openmetrics, protobuf, text
from cardguard.parse.model import Event, Format, SampleBlock, ScanEvent

ACCEPT_HEADER = (
    "application/openmetrics-text;version=1.0.0,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
# What Prometheus 2.42 sends with native histograms on: protobuf first.
ACCEPT_HEADER_PROTOBUF = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def accept_header(native_histograms: bool) -> str:
    """Return the Accept header Prometheus sends with native histograms on or off."""
    return ACCEPT_HEADER_PROTOBUF if native_histograms else ACCEPT_HEADER


def detect_format(content_type: str | None, data: bytes) -> Format:
    """Choose the parser as Prometheus does: by media type; for a file, sniff.

    ``content_type`` is None for a file and the (possibly empty) Content-Type
    header for a scraped page. A scraped page is read as its header says, and
    one without a header as text, as Prometheus reads it. Only a file is
    sniffed: a file that cannot be text but is framed as
    protobuf is protobuf (``protobuf.looks_like_protobuf``), and a
    page that ends with ``# EOF`` is OpenMetrics when it parses as
    OpenMetrics, else text.
    """
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media == protobuf.MEDIA_TYPE:
            return "protobuf"
        return "openmetrics" if media == "application/openmetrics-text" else "text"
    if protobuf.looks_like_protobuf(data):
        return "protobuf"
    tail = data[-64:].rstrip(b"\n")
    if not (tail.endswith(b"# EOF") and tail.rsplit(b"\n", 1)[-1] == b"# EOF"):
        return "text"
    try:
        for _ in openmetrics.scan(data, "<sniff>"):
            pass
    except ParseError:
        return "text"
    return "openmetrics"


def parse(data: bytes, fmt: Format, source: str, *, fast: bool = True) -> Iterator[Event]:
    """Yield ``Family`` and ``Sample`` events for every line of ``data``.

    ``fast=False`` sends every line through the strict per-line parser (the
    tests compare both paths).
    """
    expand = openmetrics.block_samples if fmt == "openmetrics" else text.block_samples
    for event in scan(data, fmt, source, fast=fast):
        if isinstance(event, SampleBlock):
            yield from expand(event, source)
        else:
            yield event


def scan(
    data: bytes, fmt: Format, source: str, *, chunk_bytes: int = 1 << 20, fast: bool = True
) -> Iterator[ScanEvent]:
    """Yield events, with common-shape sample runs as ``SampleBlock``.

    Runs are cut into blocks of about ``chunk_bytes`` so that what a consumer
    derives from one block stays small. ``fast=False`` yields no blocks.
    """
    if fmt == "openmetrics":
        yield from openmetrics.scan(data, source, chunk_bytes=chunk_bytes, fast=fast)
    elif fmt == "protobuf":
        yield from protobuf.parse(data, source)
    elif fmt == "text":
        yield from text.scan(data, source, chunk_bytes=chunk_bytes, fast=fast)
    else:
        raise ValueError(f"unknown exposition format {fmt!r}")
