"""analysis.py: pages analysed in worker processes come out as in the caller; little travels.

Real worker processes (forkserver children, as ``serve`` starts them) on the
recorded pages of real client_golang processes (tests/testdata/metrics).
"""

from __future__ import annotations

import os
import random
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardguard.analyse import cardinality
from cardguard.analyse.cardinality import Limits
from cardguard.analyse.view import values_from_page
from cardguard.detect import verdict
from cardguard.errors import ParseError
from cardguard.run.analysis import (
    AnalysisError,
    InlineAnalyser,
    PageRequest,
    ProcessAnalyser,
    goroutines_from_page,
)
from cardguard.settings.rules import DEFAULT_RULES
from support import TESTDATA

PAGE = (TESTDATA / "metrics" / "demo-1.txt").read_bytes()
TEXT = "text/plain; version=0.0.4; charset=utf-8"
LIMITS = Limits(exact_value_cap=10_000, max_families=1000, series_fingerprints=512)
TRAFFIC = DEFAULT_RULES.for_target("t").heap_growth.traffic_metric
VALUE = re.compile(rb"^([^#\n][^\n]* )([^ \n]+)$", re.M)


def request(data: bytes, token: int | None, key: str = "t") -> PageRequest:
    return PageRequest(key, token, data, TEXT, "t http://t/metrics", LIMITS, TRAFFIC)


def new_values(data: bytes, seed: int) -> bytes:
    rnd = random.Random(seed)
    return VALUE.sub(lambda m: m.group(1) + str(rnd.randrange(10**6)).encode(), data)


@pytest.fixture
def pool() -> Iterator[ProcessAnalyser]:
    p = ProcessAnalyser(2)
    try:
        yield p
    finally:
        p.close()


@pytest.mark.parametrize("where", ["inline", "process"])
def test_same_series_travel_as_nothing(where: str, pool: ProcessAnalyser) -> None:
    analyser = pool if where == "process" else InlineAnalyser()
    first = analyser.analyse(request(PAGE, None), None)
    want = cardinality.analyse(PAGE, content_type=TEXT, source="t http://t/metrics", limits=LIMITS)
    assert first.analysis == want and first.analysed == len(want.families)
    assert first.goroutines == goroutines_from_page(PAGE) and first.goroutines
    nxt = analyser.analyse(request(new_values(PAGE, 1), first.token), first.analysis)
    assert nxt.analysis is None and nxt.token == first.token  # the caller keeps its analysis
    assert nxt.reused == len(want.families) and nxt.analysed == 0
    # Values are read from this page, not the last one.
    assert nxt.values.memory != first.values.memory
    # A caller that holds nothing (a new worker) gets the whole analysis again.
    again = analyser.analyse(request(new_values(PAGE, 2), first.token), None)
    assert again.analysis == want


def test_after_a_partial_change_unchanged_families_are_the_callers_own(
    pool: ProcessAnalyser,
) -> None:
    first = pool.analyse(request(PAGE, None), None)
    assert first.analysis is not None
    line = next(ln for ln in PAGE.split(b"\n") if ln.startswith(b"demo_http_request_duration"))
    grown = PAGE.replace(line, line + b"\n" + line.replace(b'="/', b'="/new/', 1), 1)
    res = pool.analyse(request(grown, first.token), first.analysis)
    assert res.analysis is not None and res.analysed == 1
    want = cardinality.analyse(grown, content_type=TEXT, source="t http://t/metrics", limits=LIMITS)
    assert res.analysis == want
    held = {id(f) for f in first.analysis.families}
    mine = [f for f in res.analysis.families if id(f) in held]
    assert len(mine) == len(want.families) - 1  # only the changed family crossed the pipe


def test_parse_errors_and_dead_workers(pool: ProcessAnalyser) -> None:
    bad = PAGE.replace(b"\ngo_goroutines ", b"\ngo_goroutines{ ", 1)
    with pytest.raises(ParseError) as exc:
        pool.analyse(request(bad, None), None)
    with pytest.raises(ParseError) as want:
        cardinality.analyse(bad, content_type=TEXT, source="t http://t/metrics", limits=LIMITS)
    assert str(exc.value) == str(want.value)
    first = pool.analyse(request(PAGE, None), None)
    assert first.analysis is not None
    old_pids = pool.pids()
    for pid in old_pids:
        os.kill(pid, signal.SIGKILL)
    # A worker found dead is replaced before the page is sent; one that dies with the page
    # is an AnalysisError for that page. Either way the next page goes to a fresh process,
    # which knows nothing yet: a whole analysis, never a reuse of what died.
    try:
        res = pool.analyse(request(PAGE, first.token), first.analysis)
    except AnalysisError as exc:
        assert "analysis process exited" in str(exc)
        res = pool.analyse(request(PAGE, first.token), first.analysis)
    assert res.analysis == first.analysis and res.analysed == len(first.analysis.families)
    assert not set(pool.pids()) & set(old_pids)


def test_stopped_pool_refuses_at_once(pool: ProcessAnalyser) -> None:
    pool.analyse(request(PAGE, None), None)
    pool.close()
    with pytest.raises(AnalysisError):
        pool.analyse(request(PAGE, None), None)


TEXT_PAGES = sorted(p for p in (TESTDATA / "metrics").glob("*.txt") if p.stat().st_size > 0)


@pytest.mark.parametrize("path", TEXT_PAGES, ids=lambda p: p.name)
def test_values_and_identity_from_segments_equal_the_whole_page(path: Path) -> None:
    """The values the rules read and the process identity, taken from the page's segments
    (plain ones without a second scan), are what reading the whole page gives: on a first
    page, on the same series with new values (every segment reused), and with a series
    added (one segment analysed afresh)."""
    first = path.read_bytes()
    try:
        cardinality.analyse(first, content_type=TEXT, source="t")
    except ParseError:
        pytest.skip("a page the parser refuses")
    changed = new_values(first, 7)
    added = changed + b'cardguard_test_added{x="1"} 1\n'
    a = InlineAnalyser()
    token = None
    for page in (first, changed, added, new_values(first, 8)):
        res = a.analyse(request(page, token), None)
        token = res.token
        want = values_from_page(page, "text", "t", TRAFFIC)
        assert res.values == want
        assert res.identity == verdict.identity(page, "text", "t")
        assert res.goroutines == goroutines_from_page(page)
