"""incremental.py: reusing unchanged families gives the whole-page analysis, never a stale one.

Pages are the recorded ones under tests/testdata/metrics (real client_golang
processes, see record.sh); "next scrapes" are made from them by changing
sample values only, or by adding, removing or editing series.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from cardguard.analyse import cardinality, incremental
from cardguard.analyse.cardinality import Limits, PageAnalysis
from cardguard.errors import ParseError
from support import TESTDATA

METRICS = TESTDATA / "metrics"
TEXT_PAGES = sorted(p for p in METRICS.glob("*.txt") if p.name != "omserver.om.txt")
LIMITS = Limits(exact_value_cap=10_000, max_families=1000, series_fingerprints=512)
# A sample line's value (and timestamp), the only thing a value-only change touches.
VALUE = re.compile(rb"^([^#\n][^\n]* )([^ \n]+)$", re.M)


def analyse(data: bytes, memo: incremental.Memo | None = None) -> incremental.Outcome:
    return incremental.analyse(
        data, content_type="text/plain; version=0.0.4", source="t", limits=LIMITS, memo=memo
    )


def whole(data: bytes) -> PageAnalysis:
    return cardinality.analyse(data, content_type="text/plain", source="t", limits=LIMITS)


def same(a: PageAnalysis, b: PageAnalysis) -> bool:
    """Equal analyses, series and value hashes included (they compare=False on the objects)."""
    if a != b:
        return False
    for fa, fb in zip(a.families, b.families, strict=True):
        if (fa.fingerprints and fa.fingerprints.hashes) != (
            fb.fingerprints and fb.fingerprints.hashes
        ):
            return False
        for la, lb in zip(fa.labels, fb.labels, strict=True):
            if (la.values and la.values.hashes) != (lb.values and lb.values.hashes):
                return False
    return True


def new_values(data: bytes, seed: int) -> bytes:
    rnd = random.Random(seed)
    return VALUE.sub(lambda m: m.group(1) + str(rnd.randrange(10**9)).encode(), data)


@pytest.mark.parametrize("path", TEXT_PAGES, ids=lambda p: p.name)
def test_first_page_equals_whole_page_analysis(path: Path) -> None:
    data = path.read_bytes()
    out = analyse(data)
    assert same(out.analysis, whole(data))
    assert out.memo is not None and out.memo.parts is not None  # every recorded page splits


@pytest.mark.parametrize("path", TEXT_PAGES, ids=lambda p: p.name)
def test_values_only_change_reuses_everything(path: Path) -> None:
    data = path.read_bytes()
    first = analyse(data)
    nxt = new_values(data, 1)
    assert nxt != data
    out = analyse(nxt, first.memo)
    assert out.unchanged and out.analysed == 0
    assert out.analysis is first.analysis  # the very object: churn and pickling skip it
    assert same(out.analysis, whole(nxt))


def test_new_series_reanalyses_only_its_family() -> None:
    data = (METRICS / "demo-0.txt").read_bytes()
    first = analyse(data)
    fam = "demo_http_request_duration_seconds"
    line = next(ln for ln in data.split(b"\n") if ln.startswith(fam.encode() + b"{"))
    added = data.replace(line, line + b"\n" + line.replace(b'="/', b'="/brand-new/', 1), 1)
    out = analyse(new_values(added, 2), first.memo)
    assert not out.unchanged
    assert out.analysed == 1 and out.reused == len(first.analysis.families) - 1
    assert same(out.analysis, whole(new_values(added, 2)))
    before = first.analysis.family(fam)
    after = out.analysis.family(fam)
    assert before is not None and after is not None and after.series == before.series + 1


def test_removed_and_edited_series_are_never_reused() -> None:
    data = (METRICS / "prometheus.txt").read_bytes()
    first = analyse(data)
    lines = data.split(b"\n")
    sample = next(i for i, ln in enumerate(lines) if ln.startswith(b"prometheus_http_requests"))
    removed = b"\n".join(lines[:sample] + lines[sample + 1 :])
    edited = data.replace(b'code="200"', b'code="201"', 1)
    helped = data.replace(b"# HELP go_goroutines Number", b"# HELP go_goroutines The number", 1)
    for changed in (removed, edited, helped):
        assert changed != data
        out = analyse(changed, first.memo)
        assert not out.unchanged and out.analysed >= 1
        assert same(out.analysis, whole(changed))


def test_a_bad_value_is_a_parse_error_not_a_reuse() -> None:
    data = (METRICS / "demo-1.txt").read_bytes()
    first = analyse(data)
    bad = VALUE.sub(lambda m: m.group(1) + b"twelve", data, count=1)
    with pytest.raises(ParseError) as exc:
        analyse(bad, first.memo)
    with pytest.raises(ParseError) as want:
        whole(bad)
    assert str(exc.value) == str(want.value)  # the same message and line number


def test_values_moved_between_lines_are_caught() -> None:
    """Stripped text and count alone would match: one line lost its value, a blank line got one."""
    page = b"# TYPE a gauge\na 1\n\nb 2\n"
    first = analyse(page)
    assert first.memo is not None
    hostile = b"# TYPE a gauge\na\n 1\nb 2\n"
    with pytest.raises(ParseError):
        whole(hostile)
    with pytest.raises(ParseError):
        analyse(hostile, first.memo)


def test_a_family_split_over_two_runs_is_analysed_whole() -> None:
    returns = b'# TYPE a gauge\na{x="1"} 1\n# TYPE b gauge\nb 1\n# HELP c c\na{x="2"} 2\n'
    suffixed = b'# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\n'
    suffixed += b"# TYPE g gauge\ng 1\nh_sum 3\nh_count 1\n"
    for page in (returns, suffixed):
        first = analyse(page)
        assert same(first.analysis, whole(page))
        assert first.memo is not None and first.memo.parts is None  # a or h spans two runs
        out = analyse(new_values(page, 3), first.memo)
        assert out.unchanged and same(out.analysis, whole(new_values(page, 3)))
        grown = page + b'a{x="3"} 1\n'
        out = analyse(grown, first.memo)
        assert not out.unchanged and same(out.analysis, whole(grown))


def test_changed_limits_or_formats_start_afresh() -> None:
    data = (METRICS / "omserver.txt").read_bytes()
    first = analyse(data)
    other = incremental.analyse(
        data,
        content_type="text/plain",
        source="t",
        limits=Limits(exact_value_cap=5, series_fingerprints=512),
        memo=first.memo,
    )
    assert not other.unchanged and other.reused == 0
    om = (METRICS / "omserver.om.txt").read_bytes()
    out = incremental.analyse(
        om, content_type="application/openmetrics-text", source="t", limits=LIMITS
    )
    assert out.memo is None and not out.unchanged
    assert out.analysis == cardinality.analyse(
        om, content_type="application/openmetrics-text", source="t", limits=LIMITS
    )
