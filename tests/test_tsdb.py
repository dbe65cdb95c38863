"""Fleet mode: /api/v1/status/tsdb from a real Prometheus that scraped a label explosion."""

from __future__ import annotations

import json

import pytest
import requests

from cardguard.errors import ParseError
from cardguard.parse import tsdb
from promstack import prometheus, pushgateway, query
from support import wait_for

EXPLODED = 2500


def explosion_page(n: int) -> str:
    lines = ["# TYPE leaky_requests_total counter"]
    lines += [f'leaky_requests_total{{path="/user/{i}/profile"}} {i}' for i in range(n)]
    lines += ["# TYPE steady_up gauge", 'steady_up{zone="a"} 1']
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real Prometheus scraping a real Pushgateway holding a pushed label explosion."""
    work = tmp_path_factory.mktemp("tsdb")
    with pushgateway(work) as pgw:
        r = requests.put(
            f"{pgw.base_url}/metrics/job/leaky/instance/a",
            data=explosion_page(EXPLODED),
            timeout=10,
        )
        r.raise_for_status()
        config = {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "pushgateway",
                    "honor_labels": True,
                    "static_configs": [{"targets": [f"127.0.0.1:{pgw.port}"]}],
                }
            ],
        }
        with prometheus(work, config) as prom:
            # Ask the query API, not the status endpoint: Prometheus caches the
            # status lists for 30s, so an early empty answer would stick.
            def scraped() -> bool:
                got = query(prom, "count(leaky_requests_total)")
                return bool(got) and int(float(got[0]["value"][1])) == EXPLODED  # type: ignore[index]

            wait_for(scraped, 60, "Prometheus to ingest the pushed explosion")
            yield prom


def test_parse_real_status_finds_the_explosion(central) -> None:  # type: ignore[no-untyped-def]
    body = requests.get(f"{central.base_url}/api/v1/status/tsdb", params={"limit": 5}, timeout=5)
    status = tsdb.parse(body.content, central.base_url, limit=5)
    assert status.head.num_series >= EXPLODED
    assert status.series_by_metric[0] == ("leaky_requests_total", EXPLODED)
    assert dict(status.values_by_label)["path"] == EXPLODED
    assert "path" in dict(status.memory_by_label)
    assert ("job=leaky", EXPLODED + 1) in status.series_by_pair or dict(status.series_by_pair)[
        "job=leaky"
    ] >= EXPLODED
    assert len(status.series_by_metric) <= 5


def test_view_is_bounded_and_sticky(central) -> None:  # type: ignore[no-untyped-def]
    body = requests.get(f"{central.base_url}/api/v1/status/tsdb", params={"limit": 50}, timeout=5)
    status = tsdb.parse(body.content, central.base_url, limit=50)
    view = tsdb.TSDBView.new(cap=3, family_threshold=10, label_threshold=10)
    rows = view.rows(status)
    fam, _ = rows["seriesCountByMetricName"]
    assert fam[0] == ("leaky_requests_total", EXPLODED)
    assert len(fam) <= 4 and fam[-1][0] == tsdb.OTHER
    # Nothing is lost: shown rows plus __other__ add up to what Prometheus reported.
    assert sum(v for _, v in fam) == sum(v for _, v in status.series_by_metric)
    labels, _ = rows["labelValueCountByLabelName"]
    assert ("path", EXPLODED) in labels
    mem, _ = rows["memoryInBytesByLabelName"]
    assert {n for n, _ in mem} <= {n for n, _ in labels}
    # A shown entry stays shown when it falls below the threshold (no churn).
    shrunk = tsdb.TSDBStatus(head=status.head, series_by_metric=(("leaky_requests_total", 1),))
    again, _ = view.rows(shrunk)["seriesCountByMetricName"]
    assert again == [("leaky_requests_total", 1)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b'{"status":"error","error":"bad limit"}', "status is 'error': bad limit"),
        (b'{"status":"success","data":[]}', "data: expected an object"),
        (
            b'{"status":"success","data":{"seriesCountByMetricName":[{"name":"x","value":"7"}]}}',
            "seriesCountByMetricName[0].value: expected a number",
        ),
        (b'{"status":"success","data":{"headStats":{"numSeries":-1}}}', "non-negative"),
    ],
)
def test_bad_bodies_are_typed_errors(body: bytes, message: str) -> None:
    with pytest.raises(ParseError) as err:
        tsdb.parse(body, "http://central:9090/api/v1/status/tsdb")
    assert message in str(err.value)
    assert str(err.value).startswith("http://central:9090/api/v1/status/tsdb")


def test_limit_is_enforced_even_if_the_server_ignores_it() -> None:
    doc = {
        "status": "success",
        "data": {
            "headStats": {"numSeries": 5000, "minTime": 1, "maxTime": 2},
            "seriesCountByMetricName": [{"name": f"m{i}", "value": i} for i in range(5000)],
        },
    }
    status = tsdb.parse(json.dumps(doc).encode(), "x", limit=10)
    assert len(status.series_by_metric) == 10


def test_offender_rules_apply_to_fleet_figures(central, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cardguard.analyse.view import ALL_FAMILIES, TargetView, metrics_point_of_tsdb
    from cardguard.detect.detectors import detect

    body = requests.get(f"{central.base_url}/api/v1/status/tsdb", params={"limit": 20}, timeout=5)
    status = tsdb.parse(body.content, central.base_url, limit=20)
    point = metrics_point_of_tsdb(status, at=1.0)
    view = TargetView(target="central", metrics=(point,))
    found = detect(view)
    explosions = [o for o in found if o.kind == "label_explosion"]
    assert [o.label for o in explosions] == ["path"], [o.summary for o in found]
    assert explosions[0].evidence["family"] == ALL_FAMILIES
    # The same rules, tightened, silence it: fleet figures go through the rules engine.
    from cardguard.settings.rulefile import load_rules_file

    (tmp_path / "rules.yml").write_text("allow: {labels: [path]}\n")
    quiet = load_rules_file(tmp_path / "rules.yml")
    assert not [o for o in detect(view, quiet) if o.kind == "label_explosion"]


def test_fleet_mode_in_cardguard_serve(central, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from support import cardguard_argv, running_cardguard, wait_for

    (tmp_path / "cardguard.yml").write_text(
        "global:\n  caps: {families: 5}\n"
        f"fleet:\n  - name: central\n    url: {central.base_url}\n    interval: 1s\n"
        "    timeout: 1s\n    limit: 20\n    cap: 5\n"
    )
    argv = cardguard_argv(
        "serve",
        f"--config.file={tmp_path / 'cardguard.yml'}",
        "--web.listen-address=127.0.0.1:0",
    )
    with running_cardguard(argv, tmp_path / "cg.log", ready_path="/metrics") as cg:
        url = f"{cg.base_url}/metrics"

        def exported() -> bool:
            text = requests.get(url, timeout=5).text
            want = 'cardguard_tsdb_label_distinct_values{label="path",target="central"}'
            return f"{want} {EXPLODED}.0" in text

        wait_for(exported, 30, "cardguard to re-export the TSDB status")
        text = requests.get(url, timeout=5).text
        lines = text.splitlines()
        fam = [ln for ln in lines if ln.startswith("cardguard_tsdb_family_series{")]
        want = 'cardguard_tsdb_family_series{family="leaky_requests_total",target="central"}'
        assert f"{want} {EXPLODED}.0" in fam
        assert len(fam) <= 6  # cap 5 plus __other__
        assert any('family="__other__"' in ln for ln in fam)
        assert 'cardguard_tsdb_scrape_success{target="central"} 1.0' in lines
        offenders = [ln for ln in lines if ln.startswith("cardguard_fleet_offender{")]
        assert any('kind="label_explosion"' in ln and 'label="path"' in ln for ln in offenders)
