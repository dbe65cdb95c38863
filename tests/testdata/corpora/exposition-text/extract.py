"""Regenerate the Prometheus and prometheus/common corpora here from those projects' tests.

Usage (from the repository root, with bare or full clones of the sources)::

    .venv/bin/python tests/testdata/corpora/exposition-text/extract.py \\
        --prometheus PATH/prometheus.git --common PATH/common.git

Each corpus gets ``cases.json`` (where each input came from, its format,
and what the reference parser makes of it) and ``inputs/`` (the pages,
byte for byte), plus the project's LICENSE and NOTICE. The inputs and
expected results are read as data from the projects' Go test files
(golit.py reads their literals); nothing of theirs is built or run:

* Prometheus (REVISIONS["prometheus"]): model/textparse's promparse and
  openmetricsparse tests (inputs and expected series, or errors) and its
  testdata pages; and, for native histograms in OpenMetrics text, the
  OpenMetrics 2.0 parser tests of branch krajo/update-pr-18606
  (REVISIONS["prometheus-om2"]).
* prometheus/common (REVISIONS["common"]): expfmt's text parser tests (the
  expected MetricFamily messages turned into the series of the page) and its
  fuzz corpus; its testdata page is the one tests/testdata/corpora/expfmt
  holds already.

The client_python corpus was recorded once (see README.md); no script that
runs client_python's code is kept.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXPFMT_COPY = HERE.parent / "expfmt"
sys.path.insert(0, str(HERE))

import golit  # noqa: E402

REVISIONS = {
    "prometheus": "v3.14.0",
    "prometheus-om2": "68217bff2831673630a5b46721e1c71fc84e0a42",
    "common": "d2417e2cbb82c4c81e4d28d55f354058169a9f08",
}


LEGAL = ("LICENSE", "NOTICE")


def git_show(repo: Path, rev: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(repo), "show", f"{rev}:{path}"], capture_output=True, check=True
    ).stdout


def git_ls(repo: Path, rev: str, path: str) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", rev, path],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return out.split()


class Corpus:
    """Cases of one corpus, written as inputs/NNN-slug.txt and cases.json."""

    def __init__(self, name: str, source: dict[str, Any]) -> None:
        self.name = name
        self.source = source
        self.cases: list[dict[str, Any]] = []
        self.inputs: dict[str, bytes] = {}

    def add(
        self, origin: str, data: bytes, fmt: str, expect: dict[str, Any], file: str = ""
    ) -> None:
        """Add a case; ``file`` names an input already in this repository instead of a copy."""
        if not file:
            slug = re.sub(r"[^A-Za-z0-9]+", "-", origin).strip("-").lower()[:60]
            file = f"inputs/{len(self.cases):03d}-{slug}.txt"
            self.inputs[file] = data
        self.cases.append(
            {"id": f"{len(self.cases):03d} {origin}", "input": file, "format": fmt, **expect}
        )

    def write(self, license_text: bytes, notice: bytes) -> None:
        root = HERE / self.name
        if (root / "inputs").exists():
            for old in (root / "inputs").iterdir():
                old.unlink()
        (root / "inputs").mkdir(parents=True, exist_ok=True)
        for file, data in self.inputs.items():
            (root / file).write_bytes(data)
        (root / "LICENSE").write_bytes(license_text)
        (root / "NOTICE").write_bytes(notice)
        doc = {"source": self.source, "cases": self.cases}
        (root / "cases.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


# --- expectations -----------------------------------------------------------------


def series_expect(series: list[tuple[str, list[tuple[str, str]]]], **extra: Any) -> dict[str, Any]:
    distinct = sorted({(n, tuple(sorted(ls))) for n, ls in series})
    return {
        "expect": "series",
        "series": [[n, [list(p) for p in ls]] for n, ls in distinct],
        **extra,
    }


def error_expect(message: str, data: bytes, line: int | None = None) -> dict[str, Any]:
    if line is None:
        line = _error_line(message, data)
    return {"expect": "error", "error": message, "line": line}


_WHILE_PARSING = re.compile(r'while parsing: ("(?:[^"\\]|\\.)*")')


def _error_line(message: str, data: bytes) -> int | None:
    """The line a Prometheus parse error points at: where its quoted fragment starts."""
    m = _WHILE_PARSING.search(message)
    if m is None:
        return None
    fragment = golit.go_string(m.group(1))
    head = fragment.split(b"\n", 1)[0]
    pos = 0
    while True:
        i = data.find(head, pos)
        if i < 0:
            return None
        if i == 0 or data[i - 1] == 0x0A:
            return data.count(b"\n", 0, i) + 1
        pos = i + 1


def _lset(expr: Any) -> list[tuple[str, str]] | None:
    """The labels of an ``lset:`` expression (the plain variant where there are two)."""
    kind = expr[0]
    if kind != "call":
        raise ValueError(expr)
    fn = expr[1][1] if expr[1][0] == "name" else ""
    args = expr[2]
    if fn == "labels.FromStrings":
        vals = [golit.string_value(a).decode() for a in args]
        return list(zip(vals[::2], vals[1::2], strict=True))
    if fn == "labels.EmptyLabels":
        return None
    if fn == "typeAndUnitLabels":
        return _lset(args[2])
    if fn == "todoDetectFamilySwitch":
        return _lset(args[1])
    raise ValueError(f"unknown lset expression {fn}")


def _series_of(pairs: list[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    name = next(v for k, v in pairs if k == "__name__")
    return name, [(k, v) for k, v in pairs if k != "__name__"]


_SIMPLE_SERIES = re.compile(r"^([^{]+)(?:\{(.*)\})?$")
_SIMPLE_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')


def _series_from_m(m: str) -> tuple[str, list[tuple[str, str]]]:
    """A series from an expectation's ``m`` text, for tests that give nothing else."""
    match = _SIMPLE_SERIES.match(m)
    assert match is not None, m
    return match.group(1), _SIMPLE_PAIR.findall(match.group(2) or "")


def _entries(comp: Any) -> list[dict[str, Any]]:
    out = []
    for _, entry in comp[2]:
        out.append({k[1]: v for k, v in entry[2]})
    return out


def _expected_series(comp: Any, *, from_m: bool = False) -> list[tuple[str, list[tuple[str, str]]]]:
    series = []
    for e in _entries(comp):
        if "lset" in e:
            pairs = _lset(e["lset"])
            if pairs:
                series.append(_series_of(pairs))
            elif from_m:
                series.append(_series_from_m(golit.string_value(e["m"]).decode()))
        elif from_m and "m" in e and not ({"help", "typ", "unit", "comment"} & e.keys()):
            series.append(_series_from_m(golit.string_value(e["m"]).decode()))
    return series


# --- Prometheus --------------------------------------------------------------------


def _body_value(toks: list[golit.Tok], start: int, end: int, *spelling: str) -> Any:
    i = golit.find(toks, start, *spelling)
    if i < 0 or i > end:
        raise KeyError(spelling)
    return golit.Parser(toks, i + len(spelling)).expr()


def _input_of(toks: list[golit.Tok], start: int, end: int) -> bytes:
    data = golit.string_value(_body_value(toks, start, end, "input", ":="))
    i = start
    while True:
        i = golit.find(toks, i + 1, "input", "+=")
        if i < 0 or i > end:
            return data
        data += golit.string_value(golit.Parser(toks, i + 2).expr())


def prometheus_textparse(repo: Path, corpus: Corpus) -> None:
    rev = REVISIONS["prometheus"]
    for test_file, fmt in (
        ("model/textparse/promparse_test.go", "text"),
        ("model/textparse/openmetricsparse_test.go", "openmetrics"),
    ):
        src = git_show(repo, rev, test_file).decode()
        toks = golit.tokens(src)
        base = test_file.rsplit("/", 1)[-1]
        skip = {"skip_created": True} if fmt == "openmetrics" else {}
        for fn in (
            "TestPromParse",
            "TestUTF8PromParse",
            "TestOpenMetricsParse",
            "TestOpenMetricsParse_UTF8",
        ):
            try:
                a, b = golit.function_body(toks, fn)
            except KeyError:
                continue
            data = _input_of(toks, a, b)
            exp = _body_value(toks, a, b, "exp", ":=")
            corpus.add(f"{base} {fn}", data, fmt, series_expect(_expected_series(exp), **skip))
        for fn in (
            "TestPromParseErrors",
            "TestOpenMetricsParseErrors",
            "TestPromNullByteHandling",
            "TestOMNullByteHandling",
        ):
            try:
                a, b = golit.function_body(toks, fn)
            except KeyError:
                continue
            cases = _body_value(toks, a, b, "cases", ":=")
            for n, case in enumerate(_entries(cases)):
                data = golit.string_value(case["input"])
                err = golit.string_value(case["err"]).decode("utf-8", "replace")
                origin = f"{base} {fn} #{n}"
                if err in ("", "EOF"):
                    corpus.add(origin, data, fmt, {"expect": "read"})
                else:
                    corpus.add(origin, data, fmt, error_expect(err, data))
        for fn, data in (
            ("TestPromParseBareIdentifierInBraces", b"{A} 0\n"),
            ("TestOpenMetricsParseBareIdentifierInBraces", b"{A} 0\n# EOF\n"),
        ):
            if f"func {fn}(" in src:
                # The test only checks that parsing does not panic; the parser
                # refuses the line as its error tests show ("{A}0": expected equal).
                msg = 'expected equal, got "}" ("BCLOSE")'
                corpus.add(f"{base} {fn}", data, fmt, error_expect(msg, data, 1))
        if "func TestSTParseFailures(" in src:
            a, b = golit.function_body(toks, "TestSTParseFailures")
            i = golit.find(toks, a, "range")
            table = golit.Parser(toks, i + 1).expr()
            for case in _entries(table):
                data = golit.string_value(case["input"])
                name = golit.string_value(case["name"]).decode()
                expect = series_expect(_expected_series(case["expected"], from_m=True), **skip)
                corpus.add(f"{base} TestSTParseFailures {name}", data, fmt, expect)
    for path in git_ls(repo, rev, "model/textparse/testdata"):
        fmt = "openmetrics" if path.endswith(".om.txt") else "text"
        # Benchmark inputs: the benchmarks need them to parse, nothing more.
        corpus.add(path.rsplit("/", 1)[-1], git_show(repo, rev, path), fmt, {"expect": "read"})


_NH_TESTS = (
    "TestOpenMetrics2ParseNativeHistogram",
    "TestOpenMetrics2ParseNativeHistogramOmittedEmptyFields",
    "TestOpenMetrics2ParseNativeHistogramOmittedPositiveFields",
    "TestOpenMetrics2ParseFloatHistogram",
    "TestOpenMetrics2ParseCompositeGaugeHistogram",
    "TestOpenMetrics2ParseExemplarOnCompositeLine",
)


def prometheus_om2(repo: Path, corpus: Corpus) -> None:
    """Native histogram cases of Prometheus' OpenMetrics 2.0 parser tests (unreleased branch)."""
    rev = REVISIONS["prometheus-om2"]
    base = "openmetrics2parse_test.go"
    src = git_show(repo, rev, "model/textparse/" + base).decode()
    toks = golit.tokens(src)
    for fn in _NH_TESTS:
        a, b = golit.function_body(toks, fn)
        data = _input_of(toks, a, b)
        exp = _body_value(toks, a, b, "exp", ":=")
        corpus.add(f"{base} {fn}", data, "openmetrics", series_expect(_expected_series(exp)))
    a, b = golit.function_body(toks, "TestOpenMetrics2ParseErrors")
    cases = golit.Parser(toks, golit.find(toks, a, "range") + 1).expr()
    for n, case in enumerate(_entries(cases)):
        data = golit.string_value(case["input"])
        if not re.search(rb"schema:|_spans:|_buckets:|zero_count:", data):
            continue  # not about native histograms
        err = golit.string_value(case["err"]).decode("utf-8", "replace")
        name = golit.string_value(case["name"]).decode() if "name" in case else f"#{n}"
        corpus.add(
            f"{base} TestOpenMetrics2ParseErrors {name}",
            data,
            "openmetrics",
            error_expect(err, data),
        )


# --- prometheus/common expfmt --------------------------------------------------------


def _go_value(x: Any) -> Any:
    """The value of a dto field expression: proto.String("x") -> "x", math.Inf(+1) -> inf."""
    kind = x[0]
    if kind == "call":
        fn = x[1][1] if x[1][0] == "name" else ""
        if fn.startswith("proto."):
            return _go_value(x[2][0])
        if fn == "math.NaN":
            return math.nan
        if fn == "math.Inf":
            return math.inf if _go_value(x[2][0]) >= 0 else -math.inf
        if fn.endswith(".Enum") or (x[1][0] == "attr" and x[1][2] == "Enum"):
            inner = x[1][1] if x[1][0] == "attr" else fn.rsplit(".", 1)[0]
            return (inner[1] if isinstance(inner, tuple) else inner).rsplit("_", 1)[-1]
        raise ValueError(f"unknown call {fn}")
    if kind == "name" and x[1].endswith(".Enum"):
        return x[1]
    if kind == "str":
        return x[1].decode()
    if kind == "num":
        return float(x[1]) if any(c in x[1] for c in ".eE") else int(x[1], 0)
    if kind == "neg":
        return -_go_value(x[1])
    if kind in ("addr",):
        return _go_value(x[1])
    if kind == "comp":
        if all(k is not None for k, _ in x[2]) and x[2]:
            return {k[1]: _go_value(v) for k, v in x[2]}
        return [_go_value(v) for _, v in x[2]]
    raise ValueError(f"cannot evaluate {x!r}")


def _type_name(t: Any) -> str:
    text = str(t)
    for name in ("GAUGE_HISTOGRAM", "COUNTER", "GAUGE", "SUMMARY", "UNTYPED", "HISTOGRAM"):
        if name in text:
            return name
    raise ValueError(text)


def _go_float_label(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    return repr(float(v))


def _families_to_series(families: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Series Prometheus stores for the page expfmt read into these MetricFamily messages.

    One series per sample line: expfmt keeps each line's bucket or quantile,
    and adds no bucket the page did not have.
    """
    out = []
    for fam in families:
        name = fam["Name"]
        typ = fam["Type"]
        for metric in fam.get("Metric", []):
            labels = [(lp["Name"], lp["Value"]) for lp in metric.get("Label", [])]
            if typ in ("SUMMARY",):
                for q in metric["Summary"].get("Quantile", []):
                    out.append((name, [*labels, ("quantile", _go_float_label(q["Quantile"]))]))
                out.append((name + "_sum", labels))
                out.append((name + "_count", labels))
            elif typ in ("HISTOGRAM", "GAUGE_HISTOGRAM"):
                buckets = metric["Histogram"].get("Bucket", [])
                for b in buckets:
                    out.append(
                        (name + "_bucket", [*labels, ("le", _go_float_label(b["UpperBound"]))])
                    )
                out.append((name + "_sum", labels))
                out.append((name + "_count", labels))
            else:
                out.append((name, labels))
    return out


def common_expfmt(repo: Path, corpus: Corpus) -> None:
    rev = REVISIONS["common"]
    base = "text_parse_test.go"
    src = git_show(repo, rev, "expfmt/" + base).decode()
    toks = golit.tokens(src)
    a, b = golit.function_body(toks, "testTextParse")
    scenarios = _body_value(toks, a, b, "scenarios", ":=")
    for n, sc in enumerate(_entries(scenarios)):
        data = golit.string_value(sc["in"])
        fams = _go_value(sc["out"])
        for fam in fams:
            fam["Type"] = _type_name(fam["Type"])
        corpus.add(
            f"{base} testTextParse #{n}", data, "text", series_expect(_families_to_series(fams))
        )
    a, b = golit.function_body(toks, "testTextParseError")
    scenarios = _body_value(toks, a, b, "scenarios", ":=")
    for n, sc in enumerate(_entries(scenarios)):
        data = golit.string_value(sc["in"])
        err = golit.string_value(sc["errUTF8"]).decode()
        if not err:
            # Only the legacy name validation refuses it; the UTF-8 one reads it.
            corpus.add(f"{base} testTextParseError #{n}", data, "text", {"expect": "read"})
            continue
        m = re.match(r"text format parsing error in line (\d+)", err)
        line = int(m.group(1)) if m else None
        corpus.add(f"{base} testTextParseError #{n}", data, "text", error_expect(err, data, line))
    seen = {case["input"]: case for case in corpus.cases}
    known = {corpus.inputs[f] for f in seen}
    for path in git_ls(repo, rev, "expfmt/fuzz/corpus"):
        data = git_show(repo, rev, path)
        if data in known:
            continue  # a copy of a test input above
        corpus.add(path.split("/", 1)[1], data, "text", {"expect": "read"})
    # The benchmark page, as tests/testdata/corpora/expfmt holds it already.
    text = git_show(repo, rev, "expfmt/testdata/text")
    assert (EXPFMT_COPY / "text").read_bytes() == text
    corpus.add("testdata/text", text, "text", {"expect": "read"}, file="../../expfmt/text")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", type=Path, required=True)
    ap.add_argument("--common", type=Path, required=True)
    args = ap.parse_args()

    prom = Corpus(
        "prometheus",
        {
            "repository": "https://github.com/prometheus/prometheus",
            "revision": REVISIONS["prometheus"],
            "paths": ["model/textparse/*_test.go", "model/textparse/testdata/"],
            "licence": "Apache-2.0",
        },
    )
    prometheus_textparse(args.prometheus, prom)
    prom.write(*(git_show(args.prometheus, REVISIONS["prometheus"], f) for f in LEGAL))

    om2 = Corpus(
        "prometheus-om2",
        {
            "repository": "https://github.com/prometheus/prometheus",
            "revision": REVISIONS["prometheus-om2"],
            "branch": "krajo/update-pr-18606 (OpenMetrics 2.0 parser, unreleased)",
            "paths": ["model/textparse/openmetrics2parse_test.go"],
            "licence": "Apache-2.0",
        },
    )
    prometheus_om2(args.prometheus, om2)
    om2.write(*(git_show(args.prometheus, REVISIONS["prometheus-om2"], f) for f in LEGAL))

    common = Corpus(
        "common-expfmt",
        {
            "repository": "https://github.com/prometheus/common",
            "revision": REVISIONS["common"],
            "paths": ["expfmt/text_parse_test.go", "expfmt/fuzz/corpus/", "expfmt/testdata/text"],
            "licence": "Apache-2.0",
        },
    )
    common_expfmt(args.common, common)
    common.write(*(git_show(args.common, REVISIONS["common"], f) for f in LEGAL))


if __name__ == "__main__":
    main()
