"""fetch.py against real local HTTP(S) servers that misbehave like broken targets."""

from __future__ import annotations

import base64
import gzip
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import local_http
from cardguard.errors import FetchError
from cardguard.run.fetch import REASONS, Fetcher
from cardguard.run.urls import redact_url
from cardguard.settings.targets import BasicAuth, Secret, TargetConfig, TLSConfig
from support import dead_url

PAGE = b"# TYPE up gauge\nup 1\n"
LIMIT = 1 << 20


def target(base_url: str, **kw: object) -> TargetConfig:
    args: dict[str, object] = {"timeout": 2.0, "body_size_limit": LIMIT}
    args.update(kw)
    return TargetConfig(name="t1", url=base_url, **args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server() -> Iterator[local_http.Running]:
    with local_http.serve({}) as srv:
        stop = srv.stop_event
        srv.routes.update(
            {
                "/ok": local_http.ok(PAGE),
                "/gzip": local_http.gzipped(PAGE * 1000),
                "/bomb": local_http.gzip_bomb(256 << 20),
                "/big": local_http.ok(b"x" * (LIMIT + 1)),
                "/endless": local_http.endless(),
                "/drip": local_http.drip(0.05, stop),
                "/stall": local_http.stall_before_headers(stop),
                "/404": local_http.status(404),
                "/500": local_http.status(500),
                "/401": local_http.status(401),
                "/same-host": local_http.redirect("/ok"),
                "/loop": local_http.redirect("/loop"),
                "/corrupt-gzip": lambda h: h.send_body(
                    200, b"\x1f\x8bnot gzip at all", headers={"Content-Encoding": "gzip"}
                ),
                "/truncated-gzip": lambda h: h.send_body(
                    200, gzip.compress(PAGE * 100)[:40], headers={"Content-Encoding": "gzip"}
                ),
                "/brotli": lambda h: h.send_body(200, b"??", headers={"Content-Encoding": "br"}),
                "/echo-auth": lambda h: h.send_body(
                    200, h.headers.get("Authorization", "none").encode()
                ),
            }
        )
        # "localhost" is a different host from "127.0.0.1" as far as redirects go.
        srv.routes["/other-host"] = local_http.redirect(f"http://localhost:{srv.port}/ok")
        yield srv


def fail(t: TargetConfig, path: str, **kw: object) -> FetchError:
    with pytest.raises(FetchError) as info:
        Fetcher(t).get(t.url + path, **kw)  # type: ignore[arg-type]
    assert info.value.reason in REASONS
    assert info.value.source == "t1"
    return info.value


def test_plain_and_accept_header(server: local_http.Running) -> None:
    t = target(server.base_url)
    res = Fetcher(t).get(t.url + "/ok", accept="text/plain;version=0.0.4")
    assert res.body == PAGE and res.status == 200
    assert res.content_type.startswith("text/plain")
    assert res.url == t.url + "/ok"
    path, headers = server.server.requests[-1]
    assert path == "/ok"
    assert headers["Accept"] == "text/plain;version=0.0.4"
    assert headers["Accept-Encoding"] == "gzip"
    assert headers["User-Agent"].startswith("cardguard/")


def test_gzip_is_inflated(server: local_http.Running) -> None:
    t = target(server.base_url)
    res = Fetcher(t).get(t.url + "/gzip")
    assert res.body == PAGE * 1000
    assert res.wire_bytes < len(res.body)


def test_gzip_bomb_cut_at_limit(server: local_http.Running) -> None:
    t = target(server.base_url)
    err = fail(t, "/bomb")
    assert err.reason == "too_large"
    assert "decompressed body exceeds the limit of 1048576 bytes" in err.message


def test_oversized_body_with_length(server: local_http.Running) -> None:
    err = fail(target(server.base_url), "/big")
    assert err.reason == "too_large" and "announced 1048577 bytes" in err.message


def test_endless_body_cut_at_limit(server: local_http.Running) -> None:
    err = fail(target(server.base_url), "/endless")
    assert err.reason == "too_large" and "body exceeds the limit" in err.message


def test_slow_drip_cut_at_total_deadline(server: local_http.Running) -> None:
    # Bytes arrive every 50ms so no single read times out; only a total deadline stops it.
    t = target(server.base_url, timeout=0.5)
    start = time.monotonic()
    err = fail(t, "/drip")
    elapsed = time.monotonic() - start
    assert err.reason == "timeout"
    assert elapsed < 2.0, f"deadline of 0.5s not enforced: took {elapsed:.2f}s"


def test_no_headers_times_out(server: local_http.Running) -> None:
    err = fail(target(server.base_url, timeout=0.3), "/stall")
    assert err.reason == "timeout"


def test_dead_port() -> None:
    with dead_url() as url:
        err = fail(target(url), "/metrics")
    assert err.reason == "connect" and "connection refused" in err.message


@pytest.mark.parametrize(
    ("path", "reason", "text"),
    [
        ("/404", "http_status", "HTTP 404"),
        ("/500", "http_status", "HTTP 500"),
        ("/401", "auth", "HTTP 401"),
        ("/other-host", "redirect", "redirected to another host"),
        ("/loop", "redirect", "more than 5 redirects"),
        ("/corrupt-gzip", "decompress", "corrupt gzip"),
        ("/truncated-gzip", "decompress", "truncated gzip"),
        ("/brotli", "decompress", "only gzip is accepted"),
    ],
)
def test_failure_reasons(server: local_http.Running, path: str, reason: str, text: str) -> None:
    err = fail(target(server.base_url), path)
    assert err.reason == reason
    assert text in err.message


def test_same_host_redirect_followed(server: local_http.Running) -> None:
    t = target(server.base_url)
    res = Fetcher(t).get(t.url + "/same-host")
    assert res.body == PAGE and res.url.endswith("/ok")


def test_basic_auth_from_file_and_headers(server: local_http.Running, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    t = target(
        server.base_url,
        basic_auth=BasicAuth(username="scraper", password_file=pw),
        headers=(("X-Scope", Secret("team-a")),),
    )
    res = Fetcher(t).get(t.url + "/echo-auth")
    assert res.body == b"Basic " + base64.b64encode(b"scraper:s3cret")
    assert server.server.requests[-1][1]["X-Scope"] == "team-a"
    # Rotated on disk: the next fetch uses the new password.
    pw.write_text("rotated")
    res = Fetcher(t).get(t.url + "/echo-auth")
    assert res.body == b"Basic " + base64.b64encode(b"scraper:rotated")


def test_bearer_token_file(server: local_http.Running, tmp_path: Path) -> None:
    tok = tmp_path / "token"
    tok.write_text("tok-123\n")
    t = target(server.base_url, bearer_token_file=tok)
    assert Fetcher(t).get(t.url + "/echo-auth").body == b"Bearer tok-123"
    tok.unlink()
    err = fail(t, "/echo-auth")
    assert err.reason == "auth" and "tok-123" not in err.message


def test_secrets_never_in_errors(server: local_http.Running) -> None:
    t = target(
        server.base_url,
        basic_auth=BasicAuth(username="u", password=Secret("pw-sekrit")),
        headers=(("X-Api-Key", Secret("key-sekrit")),),
    )
    for path in ("/404", "/other-host", "/bomb", "/401"):
        err = fail(t, path)
        assert "sekrit" not in str(err) and "X-Api-Key" not in str(err)
    assert redact_url("http://user:pw@host:1/x") == "http://<redacted>@host:1/x"
    assert redact_url("http://host/x") == "http://host/x"


# --- TLS with certificates made by openssl in the test ---------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem", cwd=d,
    )  # fmt: skip
    for name, cn in (("server", "localhost"), ("client", "cardguard")):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d,
        )  # fmt: skip
        (d / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=d,
        )  # fmt: skip
    return d


@pytest.fixture(scope="module")
def tls_server(certs: Path) -> Iterator[local_http.Running]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "server.pem", certs / "server.key")
    ctx.load_verify_locations(certs / "ca.pem")
    ctx.verify_mode = ssl.CERT_OPTIONAL
    with local_http.serve({"/ok": local_http.ok(PAGE)}, tls=ctx) as srv:

        def whoami(h: local_http.Handler) -> None:
            sock = h.connection
            peer = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
            h.send_body(200, repr(peer is not None and bool(peer)).encode())

        srv.routes["/whoami"] = whoami
        yield srv


def test_tls_with_ca(tls_server: local_http.Running, certs: Path) -> None:
    t = target(tls_server.base_url, tls=TLSConfig(ca_file=certs / "ca.pem"))
    assert Fetcher(t).get(t.url + "/ok").body == PAGE


def test_tls_unknown_ca_refused(tls_server: local_http.Running) -> None:
    err = fail(target(tls_server.base_url), "/ok")
    assert err.reason == "tls" and "certificate verification failed" in err.message


def test_tls_insecure_skip_verify_only_when_asked(tls_server: local_http.Running) -> None:
    t = target(tls_server.base_url, tls=TLSConfig(insecure_skip_verify=True))
    assert Fetcher(t).get(t.url + "/ok").body == PAGE


def test_tls_client_certificate(tls_server: local_http.Running, certs: Path) -> None:
    plain = target(tls_server.base_url, tls=TLSConfig(ca_file=certs / "ca.pem"))
    assert Fetcher(plain).get(plain.url + "/whoami").body == b"False"
    with_cert = target(
        tls_server.base_url,
        tls=TLSConfig(
            ca_file=certs / "ca.pem", cert_file=certs / "client.pem", key_file=certs / "client.key"
        ),
    )
    assert Fetcher(with_cert).get(with_cert.url + "/whoami").body == b"True"


def test_tls_to_a_pinned_address_checks_the_host_name(certs: Path) -> None:
    """Connected to an approved address, TLS still speaks to and verifies the URL's host name."""
    names: list[str | None] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "server.pem", certs / "server.key")
    ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)

    def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError(f"resolved {host} although its address was given")

    with local_http.serve({"/ok": local_http.ok(PAGE)}, tls=ctx) as srv:
        tls = TLSConfig(ca_file=certs / "ca.pem")
        # The certificate names localhost (and 127.0.0.1); the socket goes to 127.0.0.1.
        good = target(f"https://localhost:{srv.port}", tls=tls, addresses=("127.0.0.1",))
        assert Fetcher(good, resolve=no_dns).get(good.url + "/ok").body == PAGE
        assert names[-1] == "localhost"
        assert srv.server.requests[-1][1]["Host"] == f"localhost:{srv.port}"
        # Same address, a name the certificate does not hold: refused, though the
        # certificate is valid for the address itself.
        wrong = target(f"https://other.test:{srv.port}", tls=tls, addresses=("127.0.0.1",))
        with pytest.raises(FetchError) as info:
            Fetcher(wrong, resolve=no_dns).get(wrong.url + "/ok")
        assert info.value.reason == "tls" and "certificate verification failed" in str(info.value)
        assert names[-1] == "other.test"
