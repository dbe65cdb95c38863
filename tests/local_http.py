"""A small real HTTP server for tests: routes that misbehave the way broken targets do.

Routes are plain functions ``handler -> None`` in a dict, so each test module
can add its own (a generated /metrics page, a redirect to another host, ...).
The server listens on 127.0.0.1 port 0 and can be wrapped in TLS.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

Route = Callable[["Handler"], None]


class Handler(http.server.BaseHTTPRequestHandler):
    """Dispatch on the path (without query) to ``server.routes``."""

    protocol_version = "HTTP/1.1"
    server: Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.requests.append((self.path, dict(self.headers.items())))
        route = self.server.routes.get(path)
        if route is None:
            self.send_body(404, b"not found\n")
            return
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            # The client gave up (as cardguard does at its limits): nothing to send.
            self.close_connection = True

    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; version=0.0.4; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_stream(
        self, chunks: Iterator[bytes], content_type: str = "text/plain", encoding: str = ""
    ) -> None:
        """Send a body of unknown length (closed-connection framing), chunk by chunk."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for chunk in chunks:
            self.wfile.write(chunk)
            self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    requests: list[tuple[str, dict[str, str]]]

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that hang up or fail a TLS handshake are what these tests provoke.
        if not isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError | TimeoutError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass
class Running:
    server: Server
    scheme: str
    stop_event: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def routes(self) -> dict[str, Route]:
        return self.server.routes


@contextlib.contextmanager
def serve(routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> Iterator[Running]:
    """Serve ``routes`` on 127.0.0.1:0 in a background thread until the block ends."""
    server = Server(("127.0.0.1", 0), Handler)
    server.routes = dict(routes)
    server.requests = []
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    running = Running(server, "https" if tls else "http")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield running
    finally:
        running.stop_event.set()
        server.shutdown()
        server.server_close()


# --- stock misbehaviours -------------------------------------------------------


def ok(body: bytes, content_type: str = "text/plain; version=0.0.4; charset=utf-8") -> Route:
    return lambda h: h.send_body(200, body, content_type)


def gzipped(body: bytes) -> Route:
    data = gzip.compress(body)
    return lambda h: h.send_body(200, data, headers={"Content-Encoding": "gzip"})


def status(code: int) -> Route:
    return lambda h: h.send_body(code, f"status {code}\n".encode())


def redirect(location: str) -> Route:
    return lambda h: h.send_body(302, b"", headers={"Location": location})


def drip(interval: float, stop: threading.Event) -> Route:
    """Headers at once, then one byte per ``interval`` until the client leaves."""

    def chunks() -> Iterator[bytes]:
        while not stop.wait(interval):
            yield b"#"

    return lambda h: h.send_stream(chunks())


def stall_before_headers(stop: threading.Event, seconds: float = 30) -> Route:
    def route(h: Handler) -> None:
        stop.wait(seconds)
        h.close_connection = True

    return route


def gzip_bomb(decompressed: int) -> Route:
    """A gzip stream of ``decompressed`` zero bytes (about 1000:1), streamed without length."""
    comp = gzip.compress(b"\0" * decompressed, compresslevel=9)
    return lambda h: h.send_stream(iter([comp]), encoding="gzip")


def endless(chunk: int = 64 * 1024) -> Route:
    """A body with no Content-Length that never ends."""

    def chunks() -> Iterator[bytes]:
        block = b"x" * chunk
        while True:
            yield block

    return lambda h: h.send_stream(chunks())
