"""The --web.config.file format: parsing with file:line errors, TLS context, bcrypt basic auth."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import ssl
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import requests

from cardguard.errors import ConfigError
from cardguard.settings import webconfig
from support import Process, cardguard_argv, running_cardguard_serve, wait_for
from tlscerts import Certs, make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write(d: Path, text: str) -> Path:
    p = d / "web.yml"
    p.write_text(text)
    return p


def test_empty_file_is_plain_http_without_auth(tmp_path: Path) -> None:
    cfg = webconfig.load(write(tmp_path, ""))
    assert cfg.tls is None and not cfg.auth_required


def test_full_file_loads_with_relative_paths(certs: Certs) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    p = write(
        certs.dir,
        f"""\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: ca.crt
  min_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
  curve_preferences: [X25519]
http_server_config:
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  alice: {hashed}
""",
    )
    cfg = webconfig.load(p)
    assert cfg.tls is not None
    assert cfg.tls.cert_file == certs.server_cert
    assert cfg.tls.client_ca_file == certs.ca
    assert cfg.tls.min_version == "TLS13"
    assert cfg.http.headers == (
        ("X-Frame-Options", "deny"),
        ("Strict-Transport-Security", "max-age=31536000"),
    )
    ctx = webconfig.ssl_context(cfg.tls, cfg.source)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    auth = webconfig.BasicAuth(cfg.basic_auth_users)
    assert auth.check(basic("alice", "s3cret"))
    assert not auth.check(basic("alice", "wrong"))
    assert not auth.check(basic("bob", "s3cret"))


def test_every_problem_is_reported_with_file_and_line(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """\
tls_server_config:
  cert_file: missing.crt
  client_auth_type: RequireAnyClientCert
  min_version: TLS14
  cipher_suites: [TLS_FANCY]
http_server_config:
  headers:
    X-Powered-By: cardguard
    X-Frame-Options: allow
basic_auth_users:
  alice: hunter2
listen: ":9100"
""",
    )
    with pytest.raises(ConfigError) as err:
        webconfig.load(p)
    problems = err.value.problems
    text = "\n".join(problems)
    expected = [
        ":2: tls_server_config.cert_file: file not found: missing.crt",
        ":2: tls_server_config.key_file: required",
        ":3: tls_server_config.client_auth_type: RequireAnyClientCert",
        ":4: tls_server_config.min_version: expected one of TLS10",
        ":5: tls_server_config.cipher_suites[0]: expected one of",
        ":8: http_server_config.headers.X-Powered-By: header not allowed",
        ":9: http_server_config.headers.X-Frame-Options: expected one of deny, sameorigin",
        ":11: basic_auth_users.alice: expected a bcrypt hash",
        ":12: listen: unknown key",
    ]
    for e in expected:
        assert any(e in p for p in problems), f"missing {e!r} in:\n{text}"
    assert all(p.startswith(str(tmp_path / "web.yml") + ":") for p in problems)
    # A plain-text password put in the hash field must never be echoed back.
    assert "hunter2" not in text


def test_client_auth_needs_a_ca(certs: Certs) -> None:
    p = write(
        certs.dir,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n",
    )
    with pytest.raises(
        ConfigError, match=r"web\.yml:4: tls_server_config\.client_ca_file: required"
    ):
        webconfig.load(p)


def test_mismatched_key_is_a_config_error(certs: Certs) -> None:
    p = write(certs.dir, "tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n")
    cfg = webconfig.load(p)
    assert cfg.tls is not None
    with pytest.raises(ConfigError, match="cannot load cert_file"):
        webconfig.ssl_context(cfg.tls, cfg.source)


def test_basic_auth_rejects_malformed_headers() -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4))
    auth = webconfig.BasicAuth((("alice", hashed),))
    for header in (
        None,
        "",
        "Bearer abc",
        "Basic !!!",
        "Basic " + base64.b64encode(b"alice").decode(),
    ):
        assert not auth.check(header)
    assert auth.check(basic("alice", "pw"))
    assert auth.check(basic("alice", "pw"))  # the cached path gives the same answer
    assert webconfig.BasicAuth(()).check(None)  # no users: no auth


def test_unknown_users_are_checked_at_the_configured_cost() -> None:
    cheap = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4))
    dearer = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=5))
    assert webconfig.bcrypt_cost(cheap) == 4 and webconfig.bcrypt_cost(dearer) == 5
    # A fixed dummy cost (it was 10) would make unknown names answer at another speed.
    assert webconfig.BasicAuth((("alice", cheap),)).dummy_costs == (4,)
    mixed = webconfig.BasicAuth((("alice", cheap), ("bob", dearer)))
    assert mixed.dummy_costs == (4, 5)
    # Each unknown name always meets the same dummy, so retrying a name shows no spread.
    assert mixed._dummy("mallory") == mixed._dummy("mallory")
    assert {webconfig.bcrypt_cost(mixed._dummy(f"user{i}")) for i in range(64)} == {4, 5}
    assert not mixed.check(basic("mallory", "pw"))
    assert mixed.check(basic("bob", "pw"))


def test_passwords_longer_than_bcrypt_reads_are_compared_on_72_bytes() -> None:
    # bcrypt 5 raises ValueError on them (that was a dropped connection); Go's bcrypt,
    # which exporter-toolkit uses, compares the first 72 bytes, and so does cardguard.
    auth = webconfig.BasicAuth((("alice", bcrypt.hashpw(b"a" * 72, bcrypt.gensalt(rounds=4))),))
    assert auth.check(basic("alice", "a" * 100))
    assert not auth.check(basic("alice", "b" * 100))
    assert not auth.check(basic("nobody", "a" * 100))


def test_allowed_sans() -> None:
    tls = webconfig.TLSServerConfig(
        cert_file=Path("x"), key_file=Path("y"), client_allowed_sans=("prometheus.test",)
    )
    assert webconfig.peer_allowed(tls, {"subjectAltName": (("DNS", "prometheus.test"),)})
    assert not webconfig.peer_allowed(tls, {"subjectAltName": (("DNS", "other.test"),)})
    assert not webconfig.peer_allowed(tls, None)


# --- a real cardguard serve behind the web config ----------------------------------


@contextlib.contextmanager
def served(tmp: Path, web_yml: str, check: Callable[[str], bool]) -> Iterator[Process]:
    (tmp / "cardguard.yml").write_text("probe: {allow: ['127.0.0.1']}\n")
    web = tmp / "web.yml"
    web.write_text(web_yml)
    args = (f"--config.file={tmp / 'cardguard.yml'}", f"--web.config.file={web}")
    with running_cardguard_serve(tmp / "cardguard.log", *args) as proc:
        wait_for(lambda: check(f"https://127.0.0.1:{proc.port}"), 30, "cardguard with TLS")
        yield proc


def test_tls_and_basic_auth_on_a_real_server(certs: Certs, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=10)).decode()
    web = (
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    ca = str(certs.ca)

    def ready(base: str) -> bool:
        return requests.get(f"{base}/-/healthy", verify=ca, timeout=5).status_code == 401

    with served(tmp_path, web, ready) as proc:
        base = f"https://127.0.0.1:{proc.port}"
        ok = requests.get(f"{base}/metrics", verify=ca, auth=("prometheus", "s3cret"), timeout=10)
        assert ok.status_code == 200
        assert "cardguard_probe_refused_total" in ok.text
        assert ok.headers["X-Frame-Options"] == "deny"
        wrong = requests.get(f"{base}/metrics", verify=ca, auth=("prometheus", "nope"), timeout=10)
        assert wrong.status_code == 401
        assert wrong.headers["WWW-Authenticate"].startswith("Basic")
        assert "cardguard_" not in wrong.text
        nobody = requests.get(f"{base}/metrics", verify=ca, auth=("root", "s3cret"), timeout=10)
        assert nobody.status_code == 401
        assert requests.get(f"{base}/probe?target=x", verify=ca, timeout=10).status_code == 401
        # Plain HTTP to the TLS port gets no answer at all.
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(base.replace("https://", "http://") + "/metrics", timeout=10)
        # A client that does not trust cardguard's CA refuses the server.
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{base}/metrics", auth=("prometheus", "s3cret"), timeout=10)


def test_client_certificates_on_a_real_server(certs: Certs, tmp_path: Path) -> None:
    web = (
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.ca}\n"
        f"  client_allowed_sans: [prometheus.test]\n  min_version: TLS12\n"
    )
    ca = str(certs.ca)
    good = (str(certs.client_cert), str(certs.client_key))

    def ready(base: str) -> bool:
        return requests.get(f"{base}/-/healthy", verify=ca, cert=good, timeout=5).status_code == 200

    with served(tmp_path, web, ready) as proc:
        base = f"https://127.0.0.1:{proc.port}"
        r = requests.get(f"{base}/metrics", verify=ca, cert=good, timeout=10)
        assert r.status_code == 200 and "cardguard_probe_targets" in r.text
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.get(f"{base}/metrics", verify=ca, timeout=10)
        rogue = (str(certs.rogue_client_cert), str(certs.rogue_client_key))
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.get(f"{base}/metrics", verify=ca, cert=rogue, timeout=10)


def test_serve_refuses_a_bad_web_config(tmp_path: Path) -> None:
    (tmp_path / "cardguard.yml").write_text("probe: {}\n")
    (tmp_path / "web.yml").write_text("tls_server_config:\n  cert_file: nope.crt\n")
    proc = subprocess.run(
        cardguard_argv(
            "serve",
            f"--config.file={tmp_path / 'cardguard.yml'}",
            "--web.listen-address=127.0.0.1:0",
            f"--web.config.file={tmp_path / 'web.yml'}",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "web.yml:2: tls_server_config.cert_file: file not found: nope.crt" in proc.stderr
    assert "web.yml:2: tls_server_config.key_file: required" in proc.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # PyYAML's composer recursed once per level and ended in RecursionError at start-up.
        ("[" * 5000 + "]" * 5000, "web.yml:1: YAML nested deeper than 64 levels; refused"),
        ("a: &a [*a]\n", "web.yml:1: alias *a is used inside the node it names; refused"),
        ("tls_server_config: \x01\n", "web.yml:1: invalid YAML: character #x0001"),
    ],
    ids=["deep", "recursive-alias", "control-char"],
)
def test_serve_reports_a_hostile_web_config_file_as_one_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    """The web config goes through cardguard.settings.yamlfile's bounds, as the config file does."""
    (tmp_path / "cardguard.yml").write_text("probe: {}\n")
    (tmp_path / "web.yml").write_text(text)
    with pytest.raises(ConfigError) as err:
        webconfig.load(tmp_path / "web.yml")
    assert expected in err.value.problems[0]
    proc = subprocess.run(
        cardguard_argv(
            "serve",
            f"--config.file={tmp_path / 'cardguard.yml'}",
            "--web.listen-address=127.0.0.1:0",
            f"--web.config.file={tmp_path / 'web.yml'}",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr


# --- basic auth timing on a real server ---------------------------------------------


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    d = tmp_path_factory.mktemp("auth")
    (d / "cardguard.yml").write_text("probe: {allow: ['127.0.0.1']}\n")
    # Cost 12, what htpasswd -B -C 12 and most guides use; the old dummy was cost 10.
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=12)).decode()
    (d / "web.yml").write_text(f"basic_auth_users:\n  prometheus: {hashed}\n")
    args = (f"--config.file={d / 'cardguard.yml'}", f"--web.config.file={d / 'web.yml'}")
    with running_cardguard_serve(d / "cardguard.log", *args) as proc:
        yield proc


def test_unknown_and_known_users_are_refused_alike(auth_server: Process) -> None:
    [loaded] = [
        json.loads(line)
        for line in auth_server.logs().splitlines()
        if '"web config loaded"' in line
    ]
    assert loaded["basic_auth_users"] == 1
    assert loaded["dummy_bcrypt_costs"] == "12"  # what decides the timing

    session = requests.Session()

    def refusal_seconds(user: str, password: str) -> float:
        start = time.perf_counter()
        r = session.get(f"{auth_server.base_url}/metrics", auth=(user, password), timeout=30)
        assert r.status_code == 401
        return time.perf_counter() - start

    # A fresh password each time: repeated pairs are answered from the cache.
    wrong = [refusal_seconds("prometheus", f"wrong-{i}") for i in range(3)]
    unknown = [refusal_seconds(f"nobody-{i}", f"wrong-{i}") for i in range(3)]
    # Loose on purpose (2 shared cores): with a cost-10 dummy this was about 0.25.
    assert statistics.median(unknown) >= 0.5 * statistics.median(wrong), (unknown, wrong)
    ok = session.get(f"{auth_server.base_url}/metrics", auth=("prometheus", "s3cret"), timeout=30)
    assert ok.status_code == 200
    assert "Traceback" not in auth_server.logs()


def test_odd_credentials_are_a_401_not_a_dropped_connection(auth_server: Process) -> None:
    url = f"{auth_server.base_url}/-/healthy"
    assert requests.get(url, auth=("prometheus", "x" * 200), timeout=30).status_code == 401
    for header in ("Basic \xff\xfe", "Basic " + "A" * 5000, "Digest x", "Basic Og=="):
        r = requests.get(url, headers={"Authorization": header}, timeout=30)
        assert r.status_code == 401
    assert "Traceback" not in auth_server.logs()


def test_a_refused_requests_body_is_not_taken_for_the_next_request(auth_server: Process) -> None:
    # The 401 used to go out before the body was read; the body then parsed as a request.
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    data = (
        b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
        + smuggled
        + b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", auth_server.port), timeout=30) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"401", b"401"], answer
