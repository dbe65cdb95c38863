"""What a real Prometheus ingests from a page: one Prometheus, one scrape job per page.

``scrape_all(pages, workdir)`` serves every page from one HTTP server on
127.0.0.1 (port 0) with its own path and Content-Type, starts Debian's
Prometheus (2.42, through ``promstack``) with one scrape job per page, waits
until every target has been scraped, and returns per page either the scrape
error Prometheus reports (``/api/v1/targets`` lastError) or the series it
stored (an instant query ``{job=~"p[0-9]+"}``).

Jobs set ``honor_timestamps: false``: every sample is stored at scrape time,
so the series a page yields do not depend on the timestamps it carries (old
ones would be out of bounds, repeated ones duplicates). Series come back
without the ``job`` and ``instance`` target labels; a page's own ``job`` or
``instance`` label comes back as ``exported_job``/``exported_instance``, as
Prometheus renames it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

import promstack
from local_http import ok, serve
from support import wait_for

# Series Prometheus adds to every scrape job itself.
SYNTHETIC = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)

Labels = tuple[tuple[str, str], ...]
Series = tuple[str, Labels]


@dataclass(frozen=True)
class Page:
    """One page to scrape: a unique name, its body and the Content-Type it is served with."""

    name: str
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Outcome:
    """What Prometheus made of one page: the scrape error, or the series stored."""

    error: str | None
    series: frozenset[Series]

    def per_name(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for name, _ in self.series:
            out[name] += 1
        return dict(out)


def as_prometheus_stores(name: str, labels: Iterable[tuple[str, str]]) -> Series:
    """The series Prometheus stores for a sample of a page.

    Every label of a name that has an empty value is dropped, and a page's
    ``job`` or ``instance`` becomes ``exported_job``/``exported_instance``
    (the first value, where the page repeats it).
    """
    pairs = list(labels)
    empty = {k for k, v in pairs if not v}
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in empty:
            continue
        if k in ("job", "instance"):
            k = "exported_" + k
            if k in out:
                continue
        out[k] = v
    return name, tuple(sorted(out.items()))


def scrape_all(pages: Sequence[Page], workdir: Path, timeout: float = 120) -> dict[str, Outcome]:
    """Scrape every page once with one Prometheus; return each page's outcome by name."""
    assert len({p.name for p in pages}) == len(pages), "page names must be unique"
    routes = {f"/p/{i}": ok(p.body, p.content_type) for i, p in enumerate(pages)}
    with serve(routes) as srv:
        config: dict[str, object] = {
            "global": {"scrape_interval": "2s", "scrape_timeout": "2s"},
            "scrape_configs": [
                {
                    "job_name": f"p{i}",
                    "honor_timestamps": False,
                    "metrics_path": f"/p/{i}",
                    "static_configs": [{"targets": [f"127.0.0.1:{srv.port}"]}],
                }
                for i in range(len(pages))
            ],
        }
        with promstack.prometheus(workdir, config, name="oracle") as prom:
            targets: dict[str, dict[str, object]] = {}
            stored: dict[str, set[Series]] = defaultdict(set)

            def read_targets() -> bool:
                r = requests.get(f"{prom.base_url}/api/v1/targets", timeout=10)
                r.raise_for_status()
                targets.clear()
                for t in r.json()["data"]["activeTargets"]:
                    targets[t["labels"]["job"]] = t
                return len(targets) == len(pages) and all(
                    t["health"] != "unknown" and not str(t["lastError"]).startswith('Get "')
                    for t in targets.values()
                )

            def all_scraped() -> bool:
                # Every page scraped, and its samples committed: the scrape's own
                # ``up`` is stored with them. A scrape that failed before parsing
                # (a busy machine) does not count; the next one decides.
                if not read_targets():
                    return False
                r = requests.get(
                    f"{prom.base_url}/api/v1/query",
                    params={"query": '{job=~"p[0-9]+"}'},
                    timeout=30,
                )
                r.raise_for_status()
                stored.clear()
                for item in r.json()["data"]["result"]:
                    metric = dict(item["metric"])
                    job = metric.pop("job")
                    metric.pop("instance", None)
                    name = metric.pop("__name__")
                    stored[job].add((name, tuple(sorted(metric.items()))))
                up = {job for job, series in stored.items() if ("up", ()) in series}
                return len(up) == len(pages) and read_targets()

            wait_for(all_scraped, timeout, "Prometheus to scrape every page", step=0.5)
    out: dict[str, Outcome] = {}
    for i, page in enumerate(pages):
        t = targets[f"p{i}"]
        error = str(t.get("lastError") or "") or None
        series = frozenset(
            s for s in stored.get(f"p{i}", ()) if not (s[0] in SYNTHETIC and s[1] == ())
        )
        out[page.name] = Outcome(error, frozenset() if error else series)
    return out
