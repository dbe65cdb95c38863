"""The exposition parser: events, families, escaping, format choice, errors naming the line.

Which pages are read and which refused is checked against a real Prometheus
in test_prometheus_oracle; these tests pin cardguard's side of each rule (the
events, the families, the messages) on small pages.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardguard.analyse.cardinality import analyse
from cardguard.errors import ParseError
from cardguard.parse import exposition, model
from cardguard.parse.blocks import FAST_PAIRS, block_label_pairs, block_values, split_pair
from cardguard.parse.model import Family, Sample, SampleBlock
from support import TESTDATA


def events(text: str, fmt: model.Format = "text", fast: bool = True) -> list[model.Event]:
    return list(exposition.parse(text.encode(), fmt, "page.txt", fast=fast))


def samples(text: str, fmt: model.Format = "text") -> list[Sample]:
    return [e for e in events(text, fmt) if isinstance(e, Sample)]


def error(text: str, fmt: model.Format = "text", *, analysed: bool = True) -> ParseError:
    """The error every path gives: strict parse, fast parse and (unless told) the analysis."""
    for fast in (True, False):
        with pytest.raises(ParseError) as info:
            events(text, fmt, fast=fast)
    if analysed:
        with pytest.raises(ParseError) as again:
            analyse(text.encode(), content_type=None, source="page.txt", fmt=fmt)
        assert again.value.line == info.value.line
        assert again.value.message == info.value.message
    return info.value


def test_families_and_samples_in_order() -> None:
    page = (
        "# HELP rpc_seconds RPC latency.\n"
        "# TYPE rpc_seconds summary\n"
        'rpc_seconds{service="a",quantile="0.5"} 0.1\n'
        'rpc_seconds_sum{service="a"} 12.5\n'
        'rpc_seconds_count{service="a"} 100\n'
        "# TYPE up gauge\n"
        "up 1 1700000000123\n"
    )
    evs = events(page)
    assert evs[0] == Family("rpc_seconds", "summary", "RPC latency.", None, 1)
    assert [(s.family, s.name, s.value) for s in evs if isinstance(s, Sample)] == [
        ("rpc_seconds", "rpc_seconds", 0.1),
        ("rpc_seconds", "rpc_seconds_sum", 12.5),
        ("rpc_seconds", "rpc_seconds_count", 100.0),
        ("up", "up", 1.0),
    ]
    up = evs[-1]
    assert isinstance(up, Sample) and up.timestamp == 1700000000.123 and up.line == 7
    assert evs[1].labels == (("service", "a"), ("quantile", "0.5"))  # type: ignore[union-attr]


def test_fast_path_yields_blocks_that_expand_to_the_same_samples() -> None:
    page = "# TYPE h histogram\n" + "".join(
        f'h_bucket{{path="/x/{i}",le="{le}"}} {i}\n' for i in range(50) for le in ("1", "+Inf")
    )
    scanned = list(exposition.scan(page.encode(), "text", "p", chunk_bytes=512))
    blocks = [e for e in scanned if isinstance(e, SampleBlock)]
    assert len(blocks) > 3 and sum(b.lines for b in blocks) == 100
    fast = [e for e in events(page) if isinstance(e, Sample)]
    strict = [e for e in events(page, fast=False) if isinstance(e, Sample)]
    assert fast == strict and len(fast) == 100
    pairs = block_label_pairs(blocks[0])
    assert split_pair(pairs[0]) == (b"path", b"/x/0")


@pytest.mark.parametrize(
    "page", ["prometheus.txt", "alertmanager.txt", "demo-1.txt", "pushgateway-explosion.txt"]
)
def test_block_values_match_the_strict_parser_on_recorded_pages(page: str) -> None:
    data = (TESTDATA / "metrics" / page).read_bytes()
    fast: list[tuple[str, float]] = []
    for event in exposition.scan(data, "text", page):
        if isinstance(event, SampleBlock):
            fast.extend(block_values(event))
        elif isinstance(event, Sample):
            fast.append((event.name, event.value))
    strict = [(e.name, e.value) for e in events(data.decode(), fast=False) if isinstance(e, Sample)]
    assert len(fast) == len(strict) > 100

    def same(a: float, b: float) -> bool:
        return a == b or (math.isnan(a) and math.isnan(b))

    assert all(fn == sn and same(fv, sv) for (fn, fv), (sn, sv) in zip(fast, strict, strict=True))


def test_untyped_and_suffix_families() -> None:
    page = (
        "# TYPE lat histogram\n"
        'lat_bucket{le="+Inf"} 1\nlat_sum 1\nlat_count 1\n'
        "lat_created 5\n"  # not a text-format histogram sample: its own family
        "other_sum 3\n"
    )
    fams = [(e.name, e.type) for e in events(page) if isinstance(e, Family)]
    assert fams == [("lat", "histogram"), ("lat_created", "untyped"), ("other_sum", "untyped")]


def test_text_page_may_return_to_an_earlier_family() -> None:
    page = '# TYPE a counter\na 1\n# TYPE b gauge\nb 2\na{x="y"} 3\n'
    assert [(s.family, s.labels) for s in samples(page)] == [
        ("a", ()),
        ("b", ()),
        ("a", (("x", "y"),)),
    ]


def test_label_escapes_and_odd_characters() -> None:
    page = 'm{a="q\\"uote",b="back\\\\slash",c="new\\nline",d="x,y=\\"z\\"}",e="é #"} 1\n'
    (s,) = samples(page)
    assert dict(s.labels) == {
        "a": 'q"uote',
        "b": "back\\slash",
        "c": "new\nline",
        "d": 'x,y="z"}',
        "e": "é #",
    }


def test_text_whitespace_and_special_values() -> None:
    page = 'm { a = "1" , } \t+Inf\nn NaN\no -Inf 5\np .5e1\nq 1e3\nr infinity\ns 5.\n'
    vals = [s.value for s in samples(page)]
    assert vals[0] == math.inf and math.isnan(vals[1]) and vals[2] == -math.inf
    assert vals[3:] == [5.0, 1000.0, math.inf, 5.0]


def test_blank_lines_and_comments_are_ignored_in_text() -> None:
    page = "\n# just a comment\n\nm 1\n\n"
    assert [s.line for s in samples(page)] == [4]


def test_text_reads_what_prometheus_reads() -> None:
    """Rules where cardguard was stricter than Prometheus' text parser."""
    page = (
        "# HELP\n# TYPE\n#HELP m x\n"  # bare HELP/TYPE and '#HELP' are comments
        "# TYPE m counter\n# TYPE m counter\n# HELP m one\n# HELP m two\n"
        'm{a="1" b="2"} 1\n'  # no comma between pairs
        'm{a="3"}2\n'  # no blank before the value
        "# TYPE late gauge\nlate 1\n# TYPE late gauge\n"
        '# TYPE h histogram\nh_bucket{le="soon"} 1\n'  # le need not be a number
        "# EOF\n"  # a comment in the text format
    )
    got = [(s.family, s.name, s.labels, s.value) for s in samples(page)]
    assert got == [
        ("m", "m", (("a", "1"), ("b", "2")), 1.0),
        ("m", "m", (("a", "3"),), 2.0),
        ("late", "late", (), 1.0),
        ("h", "h_bucket", (("le", "soon"),), 1.0),
    ]
    fams = [(e.name, e.type, e.help) for e in events(page) if isinstance(e, Family)]
    assert fams == [("m", "counter", "two"), ("late", "gauge", None), ("h", "histogram", None)]


def test_a_type_that_changes_starts_a_new_family() -> None:
    page = '# TYPE x counter\nx 1\n# TYPE x gauge\nx{a="b"} 2\n'
    fams = [(e.name, e.type) for e in events(page) if isinstance(e, Family)]
    assert fams == [("x", "counter"), ("x", "gauge")]
    a = analyse(page.encode(), content_type=None, source="p")
    assert sorted((f.name, f.type, f.series) for f in a.families) == [
        ("x", "counter", 1),
        ("x", "gauge", 1),
    ]


def test_a_nul_where_a_line_starts_ends_the_page() -> None:
    # Prometheus' lexer reads it as the end of input: what follows is not read.
    page = "a 1\n  \x00b 2\nbroken{ 3\n"
    for fast in (True, False):
        assert [s.name for s in events(page, fast=fast) if isinstance(s, Sample)] == ["a"]
    assert samples('m{a="x\x00y"} 1\n')[0].labels == (("a", "x\x00y"),)


def test_repeated_label_names_as_prometheus_sees_them() -> None:
    # An empty value removes every label of its name; job and instance are the
    # target's; neither repeat fails the scrape.
    page = 'a{x="1",x=""} 1\nb{job="j",job="k",instance="i",instance="h"} 1\n'
    assert [s.name for s in samples(page)] == ["a", "b"]
    assert "not unique" in error('m{x="1",y="2",x="3"} 1\n').message
    assert "__name__" in error('m{__name__="m"} 1\n').message
    assert "__name__" in error('m{__name__="m"} 1\n# EOF\n', "openmetrics").message


@pytest.mark.parametrize(
    ("page", "line", "message"),
    [
        ('m 1\nm{a="1" 2\n', 2, "expected ',' or '}' after label 'a'"),
        ("m 1\nm{a=1} 2\n", 2, "expected label value for label 'a'"),
        ('m{a="1",a="2"} 1\n', 1, "label name 'a' is not unique"),
        ("m 1\n\nm\n", 3, "expected value after metric 'm'"),
        ("m one\n", 1, "invalid value 'one'"),
        ("m 0x1p-3\n", 1, "unsupported character in float"),
        ("m 1_0\n", 1, "unsupported character in float"),
        ("m -NaN\n", 1, "invalid value '-NaN'"),
        ("m 1e400\n", 1, "out of range"),
        ("m 1 12.5\n", 1, "expected next entry after timestamp"),
        ("m 1 -5\n", 1, "expected timestamp or new record"),
        ("m 1 99999999999999999999\n", 1, "out of range"),
        ("m 1 2 3\n", 1, "expected next entry after timestamp"),
        ("m 1\r\n", 1, "invalid value"),
        ("# TYPE m fancy\n", 1, "invalid metric type 'fancy'"),
        ("# TYPE m  counter\n", 1, "invalid metric type ' counter'"),
        ("# HELP \n", 1, "expected metric name after HELP"),
        ("9m 1\n", 1, "'9' is not a valid start of a sample"),
        ("  m 1\n", 1, "blanks before it"),
        ('{a="b"} 1\n', 1, "metric name not set"),
        ('m{"n"} 1\n', 1, "metric name already set"),
        ('{""} 1\n', 1, "metric name is empty"),
        ("m{,} 1\n", 1, "expected label name"),
    ],
)
def test_text_errors_name_the_line(page: str, line: int, message: str) -> None:
    err = error(page)
    assert err.line == line
    assert str(err).startswith(f"page.txt:{line}: ")
    assert message in err.message


def test_invalid_utf8_is_an_error_where_prometheus_refuses_it() -> None:
    cases = [
        (b'm{a="ok"} 1\nm{a="\xff\xfe"} 1\n', 2, "UTF-8"),
        (b"# HELP m \xff\nm 1\n", 1, "help text is not a valid UTF-8 string"),
        (b'{"m\xff"} 1\n', 1, "metric name is not valid UTF-8"),
        (b'm{"l\xff"="v"} 1\n', 1, "label name is not valid UTF-8"),
    ]
    for page, line, message in cases:
        for fast in (True, False):
            with pytest.raises(ParseError) as info:
                list(exposition.parse(page, "text", "bin", fast=fast))
            assert info.value.line == line and message in info.value.message
        with pytest.raises(ParseError) as info:
            analyse(page, content_type=None, source="bin")
        assert info.value.line == line
    # Comments are not read, so they may hold anything.
    assert len(list(exposition.parse(b"# \xff\xfe\nm 1\n", "text", "bin"))) == 2


def test_openmetrics_needs_eof_and_single_spaces() -> None:
    assert samples("a 1\n# EOF\n", "openmetrics")[0].value == 1
    assert "EOF" in error("a 1\n", "openmetrics").message
    assert error("a  1\n# EOF\n", "openmetrics").line == 1
    assert error("a 1\n# EOF\n\n", "openmetrics").line == 3
    assert error("a 1\n\nb 1\n# EOF\n", "openmetrics").line == 2
    assert error("# a comment\na 1\n# EOF\n", "openmetrics").line == 1
    assert error('a{b="c",} 1\n# EOF\n', "openmetrics").line == 1


def test_openmetrics_reads_what_prometheus_reads() -> None:
    """OpenMetrics rules Prometheus does not check: cardguard reads these pages too."""
    page = (
        "# TYPE h histogram\nh_count 3\nh_sum 2\nh_created 1\n"  # _count before buckets
        'h_bucket{le="2"} 3\nh_bucket{le="1"} 1\n'  # no +Inf, out of order
        "# TYPE c counter\nc_total -1\n"
        "# TYPE g gauge\ng 1\n# HELP g late\n"
        'h_bucket{le="3"} 3\n'  # back to an earlier family
        "# EOF\n"
    )
    got = [(s.family, s.name) for s in samples(page, "openmetrics")]
    assert got == [
        ("h", "h_count"),
        ("h", "h_sum"),
        ("h", "h_created"),
        ("h", "h_bucket"),
        ("h", "h_bucket"),
        ("c", "c_total"),
        ("g", "g"),
        ("h", "h_bucket"),
    ]
    a = analyse(page.encode(), content_type=None, source="p")
    assert a.format == "openmetrics"
    assert {f.name: f.series for f in a.families} == {"h": 6, "c": 1, "g": 1}


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ('c_total 1 # {a="b"} 1 # {a="c"} 1\n', "one exemplar per sample"),
        ("# TYPE a_s gauge\n# UNIT a_s bytes\n", "not a suffix"),
        ("# TYPE a nonsense\n", "invalid metric type"),
        ("# HELP a\n", "expected text in HELP"),
        ("a 1 NaN\n", "invalid timestamp"),
        ("a 1 1e400\n", "out of range"),
        ("a 0x1p-3\n", "unsupported character in float"),
        ('a{b="1",b="2"} 1\n', "not unique"),
    ],
)
def test_openmetrics_refuses_what_prometheus_refuses(page: str, message: str) -> None:
    err = error(page + "# EOF\n", "openmetrics")
    assert message in err.message


def test_openmetrics_exemplars_and_timestamps() -> None:
    # Exemplars go on any sample, as in Prometheus since 2.43 (2.42 took them
    # on *_total and *_bucket samples only), one per line, quoted names too.
    page = (
        '# TYPE c counter\nc_total{a="b"} 1 1.5 # {trace_id="x"} 1 2.5\n'
        'x_total 2 # {"trace.id"="y"} 1\n'
        'g -1 -1.25 # {a="b"} 1\n# EOF\n'
    )
    got = [(s.name, s.labels, s.value, s.timestamp) for s in samples(page, "openmetrics")]
    assert got == [
        ("c_total", (("a", "b"),), 1.0, 1.5),
        ("x_total", (), 2.0, None),
        ("g", (), -1.0, -1.25),
    ]
    assert "label value" in error('c_total 1 # {a="\x00"} 1\n# EOF\n', "openmetrics").message


def test_utf8_names_in_both_formats() -> None:
    text = (
        '# HELP "http.server.request.duration" Request time.\n'
        '# TYPE "http.server.request.duration" histogram\n'
        '{"http.server.request.duration_bucket","http.route"="/x",le="+Inf"} 1\n'
        '{ "http.server.request.duration_count" , "http.route" = "/x" } 1\n'
        'plain{"odd \\"name\\""="v"} 2\n'
        '{"esc\\\\aped\\n"} 3\n'
    )
    om = text.replace(' = "', '="').replace("{ ", "{").replace(" , ", ",").replace(" }", "}")
    om += "# EOF\n"
    for page, fmt in ((text, "text"), (om, "openmetrics")):
        got = [(s.family, s.name, s.labels) for s in samples(page, fmt)]  # type: ignore[arg-type]
        assert got == [
            (
                "http.server.request.duration",
                "http.server.request.duration_bucket",
                (("http.route", "/x"), ("le", "+Inf")),
            ),
            (
                "http.server.request.duration",
                "http.server.request.duration_count",
                (("http.route", "/x"),),
            ),
            ("plain", "plain", (('odd "name"', "v"),)),
            ("esc\\aped\n", "esc\\aped\n", ()),
        ]
        a = analyse(page.encode(), content_type=None, source="utf8")
        fam = a.family("http.server.request.duration")
        assert fam is not None and fam.type == "histogram" and fam.series == 2
        assert {lab.name for lab in fam.labels} == {"http.route", "le"}


_NH = (
    "{count:4,sum:6,schema:3,zero_threshold:2.938735877055719e-39,zero_count:1,"
    "positive_spans:[0:1,7:1,4:1],positive_deltas:[1,0,0]}"
)


def test_openmetrics_native_histograms_are_one_series_each() -> None:
    page = (
        "# TYPE nh histogram\n"
        f'nh{{path="/a"}} {_NH}\n'
        f'nh{{path="/b"}} {_NH} 1.5 st@1.0 # {{trace_id="t"}} 0.67 # {{trace_id="u"}} 9.8 1.7\n'
        'nh_bucket{path="/a",le="+Inf"} 4\nnh_count{path="/a"} 4\n'  # classic beside it
        "# TYPE g gaugehistogram\n"
        "g {gcount:5,gsum:1,schema:0,zero_threshold:0,zero_count:0,"
        "positive_spans:[-2:2],positive_buckets:[2,3]}\n"
        "# TYPE f histogram\n"
        "f {count:2.5,sum:1,schema:0,zero_threshold:0.001,zero_count:0.5,"
        "negative_spans:[0:1],negative_buckets:[2.0]}\n"
        "# EOF\n"
    )
    got = [(s.family, s.name, s.value, s.timestamp) for s in samples(page, "openmetrics")]
    assert got == [
        ("nh", "nh", 4.0, None),
        ("nh", "nh", 4.0, 1.5),
        ("nh", "nh_bucket", 4.0, None),
        ("nh", "nh_count", 4.0, None),
        ("g", "g", 5.0, None),
        ("f", "f", 2.5, None),
    ]
    a = analyse(page.encode(), content_type="application/openmetrics-text", source="nh")
    assert {f.name: f.series for f in a.families} == {"nh": 4, "g": 1, "f": 1}
    assert a.family("nh").labels[0].distinct_values == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            _NH.replace("count:4", "count:5"),
            "4 observations found in buckets, but the Count field is 5",
        ),
        (_NH.replace("[1,0,0]", "[1,0]"), "spans need 3 buckets, have 2 buckets"),
        (_NH.replace("[1,0,0]", "[1,-2,0]"), "bucket number 2 has observation count of -1"),
        (_NH.replace("7:1", "-7:1"), "span number 2 with offset -7"),
        (_NH.replace("schema:3", "schema:9"), "schema must be between -4 and 8"),
        (_NH.replace("zero_count:1,", ""), "missing required field: zero_count"),
        (
            _NH.replace("zero_threshold:2.938735877055719e-39", "zero_threshold:-1"),
            "zero_threshold",
        ),
        (_NH.replace("sum:6", "sum:6,sum:7"), "duplicate composite field"),
        (_NH.replace("sum:6", "total:6"), "unknown composite field 'total'"),
        ("{count:2,sum:1,bucket:[1.0:1,+Inf:2]}", "OpenMetrics 2.0"),
        ("{count:2,sum:1,quantile:[0.5:1]}", "OpenMetrics 2.0"),
    ],
)
def test_native_histograms_are_checked_as_prometheus_checks_them(value: str, message: str) -> None:
    err = error(f"# TYPE nh histogram\nnh {value}\n# EOF\n", "openmetrics")
    assert err.line == 2 and message in err.message


def test_native_histogram_needs_a_histogram_family() -> None:
    for page in (f"nh {_NH}\n# EOF\n", f"# TYPE nh gauge\nnh {_NH}\n# EOF\n"):
        assert "histogram or gaugehistogram family" in error(page, "openmetrics").message
    # Only one exemplar on other samples, and only where 2.42 allows one.
    assert (
        error(
            '# TYPE nh histogram\nnh_bucket{le="1"} 1 # {a="b"} 1 # {a="c"} 1\n# EOF\n',
            "openmetrics",
        ).line
        == 2
    )


def test_openmetrics_family_suffixes() -> None:
    page = (
        "# TYPE c counter\nc_total 1\nc_created 2\n"
        '# TYPE i info\ni_info{v="1"} 1\n'
        '# TYPE s stateset\ns{s="on"} 1\ns{s="off"} 0\n'
        "# EOF\n"
    )
    got = [(s.family, s.name) for s in samples(page, "openmetrics")]
    assert got == [("c", "c_total"), ("c", "c_created"), ("i", "i_info"), ("s", "s"), ("s", "s")]


def test_recorded_openmetrics_page_from_client_golang() -> None:
    data = (TESTDATA / "metrics" / "omserver.om.txt").read_bytes()
    evs = list(exposition.parse(data, "openmetrics", "omserver.om.txt"))
    fams = [e for e in evs if isinstance(e, Family)]
    assert ("omserver_http_requests", "counter") in {(f.name, f.type) for f in fams}
    hist = [s for s in evs if isinstance(s, Sample) and s.name.endswith("_bucket")]
    assert hist and all(dict(s.labels).get("le") for s in hist)


def test_detect_format() -> None:
    assert exposition.detect_format("application/openmetrics-text; version=1.0.0", b"") == (
        "openmetrics"
    )
    assert (
        exposition.detect_format("text/plain; version=0.0.4; charset=utf-8", b"# EOF\n") == "text"
    )
    assert exposition.detect_format(None, b"a 1\n# EOF\n") == "openmetrics"
    assert exposition.detect_format(None, b"a 1\n# EOF") == "openmetrics"
    assert exposition.detect_format(None, b"a 1\n") == "text"
    assert exposition.detect_format(None, b"") == "text"


def test_a_file_ending_in_eof_that_is_not_openmetrics_is_text() -> None:
    # Text-format pages may end with a '# EOF' comment; without a Content-Type
    # saying otherwise, such a file is read as text when it is not OpenMetrics.
    page = b'# TYPE m untyped\nm 1\n\nm{a="b",} 2\n# EOF\n'
    assert exposition.detect_format(None, page) == "text"
    a = analyse(page, content_type=None, source="file")
    assert (a.format, a.total_series) == ("text", 2)
    # A Content-Type decides for a scraped page, as it does for Prometheus.
    with pytest.raises(ParseError):
        analyse(page, content_type="application/openmetrics-text", source="scraped")
    # Malformed in both formats: the text parser's error, the format it was read in.
    with pytest.raises(ParseError) as info:
        analyse(b"m{ 1\n# EOF\n", content_type=None, source="file")
    assert info.value.line == 1


def test_fast_path_refuses_repeated_label_names_in_bulk() -> None:
    lines = [f'r{{a="{i}",b="x"}} {i}' for i in range(5000)]
    lines[4321] = 'r{a="1",b="x",a="2"} 1'
    page = ("\n".join(lines) + "\n").encode()
    with pytest.raises(ParseError) as info:
        list(exposition.scan(page, "text", "bulk"))
    assert info.value.line == 4322 and "not unique" in info.value.message
    # Lines with more pairs than the bulk regex checks go line by line, and read.
    wide = "m{" + ",".join(f'l{i}="v"' for i in range(FAST_PAIRS + 5)) + "} 1\n"
    assert len(samples(wide * 3)) == 3


_PIECES = st.sampled_from(
    [
        b"m",
        b"_bucket",
        b"{",
        b"}",
        b"=",
        b'"',
        b",",
        b"le",
        b"a",
        b" ",
        b"\t",
        b"\n",
        b"\\",
        b"1",
        b"-2.5e3",
        b"NaN",
        b"+Inf",
        b"# TYPE m histogram\n",
        b"# HELP m h\n",
        b"# EOF\n",
        b"# TYPE m counter\n",
        b"\xff",
        b"\xc3\xa9",
        b"#",
        b"quantile",
        b"_total",
        b"0x1p-2",
        b'{"a.b"',
        b"\x00",
        b"{count:1,sum:1,schema:0,zero_threshold:0,zero_count:1}",
        b"# TYPE m histogram\n",
        b" # {",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=40).map(b"".join))
def test_arbitrary_input_parses_or_fails_with_a_line(data: bytes) -> None:
    def outcome(fmt: model.Format, how: str) -> int:
        try:
            if how == "analyse":
                analyse(data, content_type=None, source="fuzz", fmt=fmt)
            else:
                list(exposition.parse(data, fmt, "fuzz", fast=how == "fast"))
        except ParseError as exc:
            assert exc.line >= 1
            return exc.line
        return 0

    formats: tuple[model.Format, ...] = ("text", "openmetrics")
    for fmt in formats:
        outcomes = {outcome(fmt, how) for how in ("fast", "strict", "analyse")}
        assert len(outcomes) == 1, outcomes


def test_a_scraped_page_without_content_type_is_text_and_only_files_are_sniffed() -> None:
    # Prometheus reads a scrape by its Content-Type and falls back to text; only a
    # file (no header at all, None) is sniffed for '# EOF'.
    page = b"# TYPE a counter\na_total 1\n# EOF\n"
    assert exposition.detect_format(None, page) == "openmetrics"
    assert exposition.detect_format("", page) == "text"
    assert exposition.detect_format("application/openmetrics-text; version=1.0.0", page) == (
        "openmetrics"
    )
