"""Every relabel remedy cardguard offers, applied in a real Prometheus 2.42.

A relabel rewrite that folds series together loses data silently: Prometheus
appends one sample per folded label set and counts no error. So for each
offered remedy, on the leaky demo and on a Pushgateway explosion, the test
runs Debian's Prometheus scraping the real target with the remedy and checks:

- no silent merge: the samples the head appended (``prometheus_tsdb_head_samples_appended_total``,
  read from Prometheus' own /metrics) equal the samples that passed relabelling
  over every scrape (``sum_over_time(scrape_samples_post_metric_relabeling)``
  plus the five report samples per scrape), and each job's series in the head
  equal its last scrape's post-relabelling samples;
- the exploding family is cut as the remedy states (``series_after``).

The old first-segment rewrite (now refused) runs too, as the control: the same
check catches it folding series.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from demo_support import DEMO_FAST_FLAGS
from promstack import prometheus, pushgateway, query
from support import Process, cardguard_argv, wait_for

FAMILY = "demo_http_request_duration_seconds"
REPORT_SAMPLES = 5  # up, scrape_duration_seconds, scrape_samples_scraped, _post_..., _series_added
SCRAPES = 4


def report_json(url: str) -> dict[str, Any]:
    proc = subprocess.run(
        cardguard_argv(
            "report", url, "--duration", "3s", "--interval", "1500ms", "--format", "json"
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def explosion(doc: Mapping[str, Any], family: str, label: str) -> dict[str, Any]:
    hits = [
        o
        for o in doc["offenders"]
        if o["kind"] == "label_explosion"
        and o["evidence"]["family"] == family
        and o["evidence"]["label"] == label
    ]
    assert len(hits) == 1, [o["summary"] for o in doc["offenders"]]
    return hits[0]


def job(
    name: str, target: Process, remedy: Mapping[str, Any], honor: bool = False
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "job_name": name,
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "static_configs": [{"targets": [f"127.0.0.1:{target.port}"]}],
        "metric_relabel_configs": list(remedy.get("metric_relabel_configs", ())),
    }
    cfg.update(remedy.get("scrape_config", {}))
    if honor:
        cfg["honor_labels"] = True
    return cfg


def appended(prom: Process) -> float:
    """Samples the head appended, from Prometheus' own /metrics (every type label summed)."""
    text = requests.get(f"{prom.base_url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("prometheus_tsdb_head_samples_appended_total")
    )


def scalar(prom: Process, expr: str) -> float:
    got = query(prom, expr)
    return float(got[0]["value"][1]) if got else 0.0  # type: ignore[index]


def by_job(prom: Process, expr: str) -> dict[str, float]:
    return {
        r["metric"]["job"]: float(r["value"][1])  # type: ignore[index]
        for r in query(prom, expr)
    }


def check_no_silent_merge(prom: Process, jobs: list[str]) -> dict[str, dict[str, float]]:
    """Wait for SCRAPES scrapes of every job; return per-job figures read consistently."""
    sel = "|".join(jobs)
    wait_for(
        lambda: (
            len(by_job(prom, f'count_over_time(up{{job=~"{sel}"}}[1h]) >= {SCRAPES}')) == len(jobs)
        ),
        60,
        f"{SCRAPES} scrapes of every job",
        step=0.2,
    )
    for _ in range(120):
        # A scrape can land between two reads; a merge shows on every try, a race not.
        # Ten jobs scraped every second leave short quiet windows on a loaded machine.
        before = appended(prom)
        post = by_job(prom, "sum_over_time(scrape_samples_post_metric_relabeling[1h])")
        scrapes = by_job(prom, "count_over_time(up[1h])")
        last_post = by_job(prom, "scrape_samples_post_metric_relabeling")
        series = by_job(prom, "count by (job) ({__name__=~'.+'})")
        after = appended(prom)
        expected = sum(post[j] + REPORT_SAMPLES * scrapes[j] for j in jobs)
        same_series = all(series[j] == last_post[j] + REPORT_SAMPLES for j in jobs)
        if before == after == expected and same_series:
            break
        time.sleep(0.3)
    # the head appended every sample that passed relabelling, over all scrapes ...
    assert before == expected, (before, post, scrapes)
    # ... and its series are those of its last scrape, none folded
    for j in jobs:
        assert series[j] == last_post[j] + REPORT_SAMPLES, (j, series[j], last_post[j])
    return {"post": post, "last_post": last_post, "series": series}


def check_one_job(prom: Process, name: str) -> None:
    """The same check for a Prometheus with one job whose series keep the page's job labels."""
    wait_for(
        lambda: scalar(prom, f'count_over_time(up{{job="{name}"}}[1h])') >= SCRAPES, 60, "scrapes"
    )
    for _ in range(120):
        before = appended(prom)
        post = scalar(prom, "sum(sum_over_time(scrape_samples_post_metric_relabeling[1h]))")
        scrapes = scalar(prom, "sum(count_over_time(up[1h]))")
        series = scalar(prom, "count({__name__=~'.+'})")
        last_post = scalar(prom, "sum(scrape_samples_post_metric_relabeling)")
        after = appended(prom)
        if before == after == post + REPORT_SAMPLES * scrapes and series == last_post + 5:
            break
        time.sleep(0.3)
    assert before == post + REPORT_SAMPLES * scrapes, (before, post, scrapes)
    assert series == last_post + REPORT_SAMPLES, (series, last_post)


def family_series(prom: Process, job_name: str, names: str) -> float:
    return scalar(prom, f'count({{job="{job_name}",__name__=~"{names}"}})')


# --- the leaky demo ------------------------------------------------------------------------


@pytest.fixture
def demo(demo_service: Any) -> Iterator[Process]:
    with demo_service("current", *DEMO_FAST_FLAGS) as proc:
        yield proc


def test_demo_remedies_never_merge_and_cut_as_stated(demo: Process, tmp_path: Path) -> None:
    o = explosion(report_json(demo.base_url), FAMILY, "start_point")
    relabel = o["evidence"]["relabel"]
    offered = {c["kind"]: c for c in relabel["offered"]}
    refused = {c["description"]: c for c in relabel["refused"]}
    # every rewrite folds the raw paths together: none may be offered
    assert set(offered) == {"drop", "keep", "sample_limit"}, list(offered)
    first_segment = next(c for d, c in refused.items() if "first path segment" in d)
    assert first_segment["merged"] > 0 and first_segment["largest_merge"] > 1
    assert "Aggregating values belongs in the code" in o["fix_snippet"]

    drop, keep, limit = offered["drop"], offered["keep"], offered["sample_limit"]
    guarded = {**drop, "scrape_config": limit["scrape_config"]}
    jobs = {
        "drop": job("drop", demo, drop),
        "keep": job("keep", demo, keep),
        "drop_limited": job("drop_limited", demo, guarded),
    }
    with prometheus(tmp_path, {"scrape_configs": list(jobs.values())}) as prom:
        figures = check_no_silent_merge(prom, list(jobs))
        names = f"{FAMILY}(_sum|_count)?"
        for name in jobs:
            # cut as stated: what stays of the family is the bounded routes' series
            assert family_series(prom, name, names) == drop["series_after"], name
            assert scalar(prom, f'up{{job="{name}"}}') == 1
        assert keep["series_after"] == drop["series_after"]
        assert figures["last_post"]["drop_limited"] <= limit["scrape_config"]["sample_limit"]
    # The control: the refused rewrite, alone in a Prometheus, fails the same check.
    control = job("control", demo, first_segment)
    with prometheus(tmp_path, {"scrape_configs": [control]}, name="control") as prom:
        with pytest.raises(AssertionError):
            check_no_silent_merge(prom, ["control"])
        post = scalar(prom, 'scrape_samples_post_metric_relabeling{job="control"}')
        head = scalar(prom, 'count({job="control"})') - REPORT_SAMPLES
        assert head < post / 10, (head, post)


def test_demo_sample_limit_alone_fails_the_scrape_as_stated(demo: Process, tmp_path: Path) -> None:
    o = explosion(report_json(demo.base_url), FAMILY, "start_point")
    limit = next(c for c in o["evidence"]["relabel"]["offered"] if c["kind"] == "sample_limit")
    assert "up is 0" in limit["loses"]
    cfg = job("limit_only", demo, limit)
    with prometheus(tmp_path, {"scrape_configs": [cfg]}) as prom:
        wait_for(
            lambda: scalar(prom, 'count_over_time(up{job="limit_only"}[1h])') >= 2, 60, "scrapes"
        )
        # over the limit (nothing dropped first): the scrape fails and stores no sample
        assert scalar(prom, 'max_over_time(up{job="limit_only"}[1h])') == 0
        assert family_series(prom, "limit_only", f"{FAMILY}.*") == 0


# --- a Pushgateway explosion -----------------------------------------------------------------

RUNS = 240


def push_runs(gateway: Process) -> list[str]:
    """A nightly job pushing one group per run: run_id in the grouping key, run_url per run."""
    ids = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(RUNS)]
    with requests.Session() as s:
        for rid in ids:
            body = (
                "# TYPE batch_rows_processed counter\n"
                f'batch_rows_processed{{run_url="/runs/{rid}/log"}} {len(rid)}\n'
                "# TYPE batch_duration_seconds gauge\n"
                "batch_duration_seconds 12.5\n"
            )
            r = s.put(f"{gateway.base_url}/metrics/job/nightly/run_id/{rid}", data=body, timeout=5)
            r.raise_for_status()
        r = s.put(
            f"{gateway.base_url}/metrics/job/backup",
            data="# TYPE backup_last_success_timestamp_seconds gauge\n"
            f"backup_last_success_timestamp_seconds {time.time():.0f}\n",
            timeout=5,
        )
        r.raise_for_status()
    return ids


def test_pushgateway_remedies_never_merge_and_cut_as_stated(tmp_path: Path) -> None:
    with pushgateway(tmp_path) as gw:
        push_runs(gw)
        doc = report_json(gw.base_url)
        # run_url is redundant with run_id: a rewrite keeps every series distinct, and is offered
        url = explosion(doc, "batch_rows_processed", "run_url")
        url_offered = url["evidence"]["relabel"]["offered"]
        rewrite = next(c for c in url_offered if c["kind"] == "rewrite")
        assert rewrite["merged"] == 0 and rewrite["series_after"] == RUNS
        assert url["evidence"]["source"] == "pushgateway"
        # on batch_rows_processed run_url tells runs apart as well as run_id: removing
        # run_id is safe there; on batch_duration_seconds only run_id does, and nothing is
        rid = explosion(doc, "batch_rows_processed", "run_id")
        assert "remove_label" in {c["kind"] for c in rid["evidence"]["relabel"]["offered"]}
        dur = explosion(doc, "batch_duration_seconds", "run_id")
        dur_offered = dur["evidence"]["relabel"]["offered"]
        assert {c["kind"] for c in dur_offered} == {"drop", "sample_limit"}
        assert {c["kind"] for c in dur["evidence"]["relabel"]["refused"]} == {
            "rewrite",
            "remove_label",
        }
        assert "grouping key" in dur["fix"]
        # One scrape job per remedy, all in one Prometheus: without honor_labels, since with
        # it every job would write the same series (job="nightly") over the others'. The
        # usual honor_labels setup is checked alone below.
        jobs: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {}
        for who, o in (("url", url), ("id", rid), ("dur", dur)):
            for i, c in enumerate(o["evidence"]["relabel"]["offered"]):
                name = f"{who}_{i}_{c['kind']}"
                jobs[name] = (job(name, gw, c), c, o["evidence"]["family"])
        with prometheus(tmp_path, {"scrape_configs": [j for j, _, _ in jobs.values()]}) as prom:
            check_no_silent_merge(prom, list(jobs))
            for name, (_, c, fam) in jobs.items():
                # every remedy cuts the family to what it states, and touches no other group
                assert family_series(prom, name, fam) == c["series_after"], name
                assert family_series(prom, name, "backup_last_success_timestamp_seconds") == 1
                assert scalar(prom, f'up{{job="{name}"}}') == 1
                if c["kind"] == "rewrite" and name.startswith("url_"):
                    bounded = f'count(count by (run_url) (batch_rows_processed{{job="{name}"}}))'
                    assert scalar(prom, bounded) == 1
            assert c_after(dur_offered, "drop") == 0
            assert c_after(url_offered, "rewrite") == RUNS
        honored = job("pushgateway", gw, rewrite, honor=True)
        with prometheus(tmp_path, {"scrape_configs": [honored]}, name="honor") as prom:
            check_one_job(prom, "pushgateway")
            assert scalar(prom, "count(batch_rows_processed)") == RUNS
            assert scalar(prom, "count(count by (run_url) (batch_rows_processed))") == 1


def c_after(offered: list[dict[str, Any]], kind: str) -> float:
    return float(next(c for c in offered if c["kind"] == kind)["series_after"])
