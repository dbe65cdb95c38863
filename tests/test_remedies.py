"""remedies: fixes that fit where the values come from, and code that builds and works.

- a label exploding in node_exporter's textfile collector (Debian's node_exporter,
  run on port 0) is fixed in the script that writes the file, not in a
  process' instrumentation;
- the constrained-label normaliser cardguard writes for the demo, built with Go
  into a small program, maps every observed value to its route and stays bounded;
- DeletePartialMatch is advised from children that stopped moving, and a
  native-histogram configuration with the series it would need.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cardguard.analyse import templates
from cardguard.commands.snapshots import load_saved
from cardguard.commands.watch import Watch
from cardguard.detect import relabel, remedies
from cardguard.settings.rules import DEFAULT_RULES
from promstack import need
from support import TESTDATA, build_go_program, cardguard_argv, go_toolchains, running_on_port_0

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
DEMO = TESTDATA / "report" / "demo-current"
FAMILY = "demo_http_request_duration_seconds"


def demo_offender() -> Any:
    w = Watch("demo", DEFAULT_RULES)
    for snap, where in load_saved(DEMO):
        w.add(snap, where)
    r = w.report(None)
    return next(o for o in r.offenders if o.kind == "label_explosion" and o.label == "start_point")


def test_instrumented_fix_names_call_site_normaliser_stale_children_and_native_form() -> None:
    o = demo_offender()
    code = o.evidence["code"]
    assert o.evidence["source"] == "instrumented"
    assert code["call_site"].startswith("main.apiHandler.ServeHTTP (")
    assert code["function"] == "normaliseStartPoint"
    assert code["routes"] == ["/api/v1/users/{id}/orders/{id}", "/api/v1/users/{id}/profile"]
    assert o.fix.startswith(f"Fix the instrumentation at {code['call_site']}: pass ")
    # the demo observes each raw path once: the children seen at the start never moved
    stale = code["stale"]
    assert stale["stale"] >= 0.9 * stale["observed"] and stale["observed"] >= 50
    assert 'DeletePartialMatch(prometheus.Labels{"start_point": v})' in o.fix
    # a summary: as a native histogram one series per child instead of 3 quantiles + 2
    native = code["native_histogram"]
    assert native["series"] * 5 == native["series_now"]
    assert "NativeHistogramBucketFactor:     1.1," in native["options"]
    assert "--enable-feature=native-histograms" in o.fix
    # the Go code rides in the snippet as comments: the snippet stays YAML
    import yaml

    assert "metric_relabel_configs" in yaml.safe_load(o.fix_snippet)


def test_normaliser_builds_and_bounds_the_observed_values(tmp_path: Path) -> None:
    tools = go_toolchains()
    go = tools.get("current") or tools.get("go1.19")
    if go is None:
        pytest.fail("no Go toolchain: run scripts/bootstrap.sh")
    page = gzip.decompress((DEMO / "snapshot-002" / "metrics.txt.gz").read_bytes())
    rows = relabel.series_of(page, "text", "demo", {FAMILY})[FAMILY]
    values = sorted({v for r in rows for k, v in r if k == "start_point"})
    made = remedies.normaliser("start_point", "url_path", values)
    assert made is not None
    source, routes = made
    src = tmp_path / "normalise"
    src.mkdir()
    (src / "main.go").write_text(
        'package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n\t"regexp"\n\t"strings"\n)\n\n'
        + source
        + "\nfunc main() {\n\ts := bufio.NewScanner(os.Stdin)\n\tfor s.Scan() {\n"
        "\t\tfmt.Println(normaliseStartPoint(s.Text()))\n\t}\n}\n"
    )
    binary = build_go_program(src, go, tmp_path / "bin" / "normalise")
    extra = ["/healthz", "/api/v1/users/12/orders/abc123/x", "/" + "9" * 80]
    out = subprocess.run(
        [str(binary)], input="\n".join(values + extra) + "\n", capture_output=True, text=True
    ).stdout.splitlines()
    got = dict(zip(values + extra, out, strict=True))
    for v in values:
        assert got[v] == templates.template_of(v, "url_path"), v
    assert set(out) <= {*routes, "/healthz", "other"}
    assert got["/healthz"] == "/healthz"  # a fixed route without an ID passes
    assert got["/" + "9" * 80] == "other"


def test_textfile_collector_explosion_is_fixed_in_the_script(tmp_path: Path) -> None:
    need(NODE_EXPORTER)
    textdir = tmp_path / "textfile"
    textdir.mkdir()
    lines = ["# TYPE backup_file_bytes gauge"]
    lines += [
        f'backup_file_bytes{{path="/srv/backup/2026-12-01/db-{i:05d}.tar"}} {i * 4096}'
        for i in range(300)
    ]
    (textdir / "backup.prom").write_text("\n".join(lines) + "\n")
    argv = [
        NODE_EXPORTER,
        "--web.listen-address=127.0.0.1:0",
        "--collector.disable-defaults",
        "--collector.textfile",
        f"--collector.textfile.directory={textdir}",
    ]
    with running_on_port_0(argv, tmp_path / "node.log", ready_path="/metrics") as node:
        proc = subprocess.run(
            cardguard_argv(
                "report", node.base_url, "--duration", "2s", "--interval", "1s", "--format", "json"
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    o = next(
        o
        for o in json.loads(proc.stdout)["offenders"]
        if o["kind"] == "label_explosion" and o["evidence"]["family"] == "backup_file_bytes"
    )
    assert o["evidence"]["source"] == "textfile"
    assert "node_exporter's textfile collector" in o["fix"]
    assert "backup.prom" in o["fix"]
    assert "Fix the script that writes the file" in o["fix"]
    # nothing about a process keeping children or a route template
    assert "child" not in o["fix"] and "route template" not in o["fix"]
    assert "code" not in o["evidence"]
