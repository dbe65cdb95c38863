"""Start Debian's Prometheus and Pushgateway on free ports in temp dirs, for tests."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import requests
import yaml

from support import Process, free_port, running

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PUSHGATEWAY = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"


def need(binary: str) -> None:
    if not Path(binary).exists():
        pytest.fail(f"{binary} missing: run scripts/bootstrap.sh")


@contextlib.contextmanager
def pushgateway(workdir: Path) -> Iterator[Process]:
    need(PUSHGATEWAY)
    port = free_port()
    # Debian's default --persistence.file is shared by every pushgateway on the machine,
    # so pushes would leak between tests and runs without a file of our own.
    argv = [
        PUSHGATEWAY,
        f"--web.listen-address=127.0.0.1:{port}",
        f"--persistence.file={workdir / 'pushgateway.data'}",
    ]
    with running(
        argv, workdir / "pushgateway.log", port=port, ready_url=f"http://127.0.0.1:{port}/-/ready"
    ) as proc:
        yield proc


@contextlib.contextmanager
def prometheus(
    workdir: Path,
    config: dict[str, object],
    name: str = "prometheus",
    flags: Sequence[str] = (),
) -> Iterator[Process]:
    """Run Prometheus with ``config`` (a prometheus.yml as a dict) until the block exits.

    ``flags`` are added to its command line (``--enable-feature=native-histograms``).
    """
    need(PROMETHEUS)
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    argv = [
        PROMETHEUS,
        f"--config.file={cfg}",
        f"--storage.tsdb.path={d / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        *flags,
    ]
    with running(
        argv, d / "prometheus.log", port=port, ready_url=f"http://127.0.0.1:{port}/-/ready"
    ) as proc:
        yield proc


def query(prom: Process, expr: str) -> list[dict[str, object]]:
    r = requests.get(f"{prom.base_url}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    result: list[dict[str, object]] = r.json()["data"]["result"]
    return result
