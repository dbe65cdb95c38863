"""Fleet mode reads a container's memory from the central Prometheus' cAdvisor series.

cAdvisor does not run here, so its series are a stand-in: the figures of a
real memory cgroup (the demo's, with page cache filled by a second process, as
in test_container_memory) pushed to a real Pushgateway under cAdvisor's names
and labels. Everything past that is real: Debian's Prometheus scrapes the
Pushgateway and the demo itself, and the fleet poller queries it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from cardguard.errors import ConfigError
from cardguard.expose.fleet import FleetPoller
from cardguard.run import cgroupfs
from cardguard.settings.config import GlobalConfig, parse_config
from cardguard.settings.fleet import FleetContainer, FleetServer
from cardguard.settings.rules import DEFAULT_RULES
from promstack import prometheus, pushgateway, query
from support import http_ok, wait_for
from test_container_memory import FILE_BYTES, cgroup, demo_in, fill_page_cache  # noqa: F401


def push_cadvisor(gw_url: str, cg: Path) -> None:
    r = cgroupfs.read(cg)
    labels = 'namespace="shop",pod="demo-0",container="demo"'
    body = "".join(
        f"# TYPE {name} gauge\n{name}{{{labels}}} {value}\n"
        for name, value in (
            ("container_memory_usage_bytes", r.usage_bytes),
            ("container_memory_working_set_bytes", r.working_set_bytes),
            ("container_memory_cache", r.cache_bytes),
            ("container_memory_rss", r.rss_bytes or 0),
            ("container_spec_memory_limit_bytes", r.limit_bytes or 0),
        )
    )
    requests.put(f"{gw_url}/metrics/job/cadvisor", data=body, timeout=5).raise_for_status()


def test_fleet_explains_page_cache_from_cadvisor_series(
    cgroup: Path,  # noqa: F811
    demo_binaries: dict[str, Path],
    tmp_path: Path,
) -> None:
    with (
        demo_in(cgroup, demo_binaries["current"], tmp_path / "demo.log", "-healthy") as demo,
        pushgateway(tmp_path) as gw,
    ):
        wait_for(lambda: http_ok(f"{demo.base_url}/metrics"), 30, "demo /metrics")
        fill_page_cache(cgroup, tmp_path / "backup.tar")
        push_cadvisor(gw.base_url, cgroup)
        jobs = [
            {
                "job_name": "cadvisor",
                "honor_labels": True,
                "scrape_interval": "1s",
                "static_configs": [{"targets": [f"127.0.0.1:{gw.port}"]}],
            },
            {
                "job_name": "demo",
                "scrape_interval": "1s",
                "static_configs": [{"targets": [f"127.0.0.1:{demo.port}"]}],
            },
        ]
        with prometheus(tmp_path, {"scrape_configs": jobs}) as prom:
            wait_for(
                lambda: (
                    bool(query(prom, "container_memory_cache"))
                    and bool(query(prom, 'go_memstats_heap_inuse_bytes{job="demo"}'))
                ),
                60,
                "cAdvisor and demo series in Prometheus",
                step=0.2,
            )
            server = FleetServer(
                name="central",
                url=prom.base_url,
                containers=(
                    FleetContainer("demo", '{namespace="shop",container="demo"}', '{job="demo"}'),
                ),
            )
            poller = FleetPoller(server, lambda: (GlobalConfig(), DEFAULT_RULES), time.time)
            snap = poller.poll()
    assert snap.success
    o = next(o for o in snap.offenders if o.kind == "misleading_memory")
    c = o.evidence["container"]
    assert c["source"] == "cadvisor via central"
    assert c["cache_bytes"] >= 0.8 * FILE_BYTES
    assert o.summary.startswith("container usage ")
    assert "most of the usage is page cache" in o.summary
    assert "; process RSS " in o.summary and "; Go heap in use " in o.summary
    assert "container_memory_working_set_bytes" in o.fix
    assert o.target == "central/demo"


def test_fleet_containers_config_is_checked() -> None:
    good = """
fleet:
  - name: central
    url: http://127.0.0.1:9090
    containers:
      - {name: api, cadvisor: '{namespace="shop",container="api"}', process: '{job="api"}'}
"""
    cfg = parse_config(good, "c.yml")
    assert cfg.fleet[0].containers == (
        FleetContainer("api", '{namespace="shop",container="api"}', '{job="api"}'),
    )
    bad = good.replace("'{job=\"api\"}'", "'job=api'").replace("name: api,", "nam: api,")
    with pytest.raises(ConfigError) as exc:
        parse_config(bad, "c.yml")
    problems = "\n".join(exc.value.problems)
    assert "c.yml:6: fleet[0].containers[0].nam: unknown key" in problems
    assert "fleet[0].containers[0].process: expected a label selector" in problems
