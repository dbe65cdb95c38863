"""YAML configuration loaded into typed, frozen dataclasses, every error with file:line.

The loader works on PyYAML's node graph (``yaml.compose``) rather than on plain
Python objects, so each value still knows the line it came from.  Validation
never stops at the first problem: a :class:`Ctx` collects every problem as
``file:line: path: message`` and :func:`parse_config` raises one
:class:`~cardguard.errors.ConfigError` carrying all of them.

Defaults live in one place: the dataclass field defaults below (target-level
values that default to a ``global`` value are filled in by :func:`parse_config`).

The ``rules`` section belongs to :mod:`cardguard.settings.rules`: ``load_rules(node, ctx)``
is called with the section's node (``None`` when absent: the defaults) and the
same :class:`Ctx`, so its problems are reported together with ours.  The
result is passed through untouched as :attr:`Config.rules`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from cardguard.errors import ConfigError
from cardguard.quantities import format_duration, parse_duration, parse_size
from cardguard.settings import yamlfile
from cardguard.settings.rules import DEFAULT_RULES, Rules, load_rules

if TYPE_CHECKING:
    from cardguard.settings.fleet import FleetServer
    from cardguard.settings.probe import ProbeConfig
    from cardguard.settings.usagefiles import UsageConfig

T = TypeVar("T")

# ---------------------------------------------------------------------------
# Value types


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


# ---------------------------------------------------------------------------
# Config objects (defaults live here and only here)


@dataclass(frozen=True)
class Caps:
    """Per-target caps on cardguard's own output; entries past a cap fold into ``__other__``."""

    families: int = 200
    labels: int = 500
    heap_owners: int = 30
    goroutine_groups: int = 30
    offenders: int = 50


@dataclass(frozen=True)
class Thresholds:
    """When a family or label becomes visible in cardguard's output (sticky afterwards)."""

    min_family_series: int = 100
    min_label_values: int = 50
    min_heap_owner_share: float = 0.01
    """A function shows once its flat in-use bytes reach this share of the heap."""
    min_goroutine_group: int = 10
    """A goroutine group shows once it holds this many goroutines (leaked ones always show)."""


@dataclass(frozen=True)
class GlobalConfig:
    """The ``global`` section: defaults for every target and the output bounds."""

    scrape_interval: float = 30.0
    scrape_timeout: float = 10.0
    body_size_limit: int = 64 * 1024 * 1024
    exact_count_cap: int = 10_000
    native_histograms: bool = False
    """Ask for protobuf first and count native histograms, as Prometheus with them on."""
    grafana_url: str | None = None
    """Grafana that /report links to (the cardguard / Target dashboard per target)."""
    caps: Caps = field(default_factory=Caps)
    thresholds: Thresholds = field(default_factory=Thresholds)


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
    # Connect only to these addresses (already approved, e.g. by /probe's allow-list) rather
    # than resolving the URL's host; never read from a config file.
    addresses: tuple[str, ...] = ()

    @property
    def metrics_url(self) -> str:
        return self.url.rstrip("/") + self.metrics_path

    def pprof_url(self, name: str) -> str:
        """Return the URL of one pprof endpoint (``heap``, ``goroutine``, ...)."""
        return self.url.rstrip("/") + self.pprof_path.rstrip("/") + "/" + name


@dataclass(frozen=True)
class TargetFiles:
    """``target_files``: Prometheus file_sd files listing more targets, re-read when they change.

    ``patterns`` are globs (relative ones against the config file's directory);
    every target found gets ``template``'s settings (``target_defaults:``, else
    the ``global:`` ones) with its own name and URL (:mod:`cardguard.settings.file_sd`).
    """

    patterns: tuple[str, ...]
    template: TargetConfig


@dataclass(frozen=True)
class Config:
    """A whole validated configuration file."""

    source: str
    global_: GlobalConfig
    targets: tuple[TargetConfig, ...]
    rules: Rules = DEFAULT_RULES
    probe: ProbeConfig | None = None  # the ``probe:`` section, owned by cardguard.settings.probe
    fleet: tuple[FleetServer, ...] = ()  # the ``fleet:`` section, owned by cardguard.settings.fleet
    usage: UsageConfig | None = (
        None  # the ``usage:`` section, owned by cardguard.settings.usagefiles
    )
    target_files: TargetFiles | None = None  # read at run time by cardguard.run.targetfiles

    def target(self, name: str) -> TargetConfig | None:
        for t in self.targets:
            if t.name == name:
                return t
        return None


# ---------------------------------------------------------------------------
# Line-tracking validation helpers (reused by cardguard.settings.rules)


def _describe(node: Node) -> str:
    if isinstance(node, ScalarNode):
        if node.tag.endswith(":null"):
            return "null"
        if node.tag.endswith(":str"):
            return yamlfile.clip(repr(node.value))
        return yamlfile.clip(str(node.value))
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "an unknown node"


# The largest integer, size or duration (in seconds) a config value may hold: far above
# anything sensible, and small enough for every C API and float it reaches.
MAX_INT = 2**53
MAX_DURATION = 10 * 365 * 86400.0
_MAX_DURATION_TEXT = "10y"
_INVALID = object()
_DIGITS_RE = re.compile(r"^[-+]?[0-9_]+$")


def _scalar(node: ScalarNode) -> Any:
    """Return the scalar as YAML 1.1 reads it, or ``_INVALID`` when its text does not fit its tag.

    ``!!int abc``, ``!!bool maybe`` and 5,000-digit integers raise inside PyYAML's
    constructor (ValueError, KeyError, ...); here they are just invalid values. A
    fresh constructor per call: a shared one caches every node it ever saw.
    """
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return _INVALID


class Ctx:
    """Collects problems as ``file:line: path: message`` while a config is validated."""

    def __init__(self, source: str, base_dir: Path | None = None) -> None:
        self.source = source
        self.base_dir = base_dir if base_dir is not None else Path.cwd()
        self.problems: list[str] = []

    def error(self, node: Node | None, path: str, message: str) -> None:
        """Record one problem at ``node``'s line (or without a line when node is None)."""
        self.problems.append(yamlfile.problem(self.source, node, path, message))

    def section(self, node: Node | None, path: str, keys: Iterable[str]) -> Section | None:
        """Check that ``node`` is a mapping with only ``keys``; None after recording a problem.

        A null node (the key present with no value) reads as an empty section.
        """
        if node is None or _is_null(node):
            return Section(self, path, {}, node)
        if not isinstance(node, MappingNode):
            self.error(node, path, f"expected a mapping, got {_describe(node)}")
            return None
        allowed = set(keys)
        items: dict[str, tuple[Node, Node]] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                self.error(knode, path, "keys must be strings")
                continue
            key = str(knode.value)
            kpath = join(path, yamlfile.clip(key))
            if key in items:
                first = items[key][0].start_mark.line + 1
                self.error(knode, kpath, f"duplicate key (first given on line {first})")
                continue
            if key not in allowed:
                hint = _closest(key, allowed)
                extra = f"; did you mean {hint!r}?" if hint else ""
                self.error(knode, kpath, f"unknown key{extra}")
                continue
            items[key] = (knode, vnode)
        return Section(self, path, items, node)

    def sequence(self, node: Node | None, path: str) -> list[Node]:
        """Return the items of a list node; [] after recording a problem when it is not a list."""
        if node is None or _is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            self.error(node, path, f"expected a list, got {_describe(node)}")
            return []
        return list(node.value)

    # Scalar converters: each returns None after recording a problem.

    def string(self, node: Node, path: str) -> str | None:
        if isinstance(node, ScalarNode) and node.tag.endswith(":str") and node.value != "":
            return str(node.value)
        if isinstance(node, ScalarNode) and node.tag.endswith((":int", ":float", ":bool")):
            return str(node.value)  # a number where a string is expected is still text
        self.error(node, path, f"expected a non-empty string, got {_describe(node)}")
        return None

    def boolean(self, node: Node, path: str) -> bool | None:
        if isinstance(node, ScalarNode) and node.tag.endswith(":bool"):
            value = _scalar(node)
            if isinstance(value, bool):
                return value
        self.error(node, path, f"expected true or false, got {_describe(node)}")
        return None

    def integer(self, node: Node, path: str, minimum: int = 0) -> int | None:
        value = _scalar(node) if isinstance(node, ScalarNode) else _INVALID
        if value is _INVALID and node.tag.endswith(":int") and _DIGITS_RE.match(node.value):
            # More digits than int() takes: certainly out of range, on the side of its sign.
            value = -(MAX_INT + 1) if node.value.startswith("-") else MAX_INT + 1
        if not isinstance(value, int) or isinstance(value, bool) or not node.tag.endswith(":int"):
            self.error(node, path, f"expected an integer, got {_describe(node)}")
            return None
        if value < minimum:
            self.error(node, path, f"must be at least {minimum}, got {_describe(node)}")
            return None
        if value > MAX_INT:
            self.error(node, path, f"must be at most {MAX_INT}, got {_describe(node)}")
            return None
        return value

    def number(self, node: Node, path: str, minimum: float = 0.0) -> float | None:
        ok = isinstance(node, ScalarNode) and node.tag.endswith((":int", ":float"))
        value = _scalar(node) if ok and isinstance(node, ScalarNode) else _INVALID
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
            self.error(node, path, f"expected a number, got {_describe(node)}")
            return None
        if value < minimum:
            self.error(node, path, f"must be at least {minimum:g}, got {_describe(node)}")
            return None
        if value > MAX_INT:  # also .inf, and ints too large for a float
            self.error(node, path, f"must be at most {MAX_INT}, got {_describe(node)}")
            return None
        return float(value)

    def duration(self, node: Node, path: str) -> float | None:
        value = parse_duration(str(node.value)) if isinstance(node, ScalarNode) else None
        if value is None:
            self.error(node, path, f"expected a duration like 30s, got {_describe(node)}")
            return None
        if value <= 0:
            self.error(node, path, f"must be longer than 0s, got {node.value!r}")
            return None
        if value > MAX_DURATION:
            self.error(node, path, f"must be at most {_MAX_DURATION_TEXT}, got {_describe(node)}")
            return None
        return value

    def size(self, node: Node, path: str) -> int | None:
        value = parse_size(str(node.value)) if isinstance(node, ScalarNode) else None
        if value is None or value <= 0:
            self.error(
                node,
                path,
                f"expected a size like 64MiB or a number of bytes, got {_describe(node)}",
            )
            return None
        if value > MAX_INT:
            self.error(node, path, f"must be at most {MAX_INT} bytes, got {_describe(node)}")
            return None
        return value

    def choice(self, node: Node, path: str, choices: Iterable[str]) -> str | None:
        options = tuple(choices)
        if isinstance(node, ScalarNode) and str(node.value) in options:
            return str(node.value)
        self.error(node, path, f"expected one of {', '.join(options)}, got {_describe(node)}")
        return None

    def file(self, node: Node, path: str) -> Path | None:
        """Return a path resolved against the config file's directory; it must exist."""
        text = self.string(node, path)
        if text is None:
            return None
        p = Path(text)
        if not p.is_absolute():
            p = self.base_dir / p
        try:
            found = p.is_file()
        except (OSError, ValueError):  # a name too long for the OS, or with a NUL in it
            found = False
        if not found:
            self.error(node, path, f"file not found: {yamlfile.clip(text)}")
            return None
        return p


def join(path: str, key: str | int) -> str:
    """Extend a config path: ``join("targets", 2)`` -> ``targets[2]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag.endswith(":null")


def _closest(key: str, allowed: set[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.75)
    return found[0] if found else None


class Section:
    """A validated mapping: typed getters that fall back to a default after a problem."""

    def __init__(
        self, ctx: Ctx, path: str, items: dict[str, tuple[Node, Node]], node: Node | None
    ) -> None:
        self.ctx = ctx
        self.path = path
        self.items = items
        self.node = node

    def has(self, key: str) -> bool:
        return key in self.items

    def value_node(self, key: str) -> Node | None:
        entry = self.items.get(key)
        return entry[1] if entry else None

    def key_path(self, key: str) -> str:
        return join(self.path, key)

    def get(self, key: str, convert: Callable[[Node, str], T | None], default: T) -> T:
        """Convert ``key`` with a Ctx converter; ``default`` when absent, null or invalid."""
        node = self.value_node(key)
        if node is None or _is_null(node):
            return default
        value = convert(node, self.key_path(key))
        return default if value is None else value

    def optional(self, key: str, convert: Callable[[Node, str], T | None]) -> T | None:
        node = self.value_node(key)
        if node is None or _is_null(node):
            return None
        return convert(node, self.key_path(key))

    def required(self, key: str, convert: Callable[[Node, str], T | None]) -> T | None:
        node = self.value_node(key)
        if node is None or _is_null(node):
            self.ctx.error(self.node, self.key_path(key), "required")
            return None
        return convert(node, self.key_path(key))


# ---------------------------------------------------------------------------
# Sections

_TOP_KEYS = (
    "global",
    "targets",
    "target_files",
    "target_defaults",
    "rules",
    "probe",
    "fleet",
    "usage",
)
_GLOBAL_KEYS = (
    "scrape_interval",
    "scrape_timeout",
    "body_size_limit",
    "exact_count_cap",
    "native_histograms",
    "grafana_url",
    "caps",
    "thresholds",
)
_CAPS_KEYS = ("families", "labels", "heap_owners", "goroutine_groups", "offenders")
_THRESHOLD_KEYS = (
    "min_family_series",
    "min_label_values",
    "min_heap_owner_share",
    "min_goroutine_group",
)
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
NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _positive(ctx: Ctx) -> Callable[[Node, str], int | None]:
    return lambda n, p: ctx.integer(n, p, minimum=1)


def _share(ctx: Ctx) -> Callable[[Node, str], float | None]:
    def convert(node: Node, path: str) -> float | None:
        value = ctx.number(node, path)
        if value is not None and value > 1:
            ctx.error(node, path, f"expected a share between 0 and 1, got {node.value}")
            return None
        return value

    return convert


def _load_global(ctx: Ctx, node: Node | None) -> GlobalConfig:
    d = GlobalConfig()
    sec = ctx.section(node, "global", _GLOBAL_KEYS)
    if sec is None:
        return d
    caps_sec = ctx.section(sec.value_node("caps"), "global.caps", _CAPS_KEYS)
    caps = Caps()
    if caps_sec is not None:
        pos = _positive(ctx)
        caps = Caps(
            families=caps_sec.get("families", pos, caps.families),
            labels=caps_sec.get("labels", pos, caps.labels),
            heap_owners=caps_sec.get("heap_owners", pos, caps.heap_owners),
            goroutine_groups=caps_sec.get("goroutine_groups", pos, caps.goroutine_groups),
            offenders=caps_sec.get("offenders", pos, caps.offenders),
        )
    th_sec = ctx.section(sec.value_node("thresholds"), "global.thresholds", _THRESHOLD_KEYS)
    th = Thresholds()
    if th_sec is not None:
        th = Thresholds(
            min_family_series=th_sec.get("min_family_series", ctx.integer, th.min_family_series),
            min_label_values=th_sec.get("min_label_values", ctx.integer, th.min_label_values),
            min_heap_owner_share=th_sec.get(
                "min_heap_owner_share", _share(ctx), th.min_heap_owner_share
            ),
            min_goroutine_group=th_sec.get(
                "min_goroutine_group", _positive(ctx), th.min_goroutine_group
            ),
        )
    g = GlobalConfig(
        scrape_interval=sec.get("scrape_interval", ctx.duration, d.scrape_interval),
        scrape_timeout=sec.get("scrape_timeout", ctx.duration, d.scrape_timeout),
        body_size_limit=sec.get("body_size_limit", ctx.size, d.body_size_limit),
        exact_count_cap=sec.get("exact_count_cap", _positive(ctx), d.exact_count_cap),
        native_histograms=sec.get("native_histograms", ctx.boolean, d.native_histograms),
        grafana_url=sec.get("grafana_url", _grafana_url(ctx), d.grafana_url),
        caps=caps,
        thresholds=th,
    )
    if g.scrape_timeout > g.scrape_interval and sec.has("scrape_timeout"):
        ctx.error(
            sec.value_node("scrape_timeout"),
            "global.scrape_timeout",
            f"must not exceed global.scrape_interval ({format_duration(g.scrape_interval)})",
        )
    return g


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


def _grafana_url(ctx: Ctx) -> Callable[[Node, str], str | None]:
    """A Grafana base URL: checked like a target URL, but a path (a sub-path install) is fine."""

    def convert(node: Node, path: str) -> str | None:
        text = ctx.string(node, path)
        if text is None or not check_url(ctx, node, path, text):
            return None
        return text.rstrip("/")

    return convert


def url_path(ctx: Ctx) -> Callable[[Node, str], str | None]:
    def convert(node: Node, path: str) -> str | None:
        text = ctx.string(node, path)
        if text is not None and not text.startswith("/"):
            ctx.error(node, path, f"must start with '/', got {text!r}")
            return None
        return text

    return convert


def _load_headers(ctx: Ctx, node: Node | None, path: str) -> tuple[tuple[str, Secret], ...]:
    sec = None
    if node is not None and not _is_null(node):
        if not isinstance(node, MappingNode):
            ctx.error(
                node, path, f"expected a mapping of header names to values, got {_describe(node)}"
            )
            return ()
        names = [str(k.value) for k, _ in node.value if isinstance(k, ScalarNode)]
        sec = ctx.section(node, path, names)
    if sec is None:
        return ()
    out = []
    for name, (knode, vnode) in sec.items.items():
        hpath = join(path, name)
        if not re.match(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", name):
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
        value = _scalar(node) if isinstance(node, ScalarNode) else _INVALID
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


def _load_target(ctx: Ctx, node: Node, path: str, g: GlobalConfig) -> TargetConfig | None:
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
    interval = sec.get("interval", ctx.duration, g.scrape_interval)
    timeout = sec.get("timeout", ctx.duration, min(g.scrape_timeout, interval))
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
        if basic_auth_node is not None and not _is_null(basic_auth_node)
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
    body_size_limit = sec.get("body_size_limit", ctx.size, g.body_size_limit)
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
        native_histograms=sec.get("native_histograms", ctx.boolean, g.native_histograms),
        headers=headers,
        basic_auth=basic_auth,
        bearer_token=Secret(bearer) if bearer is not None else None,
        bearer_token_file=bearer_file,
        tls=tls,
        profiles=profiles,
    )


def _load_target_files(ctx: Ctx, top: Section, g: GlobalConfig) -> TargetFiles | None:
    """``target_files`` (a list of globs) and ``target_defaults`` (a target without name/url)."""
    patterns = []
    fnode = top.value_node("target_files")
    for i, item in enumerate(ctx.sequence(fnode, "target_files")):
        text = ctx.string(item, join("target_files", i))
        if text is not None:
            patterns.append(text if Path(text).is_absolute() else str(ctx.base_dir / text))
    dnode = top.value_node("target_defaults")
    template = TargetConfig(name="target_defaults", url="http://target-defaults.invalid")
    if dnode is not None and not _is_null(dnode):
        if isinstance(dnode, MappingNode):
            for knode, _ in dnode.value:
                if isinstance(knode, ScalarNode) and knode.value in ("name", "url"):
                    ctx.error(
                        knode,
                        join("target_defaults", str(knode.value)),
                        "set per target by the target files, not here",
                    )
            # Validated as a target, with placeholders for what each file target sets.
            mark = dnode.start_mark
            placeholders = [
                (
                    ScalarNode("tag:yaml.org,2002:str", k, mark, mark),
                    ScalarNode("tag:yaml.org,2002:str", v, mark, mark),
                )
                for k, v in (("name", template.name), ("url", "https://target-defaults.invalid"))
            ]
            kept = [
                (k, v)
                for k, v in dnode.value
                if not (isinstance(k, ScalarNode) and k.value in ("name", "url"))
            ]
            node = MappingNode(dnode.tag, placeholders + kept, mark, dnode.end_mark)
            loaded = _load_target(ctx, node, "target_defaults", g)
            if loaded is not None:
                template = loaded
        else:
            ctx.error(dnode, "target_defaults", f"expected a mapping, got {_describe(dnode)}")
    else:
        # No target_defaults: a target with only a name and URL, so the global defaults apply
        # exactly as they do to a configured target.
        mark = top.node.start_mark if top.node is not None else None
        bare = [
            (
                ScalarNode("tag:yaml.org,2002:str", k, mark, mark),
                ScalarNode("tag:yaml.org,2002:str", v, mark, mark),
            )
            for k, v in (("name", template.name), ("url", template.url))
        ]
        loaded = _load_target(ctx, MappingNode("tag:yaml.org,2002:map", bare, mark, mark), "", g)
        template = loaded if loaded is not None else template
    if fnode is None:
        if dnode is not None:
            ctx.error(dnode, "target_defaults", "applies to target_files, which is not set")
        return None
    return TargetFiles(tuple(patterns), template)


def parse_config(text: str, source: str, base_dir: Path | None = None) -> Config:
    """Parse and validate config ``text``; ``source`` names it in every message.

    Raises:
        ConfigError: with every problem found, each as ``source:line: path: message``
            (the first :data:`~cardguard.settings.yamlfile.MAX_PROBLEMS` of them), and for any
            text that is not a valid config: bad YAML, too deep, too large, wrong types.
    """
    ctx = Ctx(source, base_dir)
    root = yamlfile.compose(text, source)
    if root is None:
        raise ConfigError(source, [f"{source}: the file is empty; at least targets is required"])
    top = ctx.section(root, "", _TOP_KEYS)
    if top is None:
        raise ConfigError(source, yamlfile.limited(source, ctx.problems))
    g = _load_global(ctx, top.value_node("global"))
    targets: list[TargetConfig] = []
    seen: dict[str, int] = {}
    tnode = top.value_node("targets")
    if tnode is None and not any(top.has(k) for k in ("probe", "fleet", "target_files")):
        ctx.error(
            root, "targets", "required (or target_files, or a probe section for /probe-only use)"
        )
    for i, item in enumerate(ctx.sequence(tnode, "targets")):
        t = _load_target(ctx, item, join("targets", i), g)
        if t is None:
            continue
        if t.name in seen:
            ctx.error(
                item,
                join(join("targets", i), "name"),
                f"duplicate target name {t.name!r} (also targets[{seen[t.name]}])",
            )
            continue
        seen[t.name] = i
        targets.append(t)
    target_files = _load_target_files(ctx, top, g)
    rules = load_rules(top.value_node("rules"), ctx)
    probe = None
    if top.has("probe"):
        # Imported here: cardguard.settings.probe builds on this module's helpers.
        from cardguard.settings.probe import load_probe_config

        probe = load_probe_config(top.value_node("probe"), ctx)
    fleet: tuple[FleetServer, ...] = ()
    if top.has("fleet"):
        from cardguard.settings.fleet import load_fleet_config  # same reason as probe above

        fleet = load_fleet_config(top.value_node("fleet"), ctx)
    usage = None
    if top.has("usage"):
        from cardguard.settings.usagefiles import load_usage_config  # same reason as probe above

        usage = load_usage_config(top.value_node("usage"), ctx)
    if ctx.problems:
        raise ConfigError(source, yamlfile.limited(source, ctx.problems))
    return Config(
        source=source,
        global_=g,
        targets=tuple(targets),
        rules=rules,
        probe=probe,
        fleet=fleet,
        usage=usage,
        target_files=target_files,
    )


def load_config(path: str | Path) -> Config:
    """Read and validate the config file at ``path``.

    Relative file paths inside the config (CA files, password files) are
    resolved against the config file's directory.
    """
    p = Path(path)
    text = yamlfile.read(p, str(path))
    return parse_config(text, str(path), base_dir=p.resolve().parent)
