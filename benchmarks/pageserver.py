"""A fleet of Go services for benchmarks: recorded pages whose values change every scrape.

Run as ``python -m benchmarks.pageserver --page PAGE --ports N`` (it prints
``listening on 127.0.0.1:PORT`` once per port). Every path
``/t<i>/metrics`` serves PAGE, a /metrics page recorded from a real
client_golang process, with the sample values replaced: ``--variants``
copies are made at start, each with fresh random values on every sample
line (comment lines untouched), and each request gets the next copy, so two
scrapes in a row of one target never see the same values while the series
stay the same, as on a real service. Answers are gzipped when asked
(pre-compressed, so the server's own CPU stays out of the way).

``/t<i>/debug/pprof/heap`` and ``goroutine?debug=1|2`` serve profiles
recorded from the demo service (tests/testdata/pprof/go1.27);
``goroutineleak`` answers 404, as on Go < 1.26. ``/_stats`` returns, as JSON,
how many /metrics answers were sent to each client (by User-Agent product).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PPROF = REPO / "tests" / "testdata" / "pprof" / "go1.27"
_SAMPLE = re.compile(rb"^([^#\n][^\n]* )([^ \n]+)$", re.M)
TEXT = "text/plain; version=0.0.4; charset=utf-8"


def variants(page: bytes, n: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """``n`` copies of ``page`` with new sample values, each plain and gzipped."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        body = _SAMPLE.sub(lambda m: m.group(1) + str(rnd.randrange(10**9)).encode(), page)
        out.append((body, gzip.compress(body, 6, mtime=0)))
    return out


class State:
    pages: list[tuple[bytes, bytes]] = []
    turn = itertools.count()
    lock = threading.Lock()
    served: dict[str, int] = {}
    heap = b""
    goroutine1 = b""
    goroutine2 = b""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str, gz: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if gz:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/_stats":
            with State.lock:
                body = json.dumps(State.served).encode()
            self._send(200, body, "application/json")
            return
        if path.endswith("/metrics"):
            plain, packed = State.pages[next(State.turn) % len(State.pages)]
            gz = "gzip" in self.headers.get("Accept-Encoding", "")
            self._send(200, packed if gz else plain, TEXT, gz)
            agent = self.headers.get("User-Agent", "-").split("/", 1)[0].lower()
            with State.lock:
                State.served[agent] = State.served.get(agent, 0) + 1
        elif path.endswith("/debug/pprof/heap"):
            self._send(200, State.heap, "application/octet-stream")
        elif path.endswith("/debug/pprof/goroutine"):
            body = State.goroutine2 if "debug=2" in query else State.goroutine1
            self._send(200, body, "text/plain; charset=utf-8")
        else:
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", type=Path, required=True)
    ap.add_argument("--ports", type=int, default=4)
    ap.add_argument("--variants", type=int, default=16)
    args = ap.parse_args(argv)
    State.pages = variants(args.page.read_bytes(), args.variants)
    State.heap = (PPROF / "heap.pb.gz").read_bytes()
    State.goroutine1 = (PPROF / "goroutine.debug1.txt").read_bytes()
    State.goroutine2 = (PPROF / "goroutine.debug2.txt").read_bytes()
    servers = [Server(("127.0.0.1", 0), Handler) for _ in range(args.ports)]
    for srv in servers:
        print(f"listening on 127.0.0.1:{srv.server_address[1]}", flush=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
