"""A target to watch and what fetching it takes: URL, auth, TLS, profiles; loaded from YAML.

The objects (:class:`TargetConfig` and its parts) are what the fetcher takes;
the loaders read them from a node with a :class:`~cardguard.settings.checker.Ctx`.
The ``targets:`` list and ``target_defaults:`` of the config, the ``probe:``
and ``fleet:`` sections and file_sd targets all build on them.

Defaults live in the dataclass fields below; a target's ``interval``,
``timeout``, ``body_size_limit`` and ``native_histograms`` default to the
``base`` target :func:`load_target` is given (the ``global:`` values).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from yaml.nodes import MappingNode, Node, ScalarNode

from cardguard.quantities import format_duration
from cardguard.settings import yamlfile
from cardguard.settings.checker import Ctx, describe, is_null, join, value_of


class Secret:
    """A string that never shows itself in repr, str, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call only where it is sent to a target."""
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: Secret | None = None
    password_file: Path | None = None


@dataclass(frozen=True)
class TLSConfig:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False


GOROUTINELEAK_MODES = ("auto", "true", "false")


@dataclass(frozen=True)
class ProfilesConfig:
    """Which ``net/http/pprof`` endpoints to read, and how often (separately from /metrics)."""

    enabled: bool = True
    interval: float = 60.0
    timeout: float | None = None  # None: the target's timeout
    heap: bool = True
    goroutine: bool = True
    goroutine_full_max: int = 2000
    goroutineleak: str = "auto"


@dataclass(frozen=True)
class TargetConfig:
    """One Go service to watch."""

    name: str
    url: str
    metrics_path: str = "/metrics"
    pprof_path: str = "/debug/pprof"
    interval: float = 30.0
    timeout: float = 10.0
    body_size_limit: int = 64 * 1024 * 1024
    native_histograms: bool = False  # default global.native_histograms
    headers: tuple[tuple[str, Secret], ...] = ()
    basic_auth: BasicAuth | None = None
    bearer_token: Secret | None = None
    bearer_token_file: Path | None = None
    tls: TLSConfig = field(default_factory=TLSConfig)
    profiles: ProfilesConfig = field(default_factory=ProfilesConfig)
    cgroup: Path | None = None
    """The memory cgroup directory of the target's container (v1 or v2), read each scrape."""
    # Connect only to these addresses (already approved, e.g. by /probe's allow-list) rather
    # than resolving the URL's host; never read from a config file.
    addresses: tuple[str, ...] = ()

    @property
    def metrics_url(self) -> str:
        return self.url.rstrip("/") + self.metrics_path

    def pprof_url(self, name: str) -> str:
        """Return the URL of one pprof endpoint (``heap``, ``goroutine``, ...)."""
        return self.url.rstrip("/") + self.pprof_path.rstrip("/") + "/" + name


_TARGET_KEYS = (
    "name",
    "url",
    "metrics_path",
    "pprof_path",
    "interval",
    "timeout",
    "body_size_limit",
    "native_histograms",
    "headers",
    "basic_auth",
    "bearer_token",
    "bearer_token_file",
    "tls",
    "profiles",
    "cgroup",
)
_BASIC_AUTH_KEYS = ("username", "password", "password_file")
_TLS_KEYS = ("ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify")
_PROFILE_KEYS = (
    "enabled",
    "interval",
    "timeout",
    "heap",
    "goroutine",
    "goroutine_full_max",
    "goroutineleak",
)
# Headers that cardguard sets itself; overriding them would break size limits or negotiation.
_RESERVED_HEADERS = {"accept-encoding", "content-length", "host", "transfer-encoding"}
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_HOST_RE = re.compile(r"^[\w.-]+$")  # a DNS name or IPv4 address (IPv6 is checked apart)
_BRACKETED_RE = re.compile(r"^\[[^\[\]]+\](?::[0-9]*)?$")  # [IPv6] or [IPv6]:port


def check_url(ctx: Ctx, node: Node | None, path: str, url: str) -> bool:
    """Check a base URL as it is loaded, so a typo is a config error, not a fetch-time crash.

    It must be http(s) with a host and a valid port, parse with ``urlsplit`` (IPv6
    addresses in balanced brackets) and carry no credentials, query or fragment.
    """
    # A URL with credentials is never echoed: the message would carry them.
    shown = "(not shown: it may hold credentials)" if "@" in url else yamlfile.clip(repr(url))
    if any(c.isspace() or not c.isprintable() for c in url):
        ctx.error(node, path, f"URL must not contain spaces or control characters, got {shown}")
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        if url.count("[") != url.count("]"):
            reason = "IPv6 addresses go in balanced brackets, like http://[::1]:8080"
        elif "[" in url:
            reason = "what is in brackets is not an IPv6 address"
        else:
            reason = "cannot be parsed"
        ctx.error(node, path, f"invalid URL {shown}: {reason}")
        return False
    if parts.scheme not in ("http", "https"):
        ctx.error(node, path, f"expected an http:// or https:// URL, got {shown}")
        return False
    host = parts.hostname
    if not host:
        ctx.error(node, path, "URL has no host")
        return False
    if parts.username is not None or parts.password is not None:
        ctx.error(node, path, "credentials in the URL are not allowed; use basic_auth")
        return False
    if parts.query or parts.fragment:
        ctx.error(node, path, "the base URL must not have a query or fragment")
        return False
    bracketed = "[" in parts.netloc
    if bracketed and not _BRACKETED_RE.match(parts.netloc):
        ctx.error(node, path, f"invalid URL {shown}: only a :port may follow ']'")
        return False
    try:
        port = parts.port
        if bracketed:
            ipaddress.IPv6Address(host)
    except ValueError:
        what = "IPv6 address" if bracketed and parts.netloc.endswith("]") else "port"
        ctx.error(node, path, f"invalid {what} in {shown}")
        return False
    if port == 0:
        ctx.error(node, path, f"invalid port in {shown}")
        return False
    if not bracketed and not _HOST_RE.match(host):
        ctx.error(node, path, f"invalid host in {shown}")
        return False
    return True


def cgroup_dir(ctx: Ctx) -> Callable[[Node, str], Path | None]:
    """A reader for ``cgroup``: an absolute directory (it may appear only later, with the
    container; a missing or unreadable one is reported at each read, not at load)."""

    def convert(node: Node, path: str) -> Path | None:
        text = ctx.string(node, path)
        if text is None:
            return None
        if not text.startswith("/") or "\0" in text:
            ctx.error(node, path, f"use an absolute directory (/sys/fs/cgroup/...), got {text!r}")
            return None
        return Path(text)

    return convert


def url_path(ctx: Ctx) -> Callable[[Node, str], str | None]:
    """A reader for a URL path such as ``metrics_path``: it must start with ``/``."""

    def convert(node: Node, path: str) -> str | None:
        text = ctx.string(node, path)
        if text is not None and not text.startswith("/"):
            ctx.error(node, path, f"must start with '/', got {text!r}")
            return None
        return text

    return convert


def _load_headers(ctx: Ctx, node: Node | None, path: str) -> tuple[tuple[str, Secret], ...]:
    sec = None
    if node is not None and not is_null(node):
        if not isinstance(node, MappingNode):
            ctx.error(
                node, path, f"expected a mapping of header names to values, got {describe(node)}"
            )
            return ()
        names = [str(k.value) for k, _ in node.value if isinstance(k, ScalarNode)]
        sec = ctx.section(node, path, names)
    if sec is None:
        return ()
    out = []
    for name, (knode, vnode) in sec.items.items():
        hpath = join(path, name)
        if not _HEADER_NAME_RE.match(name):
            ctx.error(knode, hpath, "not a valid HTTP header name")
            continue
        if name.lower() in _RESERVED_HEADERS:
            ctx.error(knode, hpath, "cardguard sets this header itself")
            continue
        value = ctx.string(vnode, hpath)
        if value is not None:
            if "\n" in value or "\r" in value:
                ctx.error(vnode, hpath, "header values must be a single line")
                continue
            out.append((name, Secret(value)))
    return tuple(out)


def load_basic_auth(ctx: Ctx, node: Node, path: str) -> BasicAuth | None:
    sec = ctx.section(node, path, _BASIC_AUTH_KEYS)
    if sec is None:
        return None
    username = sec.required("username", ctx.string)
    password = sec.optional("password", ctx.string)
    password_file = sec.optional("password_file", ctx.file)
    if sec.has("password") and sec.has("password_file"):
        ctx.error(sec.node, path, "set only one of password and password_file")
    if not sec.has("password") and not sec.has("password_file"):
        ctx.error(sec.node, path, "one of password or password_file is required")
    if username is None:
        return None
    return BasicAuth(
        username=username,
        password=Secret(password) if password is not None else None,
        password_file=password_file,
    )


def load_tls(ctx: Ctx, node: Node | None, path: str) -> TLSConfig:
    sec = ctx.section(node, path, _TLS_KEYS)
    if sec is None:
        return TLSConfig()
    tls = TLSConfig(
        ca_file=sec.optional("ca_file", ctx.file),
        cert_file=sec.optional("cert_file", ctx.file),
        key_file=sec.optional("key_file", ctx.file),
        server_name=sec.optional("server_name", ctx.string),
        insecure_skip_verify=sec.get("insecure_skip_verify", ctx.boolean, False),
    )
    if sec.has("cert_file") != sec.has("key_file"):
        ctx.error(sec.node, path, "cert_file and key_file must be given together")
    return tls


def load_profiles(ctx: Ctx, node: Node | None, path: str, timeout: float) -> ProfilesConfig:
    d = ProfilesConfig()
    sec = ctx.section(node, path, _PROFILE_KEYS)
    if sec is None:
        return d

    def leak_mode(node: Node, kpath: str) -> str | None:
        # YAML reads bare true/false as booleans; they name the matching mode.
        value = value_of(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool):
            return "true" if value else "false"
        return ctx.choice(node, kpath, GOROUTINELEAK_MODES)

    p = ProfilesConfig(
        enabled=sec.get("enabled", ctx.boolean, d.enabled),
        interval=sec.get("interval", ctx.duration, d.interval),
        timeout=sec.get("timeout", ctx.duration, timeout),
        heap=sec.get("heap", ctx.boolean, d.heap),
        goroutine=sec.get("goroutine", ctx.boolean, d.goroutine),
        goroutine_full_max=sec.get("goroutine_full_max", ctx.integer, d.goroutine_full_max),
        goroutineleak=sec.get("goroutineleak", leak_mode, d.goroutineleak),
    )
    if p.timeout is not None and p.timeout > p.interval and sec.has("timeout"):
        ctx.error(
            sec.value_node("timeout"),
            join(path, "timeout"),
            f"must not exceed {join(path, 'interval')} ({format_duration(p.interval)})",
        )
    return p


def load_target(ctx: Ctx, node: Node, path: str, base: TargetConfig) -> TargetConfig | None:
    """Read one target; what it does not set comes from ``base`` (the ``global:`` values).

    Returns None when the name or URL is missing or wrong (the problem recorded).
    """
    sec = ctx.section(node, path, _TARGET_KEYS)
    if sec is None:
        return None
    name = sec.required("name", ctx.string)
    if name is not None and not NAME_RE.match(name):
        ctx.error(
            sec.value_node("name"),
            join(path, "name"),
            f"use 1-64 characters from A-Z a-z 0-9 _ . : -, got {name!r}",
        )
    url = sec.required("url", ctx.string)
    if url is not None and not check_url(ctx, sec.value_node("url"), join(path, "url"), url):
        url = None
    interval = sec.get("interval", ctx.duration, base.interval)
    timeout = sec.get("timeout", ctx.duration, min(base.timeout, interval))
    if timeout > interval and (sec.has("timeout") or sec.has("interval")):
        where = sec.value_node("timeout") or sec.value_node("interval")
        ctx.error(
            where,
            join(path, "timeout"),
            f"timeout {format_duration(timeout)} must not exceed interval "
            f"{format_duration(interval)}",
        )
    basic_auth_node = sec.value_node("basic_auth")
    basic_auth = (
        load_basic_auth(ctx, basic_auth_node, join(path, "basic_auth"))
        if basic_auth_node is not None and not is_null(basic_auth_node)
        else None
    )
    bearer = sec.optional("bearer_token", ctx.string)
    bearer_file = sec.optional("bearer_token_file", ctx.file)
    n_auth = sum(1 for k in ("basic_auth", "bearer_token", "bearer_token_file") if sec.has(k))
    if n_auth > 1:
        ctx.error(sec.node, path, "set only one of basic_auth, bearer_token and bearer_token_file")
    tls = load_tls(ctx, sec.value_node("tls"), join(path, "tls"))
    if url is not None and urlsplit(url).scheme == "http" and sec.has("tls"):
        ctx.error(sec.value_node("tls"), join(path, "tls"), "tls is set but the url is http://")
    profiles = load_profiles(ctx, sec.value_node("profiles"), join(path, "profiles"), timeout)
    metrics_path = sec.get("metrics_path", url_path(ctx), "/metrics")
    pprof_path = sec.get("pprof_path", url_path(ctx), "/debug/pprof")
    headers = _load_headers(ctx, sec.value_node("headers"), join(path, "headers"))
    body_size_limit = sec.get("body_size_limit", ctx.size, base.body_size_limit)
    cgroup = sec.optional("cgroup", cgroup_dir(ctx))
    if name is None or url is None:
        return None
    return TargetConfig(
        name=name,
        url=url.rstrip("/"),
        metrics_path=metrics_path,
        pprof_path=pprof_path,
        interval=interval,
        timeout=timeout,
        body_size_limit=body_size_limit,
        native_histograms=sec.get("native_histograms", ctx.boolean, base.native_histograms),
        headers=headers,
        basic_auth=basic_auth,
        bearer_token=Secret(bearer) if bearer is not None else None,
        bearer_token_file=bearer_file,
        tls=tls,
        profiles=profiles,
        cgroup=cgroup,
    )
