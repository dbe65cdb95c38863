"""cardguard against the OpenMetrics conformance cases in tests/testdata/openmetrics-parsers.

Every case that must parse parses, and the series cardguard finds per family
are the ones prometheus_client's OpenMetrics parser finds. Every bad case is
either rejected with an error that names its line, or listed in TOLERATED
because Prometheus ingests it (cardguard reads pages as Prometheus' scrape
parser does; test_prometheus_oracle scrapes every case with a real
Prometheus and checks both this list and the rejections). No case crashes or
hangs the parser in either format.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from cardguard.analyse.cardinality import analyse
from cardguard.errors import ParseError
from cardguard.parse import exposition, model
from support import TESTDATA

CASES_DIR = TESTDATA / "openmetrics-parsers"
CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir())

# bad_* cases cardguard accepts because Prometheus ingests them, by reason:
# Prometheus' OpenMetrics parser checks syntax, types, units and where
# exemplars may go, and nothing of what the values or the order of samples mean.
_TOLERATED_BY_REASON: dict[str, list[str]] = {
    "metadata may repeat, clash with other families or come after samples": [
        "bad_clashing_names_0",
        "bad_clashing_names_1",
        "bad_clashing_names_2",
        "bad_metadata_in_wrong_place_0",
        "bad_metadata_in_wrong_place_1",
        "bad_metadata_in_wrong_place_2",
        "bad_repeated_metadata_0",
        "bad_repeated_metadata_1",
        "bad_repeated_metadata_3",
        "bad_unit_6",
        "bad_unit_7",
    ],
    "counter, histogram and summary values are not checked (negative, NaN)": [
        f"bad_counter_values_{i}" for i in range(20)
    ],
    "histogram structure is not checked (buckets, +Inf, _count and _sum, order)": [
        f"bad_histograms_{i}" for i in (0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14)
    ],
    "samples of a family or label group may interleave; repeats need no timestamps": [
        f"bad_grouping_or_ordering_{i}" for i in (0, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    ],
    "le, quantile and stateset labels are not required or checked": [
        f"bad_missing_or_invalid_labels_for_a_type_{i}" for i in range(8)
    ],
    "info and stateset values are not checked": [
        "bad_info_and_stateset_values_0",
        "bad_info_and_stateset_values_1",
        "bad_stateset_info_values_0",
        "bad_stateset_info_values_1",
        "bad_stateset_info_values_2",
        "bad_stateset_info_values_3",
    ],
    "exemplar length is not checked": ["bad_exemplar_complex_chars", "bad_exemplars_6"],
    # Prometheus 2.42 refuses these; every Prometheus since 2.43 ingests them.
    "exemplars may go on any sample": [
        *(f"bad_exemplars_on_unallowed_metric_types_{i}" for i in range(3)),
        *(f"bad_exemplars_on_unallowed_samples_{i}" for i in range(4)),
    ],
}
TOLERATED: dict[str, str] = {
    name: f"Prometheus ingests it: {reason}"
    for reason, names in _TOLERATED_BY_REASON.items()
    for name in names
}


def _case(path: Path) -> tuple[bytes, bool]:
    spec = json.loads((path / "test.json").read_text())
    assert spec["type"] == "text"
    return (path / spec["file"]).read_bytes(), bool(spec["shouldParse"])


def _series(
    events: list[model.Event],
) -> dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]]:
    out: dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]] = defaultdict(set)
    for e in events:
        if isinstance(e, model.Sample):
            out[e.family].add((e.name, tuple(sorted(e.labels))))
    return dict(out)


def test_case_count() -> None:
    good = [c for c in CASES if _case(c)[1]]
    assert len(CASES) == 211
    assert len(good) == 44


GOOD = [c for c in CASES if _case(c)[1]]
BAD = [c for c in CASES if not _case(c)[1]]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_must_parse_matches_prometheus_client(case: Path) -> None:
    data, _ = _case(case)
    assert exposition.detect_format(None, data) == "openmetrics"
    mine = _series(list(exposition.parse(data, "openmetrics", case.name)))
    theirs: dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]] = defaultdict(set)
    for fam in text_string_to_metric_families(data.decode("utf-8")):
        for s in fam.samples:
            theirs[fam.name].add((s.name, tuple(sorted(s.labels.items()))))
    assert mine == {k: v for k, v in theirs.items() if v}
    analysis = analyse(data, content_type=None, source=case.name)
    assert analysis.format == "openmetrics"
    assert analysis.total_series == sum(
        1 for e in exposition.parse(data, "openmetrics", case.name) if isinstance(e, model.Sample)
    )


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_bad_case_rejected_naming_the_line(case: Path) -> None:
    data, _ = _case(case)
    if case.name in TOLERATED:
        list(exposition.parse(data, "openmetrics", case.name))
        analyse(data, content_type="application/openmetrics-text", source=case.name)
        return
    with pytest.raises(ParseError) as info:
        list(exposition.parse(data, "openmetrics", case.name))
    err = info.value
    assert err.source == case.name
    lines = max(1, data.count(b"\n") + (0 if data.endswith(b"\n") else 1))
    assert 1 <= err.line <= lines
    assert str(err).startswith(f"{case.name}:{err.line}: ")
    assert err.message
    # The analysis reports the same error rather than some other failure.
    with pytest.raises(ParseError):
        analyse(data, content_type="application/openmetrics-text", source=case.name)


def test_tolerated_list_is_exact() -> None:
    accepted = set()
    for case in BAD:
        data, _ = _case(case)
        try:
            list(exposition.parse(data, "openmetrics", case.name))
        except ParseError:
            continue
        accepted.add(case.name)
    assert accepted == set(TOLERATED)


@pytest.mark.timeout(60)
def test_no_case_crashes_either_parser() -> None:
    """Both formats on every case: a result or a ParseError with a line, nothing else."""
    outcomes = {"ok": 0, "rejected": 0}
    for case in CASES:
        data, _ = _case(case)
        for fmt in ("text", "openmetrics"):
            for fast in (True, False):
                try:
                    list(exposition.parse(data, fmt, case.name, fast=fast))
                    outcomes["ok"] += 1
                except ParseError as exc:
                    assert exc.line >= 1, exc
                    outcomes["rejected"] += 1
    assert outcomes["ok"] + outcomes["rejected"] == len(CASES) * 4
