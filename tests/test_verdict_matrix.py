"""The verdict matrix (benchmarks/bench_verdicts.py) in the suite: causes named, healthy quiet.

Every row runs real processes: the demo service with one planted cause (or none),
Pushgateway and node_exporter with a planted label explosion, etcd holding
hundreds of live watch streams, and Debian's Go servers under a bounded load.
``cardguard report`` looks at every row; ``cardguard serve`` at the rows where
timing matters (the planted causes within two profile intervals, and live
streams that open while it watches). The watch is shorter than the benchmark's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from support import REPO

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_verdicts as bv

pytestmark = pytest.mark.needs_go

DURATION, INTERVAL, PROFILE_INTERVAL = 8.0, 4.0, 3.0
SERVE_ROWS = {r.name for r in bv.ROWS if r.expect is not None or "live watch" in r.name}


def _row_id(row: bv.Row) -> str:
    return row.name.replace(" ", "_").replace(":", "")


def _check(v: bv.Verdict) -> None:
    assert v.found.error is None, v.found.error
    assert v.ok, bv.line(v)
    e = v.row.expect
    if e is None:
        return
    hit = v.hit
    assert hit is not None and hit[2] == e.severity, bv.line(v)
    # Named once: no second offender about the same cause under another kind.
    assert len([f for f in v.found.findings if f[2] != "info"]) == 1, bv.line(v)


@pytest.mark.parametrize("row", bv.ROWS, ids=_row_id)
def test_report_verdict(row: bv.Row) -> None:
    if row.binary and not Path(row.binary).exists():
        pytest.fail(f"{row.binary} missing: run scripts/bootstrap.sh")
    _check(bv.verdict(row, "report", DURATION, INTERVAL, PROFILE_INTERVAL))


@pytest.mark.parametrize("row", [r for r in bv.ROWS if r.name in SERVE_ROWS], ids=_row_id)
def test_serve_verdict_within_two_profile_intervals(row: bv.Row) -> None:
    if row.binary and not Path(row.binary).exists():
        pytest.fail(f"{row.binary} missing: run scripts/bootstrap.sh")
    v = bv.verdict(row, "serve", DURATION, INTERVAL, PROFILE_INTERVAL)
    _check(v)
    if row.expect is not None:
        # serve's first round plus two profile intervals, counted in heap profile rounds
        # (a loaded machine stretches the seconds, not the rounds).
        assert v.found.rounds is not None and v.found.rounds <= 3, bv.line(v)


def test_scores_count_false_alarms_and_misses() -> None:
    # Guards the matrix's arithmetic: a false alarm lowers precision, a miss recall.
    planted = bv.Row("p", bv.demo_row(), bv.Expect("heap_growth", "main.f", "warning"))
    healthy = bv.Row("h", bv.demo_row(), None)
    right = bv.Verdict(planted, "report", bv.Found([("heap_growth", "main.f", "warning")]))
    alarm = bv.Verdict(healthy, "report", bv.Found([("goroutine_leak", "main.g", "warning")]))
    quiet = bv.Verdict(healthy, "report", bv.Found([("goroutine_leak", "main.g", "info")]))
    missed = bv.Verdict(planted, "serve", bv.Found([]))
    assert bv.scores([right, quiet]) == (1.0, 1.0)
    assert bv.scores([right, alarm]) == (0.5, 1.0)
    assert bv.scores([right, missed]) == (1.0, 0.5)
    assert not alarm.ok and quiet.ok and right.ok and not missed.ok
