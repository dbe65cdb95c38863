"""Record the snapshot sets under tests/testdata/report/ from real Go processes.

Each set is what ``cardguard report URL --save DIR`` writes (snapshot-NNN/
with metrics.txt.gz, heap.pb.gz, goroutine.txt, and at the end
goroutine-full.txt and goroutineleak.txt where served):

- ``demo-current``: the leaky demo on the current Go, every leak on and fast,
  heap sampled finely (-mem-profile-rate) so the tickers show in the heap;
- ``demo-go1.19``: the same on Debian's Go 1.19 (no goroutineleak endpoint);
- ``demo-healthy``: the demo with ``-healthy`` (every leak off);
- ``prometheus``: Debian's /usr/bin/prometheus scraping itself;
- ``etcd-gzip-1``, ``etcd-gzip-2``: Debian's etcd 3.4 (etcd-server) under a put load,
  its /metrics scraped with gzip five times a second while cardguard reads the heap
  (issue 12: a bounded, pre-registered vector of ~700 gRPC method x code counters and
  response buffers of a scrape in flight were called ``children_heap_cost``);
- ``etcd-watch``: the same etcd while 600 clients open watch streams through its HTTP
  gateway over the watch (issue 12: six ``goroutine_leak`` warnings for live streams).
  Its last snapshot's full goroutine dump (4.5 MB of text) is not kept: above
  ``goroutine_full_max`` serve has none either.

``demo-cache-no-gc`` is not re-recorded here: the verdict matrix's cache-only demo row
saved with ``report --save`` when no GC came in its last interval (so the last two heap
profiles are the same), kept for that.

The etcd sets use the verdict matrix's rows (benchmarks/bench_verdicts.py) and a
12s watch at 4s.

Run through ``tests/testdata/record.sh report`` (or directly with the venv's
python). Needs scripts/bootstrap.sh to have run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import promstack  # noqa: E402
from demo_support import DEMO_FAST_FLAGS, build_demo, start_demo  # noqa: E402
from support import cardguard_argv, go_toolchains  # noqa: E402

OUT = HERE / "report"
WATCH = ("--duration", "6s", "--interval", "3s")
DEMO_FLAGS = (*DEMO_FAST_FLAGS, "-mem-profile-rate=4096", "-cache-entry-bytes=16384")


def save(url: str, name: str, dest: Path, watch: tuple[str, ...] = WATCH) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    argv = cardguard_argv("report", url, *watch, "--name", name, "--save", str(dest))
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    print(f"recorded {dest}", file=sys.stderr)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tools = go_toolchains()
    with tempfile.TemporaryDirectory(prefix="cardguard-record-") as tmp:
        t = Path(tmp)
        for label in ("current", "go1.19"):
            if label not in tools:
                print(f"skipping demo-{label}: no toolchain", file=sys.stderr)
                continue
            binary = build_demo(tools[label])
            with start_demo(binary, t / f"demo-{label}.log", *DEMO_FLAGS) as proc:
                save(proc.base_url, "demo", OUT / f"demo-{label}")
        if "current" in tools:
            binary = build_demo(tools["current"])
            with start_demo(binary, t / "healthy.log", "-healthy") as proc:
                save(proc.base_url, "demo-healthy", OUT / "demo-healthy")
        config = {"global": {"scrape_interval": "2s"}}
        with promstack.prometheus(t, config, self_job="self") as prom:
            save(prom.base_url, "prometheus", OUT / "prometheus")
        record_etcd(t)


def record_etcd(t: Path) -> None:
    sys.path.insert(0, str(HERE.parent.parent))
    from benchmarks.bench_verdicts import etcd, etcd_watch_row

    watch = ("--duration", "12s", "--interval", "4s")
    for name in ("etcd-gzip-1", "etcd-gzip-2"):
        with etcd(t / name) as url:
            save(url, "etcd", OUT / name, watch)
    with etcd_watch_row(t / "etcd-watch") as url:
        save(url, "etcd", OUT / "etcd-watch", watch)
    for full in (OUT / "etcd-watch").glob("snapshot-*/goroutine-full.txt"):
        full.unlink()


if __name__ == "__main__":
    main()
