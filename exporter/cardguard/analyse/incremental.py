"""Reuse the analysis of families whose series did not change since the target's last page.

Most scrapes of a real service change values, not series. Label analysis
(distinct values, patterns, value and series hashes) costs several times what
reading the page does, so analysing every family again on every scrape is
the largest avoidable cost of a fleet (docs/performance.md).

Pure: ``analyse(page, memo=...)`` takes the page bytes and the :class:`Memo`
the target's previous page left, and returns the same :class:`PageAnalysis`
:func:`cardinality.analyse` would, with the memo for the next page.

How a text page (0.0.4) is compared with the previous one:

* it is cut into **segments**: the comment lines of a family (``# HELP``,
  ``# TYPE``) and the run of sample lines up to the next comment;
* a segment's **shape** is a 128-bit BLAKE2b digest of its comment lines and
  its sample lines with their value and timestamp removed
  (:func:`blocks.strip_values`), plus how many lines lost a value;
* a shape is kept in the memo only when every sample line of the segment had
  the fast path's common shape (:func:`blocks.fast_lines`), so what the
  stripping removed was exactly the value and timestamp. A segment of a new
  page with the same shape and count then has the same lines with a valid
  value each: the same series, valid, and its family statistics are reused.
  Any other change (a series added or removed, a label value changed, a HELP
  text edited) changes the digest, and the segment is analysed afresh. A
  count is never carried over from a page that differs in its series.

Families are analysed one segment at a time and merged when the page is
**segmentable**: every family lives in one segment, no family name is
another's ``_bucket``/``_sum``/``_count`` in another segment, no family is
folded into ``__other__``, and the page-wide allowances of
:class:`~cardinality.Limits` were never the binding limit. Then the merge
equals the whole-page analysis (tests/test_incremental.py checks this on
every recorded page). A page that is not segmentable is analysed whole when
its series change, and reused whole when they do not.

OpenMetrics and protobuf pages are always analysed whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from cardguard.analyse import cardinality
from cardguard.analyse.cardinality import FamilyStats, Limits, PageAnalysis
from cardguard.errors import ParseError
from cardguard.parse.blocks import fast_lines, strip_values
from cardguard.parse.exposition import detect_format
from cardguard.parse.model import Format
from cardguard.parse.overflow import OTHER

# Sample-name suffixes the text parser may attribute to a family of another name.
_SUFFIXES = ("_bucket", "_sum", "_count")
_DIGEST_BYTES = 16
# Comment lines per family (HELP, TYPE and spares) when bounding a page's segments cheaply.
_MAX_COMMENTS_PER_FAMILY = 4
DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Segment:
    """One run of a text page: comment lines ``[start, body)``, sample lines ``[body, end)``."""

    start: int
    body: int
    end: int


@dataclass(frozen=True)
class Shape:
    """A segment without its values: equal shapes hold the same series."""

    digest: bytes
    samples: int


@dataclass(frozen=True)
class Memo:
    """What a target's next page is compared with (held per target between scrapes).

    ``shapes`` has one entry per segment of the page, ``None`` where a sample
    line did not have the common shape (that segment is always analysed).
    ``parts`` maps each reusable shape to its families, when the page was
    segmentable.
    """

    limits: Limits
    shapes: tuple[Shape | None, ...]
    analysis: PageAnalysis
    parts: Mapping[Shape, tuple[FamilyStats, ...]] | None


@dataclass(frozen=True)
class Outcome:
    """One page analysed: the result, the next memo, and how much was reused.

    ``segments`` and ``families`` (the families of each segment) are set when
    the page was segmentable, so a caller can read values from the few
    segments it needs instead of the whole page.
    """

    analysis: PageAnalysis
    memo: Memo | None
    reused: int  # families whose statistics were reused
    analysed: int  # families analysed from this page
    unchanged: bool  # every series as on the previous page (the analysis object is reused)
    segments: tuple[Segment, ...] = ()
    families: tuple[tuple[FamilyStats, ...], ...] = ()


def segments(data: bytes) -> Iterator[Segment]:
    """Cut a text page into runs of comment lines followed by sample lines."""
    n = len(data)
    pos = 0
    while pos < n:
        start = pos
        while pos < n and data[pos] == 0x23:  # '#': a comment line
            nl = data.find(b"\n", pos)
            pos = n if nl < 0 else nl + 1
        body = pos
        nxt = data.find(b"\n#", pos)
        end = n if nxt < 0 else nxt + 1
        yield Segment(start, body, end)
        pos = end


def _lines(data: bytes, seg: Segment) -> tuple[int, int]:
    """Sample lines of the segment, and where the last one ends (its newline excluded)."""
    if seg.end == seg.body:
        return 0, seg.end
    end = seg.end - 1 if data[seg.end - 1] == 0x0A else seg.end
    return data.count(b"\n", seg.body, end) + 1, end


def shape(data: bytes, seg: Segment) -> Shape:
    """The digest of the segment's comment lines and value-less sample lines."""
    stripped, n = strip_values(data[seg.body : seg.end])
    h = hashlib.blake2b(data[seg.start : seg.body], digest_size=_DIGEST_BYTES)
    h.update(stripped)
    return Shape(h.digest(), n)


def _plain(data: bytes, seg: Segment) -> bool:
    """Whether every sample line of the segment has the common shape (so its shape is exact)."""
    lines, end = _lines(data, seg)
    return lines == 0 or fast_lines(data, seg.body, end) == lines


def analyse(
    data: bytes,
    *,
    content_type: str | None,
    source: str,
    limits: Limits = DEFAULT_LIMITS,
    fmt: Format | None = None,
    memo: Memo | None = None,
) -> Outcome:
    """Analyse one page, reusing what ``memo`` (the target's previous page) already knows.

    Raises:
        ParseError: the page is malformed (the same error ``cardinality.analyse`` raises).
    """
    fmt = fmt or detect_format(content_type, data)
    if fmt != "text":
        page = cardinality.analyse(
            data, content_type=content_type, source=source, limits=limits, fmt=fmt
        )
        return Outcome(page, None, 0, len(page.families), False)
    if data.count(b"\n#") > _MAX_COMMENTS_PER_FAMILY * (limits.max_families + 1):
        # More families than are analysed in detail: never segmentable, not worth a memo.
        page = cardinality.analyse(data, content_type=None, source=source, limits=limits, fmt=fmt)
        return Outcome(page, None, 0, len(page.families), False)
    segs = tuple(segments(data))
    if len(segs) > limits.max_families + 1:
        return _whole(data, segs, [shape(data, s) for s in segs], source, limits)
    shapes = [shape(data, s) for s in segs]
    if memo is not None and memo.limits != limits:
        memo = None
    if memo is not None and None not in memo.shapes and tuple(shapes) == memo.shapes:
        page = memo.analysis
        if page.source != source:
            page = PageAnalysis(source, "text", page.total_series, page.families, 0)
        fams: tuple[tuple[FamilyStats, ...], ...] = ()
        if memo.parts is not None:
            fams = tuple(memo.parts[sh] for sh in shapes)
        n = len(page.families)
        return Outcome(page, memo, n, 0, True, segs if fams else (), fams)
    reusable: Mapping[Shape, tuple[FamilyStats, ...]] = {}
    if memo is not None and memo.parts is not None:
        reusable = memo.parts
    elif memo is not None:
        # Not segmentable last time: analyse whole (the reason, e.g. a family split over
        # two runs, most likely still holds).
        return _whole(data, segs, shapes, source, limits)
    parts: list[tuple[FamilyStats, ...]] = []
    valid: list[Shape | None] = []
    reused = analysed = 0
    try:
        for seg, sh in zip(segs, shapes, strict=True):
            known = reusable.get(sh)
            if known is not None:
                parts.append(known)
                valid.append(sh)
                reused += len(known)
                continue
            part = cardinality.analyse(
                data[seg.start : seg.end],
                content_type=content_type,
                source=source,
                limits=limits,
                fmt="text",
            ).families
            parts.append(part)
            valid.append(sh if _plain(data, seg) else None)
            analysed += len(part)
    except ParseError:
        # Analysed whole for the error's real line number (and raised from there).
        return _whole(data, segs, shapes, source, limits)
    if not _segmentable(parts, limits):
        return _whole(data, segs, shapes, source, limits)
    page = _merge(parts, source)
    kept = {sh: part for sh, part in zip(valid, parts, strict=True) if sh is not None}
    new_memo = Memo(limits, tuple(valid), page, MappingProxyType(kept))
    return Outcome(page, new_memo, reused, analysed, False, segs, tuple(parts))


def _whole(
    data: bytes,
    segs: Sequence[Segment],
    shapes: Sequence[Shape],
    source: str,
    limits: Limits,
) -> Outcome:
    page = cardinality.analyse(data, content_type=None, source=source, limits=limits, fmt="text")
    valid = tuple(sh if _plain(data, seg) else None for seg, sh in zip(segs, shapes, strict=True))
    return Outcome(page, Memo(limits, valid, page, None), 0, len(page.families), False)


def _merge(parts: Sequence[tuple[FamilyStats, ...]], source: str) -> PageAnalysis:
    fams = [f for part in parts for f in part]
    fams.sort(key=lambda f: (-f.series, f.name))
    return PageAnalysis(source, "text", sum(f.series for f in fams), tuple(fams), 0)


def _segmentable(parts: Sequence[tuple[FamilyStats, ...]], limits: Limits) -> bool:
    """Whether analysing the segments one by one gives exactly the whole-page analysis."""
    where: dict[str, int] = {}
    for i, part in enumerate(parts):
        for f in part:
            if f.name == OTHER or where.setdefault(f.name, i) != i:
                return False
    if len(where) > limits.max_families:
        return False
    for name, i in where.items():
        for suffix in _SUFFIXES:
            if name.endswith(suffix) and where.get(name[: -len(suffix)], i) != i:
                return False
    return _within_allowances(parts, limits)


def _within_allowances(parts: Sequence[tuple[FamilyStats, ...]], limits: Limits) -> bool:
    """Whether the page-wide allowances never limited any label, so per-segment runs agree.

    Each label holds its distinct values exactly (or ``exact_value_cap`` of them
    once estimated) and at most ``value_fingerprints`` value hashes; while the
    page-wide totals keep one more label's worth free at every step, no label
    was counted differently for sharing the page with the others.
    """
    exact = hashes = 0
    for part in parts:
        for f in part:
            for lab in f.labels:
                exact += limits.exact_value_cap if lab.estimated else lab.distinct_values
                hashes += (
                    limits.value_fingerprints
                    if lab.estimated
                    else min(limits.value_fingerprints, lab.distinct_values)
                )
    return (
        limits.max_exact_values_total - exact >= limits.exact_value_cap
        and limits.max_value_fingerprints_total - hashes >= limits.value_fingerprints
    )
