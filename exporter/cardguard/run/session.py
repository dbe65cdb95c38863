"""What one target's requests carry and where they connect: auth headers, TLS, addresses.

* :func:`request_headers`: Host, User-Agent, Accept, the configured headers,
  and the bearer token or basic auth (secret files are read on every call, so
  a rotated password is used by the next fetch).
* :func:`connect_addresses`: where a fetch may connect. The URL's host is resolved
  once per fetch, or not at all when the target carries the addresses that
  were already approved (:attr:`~cardguard.settings.targets.TargetConfig.addresses`,
  set by ``/probe``).
* :func:`connection_pool`: a pool that connects to exactly one such address
  while the Host header and TLS (SNI, certificate name check) use the host
  name of the URL. So the address that was checked is the address connected
  to: DNS cannot re-point a name between the two.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from cardguard import __version__
from cardguard.errors import FetchError
from cardguard.run.urls import Origin, parse_url_strictly, redact_url
from cardguard.settings.allowlist import Resolver
from cardguard.settings.targets import TargetConfig, TLSConfig

USER_AGENT = f"cardguard/{__version__}"
Pool = HTTPConnectionPool | HTTPSConnectionPool


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


def connect_addresses(
    target: TargetConfig, origin: Origin, url: str, resolve: Resolver
) -> Sequence[str]:
    """Where a fetch of ``url`` may connect: the approved addresses, or one fresh resolution.

    Raises:
        FetchError: reason ``other`` for a URL outside the origin whose addresses
            were approved, ``connect`` when the name does not resolve.
    """
    if target.addresses:
        try:
            own = parse_url_strictly(target.url).origin
        except ValueError:
            own = None
        if own != origin:
            raise FetchError(
                target.name,
                "other",
                f"{redact_url(url)} is not at {redact_url(target.url)}, whose addresses were "
                "approved; not fetched",
            )
        return target.addresses
    try:
        found = resolve(origin.host, origin.port)
    except (OSError, UnicodeError):
        found = []
    if not found:
        raise FetchError(
            target.name, "connect", f"cannot connect to {redact_url(url)}: name resolution failed"
        )
    return found


def _default_ca_bundle() -> str | None:
    """The CA bundle cardguard has always verified with (certifi's), else the system store."""
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


def connection_pool(tls: TLSConfig, origin: Origin, address: str) -> Pool:
    """A pool that connects to ``address`` only, speaking to ``origin``'s host name."""
    common: dict[str, Any] = {"port": origin.port, "maxsize": 1, "retries": False}
    if origin.scheme == "http":
        return HTTPConnectionPool(address, **common)
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


def _read_secret_file(target: TargetConfig, path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        # The path is config, not a secret; the contents never reach the message.
        raise FetchError(
            target.name, "auth", f"cannot read {what} file {path}: {type(exc).__name__}"
        ) from None


def _set_header(headers: dict[str, str], name: str, value: str) -> None:
    for key in [k for k in headers if k.lower() == name.lower()]:
        del headers[key]
    headers[name] = value


def _basic_auth(target: TargetConfig, userinfo: str | None) -> tuple[str, str] | None:
    ba = target.basic_auth
    if ba is None:
        if userinfo is None:
            return None
        # A URL given on the command line may carry user:password, as curl accepts.
        user, _, password = userinfo.partition(":")
        return (unquote(user), unquote(password))
    if ba.password is not None:
        return (ba.username, ba.password.reveal())
    if ba.password_file is not None:
        return (ba.username, _read_secret_file(target, ba.password_file, "password"))
    return (ba.username, "")


def request_headers(
    target: TargetConfig, origin: Origin, accept: str | None, userinfo: str | None
) -> dict[str, str]:
    """The headers of every request of one fetch, auth included.

    Args:
        userinfo: the ``user:password`` of the fetched URL, used when the
            target has no ``basic_auth`` of its own.

    Raises:
        FetchError: reason ``auth`` when a token or password file cannot be read.
    """
    headers = {
        "Host": origin.host_header,
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "gzip",
        "Accept": accept or "*/*",
    }
    for name, value in target.headers:
        _set_header(headers, name, value.reveal())
    if target.bearer_token is not None:
        _set_header(headers, "Authorization", f"Bearer {target.bearer_token.reveal()}")
    elif target.bearer_token_file is not None:
        token = _read_secret_file(target, target.bearer_token_file, "bearer_token")
        _set_header(headers, "Authorization", f"Bearer {token}")
    auth = _basic_auth(target, userinfo)
    if auth is not None:
        user, password = auth
        creds = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        _set_header(headers, "Authorization", f"Basic {creds}")
    return headers
