"""The command line's rough edges: one duration grammar, hints for a URL typed wrong, colour.

Every command runs as a real process against a real local HTTP server
(tests/local_http.py, port 0) or recorded files; colour is checked on a real
pseudo-terminal, in a pipe and under NO_COLOR.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from local_http import ok, serve
from support import TESTDATA, cardguard_argv

PAGE = b"# TYPE up gauge\nup 1\n# TYPE http_requests_total counter\nhttp_requests_total 7\n"
HEAP = TESTDATA / "pprof" / "go1.27" / "heap.pb.gz"
GOROUTINES = TESTDATA / "pprof" / "go1.27" / "goroutine.pb.gz"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cardguard_argv(*args), capture_output=True, text=True, timeout=120, env=env
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("heap", str(HEAP)),
        ("goroutines", str(GOROUTINES)),
        (
            "cardinality",
            str(TESTDATA / "report" / "demo-current" / "snapshot-000" / "metrics.txt.gz"),
        ),
        ("report", "--from", str(TESTDATA / "report" / "demo-current"), "--duration", "1m"),
    ],
    ids=["heap", "goroutines", "cardinality", "report"],
)
def test_every_timeout_takes_the_config_duration_grammar(argv: tuple[str, ...]) -> None:
    assert run(*argv, "--timeout", "2s").returncode == 0
    assert run(*argv, "--timeout", "1m30s").returncode == 0
    bad = run(*argv, "--timeout", "5")
    assert bad.returncode == 2
    assert "expected a duration like 10s, 1m30s or 500ms, got '5'; did you mean 5s?" in bad.stderr
    half = run(*argv, "--timeout", "0.5")
    assert "did you mean 500ms?" in half.stderr


@pytest.mark.parametrize("command", ["heap", "goroutines", "cardinality"])
def test_a_url_without_scheme_gets_a_hint(command: str) -> None:
    proc = run(command, "127.0.0.1:1")
    assert proc.returncode == 1
    assert (
        "127.0.0.1:1: cannot read: No such file or directory; did you mean http://127.0.0.1:1?"
        in (proc.stderr)
    )
    # a missing file that could not be a URL gets no such guess
    assert "did you mean" not in run(command, "no-such-file.txt").stderr


def test_report_without_scheme_is_a_usage_error_with_the_fix() -> None:
    proc = run("report", "127.0.0.1:1", "--duration", "0s")
    assert proc.returncode == 2
    assert "did you mean http://127.0.0.1:1?" in proc.stderr
    assert "InvalidSchema" not in proc.stderr and "Traceback" not in proc.stderr


def test_cardinality_finds_metrics_under_a_base_url() -> None:
    with serve({"/metrics": ok(PAGE)}) as srv:
        # the base URL, as heap and goroutines take it
        proc = run("cardinality", srv.base_url, "--format", "json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["source"] == f"{srv.base_url}/metrics" and doc["total_series"] == 2
        # another path that is not the page: a 404 that says where the page probably is
        wrong = run("cardinality", f"{srv.base_url}/stats")
        assert wrong.returncode == 1
        assert f"is the page at {srv.base_url}/metrics?" in wrong.stderr


def _on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """Run cardguard with stdout on a pseudo-terminal; return what it wrote there."""
    main, sub = pty.openpty()
    proc = subprocess.Popen(cardguard_argv(*args), stdout=sub, stderr=subprocess.DEVNULL, env=env)
    os.close(sub)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(main)
    return out.decode("utf-8", "replace")


@pytest.mark.parametrize(
    "argv",
    [
        ("report", "--from", str(TESTDATA / "report" / "demo-current")),
        ("heap", str(HEAP), "--base", str(TESTDATA / "pprof" / "go1.27" / "heap-base.pb.gz")),
        ("goroutines", str(GOROUTINES)),
    ],
    ids=["report", "heap", "goroutines"],
)
def test_colour_on_a_terminal_not_in_a_pipe_nor_under_no_color(argv: tuple[str, ...]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    assert "\x1b[" in _on_a_terminal(*argv, env=env)
    assert "\x1b[" not in _on_a_terminal(*argv, env={**env, "NO_COLOR": "1"})
    assert "\x1b[" not in run(*argv, env=env).stdout  # a pipe
    assert "\x1b[" in run(*argv, "--color", "always", env=env).stdout


def test_report_from_a_save_keeps_the_target_name_and_url(tmp_path: Path) -> None:
    with serve({"/metrics": ok(PAGE)}) as srv:
        saved = tmp_path / "saved"
        live = run("report", srv.base_url, "--duration", "0s", "--save", str(saved))
        assert live.returncode == 0, live.stderr
    name = f"127.0.0.1:{srv.port}"
    assert live.stdout.startswith(f"{name} ({srv.base_url})")
    meta = json.loads((saved / "snapshot-000" / "meta.json").read_text())
    assert meta["target"] == name and meta["url"] == srv.base_url
    again = run("report", "--from", str(saved), "--format", "json")
    doc = json.loads(again.stdout)
    assert doc["target"] == name and doc["url"] == srv.base_url
    # --name still wins; saves made before names were kept fall back to the directory
    named = run("report", "--from", str(saved), "--name", "x", "--format", "json")
    assert json.loads(named.stdout)["target"] == "x"
    old = json.loads(run("report", "--from", str(TESTDATA / "report" / "demo-current"),
                         "--format", "json").stdout)  # fmt: skip
    assert old["target"].endswith("demo-current")


def test_grafana_url_is_checked_like_any_url(tmp_path: Path) -> None:
    cfg = tmp_path / "cardguard.yml"
    cfg.write_text("global:\n  grafana_url: grafana.local:3000\ntargets: []\n")
    proc = run("check-config", str(cfg))
    assert proc.returncode == 1
    assert (
        f"{cfg}:2: global.grafana_url: expected an http:// or https:// URL, "
        "got 'grafana.local:3000'" in proc.stderr
    )
    cfg.write_text("global:\n  grafana_url: https://grafana.local/sub/\ntargets: []\n")
    assert run("check-config", str(cfg)).returncode == 0
