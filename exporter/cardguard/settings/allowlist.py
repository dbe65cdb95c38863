"""Allow-lists for ``/probe`` targets: host names, globs, CIDRs and file_sd entries.

Pure: this module does no I/O. Name resolution is passed in as a callable so
that the decision can be tested with a real resolver or a fixed table, and the
file_sd file is passed in as text by the caller that watches it.

Deny by default: an empty allow-list refuses every target. A target is allowed
when its host (and port, where the entry names one) matches a host entry, a
glob or a file_sd target; otherwise every address the host resolves to must
fall inside an allowed CIDR, so a name that resolves to a forbidden address
(DNS pointing at a metadata service, say) is refused.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from cardguard.errors import ConfigError
from cardguard.settings import file_sd

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

# The fixed set of refusal reasons: the label values of cardguard_probe_refused_total.
REASONS = (
    "missing_target",
    "invalid_target",
    "scheme",
    "userinfo",
    "not_allowed",
    "dns",
    "address_not_allowed",
)

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class HostRule:
    """One host entry: an exact name or a glob, with an optional port (None means any)."""

    pattern: str
    port: int | None = None
    glob: bool = False

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.glob:
            return fnmatch.fnmatchcase(host, self.pattern)
        return host == self.pattern


@dataclass(frozen=True)
class AllowList:
    """Where ``/probe`` may go. Empty means nothing is allowed."""

    hosts: tuple[HostRule, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    file_sd: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        return not (self.hosts or self.networks or self.file_sd)

    def with_file_sd(self, targets: frozenset[tuple[str, int]]) -> AllowList:
        return AllowList(hosts=self.hosts, networks=self.networks, file_sd=targets)


@dataclass(frozen=True)
class Target:
    """A target URL that passed the checks, split into the parts the fetcher needs."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """Why a target was refused; ``reason`` is one of REASONS."""

    reason: str
    message: str


def _split_host_port(entry: str) -> tuple[str, int | None]:
    """Split ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0:
            raise ValueError("unclosed '['")
        host, rest = entry[1:end], entry[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError("expected ':port' after ']'")
        return host, _port(rest[1:])
    if entry.count(":") > 1:  # a bare IPv6 address
        return entry, None
    host, sep, port = entry.partition(":")
    return host, (_port(port) if sep else None)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"invalid port {text!r}")
    return int(text)


def _norm_host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def build(entries: Iterable[str], source: str = "allow-list") -> AllowList:
    """Build an AllowList from entries like ``host``, ``host:9100``, ``*.svc:8080``, ``10.0.0.0/8``.

    Raise ConfigError naming every bad entry.
    """
    hosts: list[HostRule] = []
    networks: list[IPNetwork] = []
    problems: list[str] = []
    for i, raw in enumerate(entries):
        entry = raw.strip()
        if not entry:
            problems.append(f"{source}[{i}]: empty entry")
            continue
        if "/" in entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError as exc:
                problems.append(f"{source}[{i}]: invalid CIDR {entry!r}: {exc}")
            continue
        try:
            host, port = _split_host_port(entry)
        except ValueError as exc:
            problems.append(f"{source}[{i}]: invalid host entry {entry!r}: {exc}")
            continue
        if not host:
            problems.append(f"{source}[{i}]: invalid host entry {entry!r}: no host")
            continue
        glob = any(c in host for c in "*?[")
        hosts.append(HostRule(pattern=_norm_host(host), port=port, glob=glob))
    if problems:
        raise ConfigError(source, problems)
    return AllowList(hosts=tuple(hosts), networks=tuple(networks))


def parse_file_sd(text: str, source: str) -> frozenset[tuple[str, int]]:
    """Parse a Prometheus file_sd file (JSON or YAML) into its ``(host, port)`` targets.

    The file is read by :func:`cardguard.settings.file_sd.parse`, the one reader of the
    format (bounded YAML, every problem named). Entries without a port get
    port 80, as Prometheus' default for http.
    """
    out: set[tuple[str, int]] = set()
    problems: list[str] = []
    for i, group in enumerate(file_sd.parse(text, source)):
        for j, t in enumerate(group.targets):
            try:
                host, port = _split_host_port(t)
                if not host:
                    raise ValueError("no host")
            except ValueError as exc:
                problems.append(f"{source}: [{i}].targets[{j}]: invalid target {t!r}: {exc}")
                continue
            out.add((_norm_host(host), port if port is not None else DEFAULT_PORTS["http"]))
    if problems:
        raise ConfigError(source, problems)
    return frozenset(out)


def parse_target(raw: str | None) -> SplitResult | Refusal:
    """Split a ``/probe`` target (``host:port`` or an http(s) URL) or say why it is refused."""
    if raw is None or not raw.strip():
        return Refusal("missing_target", "the 'target' parameter is missing or empty")
    raw = raw.strip()
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in raw):
        return Refusal("invalid_target", "target contains whitespace or control characters")
    if "://" not in raw:
        # blackbox-style 'host:port'; anything with another scheme still fails below.
        if raw.split(":", 1)[0].isalpha() and ":" in raw and not raw.split(":", 1)[1][:1].isdigit():
            scheme = raw.split(":", 1)[0]
            return Refusal("scheme", f"scheme {scheme!r} is not allowed (http, https)")
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        return Refusal("invalid_target", f"cannot parse target: {exc}")
    if parts.scheme.lower() not in SCHEMES:
        return Refusal("scheme", f"scheme {parts.scheme!r} is not allowed (http, https)")
    if "@" in parts.netloc:
        return Refusal("userinfo", "credentials in the target URL are not allowed")
    if not parts.hostname:
        return Refusal("invalid_target", "target has no host")
    return parts


def check(allow: AllowList, raw: str | None, resolve: Resolver) -> Target | Refusal:
    """Decide whether ``/probe`` may fetch ``raw``.

    ``resolve(host, port)`` returns the host's addresses as strings and raises
    OSError when the name does not resolve.
    """
    parts = parse_target(raw)
    if isinstance(parts, Refusal):
        return parts
    scheme = parts.scheme.lower()
    host = _norm_host(parts.hostname or "")
    port = parts.port if parts.port is not None else DEFAULT_PORTS[scheme]
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = f"{scheme}://{netloc}{parts.path.rstrip('/')}"
    if allow.empty:
        return Refusal("not_allowed", "no allow-list is configured, so /probe refuses every target")
    named = (host, port) in allow.file_sd or any(r.matches(host, port) for r in allow.hosts)
    literal: IPAddress | None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if named:
        return Target(url=url, scheme=scheme, host=host, port=port)
    if not allow.networks:
        return Refusal("not_allowed", f"{netloc} is not in the allow-list")
    if literal is not None:
        addresses: Sequence[str] = [str(literal)]
    else:
        try:
            addresses = resolve(host, port)
        except OSError as exc:
            return Refusal("dns", f"cannot resolve {host}: {exc.strerror or exc}")
        if not addresses:
            return Refusal("dns", f"{host} resolves to no address")
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a.split("%", 1)[0])
        except ValueError:
            return Refusal("address_not_allowed", f"{host} resolves to an unusable address {a!r}")
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not any(ip.version == n.version and ip in n for n in allow.networks):
            what = host if literal is not None else f"{host} resolves to {ip}, which"
            return Refusal("address_not_allowed", f"{what} is outside the allowed networks")
    return Target(url=url, scheme=scheme, host=host, port=port, addresses=tuple(addresses))
