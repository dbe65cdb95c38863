"""Build and run nhserver: a real client_golang page with native histograms, in any format.

tests/testdata/metrics/nhserver is built in GOPATH mode against Debian's
client_golang 1.14 (which has NativeHistogramBucketFactor); promhttp answers
Prometheus' protobuf-first Accept header with delimited MetricFamily
messages and a text Accept header with text 0.0.4, from the same registry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import requests

from cardguard.parse import exposition
from support import REPO, Process, cached_go_build, go_toolchains, running_listener

NHSERVER_SRC = REPO / "tests" / "testdata" / "metrics" / "nhserver"
TEXT_ACCEPT = "text/plain;version=0.0.4"


def build_nhserver() -> Path:
    """Build nhserver with Debian's Go 1.19 (else the current Go), cached by source hash."""
    tools = go_toolchains()
    go = tools.get("go1.19") or tools.get("current")
    if go is None:
        raise RuntimeError("no Go toolchain: run scripts/bootstrap.sh")
    return cached_go_build(NHSERVER_SRC, go, "nhserver")


@contextlib.contextmanager
def start_nhserver(binary: Path, log: Path, *flags: str) -> Iterator[Process]:
    """Run nhserver on a free port and wait until it has printed its address."""
    argv = [str(binary), "-listen=127.0.0.1:0", *flags]
    with running_listener(argv, log, "nhserver") as proc:
        yield proc


def fetch(proc: Process, accept: str) -> requests.Response:
    """GET nhserver's /metrics with ``accept`` (protobuf: ``exposition.ACCEPT_HEADER_PROTOBUF``)."""
    resp = requests.get(f"{proc.base_url}/metrics", headers={"Accept": accept}, timeout=10)
    resp.raise_for_status()
    return resp


PROTOBUF_ACCEPT = exposition.ACCEPT_HEADER_PROTOBUF
