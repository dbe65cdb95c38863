"""Bounded HTTP fetching from targets: size, total time, gzip bombs, auth, TLS, redirects.

Every failure becomes a :class:`~cardguard.errors.FetchError` whose ``reason``
is one of :data:`REASONS` (a bounded label value) and whose message names the
target and the (redacted) URL but never a header, password or token.

Limits hold while the body streams in:

* the compressed body and the decompressed body are each cut at
  ``max_bytes`` (gzip is inflated incrementally with ``zlib`` and the output
  per step is bounded, so a gzip bomb costs at most ``max_bytes`` of memory);
* ``timeout`` is a deadline for the whole exchange, not a per-read timeout:
  a target that drips one byte a second is cut when the deadline passes.
"""

from __future__ import annotations

import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import urllib3

from cardguard import __version__
from cardguard.config import TargetConfig
from cardguard.errors import FetchError

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

USER_AGENT = f"cardguard/{__version__}"
_CHUNK = 64 * 1024
_MAX_REDIRECTS = 5


class HTTPStatusError(FetchError):
    """The target answered with a non-2xx status (reason ``http_status`` or ``auth``)."""

    def __init__(self, source: str, reason: str, message: str, status: int) -> None:
        super().__init__(source, reason, message)
        self.status = status


@dataclass(frozen=True)
class FetchResult:
    """One successful fetch: the decompressed body and what it took to get it."""

    url: str  # redacted, after same-host redirects
    status: int
    content_type: str
    body: bytes
    duration: float
    wire_bytes: int  # bytes received before decompression


def redact_url(url: str) -> str:
    """Replace any user:password in ``url`` with ``<redacted>``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"<redacted>@{host}"))


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    port = p.port or (443 if p.scheme == "https" else 80)
    return (p.scheme, (p.hostname or "").lower(), port)


def _root_cause(exc: BaseException) -> BaseException:
    """Walk wrapped exceptions (requests -> urllib3 -> OSError) to the innermost one."""
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
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or type(exc).__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


class Fetcher:
    """Fetches URLs of one target with its auth, TLS and headers; safe to share across threads.

    A new :class:`requests.Session` is used per call, so a hung connection of
    one endpoint never holds a pooled connection another endpoint waits for.
    """

    def __init__(self, target: TargetConfig) -> None:
        self.target = target
        if target.tls.insecure_skip_verify:
            # Asked for explicitly in the config; the scheduler logs it once instead of a
            # warning on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    # -- request settings ------------------------------------------------------

    def _verify(self) -> bool | str:
        tls = self.target.tls
        if tls.insecure_skip_verify:
            return False
        return str(tls.ca_file) if tls.ca_file else True

    def _cert(self) -> tuple[str, str] | None:
        tls = self.target.tls
        if tls.cert_file and tls.key_file:
            return (str(tls.cert_file), str(tls.key_file))
        return None

    def _read_secret_file(self, path: Path, what: str) -> str:
        try:
            return path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            # The path is config, not a secret; the contents never reach the message.
            raise FetchError(
                self.target.name, "auth", f"cannot read {what} file {path}: {type(exc).__name__}"
            ) from None

    def _headers(self, accept: str | None) -> dict[str, str]:
        headers = {
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "gzip",
        }
        if accept:
            headers["Accept"] = accept
        for name, value in self.target.headers:
            headers[name] = value.reveal()
        t = self.target
        if t.bearer_token is not None:
            headers["Authorization"] = f"Bearer {t.bearer_token.reveal()}"
        elif t.bearer_token_file is not None:
            token = self._read_secret_file(t.bearer_token_file, "bearer_token")
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _auth(self) -> tuple[str, str] | None:
        ba = self.target.basic_auth
        if ba is None:
            return None
        if ba.password is not None:
            return (ba.username, ba.password.reveal())
        if ba.password_file is not None:
            return (ba.username, self._read_secret_file(ba.password_file, "password"))
        return (ba.username, "")

    # -- fetching --------------------------------------------------------------

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
        origin = _origin(url)
        current = url
        with requests.Session() as session:
            session.trust_env = False  # proxies/netrc from the environment would bypass config
            session.verify = self._verify()
            session.cert = self._cert()
            headers = self._headers(accept)
            auth = self._auth()
            for _ in range(_MAX_REDIRECTS + 1):
                resp = self._send(session, current, headers, auth, start, deadline)
                try:
                    if resp.is_redirect:
                        location = resp.headers.get("Location", "")
                        nxt = urljoin(current, location)
                        if _origin(nxt) != origin:
                            raise FetchError(
                                self.target.name,
                                "redirect",
                                f"{redact_url(current)} redirected to another host "
                                f"({redact_url(nxt)}); not followed",
                            )
                        current = nxt
                        continue
                    return self._read(resp, current, deadline, max_bytes, start)
                finally:
                    resp.close()
            raise FetchError(
                self.target.name, "redirect", f"more than {_MAX_REDIRECTS} redirects from {url}"
            )

    def _send(
        self,
        session: requests.Session,
        url: str,
        headers: dict[str, str],
        auth: tuple[str, str] | None,
        start: float,
        deadline: float,
    ) -> requests.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timeout(url, deadline - start)
        try:
            return session.get(
                url,
                headers=headers,
                auth=auth,
                stream=True,
                allow_redirects=False,
                timeout=(remaining, remaining),
            )
        except requests.exceptions.SSLError as exc:
            raise FetchError(
                self.target.name,
                "tls",
                f"TLS handshake with {redact_url(url)} failed: "
                f"{_describe_os_error(_root_cause(exc))}",
            ) from None
        except requests.exceptions.Timeout:
            raise self._timeout(url, deadline - start) from None
        except requests.exceptions.ConnectionError as exc:
            cause = _root_cause(exc)
            if isinstance(cause, TimeoutError):
                raise self._timeout(url, deadline - start) from None
            raise FetchError(
                self.target.name,
                "connect",
                f"cannot connect to {redact_url(url)}: {_describe_os_error(cause)}",
            ) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise FetchError(
                self.target.name, "other", f"invalid URL {redact_url(url)}: {type(exc).__name__}"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise FetchError(
                self.target.name,
                "other",
                f"request to {redact_url(url)} failed: {type(exc).__name__}",
            ) from None

    def _timeout(self, url: str, budget: float) -> FetchError:
        return FetchError(
            self.target.name,
            "timeout",
            f"{redact_url(url)} did not answer completely within {budget:.3g}s",
        )

    def _read(
        self,
        resp: requests.Response,
        url: str,
        deadline: float,
        max_bytes: int,
        start: float,
    ) -> FetchResult:
        status = resp.status_code
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
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if "gzip" in encoding else None
        out = bytearray()
        wire = 0
        raw: Any = resp.raw
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
                data = chunk
                while data:
                    room = max_bytes - len(out) + 1
                    out += inflater.decompress(data, room)
                    if len(out) > max_bytes:
                        raise self._too_large(url, max_bytes, "decompressed ")
                    data = inflater.unconsumed_tail
                    if inflater.eof:
                        break
            except zlib.error as exc:
                raise FetchError(
                    self.target.name,
                    "decompress",
                    f"{redact_url(url)} sent a corrupt gzip body: {exc}",
                ) from None
        if inflater is not None:
            try:
                out += inflater.flush()
            except zlib.error as exc:
                raise FetchError(
                    self.target.name, "decompress", f"{redact_url(url)}: corrupt gzip body: {exc}"
                ) from None
            if not inflater.eof:
                raise FetchError(
                    self.target.name,
                    "decompress",
                    f"{redact_url(url)} sent a truncated gzip body ({wire} bytes)",
                )
            if len(out) > max_bytes:
                raise self._too_large(url, max_bytes, "decompressed ")
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


def _socket_of(raw: Any) -> socket.socket | None:
    """Return the socket under a urllib3 response, if this urllib3 version exposes it."""
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    return sock if isinstance(sock, socket.socket) else None
