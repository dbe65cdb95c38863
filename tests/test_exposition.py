"""The exposition parser: events, families, escaping, format choice, errors naming the line."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardguard import exposition
from cardguard.cardinality import analyse
from cardguard.errors import ParseError
from cardguard.exposition import Family, Sample, SampleBlock
from support import TESTDATA


def events(text: str, fmt: exposition.Format = "text", fast: bool = True) -> list[exposition.Event]:
    return list(exposition.parse(text.encode(), fmt, "page.txt", fast=fast))


def samples(text: str, fmt: exposition.Format = "text") -> list[Sample]:
    return [e for e in events(text, fmt) if isinstance(e, Sample)]


def error(text: str, fmt: exposition.Format = "text", *, analysed: bool = True) -> ParseError:
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
    assert evs[0] == Family("rpc_seconds", "summary", "RPC latency.", None, 3)
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
    pairs = exposition.block_label_pairs(blocks[0])
    assert exposition.split_pair(pairs[0]) == (b"path", b"/x/0")


@pytest.mark.parametrize(
    "page", ["prometheus.txt", "alertmanager.txt", "demo-1.txt", "pushgateway-explosion.txt"]
)
def test_block_values_match_the_strict_parser_on_recorded_pages(page: str) -> None:
    data = (TESTDATA / "metrics" / page).read_bytes()
    fast: list[tuple[str, float]] = []
    for event in exposition.scan(data, "text", page):
        if isinstance(event, SampleBlock):
            fast.extend(exposition.block_values(event))
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
    page = 'm { a = "1" , } \t+Inf\nn NaN\no -Inf 5\np 0x1p-2\nq 1e3\n'
    vals = [s.value for s in samples(page)]
    assert vals[0] == math.inf and math.isnan(vals[1]) and vals[2] == -math.inf
    assert vals[3:] == [0.25, 1000.0]


def test_blank_lines_and_comments_are_ignored_in_text() -> None:
    page = "\n# just a comment\n\nm 1\n\n"
    assert [s.line for s in samples(page)] == [4]


@pytest.mark.parametrize(
    ("page", "line", "message"),
    [
        ('m 1\nm{a="1" 2\n', 2, "expected ',' or '}'"),
        ("m 1\nm{a=1} 2\n", 2, "expected a quoted value for label 'a'"),
        ('m{a="1",a="2"} 1\n', 1, "duplicate label name 'a'"),
        ("m 1\n\nm\n", 3, "missing value"),
        ("m one\n", 1, "invalid value 'one'"),
        ("m 1 12.5\n", 1, "invalid timestamp '12.5'"),
        ("m 1 2 3\n", 1, "unexpected text after the timestamp"),
        ("# TYPE m counter\n# TYPE m gauge\n", 2, "second TYPE line"),
        ("# TYPE m fancy\n", 1, "unknown metric type 'fancy'"),
        ("m 1\n# TYPE m counter\n", 2, "TYPE line for 'm' after its samples"),
        ('# TYPE h histogram\nh_bucket{le="x"} 1\n', 2, "label 'le'"),
        ('# TYPE s summary\ns{quantile="0.5"} 1\ns{quantile="a\\"b"} 1\n', 3, "'quantile'"),
        ("9m 1\n", 1, "expected a metric name"),
    ],
)
def test_text_errors_name_the_line(page: str, line: int, message: str | None) -> None:
    # Duplicate label names in one line are caught by the per-line parser only;
    # the analysis' bulk path does not look for them (see exposition's docstring).
    err = error(page, analysed="duplicate" not in (message or ""))
    assert err.line == line
    assert str(err).startswith(f"page.txt:{line}: ")
    if message:
        assert message in err.message


def test_invalid_utf8_label_value_is_an_error() -> None:
    page = b'm{a="ok"} 1\nm{a="\xff\xfe"} 1\n'
    for fast in (True, False):
        with pytest.raises(ParseError) as info:
            list(exposition.parse(page, "text", "bin", fast=fast))
        assert info.value.line == 2 and "UTF-8" in info.value.message
    with pytest.raises(ParseError) as info:
        analyse(page, content_type=None, source="bin")
    assert info.value.line == 2


def test_openmetrics_needs_eof_and_single_spaces() -> None:
    assert samples("a 1\n# EOF\n", "openmetrics")[0].value == 1
    assert "EOF" in error("a 1\n", "openmetrics").message
    assert error("a  1\n# EOF\n", "openmetrics").line == 1


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
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=40).map(b"".join))
def test_arbitrary_input_parses_or_fails_with_a_line(data: bytes) -> None:
    def outcome(fmt: exposition.Format, how: str) -> int:
        try:
            if how == "analyse":
                analyse(data, content_type=None, source="fuzz", fmt=fmt)
            else:
                list(exposition.parse(data, fmt, "fuzz", fast=how == "fast"))
        except ParseError as exc:
            assert exc.line >= 1
            return exc.line
        return 0

    formats: tuple[exposition.Format, ...] = ("text", "openmetrics")
    for fmt in formats:
        outcomes = {outcome(fmt, how) for how in ("fast", "strict", "analyse")}
        if b"{" not in data:  # no label sets: no repeated label names either
            assert len(outcomes) == 1, outcomes
