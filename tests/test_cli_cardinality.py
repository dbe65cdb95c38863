"""`cardguard cardinality SOURCE`: files, stdin, gzip, live servers in both formats, errors."""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cardguard.analyse.cardinality import analyse
from cardguard.parse.exposition import ACCEPT_HEADER
from cardguard.run.fetch import Fetcher
from cardguard.settings.targets import TargetConfig
from metrics_support import build_omserver, promtool_cardinality, start_omserver
from support import TESTDATA, Process, cardguard_argv, dead_url, running_on_port_0

PAGES = TESTDATA / "metrics"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cardguard_argv("cardinality", *args),
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_json(*args: str, stdin: bytes | None = None) -> dict[str, object]:
    proc = run(*args, "--format", "json", stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict)
    return doc


def check_schema(doc: dict[str, object]) -> None:
    assert isinstance(doc["total_series"], int)
    families = doc["families"]
    assert isinstance(families, list) and families
    for fam in families:
        assert {"name", "type", "series", "labels"} <= set(fam)
        for lab in fam["labels"]:
            assert {"name", "distinct_values", "estimated", "pattern", "examples"} <= set(lab)
            assert isinstance(lab["estimated"], bool)
            assert isinstance(lab["examples"], list)


def test_file_json() -> None:
    doc = run_json(str(PAGES / "pushgateway-explosion.txt"))
    check_schema(doc)
    families = doc["families"]
    assert isinstance(families, list)
    top = families[0]
    assert top["name"] == "api_request_latency_seconds" and top["type"] == "summary"
    assert top["series"] == 1500 * 5
    sp = top["labels"][0]
    assert (sp["name"], sp["distinct_values"], sp["estimated"], sp["pattern"]) == (
        "start_point",
        1500,
        False,
        "url_path",
    )
    assert doc["total_series"] == sum(f["series"] for f in families)


def test_stdin_and_gzip_file_give_the_same_figures() -> None:
    plain = (PAGES / "omserver.txt").read_bytes()
    from_stdin = run_json("-", stdin=plain)
    from_gz = run_json(str(PAGES / "omserver.txt.gz"))
    # Two scrapes of one process: values differ, series and labels do not.
    assert gzip.decompress((PAGES / "omserver.txt.gz").read_bytes()) != plain
    assert from_stdin["source"] == "<stdin>"
    assert from_stdin["families"] == from_gz["families"]
    assert from_stdin["total_series"] == from_gz["total_series"] == 1702


def test_text_table_and_top() -> None:
    proc = run(str(PAGES / "demo-1.txt"), "--top", "2", "--exact-values", "50")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    expected, total = promtool_cardinality((PAGES / "demo-1.txt").read_bytes())
    assert f"total series: {total}" in lines[0]
    header = next(i for i, line in enumerate(lines) if line.startswith("FAMILY"))
    assert lines[header].split() == [
        "FAMILY",
        "TYPE",
        "SERIES",
        "LABEL",
        "DISTINCT",
        "PATTERN",
        "EXAMPLES",
    ]
    row = lines[header + 1].split()
    family = "demo_http_request_duration_seconds"
    assert row[:4] == [family, "summary", str(expected[family]), "start_point"]
    assert row[4].startswith("~")  # past --exact-values: an estimate, and marked
    assert row[5] == "url_path"
    assert "more families (use --top 0 for all)" in lines[-1]
    family_rows = [line for line in lines[header + 1 : -1] if not line.startswith(" ")]
    assert len(family_rows) == 2  # --top 2; label rows below a family start with blanks


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    tmp = tmp_path_factory.mktemp("prometheus")
    (tmp / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")
    argv = [
        "/usr/bin/prometheus",
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'data'}",
        "--web.listen-address=127.0.0.1:0",
    ]
    with running_on_port_0(argv, tmp / "prometheus.log", ready_path="/-/ready") as proc:
        yield proc


def test_live_prometheus_text_page(prometheus: Process) -> None:
    doc = run_json(f"{prometheus.base_url}/metrics")
    check_schema(doc)
    assert doc["format"] == "text"
    names = {f["name"]: f for f in doc["families"]}  # type: ignore[union-attr]
    assert names["prometheus_build_info"]["series"] == 1
    assert names["prometheus_http_requests_total"]["type"] == "counter"


@pytest.fixture(scope="module")
def omserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    binary = build_omserver()
    log = tmp_path_factory.mktemp("omserver") / "omserver.log"
    with start_omserver(binary, log, "-urls=250") as proc:
        yield proc


def test_live_openmetrics_negotiated_like_prometheus(omserver: Process) -> None:
    doc = run_json(f"{omserver.base_url}/metrics")
    assert doc["format"] == "openmetrics"  # the server chose it from our Accept header
    names = {(f["name"], f["type"]): f for f in doc["families"]}  # type: ignore[union-attr]
    fam = names[("omserver_api_request_latency_seconds", "summary")]
    assert fam["series"] == 250 * 5
    assert fam["labels"][0]["name"] == "start_point"
    assert fam["labels"][0]["distinct_values"] == 250
    # What the command fetched came gzip-encoded, as Prometheus gets it.
    url = f"{omserver.base_url}/metrics"
    got = Fetcher(TargetConfig(name="om", url=url)).get(url, accept=ACCEPT_HEADER)
    assert got.wire_bytes < len(got.body) / 3
    assert (
        analyse(got.body, content_type=got.content_type, source=url).total_series
        == (doc["total_series"])
    )
    # The same process read as text (via stdin) gives the same total.
    text = requests.get(
        f"{omserver.base_url}/metrics", headers={"Accept": "text/plain"}, timeout=10
    ).content
    assert run_json("-", stdin=text)["total_series"] == doc["total_series"]


def assert_clean_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_malformed_page_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    lines = (PAGES / "prometheus.txt").read_text().splitlines()
    lines[99] = 'broken{le="1" 2'
    bad.write_text("\n".join(lines) + "\n")
    assert_clean_failure(run(str(bad)), f"{bad}:100: ", "expected ',' or '}'")


def test_malformed_stdin_and_corrupt_gzip(tmp_path: Path) -> None:
    assert_clean_failure(run("-", stdin=b"ok 1\nnot a sample\n"), "<stdin>:2: ")
    corrupt = tmp_path / "page.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00" + b"garbage" * 10)
    assert_clean_failure(run(str(corrupt)), str(corrupt), "gzip")


def test_page_promtool_only_lints_is_still_measured() -> None:
    page = PAGES / "pushgateway-lint.txt"
    lint = subprocess.run(
        ["/usr/bin/promtool", "check", "metrics", "--extended"],
        input=page.read_bytes(),
        capture_output=True,
        timeout=60,
    )
    assert lint.returncode != 0 and b"no help text" in lint.stderr + lint.stdout
    assert b"Cardinality" not in lint.stdout  # no table from promtool here
    doc = run_json(str(page))
    names = {f["name"]: f for f in doc["families"]}  # type: ignore[union-attr]
    assert names["cleanup_deleted_total"]["series"] == 1
    sp = names["api_request_latency_seconds"]["labels"][0]
    assert (sp["name"], sp["distinct_values"]) == ("start_point", 1500)


def test_missing_file_dead_url_and_size_limit(tmp_path: Path) -> None:
    assert_clean_failure(run(str(tmp_path / "nope.txt")), "nope.txt", "No such file")
    with dead_url() as url:
        assert_clean_failure(run(f"{url}/metrics", "--timeout", "5s"), "127.0.0.1")
    assert_clean_failure(
        run(str(PAGES / "prometheus.txt"), "--max-bytes", "1000"), "exceeds 1000 bytes"
    )
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(b"a 1\n" * 1_000_000))
    assert_clean_failure(run(str(bomb), "--max-bytes", "100000"), "exceeds 100000 bytes")


def test_exact_values_option_makes_counts_exact() -> None:
    page = str(PAGES / "pushgateway-explosion.txt")
    estimated = run_json(page, "--exact-values", "100")
    exact = run_json(page, "--exact-values", "5000")
    top_est = estimated["families"][0]["labels"][0]  # type: ignore[index]
    top_exact = exact["families"][0]["labels"][0]  # type: ignore[index]
    assert top_est["name"] == top_exact["name"] == "start_point"
    assert top_est["estimated"] and abs(top_est["distinct_values"] - 1500) <= 45
    assert not top_exact["estimated"] and top_exact["distinct_values"] == 1500
