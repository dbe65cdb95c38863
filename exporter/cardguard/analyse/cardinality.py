"""Measure one /metrics page: series per family, distinct values per label, bounded.

Pure: ``analyse(data, content_type=..., source=...)`` takes the page bytes and
returns a ``PageAnalysis``; nothing here does I/O.

Per family: name, type and number of series (one per sample line, the figure
``promtool check metrics --extended`` prints). Per label of a family: distinct
values, up to ``Limits.max_examples`` example values and a pattern class
(``cardguard.analyse.patterns``).

Memory stays bounded by ``Limits`` whatever the page holds (the page itself is
the caller's): distinct values are counted exactly in a set of at most
``exact_value_cap`` values per label (and ``max_exact_values_total`` over the
whole page); past that a label switches to a HyperLogLog sketch
(``HyperLogLog``, 2**``hll_precision`` one-byte registers, about
1.04/sqrt(2**p) relative error) and its ``LabelStats.estimated`` is true.
Families past ``max_families`` are counted together in one ``__other__``
family without label detail; labels past ``max_labels_per_family`` are
dropped from the detail and the family says ``labels_truncated``.

For churn across scrapes (``cardguard.analyse.churn``) each family keeps a
``HashSample`` of series fingerprints and each label one of its values: an
exact set of 64-bit hashes up to a cap, beyond which only hashes whose low
``level`` bits are zero are kept (distinct sampling), so counts derived from
it are estimates scaled by ``2**level`` and flagged as such.

Every hash is ``fingerprint``: 64-bit XXH3 with a fixed seed (xxHash is
specified to give the same digest on every platform), so one page gives the
same estimates in every process and replica (Python's ``hash`` is salted per
process) at the speed of ``hash``. Each value is hashed once and the digest feeds both the
sketch and the sample. An estimate never exceeds its family's series.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from xxhash import xxh3_64_intdigest

from cardguard.analyse import patterns
from cardguard.parse.blocks import block_series_keys, label_values
from cardguard.parse.exposition import detect_format, scan
from cardguard.parse.model import Family, Format, Sample, SampleBlock
from cardguard.parse.overflow import OTHER

_BATCH = 4096  # per-line samples gathered before their label values are added
_MASK64 = (1 << 64) - 1
_SEED = 0x63617264_67756172  # b"cardguar": changing it changes every estimate


def fingerprint(data: bytes) -> int:
    """Return the 64-bit hash of ``data`` that every cardguard process agrees on."""
    return xxh3_64_intdigest(data, seed=_SEED)


@dataclass(frozen=True)
class Limits:
    """Caps that bound the memory of one page's analysis."""

    exact_value_cap: int = 2000
    """Distinct values per label counted exactly before switching to HyperLogLog."""
    max_exact_values_total: int = 200_000
    """Exact values held over all labels of a page; past it labels estimate early."""
    max_examples: int = 3
    max_families: int = 10_000
    """Families analysed in detail; the rest are counted as one ``__other__`` family."""
    max_labels_per_family: int = 64
    hll_precision: int = 14
    series_fingerprints: int = 0
    """Series fingerprints kept per family for churn; 0 skips fingerprinting."""
    value_fingerprints: int = 2048
    """Value hashes kept per label for churn."""
    max_value_fingerprints_total: int = 200_000
    """Value hashes kept over all labels of a page; past it labels sample more coarsely."""
    classify_sample: int = 200
    """Values per label handed to the pattern classifier."""


class HyperLogLog:
    """A HyperLogLog distinct counter over 64-bit hashes (Flajolet et al., 2007).

    Register index from the low ``p`` bits, rank from the leading zeros of the
    remaining ``64 - p`` bits; small cardinalities use linear counting.
    """

    __slots__ = ("m", "p", "registers")

    def __init__(self, p: int = 12) -> None:
        if not 4 <= p <= 18:
            raise ValueError("HyperLogLog precision must be between 4 and 18")
        self.p = p
        self.m = 1 << p
        self.registers = bytearray(self.m)

    def add_hashes(self, hashes: Iterable[int]) -> None:
        """Add 64-bit hash values (any int; only the low 64 bits are used)."""
        regs = self.registers
        p = self.p
        mask = self.m - 1
        width = 64 - p
        for h in hashes:
            h &= _MASK64
            idx = h & mask
            rank = width - (h >> p).bit_length() + 1
            if rank > regs[idx]:
                regs[idx] = rank

    def add(self, values: Iterable[bytes]) -> None:
        self.add_hashes(map(fingerprint, values))

    def estimate(self) -> int:
        m = self.m
        alpha = 0.7213 / (1 + 1.079 / m)
        total = math.fsum(2.0**-r for r in self.registers)
        raw = alpha * m * m / total
        zeros = self.registers.count(0)
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))
        return round(raw)


@dataclass
class HashSample:
    """A bounded set of 64-bit hashes: exact up to ``cap``, then a 1/2**level sample.

    ``level`` 0 means the set is exact. Two samples compare at the larger of
    their levels (``aligned``); counts scale by ``2**level``.
    """

    cap: int
    level: int = 0
    hashes: set[int] = field(default_factory=set)

    @property
    def exact(self) -> bool:
        return self.level == 0

    def add_hashes(self, hashes: Iterable[int]) -> None:
        sel = (1 << self.level) - 1
        if sel:
            self.hashes.update(h & _MASK64 for h in hashes if not h & sel)
        else:
            self.hashes.update(h & _MASK64 for h in hashes)
        while len(self.hashes) > self.cap:
            self.level += 1
            sel = (1 << self.level) - 1
            self.hashes = {h for h in self.hashes if not h & sel}

    def aligned(self, level: int) -> set[int]:
        """The hashes this sample would hold at ``level`` (>= its own)."""
        if level <= self.level:
            return self.hashes
        sel = (1 << level) - 1
        return {h for h in self.hashes if not h & sel}

    def estimate(self) -> int:
        return len(self.hashes) << self.level


@dataclass(frozen=True)
class LabelStats:
    """One label of one family. ``distinct_values`` is an estimate when ``estimated``."""

    name: str
    distinct_values: int
    estimated: bool
    pattern: str
    examples: tuple[str, ...]
    values: HashSample | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distinct_values": self.distinct_values,
            "estimated": self.estimated,
            "pattern": self.pattern,
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class FamilyStats:
    """One metric family: its type, series (sample lines) and per-label detail.

    ``native_histogram_series`` is set for classic histograms only (families
    with ``_bucket`` series): the series the family would need as a native
    histogram, one per label set (counted from its ``le="+Inf"`` buckets)
    instead of one per bucket plus ``_sum`` and ``_count``. ``None`` for
    other types and for histograms that already are native.
    """

    name: str
    type: str
    series: int
    labels: tuple[LabelStats, ...]
    labels_truncated: bool = False
    fingerprints: HashSample | None = field(default=None, compare=False, repr=False)
    native_histogram_series: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "series": self.series,
            "labels": [lab.to_json() for lab in self.labels],
            "labels_truncated": self.labels_truncated,
            "native_histogram_series": self.native_histogram_series,
        }


@dataclass(frozen=True)
class PageAnalysis:
    """The analysis of one page. ``other_families`` were folded into ``__other__``."""

    source: str
    format: Format
    total_series: int
    families: tuple[FamilyStats, ...]
    other_families: int = 0

    def family(self, name: str) -> FamilyStats | None:
        for fam in self.families:
            if fam.name == name:
                return fam
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "total_series": self.total_series,
            "other_families": self.other_families,
            "families": [fam.to_json() for fam in self.families],
        }


class _Budget:
    """What is left of the page-wide allowances for exact values and value hashes."""

    __slots__ = ("hashes", "left")

    def __init__(self, left: int, hashes: int) -> None:
        self.left = left
        self.hashes = hashes


class _LabelAcc:
    """Distinct values of one label: exact set to the cap, then HyperLogLog."""

    __slots__ = ("budget", "exact", "hll", "limits", "name", "values")

    def __init__(self, name: str, limits: Limits, budget: _Budget) -> None:
        self.name = name
        self.exact: set[bytes] = set()
        self.hll: HyperLogLog | None = None
        self.limits = limits
        self.budget = budget
        self.values = HashSample(max(64, min(limits.value_fingerprints, budget.hashes)))

    def add(self, values: set[bytes]) -> None:
        """Add a set of (unescaped, UTF-8) values."""
        exact = self.exact
        # Values already in the exact set were hashed when they came in: hash each once.
        new = values if self.hll is not None else values - exact
        if not new:
            return
        hashes = list(map(fingerprint, new))
        sample = self.values
        before = len(sample.hashes)
        sample.add_hashes(hashes)
        self.budget.hashes -= len(sample.hashes) - before
        while self.budget.hashes < 0 and sample.cap > 64:
            # Over the page-wide allowance: this label keeps a coarser sample.
            sample.cap = max(64, sample.cap // 2)
            before = len(sample.hashes)
            sample.add_hashes(())
            self.budget.hashes += before - len(sample.hashes)
        if self.hll is not None:
            self.hll.add_hashes(hashes)
            return
        room = min(self.limits.exact_value_cap - len(exact), self.budget.left)
        if len(new) <= room:
            exact |= new
            self.budget.left -= len(new)
            return
        self.hll = HyperLogLog(self.limits.hll_precision)
        self.hll.add(exact)
        self.hll.add_hashes(hashes)
        # Keep what fits of the exact set: it feeds examples and the classifier.
        if room > 0:
            for v in new:
                if room <= 0:
                    break
                exact.add(v)
                room -= 1
                self.budget.left -= 1

    def stats(self, series: int) -> LabelStats:
        """Summarise the label; an estimate is capped at the family's ``series``."""
        if self.hll is None:
            distinct, estimated = len(self.exact), False
        else:
            distinct = max(min(self.hll.estimate(), series), len(self.exact))
            estimated = True
        decoded = sorted(v.decode("utf-8", "replace") for v in self.exact)
        sample = decoded[: self.limits.classify_sample]
        pattern = patterns.classify(sample, distinct)
        return LabelStats(
            name=self.name,
            distinct_values=distinct,
            estimated=estimated,
            pattern=pattern,
            examples=tuple(_clip(e) for e in _spread(decoded, self.limits.max_examples)),
            values=self.values,
        )


EXAMPLE_CHARS = 200


def _clip(value: str) -> str:
    """Examples are for reading: a value longer than EXAMPLE_CHARS is cut, marked with '…'."""
    return value if len(value) <= EXAMPLE_CHARS else value[: EXAMPLE_CHARS - 1] + "…"


def _spread(values: list[str], n: int) -> list[str]:
    """Pick ``n`` examples spread over the sorted values (first, middle, last...)."""
    if len(values) <= n:
        return values
    if n <= 1:
        return values[:n]
    step = (len(values) - 1) / (n - 1)
    return [values[round(i * step)] for i in range(n)]


class _FamilyAcc:
    __slots__ = (
        "budget",
        "fingerprints",
        "histogram",
        "inf_buckets",
        "labels",
        "limits",
        "name",
        "pending",
        "pending_count",
        "pending_keys",
        "series",
        "truncated",
        "type",
    )

    def __init__(self, name: str, ftype: str, limits: Limits, budget: _Budget) -> None:
        self.name = name
        self.type = ftype
        self.series = 0
        self.labels: dict[bytes, _LabelAcc] = {}
        self.truncated = False
        self.limits = limits
        self.budget = budget
        self.fingerprints = (
            HashSample(limits.series_fingerprints) if limits.series_fingerprints > 0 else None
        )
        # Per-line samples are gathered here and added in batches (see add_sample).
        self.pending: dict[str, set[str]] = {}
        self.pending_keys: list[int] = []
        self.pending_count = 0
        # Classic histograms: their le="+Inf" buckets, one per label set.
        self.histogram = ftype in ("histogram", "gaugehistogram")
        self.inf_buckets = 0

    def label(self, name: bytes) -> _LabelAcc | None:
        acc = self.labels.get(name)
        if acc is None:
            if len(self.labels) >= self.limits.max_labels_per_family:
                self.truncated = True
                return None
            acc = self.labels[name] = _LabelAcc(name.decode("ascii"), self.limits, self.budget)
        return acc

    def add_block(self, block: SampleBlock) -> None:
        self.series += block.lines
        if self.histogram:
            # In validated lines a raw '"' only delimits values, so these are label pairs.
            data, start, end = block.data, block.start, block.end
            self.inf_buckets += data.count(b'{le="+Inf"', start, end) + data.count(
                b',le="+Inf"', start, end
            )
        for name, vals in label_values(block).items():
            acc = self.label(name)
            if acc is not None:
                acc.add(vals)
        if self.fingerprints is not None:
            self.fingerprints.add_hashes(map(fingerprint, block_series_keys(block)))

    def add_sample(self, sample: Sample) -> None:
        """Count one sample of the per-line path; values are added in batches."""
        self.series += 1
        if self.histogram and ("le", "+Inf") in sample.labels:
            self.inf_buckets += 1
        pending = self.pending
        for k, v in sample.labels:
            vals = pending.get(k)
            if vals is None:
                pending[k] = {v}
            else:
                vals.add(v)
        if self.fingerprints is not None:
            self.pending_keys.append(fingerprint(series_key(sample)))
        self.pending_count += 1
        if self.pending_count >= _BATCH:
            self.flush()

    def flush(self) -> None:
        for k, vals in self.pending.items():
            acc = self.label(k.encode())
            if acc is not None:
                acc.add({v.encode() for v in vals})
        if self.fingerprints is not None:
            self.fingerprints.add_hashes(self.pending_keys)
        self.pending = {}
        self.pending_keys = []
        self.pending_count = 0

    def stats(self) -> FamilyStats:
        self.flush()
        labels = sorted(
            (acc.stats(self.series) for acc in self.labels.values()),
            key=lambda s: (-s.distinct_values, s.name),
        )
        return FamilyStats(
            self.name,
            self.type,
            self.series,
            tuple(labels),
            self.truncated,
            self.fingerprints,
            self.inf_buckets or None,
        )


def series_key(sample: Sample) -> bytes:
    """The canonical text of a sample's identity, as the fast path sees a plain line."""
    if not sample.labels:
        return sample.name.encode()
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels)
    return f"{sample.name}{{{inner}}}".encode()


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def analyse(
    data: bytes,
    *,
    content_type: str | None,
    source: str,
    limits: Limits = Limits(),
    fmt: Format | None = None,
) -> PageAnalysis:
    """Analyse one exposition page; raise ``ParseError`` if it is malformed."""
    fmt = fmt or detect_format(content_type, data)
    budget = _Budget(limits.max_exact_values_total, limits.max_value_fingerprints_total)
    families: dict[tuple[str, str], _FamilyAcc] = {}
    by_name: dict[str, _FamilyAcc] = {}
    other: _FamilyAcc | None = None
    other_names = 0
    total = 0
    current: _FamilyAcc | None = None
    for event in scan(data, fmt, source):
        if isinstance(event, Family):
            # Announced once before its first sample. A name can come back with
            # another type on OpenMetrics pages (see exposition), so key by both.
            key = (event.name, event.type)
            found = families.get(key)
            if found is not None:
                current = found
            elif len(families) < limits.max_families:
                current = families[key] = _FamilyAcc(event.name, event.type, limits, budget)
            else:
                if other is None:
                    other = _FamilyAcc(OTHER, "mixed", limits, budget)
                other_names += 1
                current = other
            if current is not other:
                by_name[event.name] = current
            continue
        if current is None or (current is not other and current.name != event.family):
            # Text pages may return to a family seen earlier (Prometheus merges them).
            current = by_name.get(event.family, other)
        assert current is not None
        if isinstance(event, SampleBlock):
            total += event.lines
            if current is other:
                current.series += event.lines
            else:
                current.add_block(event)
        else:
            total += 1
            if current is other:
                current.series += 1
            else:
                current.add_sample(event)
    fams = [acc.stats() for acc in families.values()]
    if other is not None:
        fams.append(other.stats())
    fams.sort(key=lambda f: (-f.series, f.name))
    return PageAnalysis(source, fmt, total, tuple(fams), other_names)
