"""cardguard's own HTTP server facing broken and hostile clients: raw bytes, failed TLS handshakes.

Every case runs against a real ``cardguard serve`` on port 0 and checks the answer
on the wire, the one structured log line it caused (found by the client's own
address), that no traceback reached stderr and that the server still serves.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cardguard.expose.server import MAX_REQUEST_BODY, ClientLog
from support import Process, running_cardguard_serve, wait_for
from tlscerts import Certs, make_certs

HOST = b"Host: cardguard.test\r\n"


def log_lines(proc: Process) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.logs().splitlines() if line.startswith("{")]


def lines_from(proc: Process, peer: str) -> list[dict[str, Any]]:
    return [rec for rec in log_lines(proc) if rec.get("peer") == peer]


def exchange(
    port: int, data: bytes, *, half_close: bool = False, tls: ssl.SSLContext | None = None
) -> tuple[bytes, str]:
    """Send ``data`` on a new connection and read until the server closes it.

    Returns what came back and the client's own address as the server logs it.
    Reading to the end also proves the server closed the connection.
    """
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    host, cport = raw.getsockname()[:2]
    sock: socket.socket = raw
    out = b""
    try:
        if tls is not None:
            sock = tls.wrap_socket(raw, server_hostname="127.0.0.1")
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            out += chunk
    except (ssl.SSLError, ConnectionResetError):
        pass  # how a refused TLS client learns it; the server's log is what is checked
    finally:
        sock.close()
    return out, f"{host}:{cport}"


def no_traceback(proc: Process) -> None:
    assert "Traceback" not in proc.logs(), proc.logs()[-4000:]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    d = tmp_path_factory.mktemp("plain")
    (d / "cardguard.yml").write_text("probe: {allow: ['127.0.0.1']}\n")
    # Debug level, so lines over ClientLog's warning budget still show up (as debug).
    args = (f"--config.file={d / 'cardguard.yml'}", "--log.level=debug")
    with running_cardguard_serve(d / "cardguard.log", *args) as proc:
        yield proc


# (what is wrong, the bytes, status, the log's reason, half-close after sending)
MALFORMED: list[tuple[str, bytes, int, str, bool]] = [
    (
        "content-length-not-a-number",
        b"POST /-/reload HTTP/1.1\r\n" + HOST + b"Content-Length: abc\r\n\r\n",
        400,
        "bad_content_length",
        False,
    ),
    (
        "content-length-negative",
        b"POST /-/reload HTTP/1.1\r\n" + HOST + b"Content-Length: -5\r\n\r\n",
        400,
        "bad_content_length",
        False,
    ),
    (
        "content-length-python-int-syntax",  # int() takes "1_0" and " +7 "; HTTP does not
        b"POST /-/reload HTTP/1.1\r\n" + HOST + b"Content-Length: 1_0\r\n\r\n0123456789",
        400,
        "bad_content_length",
        False,
    ),
    (
        "content-length-huge",
        b"POST /-/reload HTTP/1.1\r\n" + HOST + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n",
        413,
        "body_too_large",
        False,
    ),
    (
        "content-length-over-the-limit",
        b"POST /-/reload HTTP/1.1\r\n"
        + HOST
        + f"Content-Length: {MAX_REQUEST_BODY + 1}\r\n\r\n".encode(),
        413,
        "body_too_large",
        False,
    ),
    (
        "content-length-conflicting-headers",
        b"POST /-/reload HTTP/1.1\r\n" + HOST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
        "bad_content_length",
        False,
    ),
    (
        "content-length-conflicting-list",
        b"POST /-/reload HTTP/1.1\r\n" + HOST + b"Content-Length: 2, 3\r\n\r\nabc",
        400,
        "bad_content_length",
        False,
    ),
    (
        "transfer-encoding",  # with Content-Length too: the classic smuggling pair
        b"POST /-/reload HTTP/1.1\r\n"
        + HOST
        + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        411,
        "length_required",
        False,
    ),
    (
        "body-shorter-than-declared",
        b"POST /-/reload HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nab",
        400,
        "short_body",
        True,
    ),
    ("request-line-garbage", b"GARBAGE\r\n\r\n", 400, "bad_request_line", False),
    ("request-line-bad-version", b"GET / HTTQ/1.1\r\n\r\n", 400, "bad_request_line", False),
    ("request-line-four-words", b"GET / / HTTP/1.1\r\n\r\n", 400, "bad_request_line", False),
    ("http-0.9", b"GET /\r\n\r\n", 400, "bad_request_line", False),
    ("empty-request-line", b"\r\n", 400, "bad_request_line", False),
    (
        "request-line-too-long",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
        414,
        "uri_too_long",
        False,
    ),
    (
        "header-line-too-long",
        b"GET / HTTP/1.1\r\n" + HOST + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n",
        431,
        "headers_too_large",
        False,
    ),
    (
        "too-many-headers",
        b"GET / HTTP/1.1\r\n" + HOST + b"".join(b"X-%d: a\r\n" % i for i in range(150)) + b"\r\n",
        431,
        "headers_too_large",
        False,
    ),
    (
        "non-ascii-method",
        b"G\xc3\xa9T\xff / HTTP/1.1\r\n" + HOST + b"\r\n",
        400,
        "bad_method",
        False,
    ),
    (
        "non-ascii-header-name",
        b"GET / HTTP/1.1\r\n" + HOST + b"\xff\xfe\x1b[31m: x\r\n\r\n",
        400,
        "bad_header",
        False,
    ),
    (
        "header-without-colon",
        b"GET / HTTP/1.1\r\n" + HOST + b"junk\r\nContent-Length: 5\r\n\r\n",
        400,
        "bad_header",
        False,
    ),
    (
        "header-name-with-space",
        b"POST /-/reload HTTP/1.1\r\n" + HOST + b"Content-Length : 5\r\n\r\nhello",
        400,
        "bad_header",
        False,
    ),
    (
        "control-bytes-in-header-value",
        b"GET / HTTP/1.1\r\n" + HOST + b"X-Junk: a\x00\x1b[2Jb\r\n\r\n",
        400,
        "bad_header",
        False,
    ),
    (
        "obs-fold",
        b"GET / HTTP/1.1\r\n" + HOST + b"X-Folded: a\r\n b\r\n\r\n",
        400,
        "bad_header",
        False,
    ),
    (
        "bad-target",
        b"GET http://[::1/metrics HTTP/1.1\r\n" + HOST + b"\r\n",
        400,
        "bad_target",
        False,
    ),
]


@pytest.mark.parametrize(
    ("data", "status", "reason", "half_close"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_a_malformed_request_gets_a_4xx_and_one_log_line(
    plain: Process, data: bytes, status: int, reason: str, half_close: bool
) -> None:
    answer, peer = exchange(plain.port, data, half_close=half_close)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    assert b"\r\nConnection: close" in head
    assert body and b"Traceback" not in body
    wait_for(lambda: len(lines_from(plain, peer)) > 0, 10, f"the log line for {peer}")
    [line] = lines_from(plain, peer)  # exactly one, logged before the answer was sent
    assert line["msg"] == "bad request"
    assert (line["status"], line["reason"]) == (status, reason)
    assert line["level"] in ("warn", "debug")  # debug once over ClientLog's budget
    # Client bytes reach the log escaped: no raw control or non-ASCII characters.
    assert all(" " <= c <= "~" for c in line["request"] + line.get("detail", ""))
    no_traceback(plain)
    assert requests.get(f"{plain.base_url}/-/healthy", timeout=10).status_code == 200


def test_the_body_is_read_before_any_answer(plain: Process) -> None:
    # A refused or unrouted request's body must not be taken for the next request.
    smuggled = b"GET /metrics HTTP/1.1\r\n\r\n"
    two = (
        b"POST /nowhere HTTP/1.1\r\n"
        + HOST
        + b"Content-Length: %d\r\n\r\n" % len(smuggled)
        + smuggled
        + b"GET /-/healthy HTTP/1.1\r\n"
        + HOST
        + b"Connection: close\r\n\r\n"
    )
    answer, _ = exchange(plain.port, two)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"404", b"200"], answer


def test_unknown_methods_are_4xx(plain: Process) -> None:
    answer, _ = exchange(plain.port, b"BREW / HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 405 ")
    assert b"\r\nAllow: GET, HEAD\r\n" in answer
    answer, _ = exchange(plain.port, b"TRACE /x HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404 ")


def test_an_accept_header_prometheus_client_cannot_parse_gets_text(plain: Process) -> None:
    # prometheus_client raises TypeError on version=abc; that was a 500.
    r = requests.get(
        f"{plain.base_url}/metrics",
        headers={"Accept": "application/openmetrics-text; version=abc"},
        timeout=10,
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "cardguard_" in r.text
    no_traceback(plain)


# --- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def serve_tls(d: Path, certs: Certs, *args: str) -> Any:
    (d / "cardguard.yml").write_text("probe: {allow: ['127.0.0.1']}\n")
    (d / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.ca}\n"
    )
    return running_cardguard_serve(
        d / "cardguard.log",
        f"--config.file={d / 'cardguard.yml'}",
        f"--web.config.file={d / 'web.yml'}",
        *args,
    )


def good_client(proc: Process, certs: Certs) -> int:
    return requests.get(
        f"https://127.0.0.1:{proc.port}/-/healthy",
        verify=str(certs.ca),
        cert=(str(certs.client_cert), str(certs.client_key)),
        timeout=10,
    ).status_code


@pytest.fixture(scope="module")
def tls(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    with serve_tls(tmp_path_factory.mktemp("tls"), certs, "--log.level=debug") as proc:
        wait_for(lambda: good_client(proc, certs) == 200, 30, "cardguard with client certs")
        yield proc


# (what the client does, the bytes, whether they go over TLS, the log's reason if pinned)
HANDSHAKES: list[tuple[str, bytes, bool, str | None]] = [
    ("plain-http", b"GET /metrics HTTP/1.1\r\n" + HOST + b"\r\n", False, "http_request"),
    ("garbage", b"\x00\xff\x1b[2J junk \x80" * 40, False, None),  # OpenSSL's words vary
    # TLS 1.3: the client thinks it is done before the server finds no certificate.
    (
        "no-client-cert",
        b"GET /metrics HTTP/1.1\r\n" + HOST + b"\r\n",
        True,
        "peer_did_not_return_a_certificate",
    ),
]


@pytest.mark.parametrize(
    ("data", "as_tls_client", "reason"),
    [case[1:] for case in HANDSHAKES],
    ids=[case[0] for case in HANDSHAKES],
)
def test_a_failed_tls_handshake_is_one_log_line(
    tls: Process, certs: Certs, data: bytes, as_tls_client: bool, reason: str | None
) -> None:
    ctx = ssl.create_default_context(cafile=str(certs.ca)) if as_tls_client else None
    answer, peer = exchange(tls.port, data, tls=ctx)
    assert b"HTTP/" not in answer  # nothing is served without a handshake
    wait_for(lambda: len(lines_from(tls, peer)) > 0, 10, f"the log line for {peer}")
    [line] = lines_from(tls, peer)
    assert line["msg"] == "TLS handshake failed"
    assert line["level"] == "warn"
    assert line["logger"] == "cardguard.expose.server"
    assert line["reason"].replace("_", "").isalnum() and line["reason"].islower()
    if reason is not None:
        assert line["reason"] == reason
    assert line["detail"]
    no_traceback(tls)
    assert good_client(tls, certs) == 200


def test_a_client_that_hangs_up_before_the_handshake_is_debug_only(
    tls: Process, certs: Certs
) -> None:
    # Load balancers' TCP checks and port scans do this all day long.
    answer, peer = exchange(tls.port, b"", half_close=True)
    assert b"HTTP/" not in answer  # at most a TLS alert
    wait_for(lambda: len(lines_from(tls, peer)) > 0, 10, f"the log line for {peer}")
    [line] = lines_from(tls, peer)
    assert (line["msg"], line["level"]) == ("TLS handshake failed", "debug")
    no_traceback(tls)
    assert good_client(tls, certs) == 200


def test_a_handshake_flood_does_not_flood_the_log(certs: Certs, tmp_path: Path) -> None:
    with serve_tls(tmp_path, certs) as proc:  # the default level, info
        wait_for(lambda: good_client(proc, certs) == 200, 30, "cardguard with client certs")
        peers = {exchange(proc.port, b"GET / HTTP/1.1\r\n\r\n")[1] for _ in range(40)}
        assert good_client(proc, certs) == 200
        budget = ClientLog().burst
        wait_for(
            lambda: len([r for r in log_lines(proc) if r.get("peer") in peers]) >= budget,
            10,
            "the warnings within budget",
        )
        warned = [r for r in log_lines(proc) if r.get("peer") in peers]
        assert all(r["level"] == "warn" for r in warned)
        # The bucket refills one line every few seconds; the flood takes well under that.
        assert budget <= len(warned) <= budget + 1
        no_traceback(proc)


# --- the rate limit itself ------------------------------------------------------------


def test_client_log_demotes_lines_over_budget_and_counts_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    cl = ClientLog(burst=3, every=10.0, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="cardguard.expose.server")
    for i in range(5):
        cl.log("bad request", peer=f"10.0.0.1:{i}", reason="bad_content_length")
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING] * 3 + [logging.DEBUG] * 2
    assert all(not hasattr(r, "suppressed") for r in caplog.records)
    caplog.clear()
    now[0] += 10.0  # one line's worth of budget back
    cl.log("bad request", peer="10.0.0.1:9", reason="bad_content_length")
    cl.log("bad request", peer="10.0.0.1:10", reason="bad_content_length")
    [warned, demoted] = caplog.records
    assert warned.levelno == logging.WARNING and warned.__dict__["suppressed"] == 2
    assert demoted.levelno == logging.DEBUG
    caplog.clear()
    cl.log("TLS handshake failed", level=logging.DEBUG, peer="10.0.0.1:11", reason="eof")
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]  # debug costs no budget
