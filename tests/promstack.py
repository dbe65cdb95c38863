"""Start Debian's Prometheus and Pushgateway on port 0 in temp dirs, for tests.

The port each bound is read back from /proc (they log the address they were given).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest
import requests
import yaml

from support import Process, running_on_port_0, wait_for

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PUSHGATEWAY = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"


def need(binary: str) -> None:
    if not Path(binary).exists():
        pytest.fail(f"{binary} missing: run scripts/bootstrap.sh")


@contextlib.contextmanager
def pushgateway(workdir: Path) -> Iterator[Process]:
    need(PUSHGATEWAY)
    # Debian's default --persistence.file is shared by every pushgateway on the machine,
    # so pushes would leak between tests and runs without a file of our own.
    argv = [
        PUSHGATEWAY,
        "--web.listen-address=127.0.0.1:0",
        f"--persistence.file={workdir / 'pushgateway.data'}",
    ]
    with running_on_port_0(argv, workdir / "pushgateway.log", ready_path="/-/ready") as proc:
        yield proc


@contextlib.contextmanager
def prometheus(
    workdir: Path,
    config: dict[str, object],
    name: str = "prometheus",
    flags: Sequence[str] = (),
    self_job: str | None = None,
) -> Iterator[Process]:
    """Run Prometheus with ``config`` (a prometheus.yml as a dict) until the block exits.

    ``flags`` are added to its command line (``--enable-feature=native-histograms``).
    With ``self_job``, it also scrapes itself under that job name: its own address
    is known only once it listens, so the job is added then and the file reloaded.
    """
    need(PROMETHEUS)
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [
        PROMETHEUS,
        f"--config.file={cfg}",
        f"--storage.tsdb.path={d / 'data'}",
        "--web.listen-address=127.0.0.1:0",
        "--log.level=warn",
        *flags,
    ]
    with running_on_port_0(argv, d / "prometheus.log", ready_path="/-/ready") as proc:
        if self_job is not None:
            scrape = {
                "job_name": self_job,
                "static_configs": [{"targets": [f"127.0.0.1:{proc.port}"]}],
            }
            jobs = [*cast("list[object]", config.get("scrape_configs", [])), scrape]
            cfg.write_text(yaml.safe_dump({**config, "scrape_configs": jobs}, sort_keys=False))
            os.kill(proc.popen.pid, signal.SIGHUP)

            def scraping_itself() -> bool:
                r = requests.get(f"{proc.base_url}/api/v1/targets", timeout=5)
                active = r.json()["data"]["activeTargets"]
                return any(t["labels"]["job"] == self_job for t in active)

            wait_for(scraping_itself, 30, f"prometheus to reload with job {self_job}")
        yield proc


def query(prom: Process, expr: str) -> list[dict[str, object]]:
    r = requests.get(f"{prom.base_url}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    result: list[dict[str, object]] = r.json()["data"]["result"]
    return result
