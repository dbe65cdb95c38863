"""``cardguard cardinality SOURCE``: series per family and distinct values per label of one page.

SOURCE is a file, an http(s) URL (a target's base URL gets ``/metrics``, as
``heap`` and ``goroutines`` add their paths) or ``-`` for stdin, in the text, OpenMetrics
or protobuf exposition format (``--native-histograms`` asks a URL for
protobuf first, as Prometheus does with native histograms on; a file is read
as protobuf only where it cannot be text). The page is analysed by
``cardguard.analyse.cardinality.analyse``; this module only reads the input and prints
the result (a table, or JSON with ``--format json``). Every failure prints one
line naming the source (and the line, for a malformed page) and exits 1.
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

from cardguard.analyse.cardinality import Limits, PageAnalysis, analyse
from cardguard.commands._options import missing_scheme, timeout_option
from cardguard.errors import CardguardError, FetchError
from cardguard.gunzip import MAGIC, GzipError, gunzip
from cardguard.parse.exposition import accept_header
from cardguard.parse.model import Format

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
METRICS_PATH = "/metrics"


def fetch_page(
    url: str, *, timeout: float, max_bytes: int, native_histograms: bool = False
) -> tuple[bytes, str | None]:
    """GET a /metrics page with Prometheus' Accept header; return body and Content-Type.

    The one place this command touches the network, through ``cardguard.run.fetch``
    (deadline, size limit and bounded gzip decoding live there).
    """
    from cardguard.run.fetch import Fetcher
    from cardguard.settings.targets import TargetConfig

    target = TargetConfig(name=url, url=url, timeout=timeout, body_size_limit=max_bytes)
    accept = accept_header(native_histograms)
    result = Fetcher(target).get(url, accept=accept, timeout=timeout, max_bytes=max_bytes)
    # A scraped page without a Content-Type is text, as Prometheus reads it: "" is not None.
    return result.body, result.content_type


def page_url(url: str) -> str:
    """The /metrics URL for SOURCE: a target's base URL (no path) gets ``/metrics``.

    The same base URL works for ``heap`` and ``goroutines``, which add their
    ``/debug/pprof/...`` paths.
    """
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return urlunsplit(parts._replace(path=METRICS_PATH))
    return url


def read_source(
    source: str, *, timeout: float, max_bytes: int, native_histograms: bool = False
) -> tuple[bytes, str | None]:
    """Return the page bytes of SOURCE and its Content-Type (None for files and stdin)."""
    if source.startswith(("http://", "https://")):
        # Only a URL needs the HTTP client (urllib3, the config types): a file
        # is read without importing them.
        from cardguard.run.fetch import HTTPStatusError

        url = page_url(source)
        try:
            return fetch_page(
                url, timeout=timeout, max_bytes=max_bytes, native_histograms=native_histograms
            )
        except HTTPStatusError as exc:
            path = urlsplit(url).path
            if exc.status != 404 or path.endswith(METRICS_PATH):
                raise
            parts = urlsplit(url)
            meant = urlunsplit(parts._replace(path=METRICS_PATH, query="", fragment=""))
            raise HTTPStatusError(
                exc.source, exc.reason, f"{exc.message}; is the page at {meant}?", exc.status
            ) from None
    try:
        if source == "-":
            data = sys.stdin.buffer.read(max_bytes + 1)
        else:
            with open(source, "rb") as fh:
                data = fh.read(max_bytes + 1)
    except OSError as exc:
        hint = missing_scheme(source) if isinstance(exc, FileNotFoundError) else ""
        raise FetchError(source, "other", f"cannot read: {exc.strerror or exc}{hint}") from None
    if len(data) > max_bytes:
        raise FetchError(source, "too_large", f"page exceeds {max_bytes} bytes")
    if data.startswith(MAGIC):
        try:
            data = gunzip(data, max_bytes)
        except GzipError as exc:
            if exc.reason == "too_large":
                raise FetchError(
                    source, "too_large", f"decompressed page exceeds {max_bytes} bytes"
                ) from None
            # "corrupt gzip data: <zlib's reason>" or "truncated gzip data (...)"
            raise FetchError(source, "decompress", exc.message) from None
    return data, None


def _clip(text: str, width: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def render_text(analysis: PageAnalysis, top: int) -> str:
    """A readable table: one row per family, its labels on the rows below it."""
    fams = analysis.families[:top] if top else analysis.families
    lines = [
        f"source: {analysis.source}   format: {analysis.format}   "
        f"total series: {analysis.total_series}   families: {len(analysis.families)}"
        + (f" (+{analysis.other_families} in __other__)" if analysis.other_families else ""),
        "distinct values marked ~ are HyperLogLog estimates",
        "",
    ]
    rows: list[tuple[str, ...]] = [
        ("FAMILY", "TYPE", "SERIES", "LABEL", "DISTINCT", "PATTERN", "EXAMPLES")
    ]
    for fam in fams:
        head = (_clip(fam.name, 60), fam.type, str(fam.series))
        if not fam.labels:
            rows.append((*head, "", "", "", ""))
        for i, lab in enumerate(fam.labels):
            distinct = ("~" if lab.estimated else "") + str(lab.distinct_values)
            examples = ", ".join(_clip(e, 48) for e in lab.examples)
            rows.append(
                (*(head if i == 0 else ("", "", "")), lab.name, distinct, lab.pattern, examples)
            )
        if fam.labels_truncated:
            rows.append(("", "", "", "(more labels not shown)", "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        cells = [
            c.rjust(w) if i == 2 else c.ljust(w)
            for i, (c, w) in enumerate(zip(r[:-1], widths, strict=True))
        ]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
    if top and len(analysis.families) > top:
        lines.append(f"... {len(analysis.families) - top} more families (use --top 0 for all)")
    return "\n".join(lines) + "\n"


def render_json(analysis: PageAnalysis, top: int) -> str:
    doc: dict[str, Any] = analysis.to_json()
    if top:
        doc["families"] = doc["families"][:top]
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


@click.command("cardinality")
@click.argument("source")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output: a table or JSON.",
)
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=None,
    help="Show the N families with most series (0: all). Default: 20 for text, all for JSON.",
)
@click.option(
    "--input-format",
    type=click.Choice(["auto", "text", "openmetrics", "protobuf"]),
    default="auto",
    show_default=True,
    help="Exposition format; auto uses the Content-Type, else sniffs protobuf and '# EOF'.",
)
@click.option(
    "--native-histograms",
    is_flag=True,
    help="Ask a URL for protobuf first, as Prometheus does with native histograms on.",
)
@click.option(
    "--exact-values",
    type=click.IntRange(min=1),
    default=Limits.exact_value_cap,
    show_default=True,
    help="Distinct values per label counted exactly before estimating.",
)
@timeout_option("10s", "Deadline for fetching a URL.")
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    help="Largest page accepted (after decompression).",
)
def cardinality(
    source: str,
    output_format: str,
    top: int | None,
    input_format: str,
    native_histograms: bool,
    exact_values: int,
    timeout: float,
    max_bytes: int,
) -> None:
    """Measure series per family and distinct values per label of SOURCE (file, URL or -)."""
    # A larger per-label cap also needs a larger page-wide allowance to matter.
    limits = Limits(
        exact_value_cap=exact_values,
        max_exact_values_total=max(Limits.max_exact_values_total, 4 * exact_values),
    )
    fmt: Format | None = None if input_format == "auto" else input_format  # type: ignore[assignment]
    name = "<stdin>" if source == "-" else source
    if source.startswith(("http://", "https://")):
        name = page_url(source)
    try:
        data, content_type = read_source(
            source, timeout=timeout, max_bytes=max_bytes, native_histograms=native_histograms
        )
        analysis = analyse(data, content_type=content_type, source=name, limits=limits, fmt=fmt)
    except CardguardError as exc:
        raise click.ClickException(str(exc)) from None
    if output_format == "json":
        out = render_json(analysis, top or 0)
    else:
        out = render_text(analysis, 20 if top is None else top)
    sys.stdout.write(out)


__all__ = ["cardinality", "fetch_page", "page_url", "read_source", "render_json", "render_text"]
