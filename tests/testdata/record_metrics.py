"""Record real /metrics pages from real Go processes into tests/testdata/metrics/.

Run through ``tests/testdata/record.sh metrics`` (or directly with the venv's
python). Every page comes from a running program that uses client_golang:

- ``prometheus.txt``            Debian's prometheus, Accept: text/plain;version=0.0.4
- ``prometheus.txt.gz``         the same, gzip-encoded exactly as served
- ``omserver.om.txt``           tests/testdata/metrics/omserver (client_golang with
                                OpenMetrics enabled) asked with Prometheus' Accept header
- ``omserver.txt`` / ``omserver.txt.gz``  the same server in text format, plain and gzip
- ``alertmanager.txt``          Debian's prometheus-alertmanager
- ``pushgateway-explosion.txt`` Debian's prometheus-pushgateway after pushes whose
                                ``start_point`` label is a request URL (one push per URL group)
- ``pushgateway-lint.txt``      the same after a push without HELP text (promtool only lints it)
- ``demo-0.txt`` / ``demo-1.txt`` the leaky demo service (deploy/demo-service), two scrapes
                                ``DEMO_GAP`` seconds apart while its label explosion runs
- ``pages.json``                 for each page: Content-Type and the scrape time
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import demo_support  # noqa: E402
import metrics_support  # noqa: E402
import promstack  # noqa: E402
from support import go_toolchains, running_on_port_0, wait_for  # noqa: E402

OUT = HERE / "metrics"
TEXT_ACCEPT = "text/plain;version=0.0.4"
# What Prometheus 2.x sends; cardguard.parse.exposition.ACCEPT_HEADER holds the same value.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PUSH_URLS = 1500
DEMO_GAP = 3.0

pages: dict[str, dict[str, object]] = {}


def save(name: str, resp: requests.Response, *, raw: bool = False) -> None:
    resp.raise_for_status()
    body = resp.raw.read() if raw else resp.content
    (OUT / name).write_bytes(body)
    pages[name] = {
        "content_type": resp.headers.get("Content-Type"),
        "content_encoding": resp.headers.get("Content-Encoding"),
        "time": time.time(),
    }
    print(f"record: metrics: {name} ({len(body)} bytes)", file=sys.stderr)


def get(url: str, accept: str, *, gzip: bool = False, stream: bool = False) -> requests.Response:
    headers = {"Accept": accept, "Accept-Encoding": "gzip" if gzip else "identity"}
    return requests.get(url, headers=headers, timeout=30, stream=stream)


def record_prometheus(tmp: Path) -> None:
    config = {"global": {"scrape_interval": "1s"}}
    with promstack.prometheus(tmp, config, self_job="self") as prom:
        base = prom.base_url

        # Let it scrape itself a few times so its scrape and TSDB families have series.
        def scraped() -> bool:
            r = requests.get(f"{base}/api/v1/query", params={"query": "up"}, timeout=5)
            return bool(r.json()["data"]["result"])

        wait_for(scraped, 60, "prometheus to scrape itself")
        save("prometheus.txt", get(f"{base}/metrics", TEXT_ACCEPT))
        gz = get(f"{base}/metrics", TEXT_ACCEPT, gzip=True, stream=True)
        if gz.headers.get("Content-Encoding") != "gzip":
            raise RuntimeError("prometheus did not gzip its /metrics")
        save("prometheus.txt.gz", gz, raw=True)


def record_omserver(tmp: Path) -> None:
    binary = metrics_support.build_omserver()
    with metrics_support.start_omserver(binary, tmp / "omserver.log", "-urls=300") as p:
        url = f"{p.base_url}/metrics"
        om = get(url, PROMETHEUS_ACCEPT)
        if "openmetrics" not in om.headers.get("Content-Type", ""):
            raise RuntimeError(f"omserver did not serve OpenMetrics: {om.headers}")
        save("omserver.om.txt", om)
        save("omserver.txt", get(url, TEXT_ACCEPT))
        gz = get(url, TEXT_ACCEPT, gzip=True, stream=True)
        if gz.headers.get("Content-Encoding") != "gzip":
            raise RuntimeError("omserver did not gzip its /metrics")
        save("omserver.txt.gz", gz, raw=True)


def record_alertmanager(tmp: Path) -> None:
    cfg = tmp / "alertmanager.yml"
    cfg.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    argv = [
        "/usr/bin/prometheus-alertmanager",
        f"--config.file={cfg}",
        f"--storage.path={tmp / 'am-data'}",
        "--web.listen-address=127.0.0.1:0",
        "--cluster.listen-address=",
    ]
    with running_on_port_0(argv, tmp / "alertmanager.log", ready_path="/-/ready") as am:
        save("alertmanager.txt", get(f"{am.base_url}/metrics", TEXT_ACCEPT))


def record_pushgateway(tmp: Path) -> None:
    argv = [
        "/usr/bin/prometheus-pushgateway",
        "--web.listen-address=127.0.0.1:0",
        "--persistence.file=",
    ]
    with running_on_port_0(argv, tmp / "pushgateway.log", ready_path="/-/ready") as pg:
        base = pg.base_url
        # One group per instance, as a batch job fleet would push; the request
        # URL leaks into start_point, so every push adds new series.
        for instance in range(3):
            lines = [
                "# HELP api_request_latency_seconds Latency by start point.",
                "# TYPE api_request_latency_seconds summary",
            ]
            for i in range(PUSH_URLS // 3):
                n = instance * (PUSH_URLS // 3) + i
                sp = f"/api/v1/users/{10000 + n}/orders/{n * 7919 % 100000:05d}"
                for q, v in (("0.5", 0.012), ("0.9", 0.05), ("0.99", 0.2)):
                    lines.append(
                        f'api_request_latency_seconds{{start_point="{sp}",quantile="{q}"}} {v}'
                    )
                lines.append(f'api_request_latency_seconds_sum{{start_point="{sp}"}} {n * 0.01}')
                lines.append(f'api_request_latency_seconds_count{{start_point="{sp}"}} {n + 1}')
            # With HELP on every family promtool lints clean and prints its table.
            lines.append("# HELP batch_last_success_timestamp_seconds Last successful run.")
            lines.append("# TYPE batch_last_success_timestamp_seconds gauge")
            lines.append(f"batch_last_success_timestamp_seconds {time.time():.3f}")
            r = requests.put(
                f"{base}/metrics/job/checkout/instance/worker-{instance}",
                data=("\n".join(lines) + "\n").encode(),
                timeout=30,
            )
            r.raise_for_status()
        save("pushgateway-explosion.txt", get(f"{base}/metrics", TEXT_ACCEPT))
        # What batch jobs usually push: no HELP. promtool then prints only lint
        # complaints for the page, and no cardinality table.
        r = requests.put(
            f"{base}/metrics/job/cleanup",
            data=b"# TYPE cleanup_deleted_total counter\ncleanup_deleted_total 42\n",
            timeout=30,
        )
        r.raise_for_status()
        save("pushgateway-lint.txt", get(f"{base}/metrics", TEXT_ACCEPT))


def record_demo(tmp: Path) -> None:
    tools = go_toolchains()
    go = tools.get("current") or tools.get("go1.19")
    if go is None:
        raise RuntimeError("no Go toolchain: run scripts/bootstrap.sh")
    binary = demo_support.build_demo(go)
    with demo_support.start_demo(binary, tmp / "demo.log", *demo_support.DEMO_FAST_FLAGS) as p:
        url = f"{p.base_url}/metrics"
        time.sleep(1.0)  # let the explosion get going before the first scrape
        save("demo-0.txt", get(url, TEXT_ACCEPT))
        time.sleep(DEMO_GAP)
        save("demo-1.txt", get(url, TEXT_ACCEPT))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cardguard-record-") as tmp:
        record_prometheus(Path(tmp))
        record_omserver(Path(tmp))
        record_alertmanager(Path(tmp))
        record_pushgateway(Path(tmp))
        record_demo(Path(tmp))
    (OUT / "pages.json").write_text(json.dumps(pages, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
