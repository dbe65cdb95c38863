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

Where a fetch connects is decided once, here, and nowhere else:

* the URL's host is resolved once per fetch, or not at all when the target
  carries the addresses that were already approved
  (:attr:`~cardguard.settings.config.TargetConfig.addresses`, set by ``/probe``), and
  the connection goes to exactly such an address. The Host header and TLS
  (SNI, certificate name check) still use the host name of the URL. So the
  address that was checked is the address connected to: DNS cannot re-point
  a name between the two.
* Redirects are never followed by the HTTP client. cardguard reads the
  ``Location`` with urllib3's parser (the one that builds the request) and
  with :func:`urllib.parse.urlsplit`, refuses backslashes, whitespace,
  control and non-ASCII characters, userinfo and anything the two parsers
  read differently, and re-issues the request only when the origin (scheme,
  host, port) is unchanged, on the connection pool bound to the same
  address. Everything else fails with reason ``redirect``, so credentials
  and configured headers never reach another origin.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import urllib3
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import BaseHTTPResponse
from urllib3.util import parse_url
from urllib3.util.ssl_match_hostname import CertificateError

from cardguard import __version__
from cardguard.errors import FetchError
from cardguard.settings.config import TargetConfig

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
_REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))
DEFAULT_PORTS = {"http": 80, "https": 443}

Resolver = Callable[[str, int], Sequence[str]]


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


def resolve_host(host: str, port: int) -> Sequence[str]:
    """Resolve ``host`` with the system resolver, in its order; raise OSError when it cannot.

    An IP literal is returned as it is, without asking any resolver.
    """
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(ai[4][0]) for ai in infos))


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port of a URL: where its requests may go, and nowhere else."""

    scheme: str
    host: str  # lower case; an IPv6 address without brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


@dataclass(frozen=True)
class ParsedURL:
    """A URL as both parsers read it, once they agreed."""

    origin: Origin
    request_uri: str  # path and query, as urllib3 sends them
    userinfo: str | None  # raw ``user:password`` (only ever accepted in a configured URL)


def _unsafe_char(text: str) -> str | None:
    for c in text:
        if c == "\\":
            return "a backslash"
        if ord(c) <= 0x20 or ord(c) == 0x7F:
            return "whitespace or a control character"
        if ord(c) > 0x7F:
            return "a non-ASCII character"
    return None


def _idna(host: str) -> str | None:
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None


def parse_url_strictly(url: str) -> ParsedURL:
    """Read ``url`` with urllib3's parser and with urlsplit; return it only if they agree.

    They must agree on scheme (http or https), userinfo, host and port: the
    request is built from urllib3's reading, the checks elsewhere use
    urlsplit's, so a URL the two read differently (``http://a:1\\@b:2/``) is
    refused rather than guessed at.

    Raises:
        ValueError: saying what is wrong ("cannot be parsed"), never quoting the URL.
    """
    try:
        u = parse_url(url)
        s = urlsplit(url)
        s_port = s.port
    except ValueError:
        raise ValueError("cannot be parsed") from None
    scheme = (u.scheme or "").lower()
    if scheme not in DEFAULT_PORTS or s.scheme.lower() != scheme:
        raise ValueError("has a scheme other than http or https")
    s_userinfo = s.netloc.rpartition("@")[0] if "@" in s.netloc else None
    if u.auth != s_userinfo:
        raise ValueError("is read differently by urllib3 and urlsplit (userinfo)")
    u_host = (u.host or "").strip("[]").lower()
    s_host = _idna(s.hostname or "")
    if not u_host or u_host != s_host:
        raise ValueError("is read differently by urllib3 and urlsplit (host)")
    default = DEFAULT_PORTS[scheme]
    if (u.port or default) != (s_port or default):
        raise ValueError("is read differently by urllib3 and urlsplit (port)")
    return ParsedURL(Origin(scheme, u_host, u.port or default), u.request_uri, u.auth)


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


def _default_ca_bundle() -> str | None:
    """The CA bundle cardguard has always verified with (certifi's), else the system store."""
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


def _set_header(headers: dict[str, str], name: str, value: str) -> None:
    for key in [k for k in headers if k.lower() == name.lower()]:
        del headers[key]
    headers[name] = value


_Pool = HTTPConnectionPool | HTTPSConnectionPool


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

    # -- request settings ------------------------------------------------------

    def _pool(self, origin: Origin, address: str) -> _Pool:
        """A pool that connects to ``address`` only, speaking to ``origin``'s host name."""
        common: dict[str, Any] = {"port": origin.port, "maxsize": 1, "retries": False}
        if origin.scheme == "http":
            return HTTPConnectionPool(address, **common)
        tls = self.target.tls
        verify = not tls.insecure_skip_verify
        ca = str(tls.ca_file) if tls.ca_file else _default_ca_bundle()
        client = tls.cert_file is not None and tls.key_file is not None
        return HTTPSConnectionPool(
            address,
            **common,
            cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE",
            ca_certs=ca if verify else None,
            cert_file=str(tls.cert_file) if client else None,
            key_file=str(tls.key_file) if client else None,
            # SNI and the certificate check use the host name, not the address.
            server_hostname=origin.host,
            assert_hostname=origin.host if verify else False,
        )

    def _read_secret_file(self, path: Path, what: str) -> str:
        try:
            return path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            # The path is config, not a secret; the contents never reach the message.
            raise FetchError(
                self.target.name, "auth", f"cannot read {what} file {path}: {type(exc).__name__}"
            ) from None

    def _headers(self, origin: Origin, accept: str | None, userinfo: str | None) -> dict[str, str]:
        headers = {
            "Host": origin.host_header,
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "gzip",
            "Accept": accept or "*/*",
        }
        for name, value in self.target.headers:
            _set_header(headers, name, value.reveal())
        t = self.target
        if t.bearer_token is not None:
            _set_header(headers, "Authorization", f"Bearer {t.bearer_token.reveal()}")
        elif t.bearer_token_file is not None:
            token = self._read_secret_file(t.bearer_token_file, "bearer_token")
            _set_header(headers, "Authorization", f"Bearer {token}")
        auth = self._basic_auth(userinfo)
        if auth is not None:
            user, password = auth
            creds = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            _set_header(headers, "Authorization", f"Basic {creds}")
        return headers

    def _basic_auth(self, userinfo: str | None) -> tuple[str, str] | None:
        ba = self.target.basic_auth
        if ba is None:
            if userinfo is None:
                return None
            # A URL given on the command line may carry user:password, as curl accepts.
            user, _, password = userinfo.partition(":")
            return (unquote(user), unquote(password))
        if ba.password is not None:
            return (ba.username, ba.password.reveal())
        if ba.password_file is not None:
            return (ba.username, self._read_secret_file(ba.password_file, "password"))
        return (ba.username, "")

    def _addresses(self, origin: Origin, url: str) -> Sequence[str]:
        """Where this fetch may connect: the approved addresses, or one fresh resolution."""
        t = self.target
        if t.addresses:
            try:
                own = parse_url_strictly(t.url).origin
            except ValueError:
                own = None
            if own != origin:
                raise FetchError(
                    t.name,
                    "other",
                    f"{redact_url(url)} is not at {redact_url(t.url)}, whose addresses were "
                    "approved; not fetched",
                )
            return t.addresses
        try:
            found = self._resolve(origin.host, origin.port)
        except (OSError, UnicodeError):
            found = []
        if not found:
            raise FetchError(
                t.name, "connect", f"cannot connect to {redact_url(url)}: name resolution failed"
            )
        return found

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
        try:
            parsed = parse_url_strictly(url)
        except ValueError as exc:
            raise FetchError(
                self.target.name, "other", f"invalid URL {redact_url(url)}: it {exc}"
            ) from None
        origin = parsed.origin
        headers = self._headers(origin, accept, parsed.userinfo)
        addresses = self._addresses(origin, url)
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
                current, request_uri = self._follow(current, origin, location)
                # Same origin, so the same pool: the re-issued request goes to the same address.
                resp = self._send(pool, current, request_uri, headers, start, deadline)
        raise FetchError(
            self.target.name,
            "redirect",
            f"more than {_MAX_REDIRECTS} redirects from {redact_url(url)}",
        )

    def _follow(self, current: str, origin: Origin, location: str) -> tuple[str, str]:
        """Check a redirect's ``Location``; return the URL and request target to re-issue.

        Raises:
            FetchError: reason ``redirect`` unless the Location is unambiguous and
                leads to the same origin.
        """

        def refuse(why: str) -> FetchError:
            return FetchError(
                self.target.name,
                "redirect",
                f"{redact_url(current)} redirected to a Location that {why}; not followed",
            )

        if not location:
            raise refuse("is empty")
        bad = _unsafe_char(location)
        if bad is not None:
            raise refuse(f"contains {bad}")
        try:
            # Joined onto a base without userinfo, so any userinfo came from the Location.
            base = f"{origin.scheme}://{origin.host_header}{urlsplit(current).path or '/'}"
            nxt = urljoin(base, location)
            parsed = parse_url_strictly(nxt)
        except ValueError as exc:
            raise refuse(str(exc)) from None
        if parsed.userinfo is not None:
            raise refuse("carries userinfo")
        if parsed.origin != origin:
            what = "host" if parsed.origin.host != origin.host else "origin"
            raise FetchError(
                self.target.name,
                "redirect",
                f"{redact_url(current)} redirected to another {what} "
                f"({str(parsed.origin)[:120]}); not followed",
            )
        return nxt, parsed.request_uri

    def _connect(
        self,
        addresses: Sequence[str],
        origin: Origin,
        request_uri: str,
        url: str,
        headers: dict[str, str],
        start: float,
        deadline: float,
    ) -> tuple[_Pool, BaseHTTPResponse]:
        """Send the first request to the first of ``addresses`` that takes the connection."""
        refused: BaseException | None = None
        for address in addresses:
            pool = self._pool(origin, address)
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
        pool: _Pool,
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
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if "gzip" in encoding else None
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
