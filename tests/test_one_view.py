"""One recorded watch, two ways of watching it: ``serve``'s /report and ``cardguard report``.

Both build the view detection reads with :class:`cardguard.analyse.watch.ViewBuilder`,
so the same inputs must name the same offenders with the same stacks and file:line.

The watch is tests/testdata/report/demo-go1.19: three snapshots of the real leaky
demo (Go 1.19: a label explosion, a goroutine leak, a growing cache) taken 3 s
apart. A local server replays it to ``serve``: each endpoint answers its recorded
snapshots in order, one per request, then 503, so ``serve`` reads exactly the
bytes ``cardguard report --from`` reads, on the same 3 s schedule. The full
goroutine dump (debug=2) of the last snapshot is left out of both: ``serve`` is
told to read the counted form (``goroutine_full_max: 0``), the proto one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import requests

import local_http
from replay import replay
from support import cardguard_argv, running_cardguard_serve, wait_for

RECORDED = Path(__file__).parent / "testdata" / "report" / "demo-go1.19"
NAME = "demo"


def comparable(doc: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """What must agree: each offender's kind, subject, severity and every stack with file:line.

    Summaries carry rates and spans measured on each side's clock; they are left out.
    """
    out = {}
    for o in doc["offenders"]:
        ev = o["evidence"]
        out[o["id"]] = (
            o["kind"],
            o["severity"],
            ev.get("family"),
            ev.get("label"),
            ev.get("function"),
            ev.get("created_by"),
            ev.get("call_site"),
            tuple(ev.get("stack") or ()),
        )
    return out


def test_serve_and_report_name_the_same_offenders_with_the_same_stacks(tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    shutil.copytree(RECORDED, watch)
    for full in watch.glob("*/goroutine-full.txt"):
        full.unlink()
    snapshots = sorted(p for p in watch.iterdir() if p.is_dir())

    out = subprocess.run(
        cardguard_argv("report", "--from", str(watch), "--name", NAME, "--format", "json"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    by_report = comparable(json.loads(out.stdout))
    kinds = {v[0] for v in by_report.values()}
    assert {"label_explosion", "goroutine_leak", "heap_growth"} <= kinds, by_report

    with local_http.serve(replay(snapshots)) as target:
        (tmp_path / "cardguard.yml").write_text(
            "global: {scrape_interval: 3s, scrape_timeout: 2s}\n"
            f"targets:\n  - name: {NAME}\n    url: {target.base_url}\n"
            "    profiles: {interval: 3s, goroutine_full_max: 0, goroutineleak: 'false'}\n"
        )
        with running_cardguard_serve(
            tmp_path / "serve.log", f"--config.file={tmp_path / 'cardguard.yml'}"
        ) as proc:
            base = f"http://127.0.0.1:{proc.port}"

            def replayed() -> bool:
                # Every endpoint past the recording: serve has read all of it.
                paths = [p.split("?", 1)[0] for p, _ in target.server.requests]
                return all(
                    paths.count(p) > len(snapshots)
                    for p in ("/metrics", "/debug/pprof/heap", "/debug/pprof/goroutine")
                )

            wait_for(replayed, 120, "serve to read the whole recording")
            (doc,) = requests.get(f"{base}/report", params={"format": "json"}, timeout=30).json()[
                "targets"
            ]
            metrics = requests.get(f"{base}/metrics", timeout=30).text
    assert doc["snapshots"] == len(snapshots), doc
    by_serve = comparable(doc)
    assert by_serve == by_report
    # One heap owner: each owner an offender names has its series, with the same bytes.
    owners = [o["evidence"] for o in doc["offenders"] if o["kind"] == "heap_growth"]
    assert owners, doc["offenders"]
    for ev in owners:
        series = f'cardguard_heap_owner_inuse_bytes{{function="{ev["function"]}",target="{NAME}"}}'
        line = next((ln for ln in metrics.splitlines() if ln.startswith(series + " ")), None)
        assert line is not None, f"no series for {ev['function']}"
        assert float(line.rsplit(" ", 1)[1]) == ev["inuse_bytes"]
    stacks = [v[-1] for v in by_serve.values() if v[0] == "goroutine_leak"]
    assert stacks and all(
        ".go:" in frame for stack in stacks for frame in stack if frame.startswith("main.")
    ), stacks
