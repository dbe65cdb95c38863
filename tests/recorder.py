"""A listener that records every connection and every byte sent to it: "nothing got here" checks.

It stands for a service cardguard must never reach (another port, another
host, a metadata endpoint). It works below HTTP, on the raw socket, so a
request too malformed for an HTTP server to parse is still recorded, and a
connection that sends nothing is still counted.

Each request is answered with a small valid /metrics page, so a fetch that
wrongly reaches it succeeds and shows, rather than failing and passing for
a refusal.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

PAGE = b'# TYPE recorder_private_page gauge\nrecorder_private_page{secret="inside"} 1\n'
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(PAGE), PAGE)
)


@dataclass
class Recorder:
    """Where it listens and what each accepted connection sent (in arrival order)."""

    host: str
    port: int
    connections: list[bytearray] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.netloc}"

    def received(self) -> list[bytes]:
        with self.lock:
            return [bytes(c) for c in self.connections]


def ipv6_loopback() -> bool:
    """Return whether ``::1`` can be bound here (it is absent in some containers)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _serve_one(rec: Recorder, conn: socket.socket, stop: threading.Event) -> None:
    with rec.lock:
        data = bytearray()
        rec.connections.append(data)
    with conn:
        conn.settimeout(0.2)
        while not stop.is_set() and b"\r\n\r\n" not in data and len(data) < 1 << 16:
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                break
            with rec.lock:
                data += chunk
        with contextlib.suppress(OSError):
            conn.sendall(_RESPONSE)


@contextlib.contextmanager
def recording(host: str = "127.0.0.1", port: int = 0) -> Iterator[Recorder]:
    """Listen on ``host:port`` (port 0: any free one, read back) until the block ends.

    Raises:
        OSError: the address cannot be bound (e.g. that port is taken there).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        sock.listen(16)
    except OSError:
        sock.close()
        raise
    sock.settimeout(0.05)
    rec = Recorder(host, int(sock.getsockname()[1]))
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=_serve_one, args=(rec, conn, stop), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()
