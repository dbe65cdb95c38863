"""The exporter-toolkit web config file (``--web.config.file``): TLS, basic auth, headers.

The file format is the one Prometheus exporters share (prometheus/exporter-toolkit
``web-config.yml``)::

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12
    http_server_config:
      headers:
        X-Frame-Options: deny
    basic_auth_users:
      alice: $2b$12$...            # bcrypt hash

Loading is pure apart from reading the one YAML file; building the
``ssl.SSLContext`` reads the certificate files it names. Relative paths are
resolved against the directory of the web config file, as the toolkit does.
Every problem is reported at once with ``file:line``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from cardguard.errors import ConfigError

# Go's tls.ClientAuthType names. Python's ssl module always verifies a client
# certificate it asks for, so the two "request but do not verify" modes cannot
# be honoured and are refused rather than silently weakened or strengthened.
CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode | None] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    "RequestClientCert": None,
    "RequireAnyClientCert": None,
}

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go crypto/tls cipher suite names (TLS 1.0-1.2; TLS 1.3 suites are not
# configurable in Go either) and their OpenSSL spelling.
CIPHER_SUITES: Mapping[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}

CURVES: Mapping[str, str] = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}

# The toolkit only lets these response headers be set, and pins some values.
ALLOWED_HEADERS: Mapping[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}


@dataclass(frozen=True)
class TLSServerConfig:
    """``tls_server_config``: the server certificate and how clients authenticate."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True


@dataclass(frozen=True)
class HTTPServerConfig:
    """``http_server_config``: extra response headers (``http2`` is accepted and ignored)."""

    headers: tuple[tuple[str, str], ...] = ()
    http2: bool = True


@dataclass(frozen=True)
class WebConfig:
    """A loaded web config file; an empty file means plain HTTP without auth."""

    source: str = "-"
    tls: TLSServerConfig | None = None
    http: HTTPServerConfig = field(default_factory=HTTPServerConfig)
    basic_auth_users: tuple[tuple[str, bytes], ...] = ()

    @property
    def auth_required(self) -> bool:
        return bool(self.basic_auth_users)


class _Problems:
    """Collect every problem with its file:line so all are reported at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, node: yaml.Node | None, path: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.items.append(f"{self.source}:{line}: {path}: {message}")


def _mapping(node: yaml.Node, path: str, problems: _Problems) -> dict[str, yaml.Node]:
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
        return {}
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, path, "expected a mapping")
        return {}
    out: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            problems.add(key, path, "keys must be strings")
            continue
        if key.value in out:
            problems.add(key, f"{path}.{key.value}", "duplicate key")
        out[str(key.value)] = value
    return out


def _check_keys(
    nodes: dict[str, yaml.Node], allowed: set[str], path: str, problems: _Problems
) -> None:
    for key, node in nodes.items():
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            problems.add(node, where, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _string(node: yaml.Node, path: str, problems: _Problems) -> str | None:
    if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
        problems.add(node, path, "expected a string")
        return None
    return str(node.value)


def _bool(node: yaml.Node, path: str, problems: _Problems) -> bool | None:
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":bool"):
        return str(node.value).lower() in ("true", "yes", "on")
    problems.add(node, path, f"expected true or false, got {getattr(node, 'value', node)!r}")
    return None


def _strings(node: yaml.Node, path: str, problems: _Problems) -> tuple[str, ...]:
    if not isinstance(node, yaml.SequenceNode):
        problems.add(node, path, "expected a list of strings")
        return ()
    out = []
    for i, item in enumerate(node.value):
        s = _string(item, f"{path}[{i}]", problems)
        if s is not None:
            out.append(s)
    return tuple(out)


def _choice(
    node: yaml.Node, path: str, choices: Mapping[str, Any], problems: _Problems
) -> str | None:
    value = _string(node, path, problems)
    if value is None:
        return None
    if value not in choices:
        problems.add(node, path, f"expected one of {', '.join(choices)}, got {value!r}")
        return None
    return value


def _tls(node: yaml.Node, base: Path, problems: _Problems) -> TLSServerConfig | None:
    path = "tls_server_config"
    nodes = _mapping(node, path, problems)
    if not nodes:
        return None
    _check_keys(
        nodes,
        {
            "cert_file",
            "key_file",
            "client_auth_type",
            "client_ca_file",
            "client_allowed_sans",
            "min_version",
            "max_version",
            "cipher_suites",
            "curve_preferences",
            "prefer_server_cipher_suites",
        },
        path,
        problems,
    )
    files: dict[str, Path | None] = {}
    for key in ("cert_file", "key_file", "client_ca_file"):
        files[key] = None
        if key in nodes:
            s = _string(nodes[key], f"{path}.{key}", problems)
            if s:
                p = Path(s)
                files[key] = p if p.is_absolute() else base / p
    for key in ("cert_file", "key_file"):
        if files[key] is None and key not in nodes:
            problems.add(node, path, f"{key} is required when tls_server_config is set")
    kwargs: dict[str, Any] = {}
    if "client_auth_type" in nodes:
        cat = _choice(
            nodes["client_auth_type"], f"{path}.client_auth_type", CLIENT_AUTH_TYPES, problems
        )
        if cat is not None and CLIENT_AUTH_TYPES[cat] is None:
            problems.add(
                nodes["client_auth_type"],
                f"{path}.client_auth_type",
                f"{cat} (accept a client certificate without verifying it) is not supported; "
                "use VerifyClientCertIfGiven or RequireAndVerifyClientCert",
            )
        elif cat is not None:
            kwargs["client_auth_type"] = cat
    verifying = kwargs.get("client_auth_type", "NoClientCert") != "NoClientCert"
    if verifying and files["client_ca_file"] is None:
        problems.add(
            nodes.get("client_auth_type", node),
            f"{path}.client_ca_file",
            "required when client_auth_type verifies client certificates",
        )
    if files["client_ca_file"] is not None and not verifying:
        problems.add(
            nodes["client_ca_file"],
            f"{path}.client_ca_file",
            "set, but client_auth_type is NoClientCert so it would be ignored",
        )
    for key in ("min_version", "max_version"):
        if key in nodes:
            v = _choice(nodes[key], f"{path}.{key}", TLS_VERSIONS, problems)
            if v is not None:
                kwargs[key] = v
    lo = TLS_VERSIONS[kwargs.get("min_version", "TLS12")]
    hi = TLS_VERSIONS[kwargs.get("max_version", "TLS13")]
    if lo > hi:
        problems.add(nodes.get("min_version", node), f"{path}.min_version", "is above max_version")
    if "client_allowed_sans" in nodes:
        kwargs["client_allowed_sans"] = _strings(
            nodes["client_allowed_sans"], f"{path}.client_allowed_sans", problems
        )
        if kwargs["client_allowed_sans"] and not verifying:
            problems.add(
                nodes["client_allowed_sans"],
                f"{path}.client_allowed_sans",
                "needs a client_auth_type that verifies client certificates",
            )
    for key, table in (("cipher_suites", CIPHER_SUITES), ("curve_preferences", CURVES)):
        if key in nodes:
            names = _strings(nodes[key], f"{path}.{key}", problems)
            for i, name in enumerate(names):
                if name not in table:
                    problems.add(
                        nodes[key].value[i],
                        f"{path}.{key}[{i}]",
                        f"unknown name {name!r} (known: {', '.join(table)})",
                    )
            kwargs[key] = tuple(n for n in names if n in table)
    if "prefer_server_cipher_suites" in nodes:
        b = _bool(
            nodes["prefer_server_cipher_suites"], f"{path}.prefer_server_cipher_suites", problems
        )
        if b is not None:
            kwargs["prefer_server_cipher_suites"] = b
    for key in ("cert_file", "key_file", "client_ca_file"):
        p = files[key]
        if p is not None and not p.is_file():
            problems.add(nodes[key], f"{path}.{key}", f"no such file: {p}")
    cert, key = files["cert_file"], files["key_file"]
    if cert is None or key is None:
        return None
    return TLSServerConfig(
        cert_file=cert,
        key_file=key,
        client_ca_file=files["client_ca_file"],
        **kwargs,
    )


def _http(node: yaml.Node, problems: _Problems) -> HTTPServerConfig:
    path = "http_server_config"
    nodes = _mapping(node, path, problems)
    _check_keys(nodes, {"headers", "http2"}, path, problems)
    headers: list[tuple[str, str]] = []
    for name, value_node in (
        _mapping(nodes["headers"], f"{path}.headers", problems).items()
        if ("headers" in nodes)
        else ()
    ):
        where = f"{path}.headers.{name}"
        canonical = next((h for h in ALLOWED_HEADERS if h.lower() == name.lower()), None)
        if canonical is None:
            problems.add(
                value_node, where, f"header not allowed (allowed: {', '.join(ALLOWED_HEADERS)})"
            )
            continue
        value = _string(value_node, where, problems)
        if value is None:
            continue
        pinned = ALLOWED_HEADERS[canonical]
        if pinned is not None and value.lower() not in pinned:
            problems.add(value_node, where, f"expected one of {', '.join(pinned)}, got {value!r}")
            continue
        if "\r" in value or "\n" in value:
            problems.add(value_node, where, "header values may not contain line breaks")
            continue
        headers.append((canonical, value))
    http2 = True
    if "http2" in nodes:
        b = _bool(nodes["http2"], f"{path}.http2", problems)
        http2 = True if b is None else b
    return HTTPServerConfig(headers=tuple(headers), http2=http2)


def _users(node: yaml.Node, problems: _Problems) -> tuple[tuple[str, bytes], ...]:
    path = "basic_auth_users"
    out: list[tuple[str, bytes]] = []
    for user, hash_node in _mapping(node, path, problems).items():
        where = f"{path}.{user}"
        if ":" in user or not user:
            problems.add(hash_node, where, "user names may not be empty or contain ':'")
            continue
        value = _string(hash_node, where, problems)
        if value is None:
            continue
        hashed = value.encode()
        if not _looks_like_bcrypt(hashed):
            # Never echo the value: it may be a plain-text password put there by mistake.
            problems.add(hash_node, where, "expected a bcrypt hash ($2a$, $2b$ or $2y$ ...)")
            continue
        out.append((user, hashed))
    return tuple(out)


def _looks_like_bcrypt(hashed: bytes) -> bool:
    if len(hashed) != 60 or hashed[:4] not in (b"$2a$", b"$2b$", b"$2y$"):
        return False
    try:
        bcrypt.checkpw(b"", hashed)
    except ValueError:
        return False
    return True


def parse(text: str, source: str = "-", base: Path | None = None) -> WebConfig:
    """Parse web config YAML ``text``; raise ConfigError listing every problem.

    Args:
        source: the file name used in messages.
        base: directory that relative file paths are resolved against.
    """
    problems = _Problems(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(source, [f"{source}:{line}: invalid YAML: {exc}"]) from None
    if root is None:
        return WebConfig(source=source)
    top = _mapping(root, "web config", problems)
    _check_keys(top, {"tls_server_config", "http_server_config", "basic_auth_users"}, "", problems)
    base = base if base is not None else Path(".")
    tls = _tls(top["tls_server_config"], base, problems) if "tls_server_config" in top else None
    http = _http(top["http_server_config"], problems) if "http_server_config" in top else None
    users = _users(top["basic_auth_users"], problems) if "basic_auth_users" in top else ()
    if problems.items:
        raise ConfigError(source, problems.items)
    return WebConfig(
        source=source, tls=tls, http=http or HTTPServerConfig(), basic_auth_users=users
    )


def load(path: str | Path) -> WebConfig:
    """Read and parse the web config file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [f"{p}: cannot read web config: {exc}"]) from None
    return parse(text, source=str(p), base=p.parent)


def ssl_context(tls: TLSServerConfig, source: str = "-") -> ssl.SSLContext:
    """Build a server-side SSLContext from ``tls``; raise ConfigError if a file is unusable."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    problems: list[str] = []
    try:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (ssl.SSLError, OSError) as exc:
        problems.append(
            f"{source}: tls_server_config: cannot load cert_file {tls.cert_file} "
            f"with key_file {tls.key_file}: {exc}"
        )
    mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    assert mode is not None  # refused at parse time
    if tls.client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(tls.client_ca_file))
        except (ssl.SSLError, OSError) as exc:
            problems.append(
                f"{source}: tls_server_config: cannot load client_ca_file "
                f"{tls.client_ca_file}: {exc}"
            )
    ctx.verify_mode = mode
    if tls.cipher_suites:
        try:
            ctx.set_ciphers(":".join(CIPHER_SUITES[c] for c in tls.cipher_suites))
        except ssl.SSLError as exc:
            problems.append(f"{source}: tls_server_config.cipher_suites: {exc}")
    if tls.curve_preferences:
        # Python exposes a single ECDH curve; the first preference is used.
        ctx.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if problems:
        raise ConfigError(source, problems)
    return ctx


def peer_allowed(tls: TLSServerConfig, peercert: Mapping[str, Any] | None) -> bool:
    """Return whether a verified client certificate carries one of ``client_allowed_sans``.

    ``peercert`` is ``SSLSocket.getpeercert()``. With no allowed SANs configured
    every verified certificate is accepted.
    """
    if not tls.client_allowed_sans:
        return True
    if not peercert:
        return False
    sans = {str(value) for _kind, value in peercert.get("subjectAltName", ())}
    return any(s in sans for s in tls.client_allowed_sans)


# A valid hash of a random password, checked when the user name is unknown so
# that unknown and known users take the same time to refuse.
_DUMMY_HASH = bcrypt.hashpw(b"cardguard-no-such-user", bcrypt.gensalt(rounds=10))


class BasicAuth:
    """Check ``Authorization: Basic`` headers against bcrypt-hashed users.

    bcrypt is deliberately slow, so verified (user, password) pairs are cached
    by a SHA-256 of user, password and hash: a Prometheus scraping every 15s
    does not pay a bcrypt round per scrape. The cache is bounded.
    """

    def __init__(self, users: tuple[tuple[str, bytes], ...], cache_size: int = 256) -> None:
        self._users = dict(users)
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def check(self, header: str | None) -> bool:
        """Return True when ``header`` (the Authorization value) names a valid user."""
        if not self._users:
            return True
        creds = _basic_credentials(header)
        if creds is None:
            return False
        user, password = creds
        hashed = self._users.get(user)
        known = hashed is not None
        hashed = hashed if hashed is not None else _DUMMY_HASH
        key = hashlib.sha256(
            user.encode("utf-8", "surrogateescape") + b"\0" + password + b"\0" + hashed
        ).digest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is None:
            cached = bcrypt.checkpw(password, hashed)
            with self._lock:
                self._cache[key] = cached
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        # Compare booleans through compare_digest so neither branch is shortcut.
        return hmac.compare_digest(b"\1" if (cached and known) else b"\0", b"\1")


def _basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "surrogateescape"), password
