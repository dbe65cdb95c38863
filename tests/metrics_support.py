"""Build and run omserver: a real client_golang page with OpenMetrics negotiation on.

The Debian prometheus, alertmanager and pushgateway only serve text format
0.0.4; omserver is the real Go process the tests and the recorder use for
OpenMetrics pages, and for the same page as text and gzip. Also the one
place that reads ``promtool check metrics --extended`` output.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from support import (
    CACHE,
    REPO,
    Process,
    build_go_program,
    go_toolchains,
    go_version,
    running,
    wait_for,
)

OMSERVER_SRC = REPO / "tests" / "testdata" / "metrics" / "omserver"
_LISTENING = re.compile(r"^listening on (\S+):(\d+)$", re.M)


def build_omserver() -> Path:
    """Build omserver with Debian's Go 1.19 (else the current Go), cached by source hash."""
    tools = go_toolchains()
    go = tools.get("go1.19") or tools.get("current")
    if go is None:
        raise RuntimeError("no Go toolchain: run scripts/bootstrap.sh")
    digest = hashlib.sha256((OMSERVER_SRC / "main.go").read_bytes()).hexdigest()[:12]
    out = CACHE / "bin" / f"omserver-{go_version(go)}-{digest}"
    if not out.exists():
        tmp = out.with_name(out.name + ".tmp")
        build_go_program(OMSERVER_SRC, go, tmp)
        tmp.replace(out)
    return out


@contextlib.contextmanager
def start_omserver(binary: Path, log: Path, *flags: str) -> Iterator[Process]:
    """Run omserver on a free port and wait until it has printed its address."""
    with running([str(binary), "-listen=127.0.0.1:0", *flags], log) as proc:

        def bound() -> bool:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"omserver exited early:\n{proc.logs()[-4000:]}")
            m = _LISTENING.search(proc.logs())
            if m:
                proc.port = int(m.group(2))
            return m is not None

        wait_for(bound, 30, "omserver to print its address")
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
