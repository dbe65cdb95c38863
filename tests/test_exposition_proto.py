"""parse.protobuf: the protobuf exposition format, counted as Prometheus 2.42 counts it.

The reference is a real Prometheus 2.42 started with
``--enable-feature=native-histograms`` scraping nhserver (client_golang 1.14
with counters, gauges, summaries, classic and native histograms); cardguard
must find exactly the series Prometheus stored. The same program's text page,
pages recorded from it (tests/testdata/record.sh protobuf) and
prometheus/common's expfmt inputs check the rest without processes; hostile
and fuzzed input must end in a ``ParseError`` that names the source and a
byte offset, with bounded memory and time.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import subprocess
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nhserver_support as nh
import promstack
from cardguard.analyse import cardinality
from cardguard.analyse.view import TargetView, children_of, metrics_point
from cardguard.detect.detectors import detect
from cardguard.detect.offender import Offender
from cardguard.errors import ConfigError, ParseError
from cardguard.parse import exposition, model, protobuf
from cardguard.parse.model import Family, Sample
from cardguard.run.target_worker import TargetWorker
from cardguard.settings.config import GlobalConfig, parse_config
from cardguard.settings.rules import DEFAULT_RULES, Rules
from cardguard.settings.targets import ProfilesConfig, TargetConfig
from support import TESTDATA, Process, cardguard_argv, wait_for

PAGES = TESTDATA / "metrics"
EXPFMT = TESTDATA / "corpora" / "expfmt"
REGRESSIONS = TESTDATA / "fuzz-regressions" / "exposition-protobuf"
PROTO = protobuf.CONTENT_TYPE
TEXT = "text/plain; version=0.0.4; charset=utf-8"
USERS = 20

# Series Prometheus adds to every scrape; not the target's.
SCRAPE_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def series_of(data: bytes, fmt: model.Format) -> dict[SeriesKey, str]:
    """Every series of a page (name and sorted labels, empty values dropped) -> its family."""
    out: dict[SeriesKey, str] = {}
    for e in exposition.parse(data, fmt, "page"):
        if isinstance(e, Sample):
            out[(e.name, tuple(sorted((k, v) for k, v in e.labels if v)))] = e.family
    return out


def numeric_bounds(key: SeriesKey) -> SeriesKey:
    """The key with le/quantile as numbers: the text format says 1 where protobuf says 1.0."""
    name, labels = key
    return name, tuple((k, repr(float(v)) if k in ("le", "quantile") else v) for k, v in labels)


def per_family(series: dict[SeriesKey, str]) -> Counter[str]:
    return Counter(series.values())


# --------------------------------------------------------------------------
# A real nhserver, shared by the tests that need the program itself.


@pytest.fixture(scope="module")
def nhserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    binary = nh.build_nhserver()
    log = tmp_path_factory.mktemp("nhserver") / "nhserver.log"
    with nh.start_nhserver(binary, log, f"-users={USERS}") as proc:
        yield proc


def test_series_equal_what_prometheus_2_42_ingests_with_native_histograms(
    nhserver: Process, tmp_path: Path
) -> None:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "nh", "static_configs": [{"targets": [f"127.0.0.1:{nhserver.port}"]}]}
        ],
    }
    flags = ["--enable-feature=native-histograms"]
    with promstack.prometheus(tmp_path, config, flags=flags) as prom:

        def scraped() -> bool:
            return any(r["value"][1] == "1" for r in promstack.query(prom, 'up{job="nh"}'))

        wait_for(scraped, 60, "Prometheus to scrape nhserver")
        resp = requests.get(
            f"{prom.base_url}/api/v1/series", params={"match[]": '{job="nh"}'}, timeout=10
        )
        resp.raise_for_status()
        stored = {
            (s["__name__"], tuple(sorted((k, v) for k, v in s.items() if k not in _PROM_LABELS)))
            for s in resp.json()["data"]
            if s["__name__"] not in SCRAPE_SERIES
        }
        counts = {
            r["metric"]["__name__"]: int(r["value"][1])
            for r in promstack.query(prom, 'count by (__name__)({job="nh"})')
        }

    got = nh.fetch(nhserver, nh.PROTOBUF_ACCEPT)
    assert got.headers["Content-Type"].startswith(protobuf.MEDIA_TYPE)
    ours = series_of(got.content, "protobuf")
    # Series for series, le and quantile spelt as Prometheus spells them (1.0, 1e+06).
    assert set(ours) == stored
    # The cases that matter, named: a native histogram is one series per label set, one
    # with classic buckets too is ingested as native only, an empty native histogram
    # with a zero threshold of 0 is classic (+Inf bucket, _sum, _count).
    by_name = Counter(name for name, _ in ours)
    assert by_name["nh_native_duration_seconds"] == USERS
    assert by_name["nh_both_duration_seconds"] == 2
    assert by_name["nh_both_duration_seconds_bucket"] == 0
    assert by_name["nh_native_empty_seconds"] == 1
    assert by_name["nh_native_empty_zero_threshold_seconds_bucket"] == 1
    assert by_name["nh_classic_duration_seconds_bucket"] == USERS * 11
    assert ("nh_classic_duration_seconds_bucket", (("le", "1e+06"), ("user", "user-0000"))) in ours
    assert {k: v for k, v in counts.items() if k not in SCRAPE_SERIES} == dict(by_name)
    # And the analysis counts each family as Prometheus does.
    analysis = cardinality.analyse(
        got.content, content_type=got.headers["Content-Type"], source="x"
    )
    assert analysis.format == "protobuf"
    expected = per_family(ours)
    assert {f.name: f.series for f in analysis.families} == dict(expected)
    assert analysis.total_series == len(stored)


_PROM_LABELS = {"__name__", "job", "instance"}


def test_text_page_of_the_same_program_agrees_on_every_non_native_family(
    nhserver: Process,
) -> None:
    pb = nh.fetch(nhserver, nh.PROTOBUF_ACCEPT).content
    txt = nh.fetch(nhserver, nh.TEXT_ACCEPT).content
    _check_twins(pb, txt)


def test_recorded_pages_agree_the_same_way() -> None:
    _check_twins((PAGES / "nhserver.pb").read_bytes(), (PAGES / "nhserver.txt").read_bytes())


NATIVE = {"nh_native_duration_seconds", "nh_native_empty_seconds", "nh_both_duration_seconds"}


def _check_twins(pb: bytes, txt: bytes) -> None:
    proto_series = series_of(pb, "protobuf")
    text_series = series_of(txt, "text")
    proto_fams = per_family(proto_series)
    text_fams = per_family(text_series)
    assert set(proto_fams) == set(text_fams)
    native = {f for f in proto_fams if f in NATIVE}
    assert native == NATIVE  # nhserver's native families, as the protobuf page shows them
    for fam in set(proto_fams) - native:
        assert proto_fams[fam] == text_fams[fam], fam
        p = {numeric_bounds(k) for k, f in proto_series.items() if f == fam}
        t = {numeric_bounds(k) for k, f in text_series.items() if f == fam}
        if not fam.startswith("go_"):  # the Go runtime moves between the two fetches
            assert p == t, fam
    # The text page shows native histograms as classic ones (+Inf bucket, _sum, _count,
    # plus any classic buckets); counted as native, they are what protobuf has.
    proto_a = cardinality.analyse(pb, content_type=PROTO, source="pb")
    text_a = cardinality.analyse(txt, content_type=TEXT, source="txt")
    for fam in NATIVE:
        pf, tf = proto_a.family(fam), text_a.family(fam)
        assert pf is not None and tf is not None
        assert pf.native_histogram_series is None
        assert tf.native_histogram_series == pf.series < tf.series
    classic = proto_a.family("nh_classic_duration_seconds")
    assert classic is not None and classic.native_histogram_series == USERS
    assert classic.series == USERS * 13
    assert children_of(classic) == USERS
    native_fam = proto_a.family("nh_native_duration_seconds")
    assert native_fam is not None and children_of(native_fam) == USERS


def test_scheduler_asks_for_protobuf_only_with_native_histograms_on(nhserver: Process) -> None:
    def settings() -> tuple[GlobalConfig, Rules]:
        return GlobalConfig(), DEFAULT_RULES

    def scrape(native: bool) -> cardinality.PageAnalysis:
        target = TargetConfig(
            name="nh",
            url=nhserver.base_url,
            native_histograms=native,
            profiles=ProfilesConfig(enabled=False),
        )
        w = TargetWorker(target, settings)
        w.scrape_metrics()
        assert w.snapshot.analysis is not None, w.snapshot.health
        return w.snapshot.analysis

    on, off = scrape(True), scrape(False)
    assert on.format == "protobuf" and off.format == "text"
    fam_on = on.family("nh_native_duration_seconds")
    fam_off = off.family("nh_native_duration_seconds")
    assert fam_on is not None and fam_off is not None
    assert fam_on.series == USERS and fam_off.series == 3 * USERS


def test_cli_reads_protobuf_from_a_url_and_from_a_file(nhserver: Process, tmp_path: Path) -> None:
    url = f"{nhserver.base_url}/metrics"
    argv = cardguard_argv("cardinality", url, "--native-histograms", "--format", "json")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    assert '"format": "protobuf"' in out
    page = tmp_path / "page.pb.gz"
    page.write_bytes(gzip.compress(nh.fetch(nhserver, nh.PROTOBUF_ACCEPT).content))
    argv = cardguard_argv("cardinality", str(page), "--top", "0")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "format: protobuf" in out
    row = next(line for line in out.splitlines() if line.startswith("nh_native_duration_seconds"))
    assert row.split()[1:3] == ["histogram", str(USERS)]


def test_label_explosion_on_a_classic_histogram_names_its_native_cost(tmp_path: Path) -> None:
    """Planted in a real process (2,100 users), and silent on the healthy 20-user one."""
    binary = nh.build_nhserver()

    def explosions(users: int) -> list[Offender]:
        with nh.start_nhserver(binary, tmp_path / f"nh-{users}.log", f"-users={users}") as proc:
            resp = nh.fetch(proc, nh.PROTOBUF_ACCEPT)
        page = cardinality.analyse(resp.content, content_type=PROTO, source="nh")
        view = TargetView("nh", metrics=(metrics_point(page, 0.0),))
        return [o for o in detect(view) if o.kind == "label_explosion"]

    found = {o.evidence["family"]: o for o in explosions(2100)}
    classic = found["nh_classic_duration_seconds"]
    assert classic.evidence["native_histogram_series"] == 2100
    assert (
        "As a native histogram nh_classic_duration_seconds would need 2100 series instead of "
        "27300" in classic.fix
    )
    # Already native, or not a histogram: nothing to say about native histograms.
    for fam in ("nh_native_duration_seconds", "nh_requests_total"):
        assert "native_histogram_series" not in found[fam].evidence
        assert "native histogram" not in found[fam].fix
    assert explosions(USERS) == []


# --------------------------------------------------------------------------
# prometheus/common's expfmt inputs (tests/testdata/corpora/expfmt/README.md).


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@pytest.mark.parametrize("name", ["protobuf", "protobuf.gz"])
def test_expfmt_protobuf_page_counts_as_its_text_twin(name: str) -> None:
    pb = _read(EXPFMT / name)
    assert exposition.detect_format(None, pb) == "protobuf"
    twin = _read(EXPFMT / "text")
    assert exposition.detect_format(None, twin) == "text"
    p = {numeric_bounds(k): f for k, f in series_of(pb, "protobuf").items()}
    t = {numeric_bounds(k): f for k, f in series_of(twin, "text").items()}
    assert p == t and len(p) == 248
    a = cardinality.analyse(pb, content_type=None, source=name)
    b = cardinality.analyse(twin, content_type=None, source="text")
    assert a.total_series == b.total_series == 248
    assert {f.name: (f.type, f.series) for f in a.families} == {
        f.name: (f.type, f.series) for f in b.families
    }


def test_expfmt_multimessage_gives_upstreams_six_families() -> None:
    data = (EXPFMT / "protobuf-multimessage").read_bytes()
    events = list(protobuf.parse(data, "multi"))
    fams = [e.name for e in events if isinstance(e, Family)]
    assert fams == [
        "swap_free",
        "swap_in",
        "swap_out",
        "swap_total",
        "swap_used",
        "swap_used_percent",
    ]
    assert [e.labels for e in events if isinstance(e, Sample)] == [(("host", "omsk"),)] * 6


# --------------------------------------------------------------------------
# Sniffing, formatting.


def _text_pages() -> Iterator[Path]:
    yield from sorted(PAGES.glob("*.txt"))
    yield from sorted((TESTDATA / "openmetrics-parsers").glob("*/metrics"))
    yield EXPFMT / "text"


def test_only_pages_that_cannot_be_text_are_sniffed_as_protobuf() -> None:
    for path in _text_pages():
        assert not protobuf.looks_like_protobuf(path.read_bytes()), path
    for data in (
        (PAGES / "nhserver.pb").read_bytes(),
        _read(PAGES / "nhserver-10k.pb.gz"),
        _read(EXPFMT / "protobuf"),
        (EXPFMT / "protobuf-multimessage").read_bytes(),
    ):
        assert exposition.detect_format(None, data) == "protobuf"
    # A Content-Type decides, as in Prometheus: protobuf bytes called text are text.
    assert exposition.detect_format(TEXT, (PAGES / "nhserver.pb").read_bytes()) == "text"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1.0"),
        (0.0, "0.0"),
        (-0.0, "0.0"),
        (0.005, "0.005"),
        (123456.0, "123456.0"),
        (1e6, "1e+06"),
        (1.5e7, "1.5e+07"),
        (2.5e-05, "2.5e-05"),
        (0.0001, "0.0001"),
        (-2.5, "-2.5"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_bounds_are_spelt_as_prometheus_spells_them(value: float, text: str) -> None:
    # The Prometheus test above checks real le values against the server; these pin the rule.
    assert protobuf.format_float(value) == text


# --------------------------------------------------------------------------
# A tiny protobuf encoder for hand-made and generated input.


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def tag(number: int, wt: int) -> bytes:
    return varint(number << 3 | wt)


def ld(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def vi(number: int, n: int) -> bytes:
    return tag(number, 0) + varint(n)


def dbl(number: int, x: float) -> bytes:
    return tag(number, 1) + struct.pack("<d", x)


def pair(name: str, value: str) -> bytes:
    return ld(1, ld(1, name.encode()) + ld(2, value.encode()))


def delimited(*messages: bytes) -> bytes:
    return b"".join(varint(len(m)) + m for m in messages)


def family(name: str, mtype: int, *metrics: bytes) -> bytes:
    return ld(1, name.encode()) + vi(3, mtype) + b"".join(ld(4, m) for m in metrics)


GAUGE_METRIC = pair("a", "1") + ld(2, dbl(1, 5.0))
GOOD = delimited(family("g", 1, GAUGE_METRIC))


def test_hand_made_stream_decodes() -> None:
    events = list(protobuf.parse(GOOD, "hand"))
    assert events == [
        Family("g", "gauge", None, None, 1),
        Sample("g", "g", (("a", "1"),), 5.0, None, 1),
    ]


def _hostile() -> list[tuple[str, bytes, str]]:
    big_bucket = ld(3, vi(1, 1) + dbl(2, 1.0))
    return [
        ("truncated length prefix", b"\xff\xff", "truncated length prefix (byte 0)"),
        ("prefix over 5 bytes", b"\xff\xff\xff\xff\xff\x01" + b"\0" * 8, "longer than 5 bytes"),
        ("length past the end", varint(1 << 32) + b"\x0a\x01g", "runs past the end (3 left)"),
        ("truncated message", GOOD[:-3], "runs past the end"),
        ("truncated varint", delimited(b"\x18\xff"), "truncated varint (byte 2)"),
        (
            "huge inner length",
            delimited(b"\x0a" + varint(1 << 62) + b"x"),
            "field 1: length 4611686018427387904 runs past the end of its message (byte 1)",
        ),
        (
            "wrong wire type, name",
            delimited(vi(1, 7) + vi(3, 1)),
            "MetricFamily field 1 has wire type 0, expected 2",
        ),
        (
            "wrong wire type, bucket bound",
            delimited(family("h", 4, ld(7, ld(3, vi(1, 1) + vi(2, 5))))),
            "Bucket field 2 has wire type 0, expected 1",
        ),
        (
            "wrong wire type, exemplar label",
            delimited(family("h", 4, ld(7, ld(3, dbl(2, 1.0) + ld(3, vi(1, 3)))))),
            "Exemplar field 1 has wire type 0, expected 2",
        ),
        (
            "wrong wire type, counter in a gauge family",
            delimited(family("g", 1, GAUGE_METRIC + vi(3, 1))),
            "Metric field 3 has wire type 0, expected 2",
        ),
        ("invalid wire type", delimited(b"\x0f"), "invalid wire type 7"),
        ("group", delimited(b"\x0b" * 1000), "group wire type 3 is not supported"),
        ("field number 0", delimited(b"\x00\x00"), "field number 0 out of range"),
        ("varint overflow", delimited(b"\x18" + b"\xff" * 9 + b"\x02"), "overflows 64 bits"),
        ("packed doubles", delimited(family("h", 4, ld(7, ld(14, b"\0" * 7)))), "multiple of 8"),
        ("metric name", delimited(family("9x", 1, GAUGE_METRIC)), "invalid metric name '9x'"),
        ("label name", delimited(family("g", 1, pair("a-b", "1"))), "invalid label name 'a-b'"),
        (
            "label value",
            delimited(family("g", 1, ld(1, ld(1, b"a") + ld(2, b"\xff")))),
            "value of label 'a' is not valid UTF-8",
        ),
        (
            "help",
            delimited(ld(1, b"g") + ld(2, b"\xc3") + ld(4, GAUGE_METRIC)),
            "help text is not valid UTF-8",
        ),
        ("type", delimited(family("g", 9, GAUGE_METRIC)), "unknown metric type 9"),
        (
            "repeated label",
            delimited(family("g", 1, pair("a", "1") + pair("a", "2"))),
            "label name 'a' repeated in one metric",
        ),
        (
            "second family broken",
            GOOD + delimited(family("h", 4, big_bucket[:-2])),
            f"protobuf MetricFamily #2 at byte {len(GOOD)} ('h'): field 3: length 11 runs past",
        ),
    ]


@pytest.mark.parametrize(
    ("data", "message"), [pytest.param(d, m, id=case) for case, d, m in _hostile()]
)
def test_hostile_input_is_a_parse_error_with_offsets(data: bytes, message: str) -> None:
    with pytest.raises(ParseError) as err:
        list(protobuf.parse(data, "evil"))
    text = str(err.value)
    assert text.startswith("evil: protobuf MetricFamily #"), text
    assert message in text, text
    assert "(byte " in text


def test_the_family_name_is_in_errors_once_known() -> None:
    data = delimited(family("http_requests_total", 0, pair("a", "1") + b"\x1a\x02\x09\x00"))
    with pytest.raises(ParseError, match=r"'http_requests_total'\): field 1: truncated 64-bit"):
        list(protobuf.parse(data, "evil"))


def test_every_cut_of_a_real_page_is_refused_or_a_shorter_page() -> None:
    data = (PAGES / "nhserver.pb").read_bytes()
    boundaries = {0}
    pos = 0
    while pos < len(data):
        length = shift = 0
        while True:
            b = data[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        pos += length
        boundaries.add(pos)
    full = list(protobuf.parse(data, "cut"))
    for cut in range(0, len(data), 7):
        if cut in boundaries:
            events = list(protobuf.parse(data[:cut], "cut"))
            assert events == full[: len(events)]
        else:
            with pytest.raises(ParseError, match=r"^cut: protobuf MetricFamily #\d+ at byte \d+"):
                list(protobuf.parse(data[:cut], "cut"))


def nested_unknown(depth: int) -> bytes:
    """Field 99 holding field 99 holding ... ``depth`` levels, built inside out in one join."""
    headers = []
    size = 0
    for _ in range(depth):
        head = tag(99, 2) + varint(size)
        headers.append(head)
        size += len(head)
    return b"".join(reversed(headers))


def test_hostile_lengths_and_nesting_stay_small_and_fast() -> None:
    # An unknown field holding 100,000 nested messages is skipped whole, never descended.
    deep = delimited(family("g", 1, GAUGE_METRIC + nested_unknown(100_000)))
    # Lengths claiming gigabytes are refused before anything is allocated.
    huge = [
        varint((1 << 35) - 1) + b"\x0a",
        delimited(b"\x0a" + varint((1 << 63) - 1)),
        b"\x80" * 4 + b"\x10" + b"\x0a" * 64,
    ]
    tracemalloc.start()
    try:
        assert len(list(protobuf.parse(deep, "evil"))) == 2
        for data in huge:
            with pytest.raises(ParseError, match="runs past the end"):
                list(protobuf.parse(data, "evil"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, peak


def test_metadata_after_metrics_and_merged_messages_count_like_go() -> None:
    # Field order is free in protobuf and repeated messages merge: a Histogram sent in two
    # parts is one histogram with the buckets of both and the count of the last.
    h1 = vi(1, 3) + ld(3, vi(1, 1) + dbl(2, 0.5))
    h2 = ld(3, vi(1, 2) + dbl(2, 1.0)) + vi(1, 4)
    metric = pair("a", "1") + ld(7, h1) + ld(7, h2)
    msg = ld(4, metric) + vi(3, 4) + ld(1, b"h") + ld(2, b"help")
    events = list(protobuf.parse(delimited(msg), "m"))
    assert events[0] == Family("h", "histogram", "help", None, 1)
    assert [(e.name, e.labels, e.value) for e in events[1:] if isinstance(e, Sample)] == [
        ("h_bucket", (("a", "1"), ("le", "0.5")), 1.0),
        ("h_bucket", (("a", "1"), ("le", "1.0")), 2.0),
        ("h_bucket", (("a", "1"), ("le", "+Inf")), 4.0),
        ("h_sum", (("a", "1"),), 0.0),
        ("h_count", (("a", "1"),), 4.0),
    ]


def test_native_is_decided_by_the_first_metric_as_prometheus_does() -> None:
    native = ld(7, vi(1, 2) + ld(12, vi(1, 0) + vi(2, 1)) + vi(13, zigzag(2)))
    classic = ld(7, vi(1, 2) + ld(3, vi(1, 1) + dbl(2, 1.0)))
    first_native = delimited(family("h", 4, pair("a", "1") + native, pair("a", "2") + classic))
    first_classic = delimited(family("h", 4, pair("a", "1") + classic, pair("a", "2") + native))
    a = cardinality.analyse(first_native, content_type=PROTO, source="x")
    b = cardinality.analyse(first_classic, content_type=PROTO, source="x")
    assert a.total_series == 2  # both as native histograms
    # Both classic: buckets 1.0 and +Inf, _sum, _count; then, having no classic buckets,
    # only +Inf, _sum and _count.
    assert b.total_series == 7
    # An explicit +Inf bucket ends the buckets Prometheus reads, and none is added.
    inf = ld(7, vi(1, 2) + ld(3, vi(1, 2) + dbl(2, math.inf)) + ld(3, vi(1, 2) + dbl(2, 9.0)))
    c = cardinality.analyse(delimited(family("h", 4, inf)), content_type=PROTO, source="x")
    assert c.total_series == 3
    # Empty families are skipped, as Prometheus skips them.
    assert list(protobuf.parse(delimited(ld(1, b"nothing")), "x")) == []


# --------------------------------------------------------------------------
# Configuration.


def test_native_histograms_setting_global_and_per_target(tmp_path: Path) -> None:
    cfg = parse_config(
        "global:\n  native_histograms: true\n"
        "targets:\n"
        "  - {name: a, url: 'http://127.0.0.1:1'}\n"
        "  - {name: b, url: 'http://127.0.0.1:2', native_histograms: false}\n",
        "nh.yml",
    )
    assert cfg.global_.native_histograms
    a, b = cfg.targets
    assert a.native_histograms and not b.native_histograms
    assert not parse_config("targets: []\n", "x.yml").global_.native_histograms
    assert exposition.accept_header(True).startswith(protobuf.MEDIA_TYPE)
    assert exposition.accept_header(False) == exposition.ACCEPT_HEADER
    with pytest.raises(ConfigError) as err:
        parse_config(
            "targets:\n  - {name: a, url: 'http://127.0.0.1:1', native_histograms: often}\n",
            "bad.yml",
        )
    assert "bad.yml:2: targets[0].native_histograms" in str(err.value)


# --------------------------------------------------------------------------
# Fuzzing: a model of what Prometheus counts, and mutations of what it produces.

FUZZ = settings(
    max_examples=int(os.environ.get("CARDGUARD_FUZZ_EXAMPLES", "300")),
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("CARDGUARD_FUZZ_RANDOM") != "1",
)
MAX_INPUT = 64 * 1024

_label_names = st.sampled_from(["a", "b", "path", "code", "_x", "le_"])
_label_values = st.text(max_size=12)
_bounds = st.one_of(
    st.sampled_from([0.005, 0.1, 1.0, 2.5, 1e6, math.inf]),
    st.floats(allow_nan=False, min_value=-1e9, max_value=1e9),
)


@st.composite
def _metric(draw: st.DrawFn, mtype: int) -> tuple[bytes, int, bool]:
    """One Metric message, the series Prometheus makes of it if classic, and its native flag."""
    names = draw(st.lists(_label_names, unique=True, max_size=3))
    body = b"".join(pair(n, draw(_label_values)) for n in names)
    if draw(st.booleans()):
        body += vi(6, draw(st.integers(0, 2**40)))  # timestamp_ms
    series, native = 1, False
    if mtype in (0, 1, 3):
        body += ld({0: 3, 1: 2, 3: 5}[mtype], dbl(1, draw(st.floats())))
    elif mtype == 2:
        quantiles = draw(st.lists(st.floats(0, 1), max_size=4))
        q = b"".join(ld(3, dbl(1, x) + dbl(2, 1.0)) for x in quantiles)
        body += ld(4, vi(1, 3) + dbl(2, 1.5) + q)
        series = len(quantiles) + 2
    else:
        bounds = draw(st.lists(_bounds, max_size=5))
        h = vi(1, 10) + dbl(2, 3.5)
        h += b"".join(ld(3, vi(1, i) + dbl(2, b)) for i, b in enumerate(bounds))
        read = next((i + 1 for i, b in enumerate(bounds) if b == math.inf), None)
        series = (read if read is not None else len(bounds) + 1) + 2
        kind = draw(st.sampled_from(["none", "span", "delta", "packed", "zero", "count"]))
        native = kind != "none"
        h += {
            "none": b"",
            "span": ld(12, vi(1, zigzag(0)) + vi(2, 0)),
            "delta": ld(12, vi(2, 2)) + vi(13, zigzag(3)) + vi(13, zigzag(-1)),
            "packed": ld(9, vi(2, 2)) + ld(10, varint(zigzag(1)) + varint(zigzag(5))),
            "zero": dbl(6, 2.0**-128) + vi(7, draw(st.integers(0, 5))),
            "count": ld(14, struct.pack("<2d", 1.0, 2.0)),
        }[kind]
        body += ld(7, h)
    if draw(st.booleans()):
        body += ld(15, b"an unknown field") + vi(40, 1)
    return body, series, native


@st.composite
def _stream(draw: st.DrawFn) -> tuple[bytes, dict[str, int]]:
    """A delimited stream and the series per family Prometheus would count from it."""
    messages = []
    expected: dict[str, int] = {}
    for i in range(draw(st.integers(0, 4))):
        mtype = draw(st.integers(0, 5))
        name = f"f{i}_" + draw(st.sampled_from(["x", "total", "seconds"]))
        metrics = draw(st.lists(_metric(mtype), max_size=4))
        meta = [ld(1, name.encode()), vi(3, mtype)]
        if draw(st.booleans()):
            meta.append(ld(2, draw(st.text(max_size=10)).encode()))
        body = [ld(4, m) for m, _, _ in metrics]
        parts = meta + body if draw(st.booleans()) else body + meta
        messages.append(b"".join(parts))
        if metrics:
            native = mtype in (4, 5) and metrics[0][2]
            expected[name] = len(metrics) if native else sum(s for _, s, _ in metrics)
    return delimited(*messages), expected


@FUZZ
@given(_stream())
def test_fuzz_generated_streams_count_as_the_model_says(case: tuple[bytes, dict[str, int]]) -> None:
    data, expected = case
    a = cardinality.analyse(data, content_type=PROTO, source="fuzz")
    assert {f.name: f.series for f in a.families} == expected
    assert a.total_series == sum(expected.values())


def _mutate(draw: st.DrawFn, data: bytes) -> bytes:
    ops = draw(
        st.lists(
            st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.binary(max_size=4)),
            min_size=1,
            max_size=3,
        )
    )
    buf = bytearray(data)
    for op, pos, extra in ops:
        if not buf:
            buf.extend(extra)
            continue
        i = pos % len(buf)
        if op == 0:
            buf[i] ^= 0xFF
        elif op == 1:
            del buf[i:]
        elif op == 2:
            buf[i:i] = extra
        else:
            buf[i] = (buf[i] & ~7 | (pos & 7)) & 0xFF  # another wire type
    return bytes(buf[:MAX_INPUT])


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    base = draw(
        st.one_of(
            _stream().map(lambda c: c[0]),
            st.just((PAGES / "nhserver.pb").read_bytes()[:4096]),
            st.just((EXPFMT / "protobuf-multimessage").read_bytes()),
        )
    )
    return _mutate(draw, base)


def check(data: bytes) -> None:
    """Only a ParseError naming the source may come out, of the parser or the analysis."""
    for run in (
        lambda: list(protobuf.parse(data, "fuzz")),
        lambda: cardinality.analyse(data, content_type=PROTO, source="fuzz"),
    ):
        try:
            run()
        except ParseError as exc:
            assert str(exc).startswith("fuzz: protobuf MetricFamily #"), str(exc)


@FUZZ
@given(_mutated())
def test_fuzz_mutated_streams_only_raise_parse_errors(data: bytes) -> None:
    try:
        check(data)
    except Exception:
        if os.environ.get("KEEP_FUZZ_FAILURES") == "1":
            REGRESSIONS.mkdir(parents=True, exist_ok=True)
            (REGRESSIONS / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)
        raise


@pytest.mark.parametrize(
    "path",
    sorted(p for p in REGRESSIONS.iterdir() if p.name != "README.md"),
    ids=lambda p: p.name,
)
def test_fuzz_regressions(path: Path) -> None:
    check(path.read_bytes())
