"""The relabel snippet quotes UTF-8 metric and label names so Prometheus reads them back exactly.

cardguard now reads quoted UTF-8 names (``{"http.server.request.duration",
"http.route"="/x"}``), so a label explosion can be on such a name and the
``fix_snippet`` has to carry it. Legacy names stay bare, as before. Other
names are quoted so the YAML gives back exactly the name (dots, quotes,
blanks, a newline, a line separator), and the names inside comments are
escaped so none ends its comment.

Prometheus 2.42 refuses UTF-8 names in a relabel config; promtool confirms it
does so on the name, after reading the YAML. No Prometheus 3 runs here, so
what it would do with the steps is checked with ``relabel.apply_step`` (the
module's own simulation of Prometheus' relabelling) on the steps the YAML
gives back, with Python's ``re`` standing in for RE2 (``templates.regex_escape``
only writes escapes both read the same way).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cardguard.detect import relabel

NAMES = [
    ("http.server.request.duration", "http.route"),
    ("odd \"quoted\" 'name'", "label with spaces"),
    ("back\\slash\nnew line", "tab\there"),
    ("brackets{} # [x]: y", "colon: hash # comma,"),
    ("unicode.é.€.\u2028", "ключ.😀"),
]


def _rows(family: str, label: str) -> list[relabel.Labels]:
    """Series of ``family`` whose ``label`` holds a user id, told apart by ``id`` too."""
    return [
        tuple(sorted((("__name__", family), (label, f"/api/v1/users/{i}"), ("id", str(i)))))
        for i in range(30)
    ]


def _steps(snippet: str) -> list[dict[str, object]]:
    doc = yaml.safe_load(snippet)
    steps: list[dict[str, object]] = doc["metric_relabel_configs"]
    return steps


def _promtool(snippet: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: run scripts/bootstrap.sh")
    body = "\n".join("    " + line for line in snippet.splitlines())
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "scrape_configs:\n  - job_name: x\n    static_configs: [{targets: ['x:1']}]\n" + body + "\n"
    )
    return subprocess.run([promtool, "check", "config", str(cfg)], capture_output=True, text=True)


def test_legacy_names_stay_bare(tmp_path: Path) -> None:
    snippet = relabel.plan("api_latency_seconds", "start_point", "url_path", None).snippet()
    assert "source_labels: [__name__, start_point]" in snippet
    proc = _promtool(snippet, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("family", "label"), NAMES)
def test_utf8_names_come_back_exactly_and_the_steps_select_the_family(
    family: str, label: str
) -> None:
    # Unchecked (no live series): the snippet drops the family's series with the label.
    (drop,) = _steps(relabel.plan(family, label, "url_path", None).snippet())
    assert drop["source_labels"] == ["__name__", label]
    assert drop["action"] == "drop"
    for sample in (family, family + "_count", family + "_bucket"):
        assert not relabel.apply_step(drop, {"__name__": sample, label: "/api/v1/x"})
        assert relabel.apply_step(drop, {"__name__": sample, "other": "/api/v1/x"})
    for other in (family + "x", "x" + family):
        assert relabel.apply_step(drop, {"__name__": other, label: "/api/v1/x"})
    # Checked on live series that another label tells apart: a rewrite, target_label included.
    rows = _rows(family, label)
    p = relabel.plan(family, label, "url_path", rows, total_series=len(rows))
    steps = _steps(p.snippet())
    assert steps == [dict(s) for s in p.offered[0].steps]
    assert all(s["source_labels"] == ["__name__", label] for s in steps)
    rewrite = next(s for s in steps if "target_label" in s)
    assert rewrite["target_label"] == label
    labels = dict(rows[0])
    assert relabel.apply_step(rewrite, labels)
    assert labels[label] in ("/api/v1/users/{id}", "/api/*")


@pytest.mark.parametrize(("family", "label"), NAMES)
def test_comments_hold_the_names_on_one_line(family: str, label: str) -> None:
    rows = _rows(family, label)
    for p in (
        relabel.plan(family, label, "url_path", None),
        relabel.plan(family, label, "url_path", rows, total_series=len(rows)),
    ):
        snippet = p.snippet()
        yaml.safe_load(snippet)
        for line in snippet.splitlines():
            assert line.startswith(("#", "metric_relabel_configs:", "  ")), line


def test_prometheus_2_refuses_utf8_names_on_the_name(tmp_path: Path) -> None:
    for family, label in NAMES:
        proc = _promtool(relabel.plan(family, label, "uuid", None).snippet(), tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "is not a valid label name" in out, out
        assert "yaml:" not in out, out
