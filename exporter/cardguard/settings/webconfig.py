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
import logging
import secrets
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
from yaml.nodes import MappingNode, Node, ScalarNode

from cardguard.errors import ConfigError
from cardguard.settings import yamlfile
from cardguard.settings.checker import Ctx, Section, join

log = logging.getLogger("cardguard.settings.webconfig")

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


_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (
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
)


def _names(ctx: Ctx, sec: Section, key: str, table: Mapping[str, str]) -> tuple[str, ...]:
    node = sec.value_node(key)
    if node is None:
        return ()
    path = sec.key_path(key)
    out = []
    for i, item in enumerate(ctx.sequence(node, path)):
        name = ctx.choice(item, join(path, i), table)
        if name is not None:
            out.append(name)
    return tuple(out)


def _tls(ctx: Ctx, node: Node | None) -> TLSServerConfig | None:
    path = "tls_server_config"
    sec = ctx.section(node, path, _TLS_KEYS)
    if sec is None or not sec.items:
        return None
    cert = sec.required("cert_file", ctx.file)
    key = sec.required("key_file", ctx.file)
    ca = sec.optional("client_ca_file", ctx.file)
    d = TLSServerConfig(cert_file=Path(), key_file=Path())
    cat = sec.get("client_auth_type", lambda n, p: ctx.choice(n, p, CLIENT_AUTH_TYPES), None)
    if cat is not None and CLIENT_AUTH_TYPES[cat] is None:
        ctx.error(
            sec.value_node("client_auth_type"),
            sec.key_path("client_auth_type"),
            f"{cat} (accept a client certificate without verifying it) is not supported; "
            "use VerifyClientCertIfGiven or RequireAndVerifyClientCert",
        )
        cat = None
    client_auth = cat or d.client_auth_type
    verifying = client_auth != "NoClientCert"
    if verifying and not sec.has("client_ca_file"):
        ctx.error(
            sec.value_node("client_auth_type"),
            sec.key_path("client_ca_file"),
            f"required when client_auth_type is {client_auth}",
        )
    if sec.has("client_ca_file") and not verifying:
        ctx.error(
            sec.value_node("client_ca_file"),
            sec.key_path("client_ca_file"),
            "set, but client_auth_type is NoClientCert, so it would be ignored",
        )
    version = lambda n, p: ctx.choice(n, p, TLS_VERSIONS)  # noqa: E731
    lo = sec.get("min_version", version, d.min_version)
    hi = sec.get("max_version", version, d.max_version)
    if TLS_VERSIONS[lo] > TLS_VERSIONS[hi]:
        ctx.error(
            sec.value_node("min_version"), sec.key_path("min_version"), "is above max_version"
        )
    sans = ctx.strings(sec.value_node("client_allowed_sans"), sec.key_path("client_allowed_sans"))
    if sans and not verifying:
        ctx.error(
            sec.value_node("client_allowed_sans"),
            sec.key_path("client_allowed_sans"),
            "needs a client_auth_type that verifies client certificates",
        )
    ciphers = _names(ctx, sec, "cipher_suites", CIPHER_SUITES)
    curves = _names(ctx, sec, "curve_preferences", CURVES)
    prefer = sec.get("prefer_server_cipher_suites", ctx.boolean, d.prefer_server_cipher_suites)
    if cert is None or key is None:
        return None
    return TLSServerConfig(
        cert_file=cert,
        key_file=key,
        client_auth_type=client_auth,
        client_ca_file=ca,
        client_allowed_sans=sans,
        min_version=lo,
        max_version=hi,
        cipher_suites=ciphers,
        curve_preferences=curves,
        prefer_server_cipher_suites=prefer,
    )


def _http(ctx: Ctx, node: Node | None) -> HTTPServerConfig:
    path = "http_server_config"
    sec = ctx.section(node, path, ("headers", "http2"))
    if sec is None:
        return HTTPServerConfig()
    headers: list[tuple[str, str]] = []
    hnode = sec.value_node("headers")
    if hnode is not None and isinstance(hnode, MappingNode):
        names = [str(k.value) for k, _ in hnode.value if isinstance(k, ScalarNode)]
        hsec = ctx.section(hnode, sec.key_path("headers"), names)
    else:
        hsec = ctx.section(hnode, sec.key_path("headers"), ())
    for name, (knode, vnode) in (hsec.items if hsec is not None else {}).items():
        where = join(sec.key_path("headers"), name)
        canonical = next((h for h in ALLOWED_HEADERS if h.lower() == name.lower()), None)
        if canonical is None:
            ctx.error(knode, where, f"header not allowed (allowed: {', '.join(ALLOWED_HEADERS)})")
            continue
        value = ctx.string(vnode, where)
        if value is None:
            continue
        pinned = ALLOWED_HEADERS[canonical]
        if pinned is not None and value.lower() not in pinned:
            ctx.error(vnode, where, f"expected one of {', '.join(pinned)}, got {value!r}")
            continue
        if "\r" in value or "\n" in value:
            ctx.error(vnode, where, "header values must be a single line")
            continue
        headers.append((canonical, value))
    return HTTPServerConfig(headers=tuple(headers), http2=sec.get("http2", ctx.boolean, True))


def _users(ctx: Ctx, node: Node | None) -> tuple[tuple[str, bytes], ...]:
    path = "basic_auth_users"
    if node is not None and isinstance(node, MappingNode):
        names = [str(k.value) for k, _ in node.value if isinstance(k, ScalarNode)]
    else:
        names = []
    sec = ctx.section(node, path, names)
    out: list[tuple[str, bytes]] = []
    for user, (knode, vnode) in (sec.items if sec is not None else {}).items():
        where = join(path, user)
        if ":" in user:
            ctx.error(knode, where, "user names may not contain ':'")
            continue
        if not (isinstance(vnode, ScalarNode) and vnode.tag.endswith(":str")):
            ctx.error(vnode, where, "expected a bcrypt hash ($2a$, $2b$ or $2y$ ...)")
            continue
        hashed = str(vnode.value).encode()
        if not _looks_like_bcrypt(hashed):
            # Never echo the value: it may be a plain-text password put there by mistake.
            ctx.error(vnode, where, "expected a bcrypt hash ($2a$, $2b$ or $2y$ ...)")
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
    ctx = Ctx(source, base)
    root = yamlfile.compose(text, source)  # bounded: depth, size, alias expansion
    if root is None:
        return WebConfig(source=source)
    top = ctx.section(root, "", _TOP_KEYS)
    if top is None:
        raise ConfigError(source, ctx.problems)
    tls = _tls(ctx, top.value_node("tls_server_config")) if top.has("tls_server_config") else None
    http = _http(ctx, top.value_node("http_server_config"))
    users = _users(ctx, top.value_node("basic_auth_users"))
    if ctx.problems:
        raise ConfigError(source, ctx.problems)
    return WebConfig(source=source, tls=tls, http=http, basic_auth_users=users)


def load(path: str | Path) -> WebConfig:
    """Read and parse the web config file at ``path``."""
    p = Path(path)
    return parse(yamlfile.read(p, str(p)), source=str(p), base=p.resolve().parent)


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


BCRYPT_MAX_PASSWORD = 72  # bcrypt reads no further; Go's CompareHashAndPassword neither


def bcrypt_cost(hashed: bytes) -> int:
    """Return the cost (log2 rounds) of a bcrypt hash: 12 for ``$2b$12$...``."""
    return int(hashed[4:6])


class BasicAuth:
    """Check ``Authorization: Basic`` headers against bcrypt-hashed users.

    bcrypt is deliberately slow, so verified (user, password) pairs are cached
    by a SHA-256 of user, password and hash: a Prometheus scraping every 15s
    does not pay a bcrypt round per scrape. The cache is bounded.

    An unknown user name is checked against a dummy hash made at load time
    with a cost the configured hashes use, so refusing it takes as long as
    refusing a known user's wrong password: response times do not tell which
    user names exist. With several costs configured, each unknown name gets
    one of them, fixed per name by a keyed hash and weighted like the users.
    """

    def __init__(self, users: tuple[tuple[str, bytes], ...], cache_size: int = 256) -> None:
        self._users = dict(users)
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._costs = tuple(sorted(bcrypt_cost(h) for h in self._users.values()))
        dummy_password = secrets.token_hex(16).encode()
        self._dummies = {
            cost: bcrypt.hashpw(dummy_password, bcrypt.gensalt(rounds=cost))
            for cost in set(self._costs)
        }
        self._key = secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    @property
    def dummy_costs(self) -> tuple[int, ...]:
        """The bcrypt costs of the dummy hashes unknown users are checked against."""
        return tuple(sorted(self._dummies))

    def _dummy(self, user: str) -> bytes:
        digest = hmac.digest(self._key, user.encode("utf-8", "surrogateescape"), "sha256")
        cost = self._costs[int.from_bytes(digest[:8], "big") % len(self._costs)]
        return self._dummies[cost]

    def check(self, header: str | None) -> bool:
        """Return True when ``header`` (the Authorization value) names a valid user."""
        if not self._users:
            return True
        creds = _basic_credentials(header)
        if creds is None:
            return False
        user, password = creds
        password = password[:BCRYPT_MAX_PASSWORD]
        hashed = self._users.get(user)
        known = hashed is not None
        hashed = hashed if hashed is not None else self._dummy(user)
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


def server_options(cfg: WebConfig | None) -> dict[str, Any]:
    """Return the keyword arguments for ``server.make_server`` that apply ``cfg``.

    ``ssl_context`` wraps the listening socket, ``authenticate`` checks basic
    auth (and ``client_allowed_sans``) before every route, ``extra_headers``
    are the configured response headers. Raise ConfigError if TLS files are
    unusable.
    """
    if cfg is None:
        return {}
    out: dict[str, Any] = {"extra_headers": dict(cfg.http.headers)}
    tls = cfg.tls
    if tls is not None:
        out["ssl_context"] = ssl_context(tls, cfg.source)
    auth = BasicAuth(cfg.basic_auth_users)
    fields: dict[str, Any] = {"file": cfg.source, "tls": tls is not None}
    if tls is not None:
        fields["client_auth_type"] = tls.client_auth_type
    if auth.enabled:
        fields["basic_auth_users"] = len(cfg.basic_auth_users)
        # What unknown user names are checked at; equal to the configured costs.
        fields["dummy_bcrypt_costs"] = ",".join(str(c) for c in auth.dummy_costs)
    log.info("web config loaded", extra=fields)
    if auth.enabled or (tls is not None and tls.client_allowed_sans):

        def authenticate(handler: Any) -> bool:
            if tls is not None and tls.client_allowed_sans:
                conn = handler.connection
                peer = conn.getpeercert() if isinstance(conn, ssl.SSLSocket) else None
                if not peer_allowed(tls, peer):
                    return False
            return auth.check(handler.headers.get("Authorization"))

        out["authenticate"] = authenticate
    return out
