"""Property-based fuzzing of the pure decoders: only their typed errors may escape.

Targets: the exposition parser (text 0.0.4 and OpenMetrics) and the page
analysis built on it, the pprof ``profile.proto`` decoder with heap owners on
top, the goroutine dump parser (debug=1, debug=2 and proto), and the config
loader (whose only way to say no is ``ConfigError``: a reload must never crash).
Inputs are bounded in size so that a hang shows up as a hypothesis deadline
miss rather than a stuck CI job.

Crashing inputs found here are kept under ``tests/testdata/fuzz-regressions/<target>/``
and replayed by ``test_regressions`` on every run. To add one, save the bytes
there (``KEEP_FUZZ_FAILURES=1`` makes the fuzz tests do it themselves).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cardguard.analyse import cardinality
from cardguard.analyse.view import metrics_point_of_tsdb
from cardguard.errors import ConfigError, ParseError, ProfileError
from cardguard.parse import exposition, tsdb
from cardguard.pprof import goroutines, heap, profile, profile_pb2
from cardguard.settings import allowlist, config, rulefile, targets, yamlfile
from support import TESTDATA

REGRESSIONS = TESTDATA / "fuzz-regressions"
MAX_INPUT = 64 * 1024

FUZZ = settings(
    max_examples=int(os.environ.get("CARDGUARD_FUZZ_EXAMPLES", "300")),
    # A generous deadline: this catches hangs and pathological backtracking,
    # not slowness on a busy CI machine.
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("CARDGUARD_FUZZ_RANDOM") != "1",
)


# --------------------------------------------------------------------------
# The properties, shared by the fuzz tests and the regression replay.


def check_exposition_text(data: bytes) -> None:
    _consume(lambda: exposition.parse(data, "text", "fuzz"), ParseError)
    _analyse(data, "text/plain; version=0.0.4")


def check_exposition_openmetrics(data: bytes) -> None:
    _consume(lambda: exposition.parse(data, "openmetrics", "fuzz"), ParseError)
    _analyse(data, "application/openmetrics-text; version=1.0.0")


def check_profile(data: bytes) -> None:
    try:
        prof = profile.decode(data, "fuzz", max_bytes=4 * MAX_INPUT)
    except ProfileError as exc:
        assert str(exc).startswith("fuzz: ")
        return
    for index in [None, *(st_.type for st_ in prof.sample_types)]:
        try:
            heap.owners(prof, index)
        except ProfileError as exc:
            assert str(exc).startswith("fuzz: ")


def check_goroutines(data: bytes) -> None:
    for fmt in (None, "proto", "debug1", "debug2"):
        try:
            snap = goroutines.parse(data, "fuzz", fmt=fmt, max_bytes=4 * MAX_INPUT)
        except ProfileError as exc:
            assert str(exc).startswith("fuzz: ")
            continue
        goroutines.group(snap)
        goroutines.by_creator(snap)


def check_tsdb(data: bytes) -> None:
    try:
        status = tsdb.parse(data, "fuzz", limit=20)
    except ParseError as exc:
        assert str(exc).startswith("fuzz")
        return
    tsdb.TSDBView.new(5, 1, 1).rows(status)
    metrics_point_of_tsdb(status, 0.0)


def check_probe_target(data: bytes) -> None:
    raw = data.decode("utf-8", "replace")
    allow = allowlist.build(["127.0.0.0/8", "*.example", "app:80"])

    def resolve(host: str, port: int) -> list[str]:
        # Name resolution is not under test here; every name resolves outside the CIDR.
        return ["192.0.2.1"]

    r = allowlist.check(allow, raw, resolve)
    if isinstance(r, allowlist.Refusal):
        assert r.reason in allowlist.REASONS
    else:
        assert r.scheme in ("http", "https") and "@" not in r.url


# A config file may take at most this long to accept or refuse (a reload blocks on it).
CONFIG_SECONDS = 5.0


def check_config(data: bytes) -> None:
    """Loading a config file gives a Config or a ConfigError, within bounded time, nothing else."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.yml"
        path.write_bytes(data)
        start = time.monotonic()
        try:
            cfg = config.load_config(path)
        except ConfigError as exc:
            assert exc.problems, "a ConfigError must say what is wrong"
            assert len(exc.problems) <= yamlfile.MAX_PROBLEMS + 1
            for problem in exc.problems:
                assert problem.startswith(d) and len(problem) <= yamlfile.MAX_PROBLEM_CHARS
        else:
            assert isinstance(cfg, config.Config)
        assert time.monotonic() - start < CONFIG_SECONDS


CHECKS: dict[str, Callable[[bytes], None]] = {
    "exposition-text": check_exposition_text,
    "exposition-openmetrics": check_exposition_openmetrics,
    "profile": check_profile,
    "goroutine": check_goroutines,
    "tsdb": check_tsdb,
    "probe-target": check_probe_target,
    "config": check_config,
}


def _consume(events: Callable[[], object], allowed: type[Exception]) -> None:
    try:
        for _ in events():  # type: ignore[attr-defined]
            pass
    except allowed as exc:
        assert str(exc).startswith("fuzz"), str(exc)


def _analyse(data: bytes, content_type: str) -> None:
    try:
        cardinality.analyse(data, content_type=content_type, source="fuzz")
    except ParseError as exc:
        assert str(exc).startswith("fuzz"), str(exc)


def _run(target: str, data: bytes) -> None:
    """Run a check; with KEEP_FUZZ_FAILURES=1 save the input of any unexpected exception."""
    try:
        CHECKS[target](data)
    except Exception:
        if os.environ.get("KEEP_FUZZ_FAILURES") == "1":
            d = REGRESSIONS / target
            d.mkdir(parents=True, exist_ok=True)
            (d / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)
        raise


# --------------------------------------------------------------------------
# Strategies: mostly-grammatical inputs reach deeper than random bytes.

_names = st.sampled_from(
    ["a", "http_requests", "x_total", "h_bucket", "h", "s_sum", "s_count", "_", "a:b", "9bad", ""]
)
_label_names = st.sampled_from(["le", "quantile", "path", "a", "__name__", "1x", "", "b_c"])
_label_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(['\\"', "\\\\", "\\n", "\\z", '"', "\\", "+Inf", "0.5", "NaN"]),
    st.binary(max_size=8).map(lambda b: b.decode("latin-1")),
)
_numbers = st.one_of(
    st.sampled_from(
        [
            "1",
            "-1",
            "0",
            "1.5e3",
            "+Inf",
            "-Inf",
            "NaN",
            "1e400",
            "0x1p3",
            "--1",
            "1_0",
            ".",
            "",
            "inf",
        ]
    ),
    st.floats(allow_nan=True).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
_types = st.sampled_from(
    [
        "counter",
        "gauge",
        "histogram",
        "summary",
        "untyped",
        "unknown",
        "info",
        "stateset",
        "gaugehistogram",
        "bogus",
        "",
    ]
)


@st.composite
def _sample_line(draw: st.DrawFn) -> str:
    name = draw(_names)
    labels = draw(st.lists(st.tuples(_label_names, _label_values), max_size=4))
    body = ",".join(f'{k}="{v}"' for k, v in labels)
    brace = draw(st.sampled_from(["{%s}", "{%s,}", "%s", "{%s", '{%s} # {a="1"} 1']))
    lab = brace % body if "%s" in brace else brace
    ts = draw(st.sampled_from(["", " 1", " -5", " 1.5", " x", " 99999999999999999999"]))
    return f"{name}{lab} {draw(_numbers)}{ts}"


_comment = st.one_of(
    st.builds(lambda n, t: f"# TYPE {n} {t}", _names, _types),
    st.builds(lambda n, h: f"# HELP {n} {h}", _names, st.text(max_size=20)),
    st.builds(lambda n, u: f"# UNIT {n} {u}", _names, st.sampled_from(["seconds", "bytes", ""])),
    st.just("# EOF"),
    st.just("#"),
    st.just(""),
    st.text(max_size=30),
)


@st.composite
def exposition_pages(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.one_of(_sample_line(), _comment), max_size=40))
    text = "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n# EOF\n", "\n# EOF"]))
    data = text.encode("utf-8", "surrogatepass")
    return _mutate(draw, data)[:MAX_INPUT]


def _mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """Apply a few byte-level mutations: flips, truncation, insertion of odd bytes."""
    ops = draw(
        st.lists(
            st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.binary(max_size=4)), max_size=3
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
            buf[i:i] = b"\xff\xfe\x00"
    return bytes(buf)


def _valid_profile(draw: st.DrawFn) -> bytes:
    p = profile_pb2.Profile()
    strings = [
        "",
        "inuse_space",
        "bytes",
        "inuse_objects",
        "count",
        "main.leak",
        "main.go",
        "runtime.gopark",
        "goroutine",
    ]
    n_funcs = draw(st.integers(1, 4))
    for i in range(1, n_funcs + 1):
        f = p.function.add()
        f.id = i
        f.name = draw(st.integers(0, len(strings) + 2))  # sometimes out of range
        f.filename = 6
    n_locs = draw(st.integers(0, 5))
    for i in range(1, n_locs + 1):
        loc = p.location.add()
        loc.id = draw(st.sampled_from([i, i, 0, 99]))
        for _ in range(draw(st.integers(0, 3))):
            line = loc.line.add()
            line.function_id = draw(st.integers(0, n_funcs + 1))
            line.line = draw(st.integers(-5, 500))
    two = draw(st.booleans())
    vt = p.sample_type.add()
    vt.type, vt.unit = (1, 2) if two else (8, 4)
    if two:
        vt = p.sample_type.add()
        vt.type, vt.unit = 3, 4
    for _ in range(draw(st.integers(0, 6))):
        s = p.sample.add()
        s.location_id.extend(draw(st.lists(st.integers(0, n_locs + 1), max_size=5)))
        s.value.extend(draw(st.lists(st.integers(-(2**40), 2**40), min_size=0, max_size=3)))
    p.string_table.extend(strings if draw(st.integers(0, 9)) else strings[1:])
    p.default_sample_type = draw(st.integers(0, len(strings) + 1))
    raw = p.SerializeToString()
    return gzip.compress(raw, mtime=0) if draw(st.booleans()) else raw


def _wrong_wire_types(draw: st.DrawFn) -> bytes:
    """Protobuf with known field numbers but wrong wire types (varint where a message goes...)."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 6))):
        field_no = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 9, 10, 11, 14]))
        wire = draw(st.sampled_from([0, 1, 2, 5, 3, 4, 7]))
        out += _varint(field_no << 3 | wire)
        if wire == 0:
            out += _varint(draw(st.integers(0, 2**64 - 1)))
        elif wire == 1:
            out += struct.pack("<Q", draw(st.integers(0, 2**64 - 1)))
        elif wire == 5:
            out += struct.pack("<I", draw(st.integers(0, 2**32 - 1)))
        elif wire == 2:
            payload = draw(st.binary(max_size=16))
            out += _varint(draw(st.sampled_from([len(payload), len(payload) + 7, 2**31]))) + payload
    return bytes(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


@st.composite
def profiles(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        data = _valid_profile(draw)
    elif kind == 1:
        data = _wrong_wire_types(draw)
    elif kind == 2:
        data = gzip.compress(_wrong_wire_types(draw), mtime=0)
    else:
        data = draw(st.binary(max_size=256))
    return _mutate(draw, data)[:MAX_INPUT]


_frames = st.sampled_from(
    [
        "main.leak(0xc000010000)\n\t/src/main.go:42 +0x1d",
        "runtime.gopark(0x0?)\n\t/usr/lib/go/src/runtime/proc.go:363 +0xd6",
        "created by main.start in goroutine 1\n\t/src/main.go:10 +0x2a",
        "created by main.start\n\t/src/main.go:10 +0x2a",
        "time.Sleep(0x3b9aca00)",
        "\t/src/x.go:1",
        "garbage",
        "",
    ]
)
_states = st.sampled_from(
    [
        "running",
        "chan receive",
        "select, 5 minutes",
        "IO wait, 1000000000000 minutes",
        "chan receive (leaked)",
        "sleep, x minutes",
        "",
        "syscall, locked to thread",
    ]
)


@st.composite
def goroutine_dumps(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 2))
    if kind == 0:  # debug=2
        parts = []
        for i in range(draw(st.integers(0, 6))):
            gid = draw(st.sampled_from([str(i + 1), "0", "-1", "x", "99999999999999999999"]))
            frames = "\n".join(draw(st.lists(_frames, max_size=4)))
            parts.append(f"goroutine {gid} [{draw(_states)}]:\n{frames}")
        text = "\n\n".join(parts)
    elif kind == 1:  # debug=1
        parts = [f"goroutine profile: total {draw(st.integers(-3, 10**12))}"]
        for _ in range(draw(st.integers(0, 4))):
            count = draw(st.sampled_from(["1", "5", "0", "-2", "x", "1e9"]))
            pcs = " ".join(draw(st.lists(st.sampled_from(["0x1", "0xzz", "0x4a5f1d"]), max_size=3)))
            frames = "\n".join(
                f"#\t{draw(st.sampled_from(['0x4a5f1c', 'bad', '0x1']))}\t"
                f"{draw(st.sampled_from(['main.leak+0x1c', 'runtime.gopark', '']))}\t"
                f"{draw(st.sampled_from(['/src/main.go:42', '', ':']))}"
                for _ in range(draw(st.integers(0, 3)))
            )
            parts.append(f"{count} @ {pcs}\n{frames}")
        text = "\n\n".join(parts) + "\n"
    else:
        return draw(profiles())
    return _mutate(draw, text.encode())[:MAX_INPUT]


# --------------------------------------------------------------------------
# The tests.


@FUZZ
@given(exposition_pages())
@example(b'a{b="' + b"\\" * 5000 + b'"} 1\n')
@example(b"a 1\n" * 2000 + b"a{")
def test_fuzz_exposition_text(data: bytes) -> None:
    _run("exposition-text", data)


@FUZZ
@given(exposition_pages())
@example(b'# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 2\n# EOF\n')
def test_fuzz_exposition_openmetrics(data: bytes) -> None:
    _run("exposition-openmetrics", data)


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_exposition_random_bytes(data: bytes) -> None:
    _run("exposition-text", data)
    _run("exposition-openmetrics", data)


@FUZZ
@given(profiles())
@example(gzip.compress(b"\x00" * 300_000)[:2000])  # truncated stream of zeros
@example(b"\x1f\x8b")
def test_fuzz_profile(data: bytes) -> None:
    _run("profile", data)


@FUZZ
@given(goroutine_dumps())
@example(b"goroutine 1 [running]:\n")
@example(b"goroutine profile: total 1\n1 @\n")
def test_fuzz_goroutine_dumps(data: bytes) -> None:
    _run("goroutine", data)


@pytest.fixture(scope="module")
def real_inputs(leaky_demo) -> dict[str, list[bytes]]:  # type: ignore[no-untyped-def]
    """Pages and profiles recorded now from the real leaky demo service, as mutation seeds."""
    import requests

    def get(path: str) -> bytes:
        r = requests.get(leaky_demo.base_url + path, timeout=30)
        r.raise_for_status()
        return r.content

    return {
        "exposition-text": [get("/metrics")],
        "profile": [gzip.decompress(get("/debug/pprof/heap"))],
        "goroutine": [
            gzip.decompress(get("/debug/pprof/goroutine")),
            get("/debug/pprof/goroutine?debug=1"),
            get("/debug/pprof/goroutine?debug=2"),
        ],
    }


@FUZZ
@given(st.data())
def test_fuzz_mutated_real_inputs(real_inputs: dict[str, list[bytes]], data: st.DataObject) -> None:
    target = data.draw(st.sampled_from(sorted(real_inputs)))
    seed = data.draw(st.sampled_from(real_inputs[target]))
    mutated = _mutate(data.draw, seed[: 4 * MAX_INPUT])
    if target in ("profile", "goroutine") and not mutated.startswith((b"goroutine", b"\x1f")):
        if data.draw(st.booleans()):
            mutated = gzip.compress(mutated, mtime=0)
    _run(target, mutated)
    if target == "exposition-text":
        _run("exposition-openmetrics", mutated)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "value",
                    "status",
                    "data",
                    "headStats",
                    "numSeries",
                    "seriesCountByMetricName",
                    "labelValueCountByLabelName",
                    "error",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@FUZZ
@given(_json_values)
def test_fuzz_tsdb_status(doc: object) -> None:
    import json

    body = {"status": "success", "data": doc} if not isinstance(doc, dict) else doc
    _run("tsdb", json.dumps(body, allow_nan=True).encode())


@FUZZ
@given(
    st.one_of(
        st.text(max_size=60),
        st.builds(
            lambda s, u, h, p: f"{s}{u}{h}{p}",
            st.sampled_from(
                ["", "http://", "https://", "HTTP://", "ftp://", "file:", "//", "http:/"]
            ),
            st.sampled_from(["", "a@", "a:b@", "@", "%40@"]),
            st.sampled_from(
                [
                    "127.0.0.1",
                    "[::1]",
                    "[::ffff:127.0.0.1]",
                    "x.example",
                    "app",
                    "",
                    "0x7f.1",
                    "2130706433",
                    "[fe80::1%eth0]",
                    "ex ample",
                ]
            ),
            st.sampled_from(
                ["", ":80", ":0", ":65536", ":-1", ":abc", "/path", "?q=1", "#f", ":80@x"]
            ),
        ),
    )
)
def test_fuzz_probe_targets(raw: str) -> None:
    _run("probe-target", raw.encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------
# The config loader: random YAML trees at the keys it knows, wrong types, odd URLs,
# deep nesting and alias bombs, dumped by PyYAML and sometimes mangled byte-wise.

_CONFIG_KEYS = sorted(
    {
        *config._TOP_KEYS,
        *config._GLOBAL_KEYS,
        *config._CAPS_KEYS,
        *config._THRESHOLD_KEYS,
        *targets._TARGET_KEYS,
        *targets._BASIC_AUTH_KEYS,
        *targets._TLS_KEYS,
        *targets._PROFILE_KEYS,
        *rulefile._SECTIONS,
        *rulefile._LABEL_FIELDS,
        *rulefile._GOROUTINE_FIELDS,
        *rulefile._HEAP_FIELDS,
        "families",
        "labels",
        "family",
        "label",
        "ignore",
    }
)
_odd_urls = st.one_of(
    st.builds(
        lambda s, h, p, rest: f"{s}{h}{p}{rest}",
        st.sampled_from(
            ["http://", "https://", "HTTP://", "ftp://", "//", "http:/", "", "http://u:p@"]
        ),
        st.sampled_from(
            [
                "127.0.0.1",
                "[::1]",
                "[::1",
                "::1]",
                "[zzz]",
                "[fe80::1%eth0]",
                "",
                "a b",
                "é.x",
                "h\n",
            ]
        ),
        st.sampled_from(["", ":9100", ":0", ":65536", ":-1", ":abc", ":", ":" + "9" * 30]),
        st.sampled_from(["", "/", "/metrics", "?q", "#f", "x", "]"]),
    ),
    st.text(max_size=30),
)
_config_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        [
            "30s",
            "1m30s",
            "0s",
            "99999999999999999999y",
            "64MiB",
            "0",
            "warning",
            "re:(",
            "re:a{9999999999}",
        ]
    ),
    st.just("9" * 5000),
    _odd_urls,
)
_config_trees = st.recursive(
    _config_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(_CONFIG_KEYS), st.text(max_size=6), st.integers(0, 3)),
            children,
            max_size=5,
        ),
        # The same object twice: PyYAML writes an anchor and an alias.
        st.builds(lambda x, n: [x] * n, children, st.integers(2, 9)),
    ),
    max_leaves=25,
)


@st.composite
def _targets(draw: st.DrawFn) -> list[object]:
    out: list[object] = []
    for i in range(draw(st.integers(0, 3))):
        url = draw(st.one_of(st.just("http://127.0.0.1:9100"), _odd_urls))
        target: dict[object, object] = {"name": f"t{i}", "url": url}
        for key in draw(st.lists(st.sampled_from(targets._TARGET_KEYS), max_size=4)):
            target[key] = draw(_config_trees)
        out.append(target if draw(st.integers(0, 9)) else draw(_config_trees))
    return out


@st.composite
def config_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind <= 1:  # config-shaped: the known sections, random values below them
        doc: dict[object, object] = {"targets": draw(_targets())}
        for key in draw(st.lists(st.sampled_from(config._TOP_KEYS), max_size=3)):
            doc[key] = draw(_config_trees)
        text = yaml.safe_dump(doc, allow_unicode=draw(st.booleans()))
    elif kind == 2:  # any tree at all
        text = yaml.safe_dump(draw(_config_trees))
    elif kind == 3:  # deep nesting, flow or block style
        n = draw(st.integers(1, 3000))
        style = draw(st.integers(0, 2))
        if style == 0:
            nest = "[" * n + "]" * n
        elif style == 1:
            nest = "{a: " * n + "1" + "}" * n
        else:
            nest = "".join("\n" + " " * (6 + 2 * i) + "- " for i in range(min(n, 400))) + "x"
        text = f"targets:\n  - name: a\n    url: http://127.0.0.1:1\n    headers: {nest}\n"
    else:  # an alias bomb: levels of aliases of aliases
        width, depth = draw(st.integers(2, 12)), draw(st.integers(1, 12))
        lines = ["l0: &l0 [x" + ", x" * (width - 1) + "]"]
        for i in range(1, depth):
            lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
        at = draw(st.sampled_from(["targets", "global", "rules"]))
        text = "probe:\n  " + "\n  ".join(lines) + f"\n{at}: *l{depth - 1}\n"
    data = text.encode("utf-8", "surrogatepass")
    return _mutate(draw, data) if draw(st.integers(0, 3)) == 0 else data


@FUZZ
@given(config_files())
@example(b'targets:\n  - name: a\n    url: "http://[::1"\n')
@example(b"targets: " + b"[" * 5000 + b"]" * 5000 + b"\n")
@example(b"targets:\n  - {name: a, url: 'http://127.0.0.1:1', timeout: " + b"9" * 5000 + b"}\n")
@example(b"a: &a [*a]\n")
@example(b"\xff\xfe\x00targets: []\n")
def test_fuzz_config(data: bytes) -> None:
    _run("config", data)


def _regression_cases() -> list[tuple[str, Path]]:
    if not REGRESSIONS.is_dir():
        return []
    return sorted(
        (d.name, f)
        for d in REGRESSIONS.iterdir()
        if d.is_dir() and d.name in CHECKS
        for f in d.iterdir()
        if f.is_file() and f.name != "README.md"
    )


@pytest.mark.parametrize(
    ("target", "path"), _regression_cases(), ids=lambda v: v.name if isinstance(v, Path) else v
)
def test_regressions(target: str, path: Path) -> None:
    CHECKS[target](path.read_bytes())


def test_regression_corpus_is_present() -> None:
    # The replay above must not silently pass with an empty or misnamed corpus.
    cases = _regression_cases()
    assert cases, f"no regression inputs under {REGRESSIONS}"
    assert {t for t, _ in cases} <= set(CHECKS)
