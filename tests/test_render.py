"""Report rendering: text tables, JSON, Markdown and the self-contained HTML page.

Goldens under tests/testdata/golden/report/ are whole documents rendered from
the recorded demo set, in every format; after re-recording
(tests/testdata/record.sh report) or an intended change, regenerate them as
tests/golden.py says.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cardguard.commands.snapshots import load_saved
from cardguard.commands.watch import Watch
from cardguard.detect.offender import Offender, offender_id
from cardguard.expose.render.formats import RENDERERS, render
from cardguard.expose.render.html import render_html, report_page, svg_chart
from cardguard.expose.render.json import render_json
from cardguard.expose.render.links import DASHBOARD_TARGET_VAR, DASHBOARD_UID
from cardguard.expose.render.report import TargetReport
from cardguard.settings.rules import DEFAULT_RULES
from golden import check_golden, normalise_html
from support import REPO, TESTDATA

FIXED_TIME = 1_800_000_000.0
GRAFANA = "http://grafana.example:3000"


@pytest.fixture(scope="module")
def demo_report() -> TargetReport:
    w = Watch("demo", DEFAULT_RULES)
    for snap, where in load_saved(TESTDATA / "report" / "demo-current"):
        w.add(snap, where)
    r = w.report("http://127.0.0.1:6060", GRAFANA)
    # The report's own clock is fixed; the snapshots keep their recorded times.
    return dataclasses.replace(r, generated_at=FIXED_TIME)


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


def test_text_golden(demo_report: TargetReport) -> None:
    check_golden("report/demo-current.txt", render([demo_report], "text"))


def test_markdown_golden(demo_report: TargetReport) -> None:
    check_golden("report/demo-current.md", render([demo_report], "markdown"))


def test_json_golden(demo_report: TargetReport) -> None:
    check_golden("report/demo-current.json", render([demo_report], "json"))


def test_html_golden(demo_report: TargetReport) -> None:
    check_golden("report/demo-current.html", render([demo_report], "html"), normalise_html)


def test_colour_only_when_asked(demo_report: TargetReport) -> None:
    plain = render([demo_report], "text")
    coloured = render([demo_report], "text", colour=True)
    assert "\x1b[" not in plain
    assert "\x1b[1;31mcritical\x1b[0m" in coloured  # the severity column, after layout
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_text_is_a_readable_table(demo_report: TargetReport) -> None:
    text = render([demo_report], "text")
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("#   SEVERITY"))
    rows = lines[head + 2 : head + 2 + len(demo_report.offenders)]
    # one row per offender, worst first, columns aligned
    assert [r.split()[1] for r in rows] == [o.severity for o in demo_report.offenders]
    assert len({r.index(r.split()[2]) for r in rows}) == 1
    # only stacks (indented 8), links and ready-to-paste snippets may run past the width
    snippets = {
        line.strip() for o in demo_report.offenders for line in (o.fix_snippet or "").splitlines()
    }
    wrapped = [
        line
        for line in lines
        if not line.startswith(" " * 8) and "://" not in line and line.strip() not in snippets
    ]
    assert max(len(line) for line in wrapped) <= 100
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
    # nothing is loaded at view time: the one script is inline, no stylesheet or image
    assert "link" not in p.tags and "img" not in p.tags
    assert p.tags.count("script") == 1 and "<script src" not in page
    for name, value in p.attrs:
        if name == "src":
            pytest.fail(f"external resource {value}")
        if name == "href":  # in-page anchors, or the Grafana links (not loaded, followed)
            assert value is not None and (value.startswith("#") or value.startswith(GRAFANA))
    # one chart per offender with a trend, plus three flame graphs
    with_trend = sum(
        1 for o in demo_report.offenders if len(o.evidence.get("trend", {}).get("points", ())) >= 2
    )
    assert with_trend >= 3
    assert page.count('<svg class="chart"') == with_trend
    assert page.count('<svg class="flame"') == 3
    text = " ".join(p.text)
    for o in demo_report.offenders:
        assert o.summary in text
        assert o.fix in text


def test_charts_have_a_time_axis_and_hover_values(demo_report: TargetReport) -> None:
    o = next(o for o in demo_report.offenders if o.kind == "heap_growth")
    svg = svg_chart(o.evidence["trend"])
    points = o.evidence["trend"]["points"]
    ticks = re.findall(r'text-anchor="middle">(\d\d:\d\d:\d\d)</text>', svg)
    assert len(ticks) >= 3 and ticks == sorted(ticks)
    hour = time.strftime("%H", time.gmtime(points[0][0]))
    assert ticks[0].startswith(hour)
    # every point names its time and value when hovered
    titles = re.findall(r'<g class="pt"><title>([^<]+)</title>', svg)
    assert len(titles) == len(points)
    assert titles[-1].endswith("UTC: 7.3 MiB")
    assert ", UTC</text>" in svg  # the date the axis is in


def test_links_go_to_the_target_dashboard_over_the_trend(demo_report: TargetReport) -> None:
    board = json.loads((REPO / "grafana" / "dashboards" / "cardguard-target.json").read_text())
    assert board["uid"] == DASHBOARD_UID
    assert DASHBOARD_TARGET_VAR in {v["name"] for v in board["templating"]["list"]}
    page = render_html([demo_report])
    links = re.findall(r'href="(http[^"]+)"', page)
    assert len(links) == 1 + len(demo_report.offenders)
    o = next(o for o in demo_report.offenders if o.kind == "heap_growth")
    link = re.search(rf'id="o-{o.id}".*?href="(http[^"]+)">Grafana', page, re.S)
    assert link is not None
    url = urlsplit(link.group(1).replace("&amp;", "&"))
    assert f"{url.scheme}://{url.netloc}" == GRAFANA
    assert url.path == f"/d/{DASHBOARD_UID}/{DASHBOARD_UID}"
    q = parse_qs(url.query)
    assert q[f"var-{DASHBOARD_TARGET_VAR}"] == ["demo"]
    start, end = o.evidence["trend"]["points"][0][0], o.evidence["trend"]["points"][-1][0]
    assert int(q["from"][0]) < start * 1000 < end * 1000 < int(q["to"][0])
    # without a Grafana URL there is no link, and JSON says null
    bare = dataclasses.replace(demo_report, grafana_url=None)
    assert "Grafana" not in render_html([bare]).split("</header>")[1]
    assert json.loads(render_json([bare]))["dashboard_url"] is None


def test_flame_graphs_show_the_leak_as_growth(demo_report: TargetReport) -> None:
    page = render_html([demo_report])

    def graph(key: str) -> str:
        at = page.index(f'id="flame-demo-{key}"')
        return page[at : page.index("</svg>", at)]

    heap, diff = graph("heap"), graph("heap-diff")
    assert 'data-n="main.renderSection"' in heap
    assert 'class="f grew" data-n="main.renderSection"' in diff
    assert 'class="f shrank" data-n="main.renderSection"' not in diff
    # hovering a frame names it, its file:line and its share
    title = re.search(r'data-n="main.renderSection"[^>]*><title>([^<]+)</title>', diff)
    assert title is not None
    assert "demo-service/main.go:" in title.group(1) and "grew" in title.group(1)
    # the heap_growth offender links to its frame in the graph, with a search for it
    assert 'href="#flame-demo-heap-diff" data-search="^main\\.renderSection$"' in page


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


def test_summaries_read_at_3am(demo_report: TargetReport) -> None:
    growth = next(o for o in demo_report.offenders if o.kind == "heap_growth")
    # one short sentence: the owner with its module path, the growth, how traffic moved
    assert growth.summary.startswith("main.renderSection (demo-service/main.go:234) holds ")
    assert "while the request rate held steady;" in growth.summary
    assert "/s" not in growth.summary  # the rates are evidence, not summary
    assert len(growth.evidence["traffic_rates_per_second"]) >= 2
    assert growth.evidence["traffic"] == "request rate steady (241/s -> 250/s)"
    label = next(o for o in demo_report.offenders if o.kind == "label_explosion")
    # the label is named where the label is meant; the pattern says what its values look like
    assert "1342 distinct start_point values, URL paths (limit 200)" in label.evidence["reasons"]
    for o in demo_report.offenders:
        for frame in o.evidence.get("stack", ()):
            assert "/tmp/" not in frame and "site-packages" not in frame, frame
