"""Build and run omserver: a real client_golang page with OpenMetrics negotiation on.

The Debian prometheus, alertmanager and pushgateway only serve text format
0.0.4; omserver is the real Go process the tests and the recorder use for
OpenMetrics pages, and for the same page as text and gzip. Also the one
place that reads ``promtool check metrics --extended`` output.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from support import (
    REPO,
    Process,
    cached_go_build,
    go_toolchains,
    running_listener,
)

OMSERVER_SRC = REPO / "tests" / "testdata" / "metrics" / "omserver"


def build_omserver() -> Path:
    """Build omserver with Debian's Go 1.19 (else the current Go), cached by source hash."""
    tools = go_toolchains()
    go = tools.get("go1.19") or tools.get("current")
    if go is None:
        raise RuntimeError("no Go toolchain: run scripts/bootstrap.sh")
    return cached_go_build(OMSERVER_SRC, go, "omserver")


@contextlib.contextmanager
def start_omserver(binary: Path, log: Path, *flags: str) -> Iterator[Process]:
    """Run omserver on a free port and wait until it has printed its address."""
    argv = [str(binary), "-listen=127.0.0.1:0", *flags]
    with running_listener(argv, log, "omserver") as proc:
        yield proc


PROMTOOL = "/usr/bin/promtool"


def promtool_cardinality(data: bytes) -> tuple[dict[str, int], int]:
    """Run `promtool check metrics --extended` and read its per-metric table."""
    proc = subprocess.run(
        [PROMTOOL, "check", "metrics", "--extended"], input=data, capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode()
    rows: dict[str, int] = {}
    total = -1
    for line in proc.stdout.decode().splitlines()[1:]:
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "Total":
            total = int(fields[1])
        else:
            rows[fields[0]] = int(fields[1])
    assert total >= 0, proc.stdout.decode()
    return rows, total
