"""Report rendering: text tables, JSON, Markdown and the self-contained HTML page.

Goldens under tests/testdata/report/golden/ are whole documents rendered from
the recorded demo set; after re-recording (tests/testdata/record.sh report)
regenerate them with ``CARDGUARD_UPDATE_GOLDEN=1 pytest tests/test_render.py``.
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cardguard.commands.report import Watch, load_saved
from cardguard.offenders import Offender, offender_id
from cardguard.render import (
    RENDERERS,
    TargetReport,
    render,
    render_html,
    render_json,
    report_page,
    svg_chart,
)
from cardguard.rules import DEFAULT_RULES
from support import TESTDATA

GOLDEN = TESTDATA / "report" / "golden"
FIXED_TIME = 1_800_000_000.0


@pytest.fixture(scope="module")
def demo_report() -> TargetReport:
    w = Watch("demo", DEFAULT_RULES)
    for snap, where in load_saved(TESTDATA / "report" / "demo-current"):
        w.add(snap, where)
    r = w.report("http://127.0.0.1:6060")
    return TargetReport(
        target=r.target,
        url=r.url,
        offenders=r.offenders,
        generated_at=FIXED_TIME,
        window_seconds=r.window_seconds,
        snapshots=r.snapshots,
        notes=r.notes,
    )


def hostile() -> TargetReport:
    """A report whose evidence holds markup, as a hostile target could put in label values."""
    bad = '<script>alert("x")</script>'
    o = Offender(
        id=offender_id("label_explosion", "t", "f"),
        kind="label_explosion",
        severity="warning",
        target="t",
        summary=f"the path label on f creates a new series per {bad}",
        evidence={
            "family": "f",
            "label": "path",
            "examples": [bad, "</pre><img src=x>"],
            "trend": {"title": bad, "unit": "", "points": [[0, 1], [10, 5]]},
            "stack": ["main.<x> (a.go:1)"],
        },
        fix="drop it & move on",
        fix_snippet="a: '<b>'\n",
    )
    return TargetReport(target="t<1>", offenders=(o,), generated_at=FIXED_TIME)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CARDGUARD_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; see the module docstring to regenerate"


def test_text_golden(demo_report: TargetReport) -> None:
    check_golden("demo-current.txt", render([demo_report], "text"))


def test_markdown_golden(demo_report: TargetReport) -> None:
    check_golden("demo-current.md", render([demo_report], "markdown"))


def test_text_is_a_readable_table(demo_report: TargetReport) -> None:
    text = render([demo_report], "text")
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("#   SEVERITY"))
    rows = lines[head + 2 : head + 2 + len(demo_report.offenders)]
    # one row per offender, worst first, columns aligned
    assert [r.split()[1] for r in rows] == [o.severity for o in demo_report.offenders]
    assert len({r.index(r.split()[2]) for r in rows}) == 1
    assert max(len(line) for line in lines if not line.startswith(" " * 8)) <= 100
    for o in demo_report.offenders:
        assert o.fix.split()[0] in text
        assert o.id in text
    assert "metric_relabel_configs:" in text


def test_json_shape(demo_report: TargetReport) -> None:
    doc = json.loads(render_json([demo_report]))
    assert doc["target"] == "demo"
    assert len(doc["offenders"]) == len(demo_report.offenders) >= 3  # one per planted cause
    for o in doc["offenders"]:
        assert {"id", "kind", "severity", "summary", "evidence", "fix"} <= set(o)
        if o["kind"] == "label_explosion":
            assert o["evidence"]["family"] and o["evidence"]["label"]
        if o["kind"] in ("goroutine_leak", "heap_growth"):
            assert o["evidence"]["function"]
    assert doc["counts"]["critical"] == sum(
        1 for o in doc["offenders"] if o["severity"] == "critical"
    )
    many = json.loads(render_json([demo_report, hostile()]))
    assert [t["target"] for t in many["targets"]] == ["demo", "t<1>"]


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained_and_has_trends(demo_report: TargetReport) -> None:
    page = render_html([demo_report])
    p = _Collect()
    p.feed(page)
    assert "script" not in p.tags and "link" not in p.tags and "img" not in p.tags
    for name, value in p.attrs:
        if name in ("src", "href"):
            assert value is not None and value.startswith("#"), (name, value)
    # one chart per offender with a trend
    with_trend = sum(
        1 for o in demo_report.offenders if len(o.evidence.get("trend", {}).get("points", ())) >= 2
    )
    assert with_trend >= 3
    assert p.tags.count("svg") == with_trend
    text = " ".join(p.text)
    for o in demo_report.offenders:
        assert o.summary in text
        assert o.fix in text


def test_html_escapes_everything() -> None:
    page = render_html([hostile()])
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;" in page
    assert "t&lt;1&gt;" in page
    assert "drop it &amp; move on" in page


def test_svg_chart_scales_points() -> None:
    svg = svg_chart({"title": "n", "unit": "bytes", "points": [[0, 0], [5, 512], [10, 1024]]})
    pts = re.search(r'<polyline points="([^"]+)"', svg)
    assert pts is not None
    coords = [tuple(map(float, c.split(","))) for c in pts.group(1).split()]
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # rises to the right
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1])
    assert "1.0 KiB" in svg
    assert svg_chart({"title": "n", "points": [[0, 1]]}) == ""


def test_every_format_renders(demo_report: TargetReport) -> None:
    for fmt in RENDERERS:
        out = render([demo_report, hostile()], fmt)
        assert "demo" in out
    assert report_page([demo_report]).startswith(b"<!DOCTYPE html>")


def test_empty_and_failed_targets_say_so() -> None:
    clean = TargetReport(target="ok", offenders=(), generated_at=FIXED_TIME, snapshots=2)
    down = TargetReport(
        target="down", offenders=(), generated_at=FIXED_TIME, error="connect refused"
    )
    text = render([clean, down], "text")
    assert "No offenders." in text and "error: connect refused" in text
    page = render_html([clean, down])
    assert "No offenders." in page and "connect refused" in page
    assert render_html([]).count("No targets yet.") == 1


def test_report_without_notes_from_real_set(tmp_path: Path) -> None:
    # a set lacking profiles says what was not checked rather than looking clean
    w = Watch("m", DEFAULT_RULES)
    for snap, where in load_saved(TESTDATA / "report" / "demo-healthy"):
        snap.heap = None
        w.add(snap, where)
    r = w.report(None)
    assert "no heap profile: heap growth and children cost were not checked" in r.notes
    assert "note: no heap profile" in render([r], "text")
