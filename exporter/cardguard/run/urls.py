"""URLs a fetch may use: strict parsing, origins, the same-origin redirect guard, redaction.

A URL is read twice, by urllib3's parser (the one that builds the request)
and by :func:`urllib.parse.urlsplit`, and used only when the two agree on
scheme, userinfo, host and port (:func:`parse_url_strictly`).

Redirects are never followed by the HTTP client. :func:`follow_redirect`
refuses a ``Location`` with backslashes, whitespace, control or non-ASCII
characters, userinfo, or anything the two parsers read differently, and
allows it only when the origin (scheme, host, port) is unchanged. Everything
else fails with reason ``redirect``, so credentials and configured headers
never reach another origin.

:func:`redact_url` is how every message and label shows a URL: without its
user:password.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

from urllib3.util import parse_url

from cardguard.errors import FetchError
from cardguard.settings.allowlist import DEFAULT_PORTS


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


def follow_redirect(source: str, current: str, origin: Origin, location: str) -> tuple[str, str]:
    """Check a redirect's ``Location``; return the URL and request target to re-issue.

    Args:
        source: the target's name, the source of any error.
        current: the URL that answered with the redirect.
        origin: the origin of the fetch, the only one a redirect may lead to.
        location: the ``Location`` header, as received.

    Raises:
        FetchError: reason ``redirect`` unless the Location is unambiguous and
            leads to the same origin.
    """

    def refuse(why: str) -> FetchError:
        return FetchError(
            source,
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
            source,
            "redirect",
            f"{redact_url(current)} redirected to another {what} "
            f"({str(parsed.origin)[:120]}); not followed",
        )
    return nxt, parsed.request_uri
