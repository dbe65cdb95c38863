"""cardguard against the text-format parser tests of Prometheus, prometheus/common, client_python.

tests/testdata/corpora/exposition-text holds, per project, every
text-format input its parser tests feed a parser, byte for byte, with the
result their parser gives (the series it reads, that it reads the page, or
its error and, where the error says, the line); its README names the
revisions and licences and how the data was taken.

Each input is either read by cardguard with the same series as the reference
(``matched``), or refused where the reference refuses it, on the same line
when the reference names one (``refused``). The rest are listed in DIFFERS
with the reason: there cardguard does what Prometheus does and the reference
does not (test_prometheus_oracle scrapes every corpus input with a real
Prometheus 2.42 and checks cardguard against it), or reads what the reference
reads beyond Prometheus' own rules. ``corpus_table`` gives the counts the
issue asks for.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cardguard.errors import ParseError
from cardguard.parse import exposition, model
from support import TESTDATA

CORPORA_DIR = TESTDATA / "corpora" / "exposition-text"
CORPORA = sorted(p.name for p in CORPORA_DIR.iterdir() if (p / "cases.json").exists())

Series = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Case:
    corpus: str
    id: str
    data: bytes
    fmt: model.Format
    expect: dict[str, Any]

    @property
    def key(self) -> str:
        """``corpus/NNN``: the case's number in its cases.json."""
        return f"{self.corpus}/{self.id.split()[0]}"


def load(corpus: str) -> list[Case]:
    root = CORPORA_DIR / corpus
    doc = json.loads((root / "cases.json").read_text())
    return [
        Case(corpus, c["id"], (root / c["input"]).read_bytes(), c["format"], c)
        for c in doc["cases"]
    ]


CASES = [case for corpus in CORPORA for case in load(corpus)]
BY_KEY = {c.key: c for c in CASES}


def _bound(value: str) -> str:
    """``le``/``quantile`` values compared as numbers (Prometheus 3 rewrites "1" as "1.0")."""
    try:
        f = float(value)
    except ValueError:
        return value
    return "+Inf" if f == math.inf else "-Inf" if f == -math.inf else repr(f)


def _normal(name: str, labels: Any) -> Series:
    return name, tuple(sorted((k, _bound(v) if k in ("le", "quantile") else v) for k, v in labels))


_CREATED_OWNERS = ("counter", "histogram", "summary")


def read(case: Case) -> tuple[str, frozenset[Series], ParseError | None]:
    """cardguard's reading of a case: "read" with its series, or "error" with the error."""
    try:
        events = list(exposition.parse(case.data, case.fmt, case.id))
    except ParseError as exc:
        return "error", frozenset(), exc
    types = {e.name: e.type for e in events if isinstance(e, model.Family)}
    series = set()
    for e in events:
        if not isinstance(e, model.Sample):
            continue
        if (
            case.expect.get("skip_created")
            and e.name.endswith("_created")
            and types.get(e.family) in _CREATED_OWNERS
        ):
            continue  # the reference parser ran with _created series skipped
        name = e.name
        if (
            case.corpus == "client_python"
            and case.fmt == "text"
            and types.get(e.family) == "counter"
            and name == e.family
            and not name.endswith("_total")
        ):
            # client_python's text parser reports a counter's samples as <name>_total.
            name += "_total"
        series.add(_normal(name, e.labels))
    return "read", frozenset(series), None


def outcome(case: Case) -> tuple[str, str]:
    """``matched``, ``refused`` or ``differs``, and what differs."""
    _, series, err = read(case)
    want = case.expect["expect"]
    if want == "error":
        if err is None:
            return "differs", f"reference refuses ({case.expect['error']}); cardguard reads it"
        line = case.expect.get("line")
        if line is not None and err.line != line:
            return "differs", f"refused on line {err.line}, the reference on line {line}"
        return "refused", ""
    if err is not None:
        return "differs", f"reference reads it; cardguard refuses: {err}"
    if want == "series":
        expected = frozenset(_normal(n, ls) for n, ls in case.expect["series"])
        if series != expected:
            extra = sorted(series - expected)[:3]
            missing = sorted(expected - series)[:3]
            return "differs", f"series differ: extra {extra}, missing {missing}"
    return "matched", ""


def corpus_table() -> dict[str, Counter[str]]:
    """Per corpus: inputs, matched, refused as the reference refuses, and the rest."""
    table: dict[str, Counter[str]] = {}
    for case in CASES:
        row = table.setdefault(case.corpus, Counter())
        row["inputs"] += 1
        row[outcome(case)[0]] += 1
    return table


def _keys(corpus: str, *numbers: int | range) -> list[str]:
    out = []
    for n in numbers:
        out += [f"{corpus}/{i:03d}" for i in (n if isinstance(n, range) else (n,))]
    return out


_CP_EXEMPLARS = _keys("client_python", 164, range(171, 178))
_CP_SEMANTICS = [
    k
    for k in _keys("client_python", range(123, 132), range(178, 245))
    if k not in ("client_python/130", "client_python/230", "client_python/232")
]

# Cases where cardguard's reading differs from the reference's, by reason. Where
# the reason says Prometheus reads or refuses, test_prometheus_oracle checks it
# against Prometheus 2.42, which scrapes every corpus input (as Prometheus 3
# where 2.42 cannot read the page at all: quoted names, exemplars on any sample).
_DIFFERS_BY_REASON: dict[str, list[str]] = {
    "Prometheus refuses a label set that opens with a comma, and a TYPE line with two "
    "blanks before the type (the type is then ' counter'); client_python's text parser "
    "reads both": _keys("client_python", 1, 8),
    "Prometheus' OpenMetrics parser allows no blank inside a label set; "
    "client_python's does": _keys("client_python", 47, 56, 266, 269, 292),
    "client_python checks OpenMetrics' semantic rules (metadata placement and repeats, "
    "units, counter, info and stateset values, le and quantile labels, histogram "
    "structure, grouping, timestamps); Prometheus ingests the page regardless": _CP_SEMANTICS,
    "client_python takes exemplars on *_total and *_bucket samples only, of at most 128 "
    "characters; Prometheus (since 2.43) takes them on any sample, of any length": _CP_EXEMPLARS,
    "Prometheus refuses a native histogram whose count is not the number of observations "
    "in its buckets; client_python's tests write such histograms (24 counted, 22 in "
    "buckets)": _keys("client_python", 263, 265, 267, 268, 270, 307, 308, 309, 311)
    + _keys("client_python", 312, 313, 314, 315, 317),
    "Prometheus' text parser takes only digits for a timestamp; expfmt reads a negative one": _keys(
        "common-expfmt", 3, 66
    ),
    "Prometheus' text parser knows five metric types; expfmt also reads gaugehistogram "
    "and gauge_histogram": _keys("common-expfmt", 15, 16, 17),
    "Prometheus reads a page whose last line has no newline": _keys("common-expfmt", 18),
    "Prometheus takes any backslash escape in a quoted string and keeps the ones it does "
    "not decode; expfmt refuses them": _keys("common-expfmt", 19, 54, 56),
    "Prometheus does not require le and quantile values to be numbers": _keys(
        "common-expfmt", 25, 37, 50, 51
    ),
    "Prometheus ingests a repeated HELP or TYPE, and a TYPE after the samples": _keys(
        "common-expfmt", 30, 31, 32
    ),
    "Prometheus does not check a histogram's counts": _keys("common-expfmt", range(61, 65)),
    "an OpenMetrics 2.0 composite classic histogram (bucket:[...]): not read, no released "
    "Prometheus reads one": _keys("prometheus-om2", 5),
}
DIFFERS: dict[str, str] = {
    key: reason for reason, keys in _DIFFERS_BY_REASON.items() for key in keys
}


@pytest.mark.parametrize("key", [c.key for c in CASES])
def test_corpus_case(key: str) -> None:
    case = BY_KEY[key]
    result, detail = outcome(case)
    if key in DIFFERS:
        assert result == "differs", f"now {result}: drop it from DIFFERS"
        return
    assert result in ("matched", "refused"), detail


def test_differs_list_is_exact() -> None:
    differs = {c.key for c in CASES if outcome(c)[0] == "differs"}
    assert differs == set(DIFFERS)
    assert sum(len(keys) for keys in _DIFFERS_BY_REASON.values()) == len(DIFFERS)


def test_every_corpus_is_there() -> None:
    assert set(CORPORA) == {"client_python", "common-expfmt", "prometheus", "prometheus-om2"}
    for corpus in CORPORA:
        root = CORPORA_DIR / corpus
        assert "Apache License" in (root / "LICENSE").read_text()
        assert "Prometheus Authors" in (root / "NOTICE").read_text()
        assert all(
            Path(root / c["input"]).exists()
            for c in json.loads((root / "cases.json").read_text())["cases"]
        )
    table = corpus_table()
    assert all(row["inputs"] > 10 for row in table.values())
