"""A local hostile HTTP target: one path prefix per way a broken or malicious service can answer.

Run as ``python tests/evil_target.py --good http://127.0.0.1:<demo port>`` (it
prints ``listening on 127.0.0.1:<port>``). Each case lives under its own
prefix and answers like a Go service would be scraped::

    /<case>/metrics
    /<case>/debug/pprof/heap
    /<case>/debug/pprof/goroutine[?debug=1|2]

The server starts in *good* mode: every path is proxied to the real Go
service given by ``--good`` (so the good data is real, not imitated).
``GET /_control/hostile`` turns every case hostile, ``GET /_control/good``
turns it back; ``GET /_control/ready`` answers 200. A case named ``*_profile``
keeps a good ``/metrics`` page while its profiles turn hostile.

Cases (``CASES``): gzip bomb, endless body, slow drip, body far over the size
limit, a 10 MB label value, millions of families (streamed, generated lazily),
invalid UTF-8, an HTML error page with status 200, truncated and corrupt
profiles (made from the real service's own profiles), protobuf with wrong
field types, a connection reset, a redirect to another host, pprof endpoints
that accept the request and never answer (``hanging_profile``; its /metrics
stays good). A DNS failure needs no path: point a target at a host under
``.invalid``.

Not hostile but big: ``/big/<series>/metrics`` streams a valid label
explosion of that many series, to find the largest page cardguard handles.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

MiB = 1024 * 1024

CASES = (
    "gzip_bomb",
    "endless",
    "slow_drip",
    "huge_body",
    "huge_label",
    "many_families",
    "invalid_utf8",
    "html_200",
    "truncated_profile",
    "corrupt_profile",
    "wrong_types_profile",
    "conn_reset",
    "redirect_other_host",
    "hanging_profile",
)

# How many families many_families streams, and how big huge_body claims to be.
MANY_FAMILIES = 2_000_000
HUGE_BODY_BYTES = 512 * MiB
LABEL_VALUE_BYTES = 10 * MiB


class State:
    hostile = False
    good: str = ""
    lock = threading.Lock()


def _zeros_gzip(total: int) -> Iterator[bytes]:
    """Stream a gzip member of ``total`` zero bytes, compressed as it goes (about 1000:1)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MiB)
    sent = 0
    while sent < total:
        out = c.compress(block)
        sent += len(block)
        if out:
            yield out
    yield c.flush()


def _lines(prefix: str, count: int) -> Iterator[bytes]:
    """Stream ``count`` sample lines in batches, never holding the page."""
    batch: list[bytes] = []
    for i in range(count):
        batch.append(f"{prefix}{i} {i}\n".encode())
        if len(batch) == 4096:
            yield b"".join(batch)
            batch.clear()
    if batch:
        yield b"".join(batch)


def big_page(series: int) -> Iterator[bytes]:
    """A valid page of one gauge family whose ``path`` label holds ``series`` distinct values."""
    yield b"# HELP app_cache_entries Entries per cached page.\n# TYPE app_cache_entries gauge\n"
    for start in range(0, series, 4096):
        yield b"".join(
            b'app_cache_entries{method="GET",path="/api/v1/users/%d/orders/%x",code="200"} %d\n'
            % (i, (i * 2654435761) & 0xFFFFFFFF, i)
            for i in range(start, min(start + 4096, series))
        )


def _wrong_wire_types() -> bytes:
    """A protobuf whose field numbers are profile.proto's but whose wire types are not."""
    out = bytearray()
    # field 1 (sample_type, a message) sent as a varint; field 6 (string_table) as fixed32;
    # field 2 (sample) as fixed64; field 4 (location) as a length that runs past the end.
    out += bytes([1 << 3 | 0]) + bytes([0x96, 0x01])
    out += bytes([6 << 3 | 5]) + struct.pack("<I", 0xDEADBEEF)
    out += bytes([2 << 3 | 1]) + struct.pack("<Q", 1)
    out += bytes([4 << 3 | 2]) + bytes([0xFF, 0xFF, 0x03]) + b"\x08\x01"
    return bytes(out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "evil-target/1"

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write("evil-target: " + (format % args) + "\n")

    # -- plumbing ----------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str = "text/plain; version=0.0.4",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _stream(
        self,
        chunks: Iterator[bytes],
        ctype: str = "text/plain; version=0.0.4",
        length: int | None = None,
        headers: dict[str, str] | None = None,
        pause: float = 0.0,
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in chunks:
                if length is None:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    self.wfile.write(chunk)
                self.wfile.flush()
                if pause:
                    time.sleep(pause)
            if length is None:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # cardguard hung up, as it should once a limit is hit

    def _proxy(self, path: str) -> None:
        """Serve ``path`` from the real Go service; return its bytes."""
        status, ctype, body, encoding = fetch_good(path)
        headers = {"Content-Encoding": encoding} if encoding else None
        self._send(status, body, ctype, headers)

    # -- routing -----------------------------------------------------------

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path.startswith("/_control/"):
            what = parts.path.rsplit("/", 1)[1]
            if what in ("hostile", "good"):
                State.hostile = what == "hostile"
            self._send(200, f"hostile={State.hostile}\n".encode())
            return
        case, _, rest = parts.path.lstrip("/").partition("/")
        rest = "/" + rest + ("?" + parts.query if parts.query else "")
        if case == "big" and rest.endswith("/metrics"):
            # Not hostile, just big: /big/<series>/metrics is a label explosion of that size.
            self._stream(big_page(int(rest.split("/")[1])))
            return
        if case not in CASES:
            self._send(404, b"no such case\n")
            return
        profile = rest.startswith("/debug/pprof/")
        if not State.hostile or (case.endswith("_profile") and not profile):
            self._proxy(rest)
            return
        HOSTILE[case](self, rest, profile)


def fetch_good(path: str) -> tuple[int, str, bytes, str]:
    """GET ``path`` from the real service, keeping its encoding (gzip stays gzip)."""
    u = urlsplit(State.good)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=20)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
        r = conn.getresponse()
        body = r.read()
        return r.status, r.getheader("Content-Type", ""), body, r.getheader("Content-Encoding", "")
    finally:
        conn.close()


def _good_profile(path: str) -> bytes:
    """The real service's answer for ``path``, gzip-compressed only if it is a .pb.gz."""
    status, _, body, encoding = fetch_good(path)
    if status != 200:
        raise RuntimeError(f"good target answered {status} for {path}")
    if encoding == "gzip" and not body.startswith(b"\x1f\x8b"):
        body = gzip.decompress(body)
    return body


def hanging_profile(h: Handler, rest: str, profile: bool) -> None:
    """Accept the request and never answer (until the client hangs up): a wedged pprof handler."""
    h.close_connection = True
    h.connection.settimeout(600)
    try:
        h.rfile.read(1)  # returns when the client closes its end
    except OSError:
        pass


def gzip_bomb(h: Handler, rest: str, profile: bool) -> None:
    # 8 GiB of zeros, about 8 MB on the wire, sent as Content-Encoding: gzip.
    h._stream(_zeros_gzip(8 * 1024 * MiB), headers={"Content-Encoding": "gzip"})


def endless(h: Handler, rest: str, profile: bool) -> None:
    def forever() -> Iterator[bytes]:
        i = 0
        while True:
            yield b"".join(f'endless_total{{n="{i + j}"}} 1\n'.encode() for j in range(1000))
            i += 1000

    h._stream(forever())


def slow_drip(h: Handler, rest: str, profile: bool) -> None:
    def drip() -> Iterator[bytes]:
        yield b"# TYPE drip gauge\n"
        while True:
            yield b"d"

    h._stream(drip(), pause=0.5)


def huge_body(h: Handler, rest: str, profile: bool) -> None:
    line = b"huge_body_filler_gauge 1\n"
    n = HUGE_BODY_BYTES // len(line)
    h._stream((line * 4096 for _ in range(n // 4096)), length=(n // 4096) * 4096 * len(line))


def huge_label(h: Handler, rest: str, profile: bool) -> None:
    def page() -> Iterator[bytes]:
        yield b'# TYPE huge_label_info gauge\nhuge_label_info{v="'
        for _ in range(LABEL_VALUE_BYTES // MiB):
            yield b"x" * MiB
        yield b'"} 1\n'

    h._stream(page())


def many_families(h: Handler, rest: str, profile: bool) -> None:
    h._stream(_lines("family_", MANY_FAMILIES))


INVALID_UTF8 = (
    b"# TYPE bad_utf8 gauge\n"
    b'bad_utf8{path="/caf\xc3\xa9"} 1\n'
    b'bad_utf8{path="/\xff\xfe\xfd"} 1\n'
    b'bad_utf8{path="\xed\xa0\x80"} 1\n'
)
HTML_200 = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>Bad Gateway</h1><p>upstream connect error</p></body></html>\n"
)


def invalid_utf8(h: Handler, rest: str, profile: bool) -> None:
    h._send(200, INVALID_UTF8)


def html_200(h: Handler, rest: str, profile: bool) -> None:
    h._send(200, HTML_200, "text/html; charset=utf-8")


def truncated_profile(h: Handler, rest: str, profile: bool) -> None:
    h._send(200, truncate(_good_profile(rest)), "application/octet-stream")


def corrupt_profile(h: Handler, rest: str, profile: bool) -> None:
    h._send(200, corrupt(_good_profile(rest)), "application/octet-stream")


def wrong_types_profile(h: Handler, rest: str, profile: bool) -> None:
    h._send(200, gzip.compress(_wrong_wire_types(), mtime=0), "application/octet-stream")


def conn_reset(h: Handler, rest: str, profile: bool) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()
    h.close_connection = True


def redirect_other_host(h: Handler, rest: str, profile: bool) -> None:
    port = h.server.server_address[1]
    h._send(302, b"", headers={"Location": f"http://127.0.0.2:{port}/steal{rest}"})


HOSTILE: dict[str, Callable[[Handler, str, bool], None]] = {
    "gzip_bomb": gzip_bomb,
    "endless": endless,
    "slow_drip": slow_drip,
    "huge_body": huge_body,
    "huge_label": huge_label,
    "many_families": many_families,
    "invalid_utf8": invalid_utf8,
    "html_200": html_200,
    "truncated_profile": truncated_profile,
    "corrupt_profile": corrupt_profile,
    "wrong_types_profile": wrong_types_profile,
    "conn_reset": conn_reset,
    "redirect_other_host": redirect_other_host,
    "hanging_profile": hanging_profile,
}
assert set(HOSTILE) == set(CASES)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def truncate(body: bytes) -> bytes:
    return body[: max(len(body) // 2, 12)]


def corrupt(data: bytes) -> bytes:
    body = bytearray(data)
    if body.startswith(b"\x1f\x8b") and len(body) > 40:
        # Keep the gzip header, scramble the deflate stream.
        for i in range(20, len(body) - 8, 7):
            body[i] ^= 0x5A
    else:
        for i in range(0, len(body), 5):
            body[i] ^= 0xA5
    return bytes(body)


def _plain(body: bytes) -> bytes:
    return gzip.decompress(body) if body.startswith(b"\x1f\x8b") else body


def write_corpus(out: Path) -> None:
    """Write the static hostile bodies, built from the real service's answers, as fuzz seeds."""
    good_heap = _good_profile("/debug/pprof/heap")
    good_g = _good_profile("/debug/pprof/goroutine")
    debug2 = fetch_good("/debug/pprof/goroutine?debug=2")[2]
    files = {
        "profile/truncated-heap.pb.gz": truncate(good_heap),
        "profile/corrupt-heap.pb.gz": corrupt(good_heap),
        "profile/corrupt-heap-raw.pb": corrupt(gzip.decompress(good_heap)),
        "profile/wrong-wire-types.pb.gz": gzip.compress(_wrong_wire_types(), mtime=0),
        "profile/wrong-wire-types.pb": _wrong_wire_types(),
        "goroutine/truncated-goroutine.pb.gz": truncate(good_g),
        "goroutine/truncated-debug2.txt": truncate(debug2),
        "goroutine/corrupt-debug2.txt": corrupt(debug2),
        "exposition-text/invalid-utf8.txt": INVALID_UTF8,
        "exposition-text/html-200.html": HTML_200,
        "exposition-text/truncated-metrics.txt": truncate(_plain(_good_profile("/metrics"))),
        "exposition-openmetrics/html-200.html": HTML_200,
    }
    for name, body in files.items():
        p = out / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--good", required=True, help="base URL of a real Go service")
    ap.add_argument("--hostile", action="store_true", help="start in hostile mode")
    ap.add_argument("--write-corpus", type=Path, help="write static hostile bodies here and exit")
    args = ap.parse_args(argv)
    State.good = args.good
    State.hostile = args.hostile
    if args.write_corpus:
        write_corpus(args.write_corpus)
        return
    host, _, port = args.listen.rpartition(":")
    srv = Server((host, int(port)), Handler)
    print(f"listening on {host}:{srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
