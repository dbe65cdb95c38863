"""cardguard's own HTTP server: requests in, responses out, clients' mistakes refused and logged.

:func:`make_server` serves a :class:`Site` (cardguard's is
:class:`cardguard.expose.app.App`): every request is read whole, turned into a
:class:`Request` and given to the site's route for its method and path, whose
:class:`Response` is written back. Plug-in points:

* TLS: pass an ``ssl.SSLContext`` to :func:`make_server`, which wraps the
  listening socket;
* authentication: pass ``authenticate(handler) -> bool`` to :func:`make_server`;
  it runs before every route and a false answer gives 401;
* extra response headers (web config ``http_server_config.headers``).

A 500 from this server means a bug in cardguard: a route raised, and the error
is logged with a traceback. It never means a bad client: a malformed request
gets a 4xx from :data:`REJECTIONS` and a failed TLS handshake a closed
connection, each with one rate-limited log line (:class:`ClientLog`).
"""

from __future__ import annotations

import http.server
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from cardguard import __version__

log = logging.getLogger("cardguard.expose.server")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


class Site(Protocol):
    """What the server serves: a route per method and path, called as ``route(site, request)``."""

    @property
    def routes(self) -> Mapping[tuple[str, str], object]:
        """The exact routes by ``(method, path)``: what a 405 lists as allowed."""
        ...

    def route(self, method: str, path: str) -> Callable[[Any, Request], Response] | None:
        """The route that answers ``method`` on ``path``, or None (404 or 405)."""
        ...


MAX_REQUEST_BODY = 64 * 1024
MAX_REQUEST_LINE = 65536  # as http.server; longer gets 414
LINGER_SECONDS = 0.5  # after a refusal, how long (and how much) unread input is discarded
LINGER_BYTES = 1 << 20

# Every way a client's request can be refused before it reaches a route: the status and
# the fixed text sent back (client bytes are never echoed). The key is the log's reason.
REJECTIONS: Mapping[str, tuple[int, str]] = {
    "bad_request_line": (400, "malformed request line"),
    "bad_method": (400, "malformed method"),
    "bad_target": (400, "malformed request target"),
    "bad_header": (400, "malformed header line"),
    "bad_content_length": (400, "Content-Length must be one decimal number"),
    "short_body": (400, "body shorter than Content-Length"),
    "length_required": (411, "send the body with Content-Length, not Transfer-Encoding"),
    "body_too_large": (413, f"request body larger than {MAX_REQUEST_BODY} bytes"),
    "uri_too_long": (414, f"request line longer than {MAX_REQUEST_LINE} bytes"),
    "headers_too_large": (431, "header line too long or too many headers"),
    "unsupported_version": (505, "only HTTP/1.0 and HTTP/1.1 are served"),
}
# Refusals http.server's own request-line and header parser sends, by status.
_STDLIB_REJECTIONS = {
    400: "bad_request_line",
    414: "uri_too_long",
    431: "headers_too_large",
    505: "unsupported_version",  # a well-formed HTTP/2.0 or later: 505, as Go answers
}

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 method and field names
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # not allowed in field values (HTAB is)
_DIGITS = re.compile(r"[0-9]+")
# TLS handshakes that end because the client hung up (load-balancer TCP checks, port
# scans) are routine; they are logged at debug, other handshake failures as warnings.
_HANGUPS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError)


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


def _shown(text: str, limit: int = 120) -> str:
    """Client text made safe for one log line: printable ASCII, escapes, bounded."""
    out = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


class Refusal(Exception):
    """A request refused before it reaches a route; ``reason`` is a key of REJECTIONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class ClientLog:
    """Log what clients get wrong (bad requests, failed TLS handshakes) without a flood.

    Every event is one line. A token bucket (``burst`` lines, refilled at one per
    ``every`` seconds) decides whether it is a warning; lines over budget are logged at
    debug instead, and the next warning carries ``suppressed=N``. ``logger`` is the one
    the lines go to (this module's unless given: /probe refusals use cardguard.expose.probe).
    """

    def __init__(
        self,
        burst: int = 10,
        every: float = 6.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self._log = logger or log
        self.burst = burst
        self.every = every
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._suppressed = 0
        self._lock = threading.Lock()

    def log(self, msg: str, *, level: int = logging.WARNING, **fields: Any) -> None:
        if level > logging.DEBUG:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) / self.every)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    if self._suppressed:
                        fields["suppressed"] = self._suppressed
                        self._suppressed = 0
                else:
                    self._suppressed += 1
                    level = logging.DEBUG
        self._log.log(level, msg, extra=fields)


class Handler(http.server.BaseHTTPRequestHandler):
    """Turn an HTTP request into a :class:`Request`, dispatch, write the :class:`Response`.

    The request line and headers are parsed by http.server; everything a client can
    get wrong (framing, syntax, sizes, the TLS handshake) is answered with a 4xx from
    :data:`REJECTIONS` and one :class:`ClientLog` line, and the connection is closed.
    """

    server: Server
    protocol_version = "HTTP/1.1"
    server_version = f"cardguard/{__version__}"
    # http.server answers errors in a request line without a version HTTP/0.9 style,
    # with no status line at all; cardguard refuses HTTP/0.9 instead (as Go does).
    default_request_version = "HTTP/1.0"

    timeout = 30  # seconds a client may take to send its request (and to shake hands)
    _rejected = False

    def handle(self) -> None:
        try:
            if isinstance(self.connection, ssl.SSLSocket) and not self._handshake():
                return
            super().handle()
            if self._rejected:
                self._linger()
        except OSError as exc:  # the socket: resets, timeouts, TLS errors after the handshake
            log.debug(
                "client connection ended",
                extra={"peer": _peer(self.client_address), "reason": type(exc).__name__},
            )

    def finish(self) -> None:
        try:
            super().finish()
        except OSError as exc:  # the final flush to a client that already left
            log.debug(
                "client connection ended",
                extra={"peer": _peer(self.client_address), "reason": type(exc).__name__},
            )

    def _linger(self) -> None:
        """Half-close after a refusal and discard what the client still sends, briefly.

        Closing a socket with unread input makes the kernel send a reset, which can
        destroy the 4xx in flight before the client reads it; Go's server waits the
        same way (rstAvoidanceDelay).
        """
        conn = self.connection
        deadline = time.monotonic() + LINGER_SECONDS
        left = LINGER_BYTES
        try:
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(LINGER_SECONDS)
            while left > 0 and time.monotonic() < deadline:
                chunk = conn.recv(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass  # best effort: the refusal is logged, the client may be gone already

    def _handshake(self) -> bool:
        # Here, in the request's own thread, so a client that never completes the
        # handshake cannot stall the accept loop.
        conn = self.connection
        assert isinstance(conn, ssl.SSLSocket)
        try:
            conn.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            if isinstance(exc, ssl.SSLError) and exc.reason:
                reason = str(exc.reason).lower()  # OpenSSL's name: http_request, ...
            elif isinstance(exc, TimeoutError):
                reason = "timeout"
            elif isinstance(exc, _HANGUPS):
                reason = "client_hung_up"
            else:
                reason = type(exc).__name__.lower()
            self.server.client_log.log(
                "TLS handshake failed",
                level=logging.DEBUG if isinstance(exc, _HANGUPS) else logging.WARNING,
                peer=_peer(self.client_address),
                reason=reason,
                detail=_shown(str(exc), 200),
            )
            return False
        return True

    def handle_one_request(self) -> None:
        self._rejected = False
        try:
            body = self._read_request()
            if body is None:  # the client hung up, or http.server's parser refused it
                self.close_connection = True
                return
            url = urlsplit(self.path)
        except Refusal as r:
            self._reject(r.reason, r.detail)
            return
        except ValueError as exc:  # from urlsplit: "GET http://[::1 HTTP/1.1"
            self._reject("bad_target", str(exc))
            return
        self._dispatch(url.path, url.query, body)
        self.wfile.flush()

    def _read_request(self) -> bytes | None:
        """Read one whole request: request line, headers and body; return the body.

        Every request is read whole before it is answered; a :class:`Refusal` closes
        the connection, since unread body bytes would be taken for the next request.
        """
        self.command = ""
        self.request_version = self.default_request_version
        self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if not self.raw_requestline:
            return None
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            raise Refusal("uri_too_long")
        if not self.parse_request():  # its refusals come back through send_error
            if self._rejected:
                return None
            raise Refusal("bad_request_line", "empty")  # http.server would just hang up
        if len(self.requestline.split()) != 3:
            raise Refusal("bad_request_line", "no HTTP version (HTTP/0.9)")
        if not _TOKEN.fullmatch(self.command):
            raise Refusal("bad_method")
        length = self._body_length()
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise Refusal("short_body", f"{len(body)} of {length} bytes")
        return body

    def _body_length(self) -> int:
        """Check the header section and return the length of the body that follows."""
        if self.headers.defects or self.headers.get_payload():
            # A line without a colon, a continuation line first, a name with spaces ...
            defects = self.headers.defects
            raise Refusal("bad_header", type(defects[0]).__name__ if defects else "")
        for name, value in self.headers.items():
            if not _TOKEN.fullmatch(name) or _CTL.search(value):
                # Also obs-fold continuation lines, which leave CR LF in the value.
                raise Refusal("bad_header", name)
        if self.headers.get_all("Transfer-Encoding"):
            raise Refusal("length_required", self.headers["Transfer-Encoding"])
        declared = self.headers.get_all("Content-Length", [])
        values = {v.strip() for h in declared for v in h.split(",")}
        shown = f"Content-Length: {', '.join(declared)}"
        if not values:
            return 0
        if not all(_DIGITS.fullmatch(v) for v in values):
            raise Refusal("bad_content_length", shown)
        if any(len(v) > 18 for v in values):
            raise Refusal("body_too_large", shown)
        lengths = {int(v) for v in values}
        if len(lengths) != 1:  # conflicting values; identical repeats are allowed
            raise Refusal("bad_content_length", shown)
        length = lengths.pop()
        if length > MAX_REQUEST_BODY:
            raise Refusal("body_too_large", shown)
        return length

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a refusal from http.server's parser through :meth:`_reject`."""
        self._reject(_STDLIB_REJECTIONS.get(code, "bad_request_line"), message or "")

    def _reject(self, reason: str, detail: str = "") -> None:
        status, text = REJECTIONS[reason]
        fields: dict[str, Any] = {"peer": _peer(self.client_address), "status": status}
        fields["reason"] = reason
        if detail:
            fields["detail"] = _shown(detail)
        fields["request"] = _shown(self.requestline)
        self.server.client_log.log("bad request", **fields)
        self._rejected = True
        self._send(Response(status, (text + "\n").encode(), headers={"Connection": "close"}))

    def _dispatch(self, path: str, query: str, body: bytes) -> None:
        method, head_only = ("GET", True) if self.command == "HEAD" else (self.command, False)
        app = self.server.app
        try:
            if self.server.authenticate is not None and not self.server.authenticate(self):
                unauthorized = {"WWW-Authenticate": 'Basic realm="cardguard"'}
                self._send(Response(401, b"Unauthorized\n", headers=unauthorized), head_only)
                return
            route = app.route(method, path)
            if route is None:
                allowed = sorted(m for (m, p) in app.routes if p == path)
                if allowed:
                    allow = {"Allow": ", ".join(allowed + (["HEAD"] if "GET" in allowed else []))}
                    resp = Response(405, b"method not allowed\n", headers=allow)
                else:
                    resp = Response(404, b"not found\n")
                self._send(resp, head_only)
                return
            req = Request(
                method=method,
                path=path,
                query=parse_qs(query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            resp = route(app, req)
        except Exception:
            # Reaching this is a bug in cardguard: say so, with the traceback in the log.
            log.exception("internal error serving %s", path, extra={"endpoint": path})
            resp = Response(500, b"internal error in cardguard; see its log\n")
        self._send(resp, head_only=head_only)

    def _send(self, resp: Response, head_only: bool = False) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in {**self.server.extra_headers, **resp.headers}.items():
            self.send_header(k, v)
        self.end_headers()
        if not head_only:
            self.wfile.write(resp.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if not self._rejected:  # a refusal has its own line
            log.debug(
                "http request",
                extra={
                    "peer": _peer(self.client_address),
                    "request": _shown(self.requestline),
                    "status": int(code) if isinstance(code, int) else code,
                },
            )

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(
            "http: %s", _shown(format % args, 300), extra={"peer": _peer(self.client_address)}
        )


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog: socketserver's 5 overflows while a big fleet starts.
    request_queue_size = 1024
    app: Site
    authenticate: Callable[[Handler], bool] | None
    extra_headers: Mapping[str, str]
    client_log: ClientLog

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a bare traceback to stderr. Handler catches every
        # exception a client can cause, so one reaching here is a bug: log it as such.
        log.error(
            "unhandled error on a client connection (a bug in cardguard)",
            exc_info=True,
            extra={"peer": _peer(client_address)},
        )


def make_server(
    app: Site,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    authenticate: Callable[[Handler], bool] | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> Server:
    """Bind the server (port 0 picks a free port); TLS and auth are optional seams."""
    server = Server((host, port), Handler)
    server.app = app
    server.authenticate = authenticate
    server.extra_headers = dict(extra_headers or {})
    server.client_log = ClientLog()
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    return server
