"""cardguard reads each page as a real Prometheus does: same series, or a refusal where it refuses.

One Debian Prometheus (2.42) scrapes every page below once (``scrape_oracle``),
each served with the Content-Type under test: the edge cases (the
rules where cardguard was stricter or laxer than Prometheus), every
OpenMetrics conformance case, and the recorded real pages. For each page
cardguard must either refuse it (a ``ParseError`` naming a line) where
Prometheus' scrape failed, or find exactly the series Prometheus stored, on
its fast path, its strict path and in the analysis' counts.

Every input of the test corpora (test_exposition_corpora) is scraped too, so where
cardguard's reading differs from a corpus' own parser, the oracle says whether
it is Prometheus'. Where cardguard reads what Prometheus 2.42 cannot, because
later Prometheus reads it (quoted UTF-8 names, exemplars on any sample,
OpenMetrics native histograms), the page is listed in ``NEWER_THAN_2_42``:
the test pins that 2.42 refuses it and cardguard reads it;
test_exposition_corpora checks those readings against Prometheus 3's own test data.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

import pytest

from cardguard.analyse.cardinality import analyse
from cardguard.errors import ParseError
from cardguard.parse import exposition, model
from scrape_oracle import SYNTHETIC, Outcome, Page, as_prometheus_stores, scrape_all
from support import TESTDATA
from test_exposition_corpora import CASES as CORPUS_CASES

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# Issue 14's rules, one small page each. What Prometheus does with them is the
# oracle's to say; EXPECT below pins the outcome the issue names, so a broken
# oracle cannot pass everything.
EDGE_TEXT: dict[str, bytes] = {
    "bare-help-type": b"# HELP\n# TYPE\n#\n# HELP\tx\nfoo 1\n",
    "help-blank-no-name": b"# HELP \nfoo 1\n",
    "type-no-type": b"# TYPE foo\nfoo 1\n",
    "type-two-spaces": b"# TYPE foo  counter\nfoo 1\n",
    "type-upper-case": b"# TYPE foo COUNTER\nfoo 1\n",
    "type-repeated": b"# TYPE foo counter\n# TYPE foo counter\nfoo 1\n",
    "type-after-samples": b'foo 1\n# TYPE foo counter\nfoo{a="b"} 2\n',
    "type-changes": b'# TYPE x counter\nx 1\n# TYPE x gauge\nx{a="b"} 2\n',
    "help-repeated": b"# HELP foo a\n# HELP foo b\nfoo 1\n",
    "help-no-space-is-comment": b"#HELP foo x\n#TYPE foo nonsense\nfoo 1\n",
    "help-not-utf8": b"# HELP foo \xff\nfoo 1\n",
    "comment-not-utf8": b"# comment \xff\nfoo 1\n",
    "hex-float": b"foo 0x1p-3\n",
    "hex-no-exponent": b"foo 0x10\n",
    "underscore-float": b"foo 1_000\n",
    "minus-nan": b"foo -NaN\n",
    "special-floats": b"a nan\nb +inf\nc Infinity\nd -infinity\ne .5\nf 5.\ng 1.e3\nh +1E-2\n",
    "infin": b"foo infin\n",
    "overflow": b"foo 1e400\n",
    "underflow": b"foo 1e-400\n",
    "negative-timestamp": b"foo 1 -5\n",
    "timestamp-overflow": b"foo 1 99999999999999999999\n",
    "timestamp-plus": b"foo 1 +5\n",
    "timestamp-float": b"foo 1 1e3\n",
    "timestamp-then-text": b"foo 1 2 3\n",
    "duplicate-label": b'foo{a="1",a="2"} 1\n',
    "duplicate-label-empty": b'foo{a="1",a=""} 1\nbar{b="",b="2"} 1\n',
    "duplicate-job": b'foo{job="a",job="b"} 1\nbar{instance="x"} 2\n',
    "name-label": b'foo{__name__="foo"} 1\n',
    "name-label-empty": b'foo{__name__=""} 1\n',
    "no-comma": b'foo{a="1" b="2"} 1\n',
    "trailing-comma": b'foo{a="1",} 1\n',
    "lone-comma": b"foo{,} 1\n",
    "double-comma": b'foo{a="1",,} 1\n',
    "blanks-everywhere": b'  foo { a = "1" , b = "2" , } \t 1 \t 7 \n\n  # HELP foo x\n',
    "value-after-brace": b'foo{a="1"}1\n',
    "value-after-name": b"foo-1\n",
    "crlf": b"foo 1\r\n",
    "tab": b"foo\t1\n",
    "nul-ends-page": b"foo 1\n\x00bar 2\nbaz{ 3\n",
    "nul-in-value": b'foo{a="x\x00y"} 1\n',
    "le-not-a-number": b'# TYPE h histogram\nh_bucket{le="x"} 1\nh_count 1\n',
    "quantile-not-a-number": b'# TYPE s summary\ns{quantile="q"} 1\n',
    "label-value-not-utf8": b'foo{a="\xff"} 1\n',
    "repeated-series": b"foo 1\nfoo 2\n",
    "ends-with-eof-comment": b"# TYPE foo untyped\nfoo 1\n# EOF\n",
    "text-exemplar": b'foo_total 1 # {a="b"} 1\n',
    "no-value": b"foo\n",
    "empty": b"",
    "only-comments": b"# just\n# comments\n",
    "unknown-escape": b'foo{a="x\\q",b="\\\\"} 1\n',
    "many-labels": b"foo{" + b",".join(b'l%d="v"' % i for i in range(40)) + b"} 1\n",
    "quoted-name": b'{"http.server.request.duration","http.route"="/x"} 1\n',
    "quoted-metadata": b'# HELP "a.b" dotted\n# TYPE "a.b" counter\n{"a.b"} 1\n',
    "raw-newline-in-value": b'foo{a="x\ny"} 1\n',
}
EDGE_OM: dict[str, bytes] = {
    "om-count-before-buckets": (
        b"# TYPE h histogram\nh_count 3\nh_sum 2\nh_created 1\n"
        b'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 3\n# EOF\n'
    ),
    "om-bare-help": b"# HELP\nfoo 1\n# EOF\n",
    "om-help-no-text": b"# HELP foo\nfoo 1\n# EOF\n",
    "om-help-empty-text": b"# HELP foo \nfoo 1\n# EOF\n",
    "om-blank-line": b"foo 1\n\nbar 1\n# EOF\n",
    "om-comment": b"# hello\nfoo 1\n# EOF\n",
    "om-trailing-comma": b'foo{a="b",} 1\n# EOF\n',
    "om-exemplar-on-gauge": b'# TYPE g gauge\ng 1 # {a="b"} 1\n# EOF\n',
    "om-exemplar-on-total": b'foo_total 1 # {a="b"} 1 2\n# EOF\n',
    "om-two-exemplars": b'foo_total 1 # {a="b"} 1 # {a="c"} 2\n# EOF\n',
    "om-unit-mismatch": b"# UNIT foo_seconds bytes\nfoo_seconds 1\n# EOF\n",
    "om-unit-empty": b"# UNIT foo \nfoo 1\n# EOF\n",
    "om-counter-negative-nan": b"# TYPE c counter\nc_total -1\nd_total NaN\n# EOF\n",
    "om-histogram-no-inf": b'# TYPE h histogram\nh_bucket{le="2"} 2\nh_bucket{le="1"} 3\n# EOF\n',
    "om-interleaved": b'# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x="y"} 2\n# EOF\n',
    "om-no-eof": b"foo 1\n",
    "om-after-eof": b"foo 1\n# EOF\nbar 1\n",
    "om-eof-blank": b"foo 1\n# EOF\n\n",
    "om-eof-no-newline": b"foo 1\n# EOF",
    "om-timestamps": b"a 1 1.5\nb 1 -1\nc 1 1e3\n# EOF\n",
    "om-timestamp-nan": b"foo 1 NaN\n# EOF\n",
    "om-timestamp-overflow": b"foo 1 1e400\n# EOF\n",
    "om-hex": b"foo 0x1p-3\n# EOF\n",
    "om-duplicate-label": b'foo{a="1",a="2"} 1\n# EOF\n',
    "om-name-label": b'foo{__name__="foo"} 1\n# EOF\n',
    "om-two-spaces": b"foo  1\n# EOF\n",
    "om-leading-space": b" foo 1\n# EOF\n",
    "om-type-twice": b"# TYPE foo gauge\n# TYPE foo gauge\nfoo 1\n# EOF\n",
    "om-type-invalid": b"# TYPE foo nonsense\nfoo 1\n# EOF\n",
    "om-stateset-info": b'# TYPE s stateset\ns 1\n# TYPE i info\ni_info{a="b"} 2\n# EOF\n',
    "om-exemplar-untyped-total": b'x_total 1 # {a="b"} 1\n# EOF\n',
    "om-empty-labels": b"foo{} 1\n# EOF\n",
    "om-long-exemplar": b'c_total 1 # {a="' + b"x" * 200 + b'"} 1\n# EOF\n',
    "om-quoted-name": b'{"http.server.request.duration","http.route"="/x"} 1\n# EOF\n',
    "om-native-histogram": (
        b"# TYPE nh histogram\n"
        b"nh {count:4,sum:6,schema:3,zero_threshold:2.938735877055719e-39,zero_count:1,"
        b"positive_spans:[0:1,7:1,4:1],positive_deltas:[1,0,0]}\n# EOF\n"
    ),
}

# Pages Prometheus 2.42 refuses that cardguard reads, as Prometheus 3 does
# (test_exposition_corpora checks the readings against Prometheus 3's test data), and the
# one gap cardguard keeps on purpose.
NEWER_THAN_2_42 = {
    "quoted-name": "UTF-8 metric and label names (Prometheus 3)",
    "quoted-metadata": "UTF-8 metric names in HELP and TYPE (Prometheus 3)",
    "om-quoted-name": "UTF-8 metric and label names (Prometheus 3)",
    "om-native-histogram": "native histograms in OpenMetrics text (Prometheus' OpenMetrics 2.0)",
    "om-exemplar-on-gauge": "exemplars on any sample (Prometheus 2.43)",
    **{
        "om-conformance/" + case: "exemplars on any sample (Prometheus 2.43)"
        for case in (
            *(f"bad_exemplars_on_unallowed_metric_types_{i}" for i in range(3)),
            *(f"bad_exemplars_on_unallowed_samples_{i}" for i in (0, 1, 3)),
        )
    },
}
# Corpus inputs likewise (test_exposition_corpora checks cardguard's readings of them
# against their own project's parser: Prometheus 3's tests among them).
_UTF8 = "UTF-8 metric and label names (Prometheus 3)"
_EXEMPLARS = "exemplars on any sample (Prometheus 2.43)"
_NATIVE = "native histograms in OpenMetrics text (Prometheus' OpenMetrics 2.0)"
for _reason, _keys in (
    (
        _UTF8,
        "client_python/003 client_python/035 client_python/046 client_python/050 "
        "client_python/291 client_python/296 common-expfmt/005 common-expfmt/006 "
        "common-expfmt/007 common-expfmt/008 common-expfmt/009 common-expfmt/010 "
        "common-expfmt/011 common-expfmt/054 common-expfmt/056 common-expfmt/059 "
        "common-expfmt/060 prometheus/001 prometheus/031",
    ),
    (
        _EXEMPLARS,
        "client_python/171 client_python/172 client_python/174 client_python/175 "
        "client_python/176 client_python/177 prometheus/030",
    ),
    (
        _NATIVE,
        "client_python/264 client_python/318 client_python/319 prometheus-om2/000 "
        "prometheus-om2/001 prometheus-om2/002 prometheus-om2/003 prometheus-om2/004",
    ),
):
    NEWER_THAN_2_42.update(("corpus/" + key, _reason) for key in _keys.split())

# Pages Prometheus reads and cardguard refuses on purpose.
PROMETHEUS_ONLY = {
    "raw-newline-in-value": "a raw newline inside a quoted label value: cardguard reads lines",
    "corpus/common-expfmt/020": "a raw newline inside a quoted label value (expfmt refuses it too)",
}

# What these pages are: True for read, False for refused.
EXPECT = {
    "bare-help-type": True,
    "hex-float": False,
    "duplicate-label": False,
    "name-label": False,
    "ends-with-eof-comment": True,
    "om-count-before-buckets": True,
    "om-histogram-no-inf": True,
    "om-counter-negative-nan": True,
}


def _conformance_pages() -> list[Page]:
    pages = []
    root = TESTDATA / "openmetrics-parsers"
    for case in sorted(p for p in root.iterdir() if p.is_dir()):
        spec = json.loads((case / "test.json").read_text())
        pages.append(Page("om-conformance/" + case.name, (case / spec["file"]).read_bytes(), OM))
    return pages


def _corpus_pages() -> list[Page]:
    types = {"text": TEXT, "openmetrics": OM}
    return [Page("corpus/" + c.key, c.data, types[c.fmt]) for c in CORPUS_CASES]


def _recorded_pages() -> list[Page]:
    meta = json.loads((TESTDATA / "metrics" / "pages.json").read_text())
    pages = []
    for name in ("prometheus.txt.gz", "alertmanager.txt", "omserver.txt", "omserver.om.txt"):
        body = (TESTDATA / "metrics" / name).read_bytes()
        if name.endswith(".gz"):
            body = gzip.decompress(body)
        pages.append(Page("recorded/" + name, body, meta[name]["content_type"]))
    return pages


PAGES = (
    [Page(k, v, TEXT) for k, v in EDGE_TEXT.items()]
    + [Page(k, v, OM) for k, v in EDGE_OM.items()]
    + _conformance_pages()
    + _recorded_pages()
    + _corpus_pages()
)
BY_NAME = {p.name: p for p in PAGES}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    return scrape_all(PAGES, tmp_path_factory.mktemp("oracle"))


def cardguard_reads(page: Page) -> tuple[Outcome, list[model.Event]]:
    """What cardguard makes of a page, the same on the fast and the strict path."""
    fmt = exposition.detect_format(page.content_type, page.body)
    outcomes = []
    events: list[model.Event] = []
    for fast in (True, False):
        try:
            events = list(exposition.parse(page.body, fmt, page.name, fast=fast))
        except ParseError as exc:
            assert exc.line >= 1 and exc.source == page.name
            outcomes.append(Outcome(exc.message, frozenset()))
            continue
        series = frozenset(
            as_prometheus_stores(e.name, e.labels)
            for e in events
            if isinstance(e, model.Sample) and not (e.name in SYNTHETIC and not e.labels)
        )
        outcomes.append(Outcome(None, series))
    fast, strict = outcomes
    assert (fast.error is None) == (strict.error is None), (fast, strict)
    assert fast.series == strict.series
    return fast, events


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", [p.name for p in PAGES])
def test_cardguard_reads_the_page_as_prometheus_does(name: str, oracle: dict[str, Outcome]) -> None:
    page = BY_NAME[name]
    theirs = oracle[name]
    mine, events = cardguard_reads(page)
    if name in NEWER_THAN_2_42:
        assert theirs.error is not None, f"Prometheus 2.42 reads {name} now"
        assert mine.error is None, mine.error
        return
    if name in PROMETHEUS_ONLY:
        assert theirs.error is None and mine.error is not None
        return
    if name in EXPECT:
        assert (theirs.error is None) == EXPECT[name], theirs.error
    if theirs.error is not None:
        assert mine.error is not None, f"Prometheus refused ({theirs.error}); cardguard read it"
        with pytest.raises(ParseError):
            analyse(page.body, content_type=page.content_type, source=name)
        return
    assert mine.error is None, f"Prometheus read it; cardguard refused: {mine.error}"
    assert mine.series == theirs.series
    # The analysis counts one series per sample line: Prometheus' count when no
    # series repeats within the page.
    samples = [e for e in events if isinstance(e, model.Sample)]
    a = analyse(page.body, content_type=page.content_type, source=name)
    assert a.total_series == len(samples)
    if len({as_prometheus_stores(s.name, s.labels) for s in samples}) == len(samples):
        per_family: dict[str, int] = defaultdict(int)
        family_of = {s.name: s.family for s in samples}
        for series_name, count in theirs.per_name().items():
            per_family[family_of[series_name]] += count
        mine_per_family: dict[str, int] = defaultdict(int)
        for f in a.families:
            mine_per_family[f.name] += f.series
        assert {k: v for k, v in mine_per_family.items() if v} == dict(per_family)


def test_the_oracle_covers_every_rule(oracle: dict[str, Outcome]) -> None:
    """Both outcomes occur, so the oracle tells pages apart (it is not refusing everything)."""
    read = sum(1 for o in oracle.values() if o.error is None)
    refused = len(oracle) - read
    assert read > 100 and refused > 100, (read, refused)
    assert all(Path(p.name).name for p in PAGES)
