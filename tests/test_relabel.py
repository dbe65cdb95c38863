"""relabel: candidates judged on a recorded demo page, Prometheus' relabel semantics, snippets.

The page is the leaky demo's, recorded from the real process
(tests/testdata/report/demo-current). Prometheus itself runs the offered
remedies in tests/test_relabel_prometheus.py.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cardguard.analyse import templates
from cardguard.detect import relabel
from support import TESTDATA

FAMILY = "demo_http_request_duration_seconds"


@pytest.fixture(scope="module")
def rows() -> list[relabel.Labels]:
    page = gzip.decompress(
        (TESTDATA / "report" / "demo-current" / "snapshot-002" / "metrics.txt.gz").read_bytes()
    )
    return relabel.series_of(page, "text", "demo", {FAMILY})[FAMILY]


def test_simulation_follows_prometheus_semantics() -> None:
    s = (("__name__", "m"), ("path", "/a/1"), ("x", "1"))
    labels = dict(s)
    # anchored: a regex matching part of the value does nothing
    assert relabel.apply_step(
        {"source_labels": ["path"], "regex": "/a", "target_label": "p"}, labels
    )
    assert "p" not in labels
    # an empty result deletes the target label
    relabel.apply_step(
        {"source_labels": ["__name__"], "regex": "m", "target_label": "x", "replacement": ""},
        labels,
    )
    assert "x" not in labels
    # ${1} expands; keep and drop decide on the joined source labels
    step = {"source_labels": ["path"], "regex": "(/[^/]*).*", "target_label": "path",
            "replacement": "${1}/*"}  # fmt: skip
    relabel.apply_step(step, labels)
    assert labels["path"] == "/a/*"
    assert not relabel.apply_step(
        {"source_labels": ["__name__", "path"], "regex": "m;/a/.*", "action": "drop"}, labels
    )
    assert relabel.apply_step(
        {"source_labels": ["__name__", "path"], "regex": "m;.*", "action": "keep"}, labels
    )


def test_demo_page_no_rewrite_offered_and_merges_counted(rows: list[relabel.Labels]) -> None:
    p = relabel.plan(FAMILY, "start_point", "url_path", rows, total_series=len(rows) + 100)
    assert p.checked and p.series == len(rows)
    assert [c.kind for c in p.offered] == ["drop", "keep", "sample_limit"]
    refused = {c.kind: c for c in p.refused}
    assert set(refused) == {"rewrite", "remove_label"}
    # the seed's first-segment rewrite folds each method's thousands of paths into one
    first = next(c for c in p.refused if "${1}/*" in c.description)
    children = len({tuple(kv for kv in r if kv[0] not in ("__name__", "quantile")) for r in rows})
    assert first.outcome.largest_merge == children  # every child of the method folds into one
    assert first.outcome.after < 20 and first.outcome.merged == len(rows) - first.outcome.after
    drop = next(c for c in p.offered if c.kind == "drop")
    keep = next(c for c in p.offered if c.kind == "keep")
    # both keep the ten routes the demo's steady traffic uses, five series each
    assert drop.outcome.after == keep.outcome.after == 10 * 5
    assert drop.outcome.merged == keep.outcome.merged == 0


def test_redundant_label_can_be_rewritten() -> None:
    rows = [(("__name__", "jobs"), ("id", str(i)), ("url", f"/jobs/{i}/log")) for i in range(300)]
    p = relabel.plan("jobs", "url", "url_path", rows)
    rewrite = next(c for c in p.offered if c.kind == "rewrite")
    assert rewrite.outcome.after == 300 and rewrite.outcome.merged == 0
    labels = dict(rows[7])
    for step in rewrite.steps:
        relabel.apply_step(step, labels)
    assert labels["url"] == "/jobs/{id}/log"
    assert "# No rewrite" not in p.snippet()


def test_series_read_up_to_a_cap_prove_no_rewrite() -> None:
    """A rewrite that keeps the first N series distinct may still merge the ones past the cap:
    serve reads at most 20,000 series of a family, so past that no rewrite is offered."""
    rows = [(("__name__", "jobs"), ("id", str(i)), ("url", f"/jobs/{i}/log")) for i in range(300)]
    p = relabel.plan("jobs", "url", "url_path", rows, truncated=True)
    assert {c.kind for c in p.offered} <= {"drop", "keep", "sample_limit"}
    assert {"rewrite", "remove_label"} <= {c.kind for c in p.refused}
    assert p.to_dict()["truncated"] is True


def test_snippet_is_yaml_with_the_first_remedy_active(rows: list[relabel.Labels]) -> None:
    p = relabel.plan(FAMILY, "start_point", "url_path", rows, total_series=len(rows))
    doc = yaml.safe_load(p.snippet())
    assert doc["metric_relabel_configs"] == [dict(s) for s in p.offered[0].steps]
    assert "folds series together" in p.snippet()


def test_snippet_passes_promtool(rows: list[relabel.Labels], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: run scripts/bootstrap.sh")
    p = relabel.plan(FAMILY, "start_point", "url_path", rows, total_series=len(rows))
    for c in p.offered:
        job = {"job_name": c.kind, "static_configs": [{"targets": ["x:1"]}]}
        job["metric_relabel_configs"] = [dict(s) for s in c.steps]
        job.update(c.scrape)
        cfg = tmp_path / f"{c.kind}.yml"
        cfg.write_text(yaml.safe_dump({"scrape_configs": [job]}))
        proc = subprocess.run([promtool, "check", "config", str(cfg)], capture_output=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_templates_of_observed_values() -> None:
    assert templates.template_of("/api/v1/users/1000/orders/9e3779b1", "url_path") == (
        "/api/v1/users/{id}/orders/{id}"
    )
    assert templates.template_of("/api/v1/users/7/orders/daa66d2", "url_path") == (
        "/api/v1/users/{id}/orders/{id}"
    )
    assert templates.template_of("/api/v1/health", "url_path") == "/api/v1/health"
    assert templates.template_of("/x/0b7e1c52-8b0a-4b43-9d52-3f6c1a0e9b11", "url_path") == (
        "/x/{uuid}"
    )
    regex = templates.template_regex("/api/v1/users/{id}/orders/{id}")
    assert regex == "/api/v1/users/[^/]+/orders/[^/]+"
