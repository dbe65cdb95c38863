"""Whole outputs of ``cardguard heap`` and ``cardguard goroutines``, pinned as goldens.

Each runs in-process (click's runner) on recorded Go 1.27 profiles, named
relative to their directory so the goldens do not depend on the checkout's
path. Regenerate as tests/golden.py says.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cardguard.cli import main
from golden import check_golden
from support import TESTDATA

GO127 = TESTDATA / "pprof" / "go1.27"

CASES = {
    "heap/inuse.txt": ("heap", "heap.pb.gz", "--top", "12"),
    "heap/inuse-mb.txt": ("heap", "heap.pb.gz", "--top", "12", "--unit", "MB"),
    "heap/diff.txt": ("heap", "heap.pb.gz", "--base", "heap-base.pb.gz", "--top", "12"),
    "heap/diff.json": ("heap", "heap.pb.gz", "--base", "heap-base.pb.gz", "--format", "json"),
    "heap/inuse.folded": ("heap", "heap.pb.gz", "--format", "folded"),
    "heap/diff-lines.folded": (
        "heap",
        "heap.pb.gz",
        "--base",
        "heap-base.pb.gz",
        "--format",
        "folded",
        "--lines",
    ),
    "goroutines/debug2.txt": ("goroutines", "goroutine.debug2.txt"),
    "goroutines/proto.json": ("goroutines", "goroutine.pb.gz", "--format", "json"),
    "goroutines/debug2.folded": ("goroutines", "goroutine.debug2.txt", "--format", "folded"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_golden(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GO127)
    monkeypatch.setenv("NO_COLOR", "1")
    result = CliRunner().invoke(main, list(CASES[name]), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    check_golden(name, result.stdout)
