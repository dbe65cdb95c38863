"""Live snapshots for ``cardguard report``: fetch a target's /metrics and profiles over a watch.

At the start, every ``--interval`` and at the end; the full goroutine dump
(``debug=2``) and goroutineleak only at the end, the dump only under
``--full-goroutines-limit`` goroutines. Progress goes to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from cardguard.analyse import usage
from cardguard.commands.snapshots import DEFAULT_MAX_BYTES, Snapshot
from cardguard.commands.watch import Watch
from cardguard.errors import FetchError, ProfileError
from cardguard.expose.render.report import TargetReport
from cardguard.parse.exposition import ACCEPT_HEADER
from cardguard.pprof import goroutines as gr
from cardguard.run import cgroupfs
from cardguard.settings.rules import Rules
from cardguard.settings.targets import TargetConfig


class Live:
    """Reads snapshots from a running target through ``cardguard.run.fetch``."""

    cgroup: Path | None = None
    """The target's memory cgroup directory, read with every snapshot (--cgroup)."""

    def __init__(self, target: TargetConfig, full_limit: int) -> None:
        from cardguard.run.fetch import Fetcher

        self.target = target
        self.fetcher = Fetcher(target)
        self.full_limit = full_limit
        self.missing: dict[str, str] = {}
        self.metrics_error: FetchError | None = None

    def _get(self, endpoint: str, url: str, accept: str | None = None) -> tuple[bytes, str] | None:
        if endpoint in self.missing:
            return None
        try:
            res = self.fetcher.get(url, accept=accept)
        except FetchError as exc:
            # An endpoint the target does not serve (a pprof handler, or /metrics on a
            # service that has only net/http/pprof) is a note, not a failure: the report
            # is made from what there is and says what was missing.
            if endpoint == "metrics":
                self.metrics_error = exc
            self.missing[endpoint] = f"{endpoint}: {exc.message}"
            return None
        return res.body, res.content_type

    def snapshot(self, final: bool) -> Snapshot:
        t = self.target
        snap = Snapshot(at=time.time(), target=t.name, url=t.url)
        got = self._get("metrics", t.metrics_url, ACCEPT_HEADER)
        if got is not None:
            snap.metrics, snap.content_type = got
        if self.cgroup is not None:
            try:
                snap.cgroup_memory = cgroupfs.read(self.cgroup).to_dict()
            except ValueError as exc:
                self.missing["cgroup"] = f"cgroup: {exc}"
        heap = self._get("heap", t.pprof_url("heap"))
        snap.heap = heap[0] if heap else None
        g = self._get("goroutine", t.pprof_url("goroutine"))
        snap.goroutine = g[0] if g else None
        nothing = snap.metrics is None and snap.heap is None and snap.goroutine is None
        if nothing and self.metrics_error is not None:
            # Nothing at all: the target is down or not what the URL says.
            raise self.metrics_error
        if final:
            total = _goroutine_total(snap.goroutine)
            if total is not None and total <= self.full_limit:
                full = self._get("goroutine_full", t.pprof_url("goroutine") + "?debug=2")
                snap.goroutine_full = full[0] if full else None
            elif total is not None:
                self.missing["goroutine_full"] = (
                    f"goroutine_full: skipped, {total} goroutines exceed "
                    f"--full-goroutines-limit {self.full_limit} (a full dump stops the world)"
                )
            leak = self._get("goroutineleak", t.pprof_url("goroutineleak") + "?debug=1")
            snap.goroutineleak = leak[0] if leak else None
        return snap


def _goroutine_total(body: bytes | None) -> int | None:
    if body is None:
        return None
    try:
        return gr.parse(body, "goroutine").total
    except ProfileError:
        return None


def progress(msg: str) -> None:
    click.echo(f"cardguard report: {msg}", err=True)


def _wait(seconds: float, what: str) -> None:
    """Sleep until the next snapshot, counting down on a terminal."""
    end = time.monotonic() + seconds
    tty = sys.stderr.isatty()
    if not tty:
        progress(f"waiting {seconds:.0f}s for {what}")
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        if tty:
            sys.stderr.write(f"\rcardguard report: {what} in {left:4.0f}s ")
            sys.stderr.flush()
        time.sleep(min(1.0, left))
    if tty:
        sys.stderr.write("\r" + " " * 60 + "\r")


def _one_snapshot(
    live: Live, w: Watch, i: int, count: int, start: float, save: Path | None, url: str
) -> None:
    try:
        snap = live.snapshot(i == count - 1)
    except FetchError as exc:
        if i == 0:
            raise
        w.note(f"snapshot {i + 1}: {exc}")
        progress(f"snapshot {i + 1}/{count} failed: {exc}")
        return
    if save is not None:
        snap.save(save / f"snapshot-{i:03d}")
    shown = w.add(snap, url)
    for why in live.missing.values():
        w.note(why)
    progress(
        f"snapshot {i + 1}/{count} at +{time.monotonic() - start:.0f}s: "
        + (", ".join(shown.values()) or "nothing readable")
    )


def watch_live(
    url: str,
    *,
    name: str,
    duration: float,
    interval: float,
    timeout: float,
    full_limit: int,
    rules: Rules,
    save: Path | None,
    metrics_path: str,
    pprof_path: str,
    uses: usage.Index | None = None,
    baseline: Sequence[tuple[Snapshot, str]] = (),
    cgroup: Path | None = None,
    grafana_url: str | None = None,
) -> TargetReport:
    """Take snapshots of the target at ``url`` for ``duration`` seconds and report on them.

    With ``baseline`` (snapshots saved before a fix), each offender they show is judged
    fixed or still growing on what the watch sees.
    """
    target = TargetConfig(
        name=name,
        url=url,
        metrics_path=metrics_path,
        pprof_path=pprof_path,
        timeout=timeout,
        body_size_limit=DEFAULT_MAX_BYTES,
    )
    live = Live(target, full_limit)
    live.cgroup = cgroup
    w = Watch(name, rules, uses=uses)
    w.add_baseline(baseline)
    count = max(2, int(duration // interval) + 1) if duration > 0 else 1
    start = time.monotonic()
    try:
        for i in range(count):
            _one_snapshot(live, w, i, count, start, save, url)
            if i < count - 1:
                due = start + duration * (i + 1) / (count - 1)
                _wait(max(0.0, due - time.monotonic()), f"snapshot {i + 2}/{count}")
    except KeyboardInterrupt:
        if not w.snapshots:
            raise
        # Interrupted: report on what was seen so far rather than nothing.
        w.note(f"interrupted after {w.snapshots} of {count} snapshots")
        progress("interrupted; reporting on the snapshots taken so far")
    return w.report(url, grafana_url)
