"""Build and run the leaky demo service (deploy/demo-service) for tests.

Fixtures (re-exported by conftest.py):

- ``demo_binaries`` (session): ``{"go1.19": Path, "current": Path}``, built once
  and cached under ``support.CACHE`` keyed by Go version and source hash;
- ``demo_service``: a factory, ``with demo_service("current", "-healthy") as p:``
  runs the binary on a free port (``p.base_url``, ``p.port``);
- ``demo_on(binary, port, log, *flags)``: the demo on a held port, for restarts;
- ``leaky_demo`` (session): one demo on the current Go with every leak on at
  rates that show within seconds; shared by the session, do not stop it.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from support import (
    REPO,
    Process,
    cached_go_build,
    http_ok,
    running_listener,
    wait_for,
)

DEMO_SRC = REPO / "deploy" / "demo-service"

# Leak rates that make every leak plain within a few seconds of start.
DEMO_FAST_FLAGS = (
    "-label-rate=200",
    "-goroutine-rate=100",
    "-tick-interval=5ms",
    "-cache-rate=200",
)


def build_demo(go: Path) -> Path:
    """Build the demo service with ``go`` unless this exact source was built before."""
    return cached_go_build(DEMO_SRC, go, "demo-service")


@contextlib.contextmanager
def start_demo(binary: Path, log: Path, *flags: str) -> Iterator[Process]:
    """Run the demo binary on a free port; wait until /metrics answers."""
    argv = [str(binary), "-listen=127.0.0.1:0", *flags]
    with running_listener(argv, log, "demo service") as proc:
        wait_for(lambda: http_ok(f"{proc.base_url}/metrics"), 30, "demo service /metrics")
        yield proc


@contextlib.contextmanager
def demo_on(binary: Path, port: int, log: Path, *flags: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run the demo on a given port (held by ``support.reserved_port``), so that it
    comes back on the same address when restarted; wait until /metrics answers."""
    with open(log, "ab") as fh:
        p = subprocess.Popen(
            [str(binary), f"-listen=127.0.0.1:{port}", *flags],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/metrics"), 30, "the demo to listen")
        yield p
    finally:
        p.terminate()
        p.wait(timeout=10)


@pytest.fixture(scope="session")
def demo_binaries(toolchains: dict[str, Path]) -> dict[str, Path]:
    return {label: build_demo(go) for label, go in toolchains.items()}


@pytest.fixture
def demo_service(
    demo_binaries: dict[str, Path], tmp_path: Path
) -> Callable[..., AbstractContextManager[Process]]:
    """Return ``start(toolchain="current", *flags)``, a context manager running the demo."""
    counter = iter(range(1000))

    def start(toolchain: str = "current", *flags: str) -> AbstractContextManager[Process]:
        if toolchain not in demo_binaries:
            pytest.skip(f"Go toolchain {toolchain!r} not installed")
        log = tmp_path / f"demo-{toolchain}-{next(counter)}.log"
        return start_demo(demo_binaries[toolchain], log, *flags)

    return start


@pytest.fixture(scope="module")
def leaky_demo(
    demo_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    """A demo on the current Go (else go1.19) with every leak on, fast; shared by one module.

    Not by the whole session: its leaks never stop, so after minutes its page outgrows
    the size limits tests set, and a late module would see a different target.
    """
    label = "current" if "current" in demo_binaries else "go1.19"
    log = tmp_path_factory.mktemp("leaky-demo") / "demo.log"
    with start_demo(demo_binaries[label], log, *DEMO_FAST_FLAGS) as proc:
        proc.extra["toolchain"] = label
        yield proc
