"""Bounded HTTP fetching from targets: size, total time, gzip bombs, failure reasons.

Every failure becomes a :class:`~cardguard.errors.FetchError` whose ``reason``
is one of :data:`REASONS` (a bounded label value) and whose message names the
target and the (redacted) URL but never a header, password or token.

Limits hold while the body streams in:

* the compressed body and the decompressed body are each cut at
  ``max_bytes`` (gzip is inflated chunk by chunk as it arrives, by
  :class:`cardguard.gunzip.Inflater`, every member of the stream, with the
  output per step bounded, so a gzip bomb costs at most ``max_bytes`` of memory);
* ``timeout`` is a deadline for the whole exchange, not a per-read timeout:
  a target that drips one byte a second is cut when the deadline passes.

Where a fetch connects and what its requests carry (auth headers, TLS, the
approved or freshly resolved addresses) is decided by
:mod:`cardguard.run.session`; which URLs it may use, and which redirects it
re-issues (same origin only, on the connection pool bound to the same
address), by :mod:`cardguard.run.urls`. Redirects are never followed by the
HTTP client.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.response import BaseHTTPResponse
from urllib3.util.ssl_match_hostname import CertificateError

from cardguard.errors import FetchError
from cardguard.gunzip import GzipError, Inflater
from cardguard.run.session import (
    Pool,
    connect_addresses,
    connection_pool,
    request_headers,
    resolve_host,
)
from cardguard.run.urls import Origin, follow_redirect, parse_url_strictly, redact_url
from cardguard.settings.allowlist import Resolver
from cardguard.settings.targets import TargetConfig

REASONS = (
    "timeout",
    "connect",
    "http_status",
    "too_large",
    "decompress",
    "tls",
    "auth",
    "redirect",
    "other",
)

_CHUNK = 64 * 1024
_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))


class HTTPStatusError(FetchError):
    """The target answered with a non-2xx status (reason ``http_status`` or ``auth``)."""

    def __init__(self, source: str, reason: str, message: str, status: int) -> None:
        super().__init__(source, reason, message)
        self.status = status


@dataclass(frozen=True)
class FetchResult:
    """One successful fetch: the decompressed body and what it took to get it."""

    url: str  # redacted, after same-origin redirects
    status: int
    content_type: str
    body: bytes
    duration: float
    wire_bytes: int  # bytes received before decompression


def _root_cause(exc: BaseException) -> BaseException:
    """Walk wrapped exceptions (urllib3 -> OSError) to the innermost one."""
    seen = set()
    cur: BaseException = exc
    while id(cur) not in seen:
        seen.add(id(cur))
        nxt = getattr(cur, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = cur.__cause__ or cur.__context__
        if nxt is None and cur.args and isinstance(cur.args[0], BaseException):
            nxt = cur.args[0]
        if not isinstance(nxt, BaseException):
            break
        cur = nxt
    return cur


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, socket.gaierror):
        return "name resolution failed"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, CertificateError):
        # urllib3's own host name check (the connection goes to an address, the name is
        # checked against the certificate by urllib3); the message names host and cert names.
        return f"certificate verification failed: {exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or type(exc).__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


class _CannotConnect(Exception):
    """No connection to one address (nothing was sent): the next address may be tried."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause


class Fetcher:
    """Fetches URLs of one target with its auth, TLS and headers; safe to share across threads.

    Each call uses connection pools of its own, bound to the one address it
    resolved (or was given), so a hung connection of one endpoint never holds
    a pooled connection another endpoint waits for.

    Args:
        target: URL, auth, TLS, headers and limits; ``target.addresses``, when
            set, are the only addresses connected to.
        resolve: how host names are resolved when ``target.addresses`` is empty.
    """

    def __init__(self, target: TargetConfig, *, resolve: Resolver = resolve_host) -> None:
        self.target = target
        self._resolve = resolve
        if target.tls.insecure_skip_verify:
            # Asked for explicitly in the config; the scheduler logs it once instead of a
            # warning on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    def get(
        self,
        url: str,
        *,
        accept: str | None = None,
        timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> FetchResult:
        """GET ``url`` within the target's limits (or the given ones).

        Raises:
            FetchError: with a reason from :data:`REASONS`.
        """
        timeout = self.target.timeout if timeout is None else timeout
        max_bytes = self.target.body_size_limit if max_bytes is None else max_bytes
        start = time.monotonic()
        deadline = start + timeout
        try:
            parsed = parse_url_strictly(url)
        except ValueError as exc:
            raise FetchError(
                self.target.name, "other", f"invalid URL {redact_url(url)}: it {exc}"
            ) from None
        origin = parsed.origin
        headers = request_headers(self.target, origin, accept, parsed.userinfo)
        addresses = connect_addresses(self.target, origin, url, self._resolve)
        pool, resp = self._connect(
            addresses, origin, parsed.request_uri, url, headers, start, deadline
        )
        current = url
        with pool:
            for hop in range(_MAX_REDIRECTS + 1):
                try:
                    location = resp.headers.get("Location")
                    if resp.status not in _REDIRECT_STATUSES or location is None:
                        return self._read(resp, current, deadline, max_bytes, start)
                finally:
                    resp.close()
                if hop == _MAX_REDIRECTS:
                    break
                current, request_uri = follow_redirect(self.target.name, current, origin, location)
                # Same origin, so the same pool: the re-issued request goes to the same address.
                resp = self._send(pool, current, request_uri, headers, start, deadline)
        raise FetchError(
            self.target.name,
            "redirect",
            f"more than {_MAX_REDIRECTS} redirects from {redact_url(url)}",
        )

    def _connect(
        self,
        addresses: Sequence[str],
        origin: Origin,
        request_uri: str,
        url: str,
        headers: dict[str, str],
        start: float,
        deadline: float,
    ) -> tuple[Pool, BaseHTTPResponse]:
        """Send the first request to the first of ``addresses`` that takes the connection."""
        refused: BaseException | None = None
        for address in addresses:
            pool = connection_pool(self.target.tls, origin, address)
            sent = False
            try:
                resp = self._send(pool, url, request_uri, headers, start, deadline, first=True)
                sent = True
                return pool, resp
            except _CannotConnect as exc:
                refused = exc.cause
            finally:
                if not sent:
                    pool.close()
        assert refused is not None  # addresses is never empty
        raise self._error(refused, url, start, deadline)

    def _send(
        self,
        pool: Pool,
        url: str,
        request_uri: str,
        headers: dict[str, str],
        start: float,
        deadline: float,
        *,
        first: bool = False,
    ) -> BaseHTTPResponse:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timeout(url, deadline - start)
        try:
            return pool.urlopen(
                "GET",
                request_uri,
                headers=headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=urllib3.Timeout(connect=remaining, read=remaining),
                preload_content=False,
                decode_content=False,
                release_conn=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:
            if first:
                raise _CannotConnect(exc) from None
            raise self._error(exc, url, start, deadline) from None
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._error(exc, url, start, deadline) from None

    def _error(self, exc: BaseException, url: str, start: float, deadline: float) -> FetchError:
        """The FetchError for what the HTTP client raised (never its text: it may hold headers)."""
        name = self.target.name
        cause = _root_cause(exc)
        if isinstance(exc, urllib3.exceptions.SSLError) or isinstance(
            cause, ssl.SSLError | CertificateError
        ):
            return FetchError(
                name,
                "tls",
                f"TLS handshake with {redact_url(url)} failed: {_describe_os_error(cause)}",
            )
        if isinstance(cause, TimeoutError) or (
            isinstance(exc, urllib3.exceptions.TimeoutError)
            and not isinstance(exc, urllib3.exceptions.NewConnectionError)
        ):
            return self._timeout(url, deadline - start)
        if isinstance(
            exc, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ProtocolError
        ):
            return FetchError(
                name, "connect", f"cannot connect to {redact_url(url)}: {_describe_os_error(cause)}"
            )
        if isinstance(exc, OSError):
            return FetchError(
                name, "connect", f"cannot connect to {redact_url(url)}: {_describe_os_error(exc)}"
            )
        # e.g. a header value http.client refuses: its message would quote the value.
        return FetchError(
            name, "other", f"request to {redact_url(url)} failed: {type(exc).__name__}"
        )

    def _timeout(self, url: str, budget: float) -> FetchError:
        return FetchError(
            self.target.name,
            "timeout",
            f"{redact_url(url)} did not answer completely within {budget:.3g}s",
        )

    def _read(
        self,
        resp: BaseHTTPResponse,
        url: str,
        deadline: float,
        max_bytes: int,
        start: float,
    ) -> FetchResult:
        status = resp.status
        if not 200 <= status < 300:
            raise HTTPStatusError(
                self.target.name,
                "auth" if status in (401, 403) else "http_status",
                f"{redact_url(url)} answered HTTP {status} {resp.reason}",
                status,
            )
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise FetchError(
                self.target.name,
                "too_large",
                f"{redact_url(url)} announced {int(length)} bytes, over the limit of {max_bytes}",
            )
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip", ""):
            raise FetchError(
                self.target.name,
                "decompress",
                f"{redact_url(url)} used Content-Encoding {encoding[:40]!r}; only gzip is accepted",
            )
        inflater = Inflater(max_bytes) if "gzip" in encoding else None
        out = bytearray()
        wire = 0
        raw: Any = resp
        sock = _socket_of(raw)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout(url, deadline - start)
            if sock is not None:
                # Bound each blocking read by what is left of the deadline.
                sock.settimeout(remaining)
            try:
                # read1 returns what has arrived; read() would wait for a full chunk,
                # and a target dripping bytes would never let the deadline check run.
                chunk = raw.read1(_CHUNK, decode_content=False)
            except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
                raise self._timeout(url, deadline - start) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise FetchError(
                    self.target.name,
                    "connect",
                    f"reading {redact_url(url)} failed after {wire} bytes: "
                    f"{_describe_os_error(_root_cause(exc))}",
                ) from None
            if not chunk:
                break
            wire += len(chunk)
            if wire > max_bytes:
                raise self._too_large(url, max_bytes, "compressed " if inflater else "")
            if inflater is None:
                out += chunk
                continue
            try:
                out += inflater.feed(chunk)
            except GzipError as exc:
                raise self._gzip_error(exc, url, max_bytes) from None
        if inflater is not None:
            try:
                inflater.finish()
            except GzipError as exc:
                raise self._gzip_error(exc, url, max_bytes) from None
        return FetchResult(
            url=redact_url(url),
            status=status,
            content_type=resp.headers.get("Content-Type", ""),
            body=bytes(out),
            duration=time.monotonic() - start,
            wire_bytes=wire,
        )

    def _too_large(self, url: str, max_bytes: int, what: str) -> FetchError:
        return FetchError(
            self.target.name,
            "too_large",
            f"{redact_url(url)}: {what}body exceeds the limit of {max_bytes} bytes",
        )

    def _gzip_error(self, exc: GzipError, url: str, max_bytes: int) -> FetchError:
        """A gzip body that would not inflate: ``too_large``, else ``decompress``."""
        if exc.reason == "too_large":
            return self._too_large(url, max_bytes, "decompressed ")
        # "corrupt gzip data: <zlib's reason>" or "truncated gzip data (...)"
        return FetchError(self.target.name, "decompress", f"{redact_url(url)} sent {exc.message}")


def _socket_of(raw: Any) -> socket.socket | None:
    """Return the socket under a urllib3 response, if this urllib3 version exposes it."""
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    return sock if isinstance(sock, socket.socket) else None
