"""``cardguard report``: watch a Go service (or read saved snapshots) and print its offenders.

Live, ``cardguard report http://HOST:PORT --duration 2m`` takes a snapshot of
``/metrics``, ``/debug/pprof/heap`` and ``/debug/pprof/goroutine`` (proto) at
the start, every ``--interval`` and at the end; at the end it also reads a full
goroutine dump (``debug=2``, only under ``--full-goroutines-limit`` goroutines)
and ``/debug/pprof/goroutineleak`` where the target serves it. Progress goes to
stderr; the report (worst offender first) to stdout or ``--output``.

Offline, the same snapshots come from files: ``--from DIR`` reads what
``--save DIR`` wrote (with the target's name and URL, so the report names it
as the live one did); or name files directly with ``--metrics``, ``--heap``,
``--heap-base``, ``--goroutines`` and ``--goroutineleak``.

``--format html`` draws each target's flame graphs (in-use heap, heap growth
over the watch, goroutines) and trend charts inline; ``--grafana-url`` adds
links to the target's cardguard dashboard over the watched time range.

Exit status: 0 when the report was made, 1 when it could not be (target
unreachable at the start, unreadable files), 3 when ``--fail-on`` found an
offender at or above that severity.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from cardguard.analyse import usage
from cardguard.analyse.cardinality import analyse
from cardguard.analyse.churn import ChurnTracker
from cardguard.analyse.view import (
    HeapPoint,
    MetricsPoint,
    TargetView,
    values_from_page,
)
from cardguard.analyse.watch import ViewBuilder
from cardguard.commands._options import (
    DURATION,
    color_option,
    colour_wanted,
    missing_scheme,
    timeout_option,
)
from cardguard.detect import container, remedies, verdict
from cardguard.detect.detectors import detect
from cardguard.detect.offender import Offender
from cardguard.errors import CardguardError, ConfigError, FetchError, ParseError, ProfileError
from cardguard.expose import flamegraph
from cardguard.expose.render.formats import RENDERERS, render
from cardguard.expose.render.report import TargetReport
from cardguard.parse.exposition import ACCEPT_HEADER, detect_format
from cardguard.pprof import goroutines as gr
from cardguard.pprof import profile as prof
from cardguard.run import cgroupfs, usagefiles
from cardguard.settings.config import load_config
from cardguard.settings.rulefile import load_rules_file
from cardguard.settings.rules import DEFAULT_RULES, SEVERITIES, SEVERITY_RANK, Rules
from cardguard.settings.targets import TargetConfig
from cardguard.settings.usage import UsageConfig

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_GZIP = b"\x1f\x8b"

# File names inside one saved snapshot directory (see --save).
FILES = {
    "metrics": "metrics.txt.gz",
    "heap": "heap.pb.gz",
    "goroutine": "goroutine.pb.gz",
    "goroutine_full": "goroutine-full.txt",
    "goroutineleak": "goroutineleak.txt",
}
# Older saves (and hand-made sets) may hold debug=1 text instead of the proto.
ALTERNATIVES = {"goroutine": ("goroutine.txt",)}


@dataclass
class Snapshot:
    """The raw bodies read from a target at one moment (any may be missing).

    ``target`` and ``url`` name where they came from; saved with the bodies so
    a report read back with ``--from`` names the target as the live one did.
    """

    at: float
    metrics: bytes | None = None
    content_type: str | None = None
    heap: bytes | None = None
    goroutine: bytes | None = None
    goroutine_full: bytes | None = None
    goroutineleak: bytes | None = None
    cgroup_memory: dict[str, Any] | None = None
    """A container memory reading (``container.ContainerMemory.to_dict``), if any."""
    target: str | None = None
    url: str | None = None

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        meta: dict[str, object] = {"at": self.at, "content_type": self.content_type}
        if self.target is not None:
            meta["target"] = self.target
        if self.url is not None:
            meta["url"] = self.url
        (directory / "meta.json").write_text(json.dumps(meta) + "\n")
        if self.metrics is not None:
            (directory / FILES["metrics"]).write_bytes(gzip.compress(self.metrics, mtime=0))
        for key in ("heap", "goroutine", "goroutine_full", "goroutineleak"):
            body = getattr(self, key)
            if body is None:
                continue
            name = FILES[key]
            if key == "goroutine" and not body.startswith(_GZIP):
                name = ALTERNATIVES[key][0]
            (directory / name).write_bytes(body)
        if self.cgroup_memory is not None:
            (directory / "container.json").write_text(json.dumps(self.cgroup_memory) + "\n")


@dataclass
class Watch:
    """Turns snapshots into a ``TargetView`` as they arrive, keeping only what detection needs."""

    name: str
    rules: Rules
    notes: list[str] = field(default_factory=list)
    churn: ChurnTracker = field(
        default_factory=lambda: ChurnTracker(window=24 * 3600.0, points_per_window=1_000_000)
    )
    snapshots: int = 0
    pages: list[remedies.Page] = field(default_factory=list)
    """The first and the latest /metrics page (remedies read their series)."""
    uses: usage.Index | None = None
    """Label uses in the rules and dashboards given (--usage-rules, --usage-dashboards)."""
    identities: list[tuple[float, verdict.Identity]] = field(default_factory=list)
    """Which process and build served each /metrics page (restarts split the watch)."""
    baseline: int | None = None
    """Metrics points read from --baseline: the watch is judged as before/after a fix."""
    containers: list[tuple[float, container.ContainerMemory]] = field(default_factory=list)
    """Container memory readings over the watch (--cgroup)."""

    builder: ViewBuilder = field(init=False)
    """The points of the watch: the builder serve, /probe and fleet use too."""

    def __post_init__(self) -> None:
        self.builder = ViewBuilder(self.name)

    @property
    def metrics(self) -> list[MetricsPoint]:
        return self.builder.metrics

    @property
    def heaps(self) -> list[HeapPoint]:
        return self.builder.heaps

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def add(self, snap: Snapshot, where: str) -> dict[str, str]:
        """Analyse one snapshot; problems become notes. Return a few figures for progress."""
        self.snapshots += 1
        shown: dict[str, str] = {}
        traffic = self.rules.for_target(self.name).heap_growth.traffic_metric
        reading = self.add_container(snap)
        if snap.metrics is not None:
            try:
                fmt = detect_format(snap.content_type, snap.metrics)
                page = analyse(snap.metrics, content_type=snap.content_type, source=where, fmt=fmt)
                usage = reading.usage_bytes if reading is not None else None
                values = values_from_page(snap.metrics, fmt, where, traffic, usage)
                report = self.churn.update(page, snap.at)
                self.builder.add_metrics(snap.at, page, values, report)
                self.pages[1:] = []
                self.pages.append(remedies.Page(snap.metrics, fmt, where, snap.at))
                self.identities.append((snap.at, verdict.identity(snap.metrics, fmt, where)))
                shown["series"] = f"{page.total_series:,} series"
            except ParseError as exc:
                self.note(f"/metrics at {where}: {exc}")
        if snap.heap is not None:
            try:
                heap = self.builder.add_heap(snap.at, prof.decode(snap.heap, f"{where} heap"))
                total = heap.profile.total("inuse_space")
                shown["heap"] = f"heap {total / 1048576:.1f} MiB"
            except ProfileError as exc:
                self.note(str(exc))
        proto = None
        if snap.goroutine is not None and snap.goroutine.startswith(_GZIP):
            # The proto form keeps file:line and the runtime frames a wait parks in.
            try:
                proto = prof.decode(snap.goroutine, f"{where} goroutine")
            except ProfileError as exc:
                self.note(str(exc))
        body = snap.goroutine_full if snap.goroutine_full is not None else snap.goroutine
        if body is not None:
            try:
                s = gr.parse(body, f"{where} goroutine")
                self.builder.add_goroutines(snap.at, s, proto=proto)
                shown["goroutines"] = f"{s.total:,} goroutines"
            except ProfileError as exc:
                self.note(str(exc))
        if snap.goroutineleak is not None:
            try:
                s = gr.parse(snap.goroutineleak, f"{where} goroutineleak", kind="goroutineleak")
                self.builder.set_leaks(gr.group(s))
            except ProfileError as exc:
                self.note(str(exc))
        return shown

    def view(self) -> TargetView:
        return self.builder.view()

    def add_container(self, snap: Snapshot) -> container.ContainerMemory | None:
        """Keep the snapshot's container memory reading, if it has one."""
        if snap.cgroup_memory is None:
            return None
        fields = {k: v for k, v in snap.cgroup_memory.items() if k != "reclaimable_bytes"}
        try:
            reading = container.ContainerMemory(**fields)
        except TypeError as exc:
            self.note(f"container reading: {exc}")
            return None
        self.containers.append((snap.at, reading))
        return reading

    def add_baseline(self, snaps: Sequence[tuple[Snapshot, str]]) -> None:
        """Read snapshots saved before a fix (--baseline); what follows is judged against them."""
        for snap, where in snaps:
            self.add(snap, where)
        if snaps:
            self.baseline = len(self.metrics)

    def cut(self) -> tuple[float, dict[str, object]] | None:
        """Where the watch splits into before and after a fix: the end of --baseline, else
        the last restart (process start time or build changed), with what changed."""
        ids = self.identities
        at: float | None = None
        i = verdict.restart_index(ids)
        if self.baseline is not None and self.baseline < len(self.metrics):
            at = self.metrics[self.baseline].at
            i = next((k for k, (t, _) in enumerate(ids) if t >= at), i)
        elif i is not None:
            at = ids[i][0]
        if at is None:
            return None
        info: dict[str, object] = {"at": round(at, 3)}
        if i is not None and i > 0:
            old, new = ids[i - 1][1], ids[i][1]
            info["restarted"] = old.restarted(new)
            info["build_before"], info["build_after"] = old.describe(), new.describe()
            info["start_time_before"], info["start_time_after"] = old.start_time, new.start_time
        return at, info

    def detect(self, view: TargetView) -> list[Offender]:
        """Offenders of the watch; across a fix (cut), each open one judged fixed or not."""
        cut = self.cut()
        if cut is None:
            return self.refine(detect(view, self.rules))
        before, after = verdict.split(view, cut[0])
        judged = verdict.judge(detect(before, self.rules), before, after, restart=cut[1])
        return self.refine(verdict.merge(judged, detect(after, self.rules)))

    def refine(self, found: list[Offender]) -> list[Offender]:
        """Rebuild fixes from the first and latest pages (cardguard.detect.remedies)."""
        if not self.pages or not self.metrics:
            return found
        first = self.pages[0] if len(self.pages) > 1 else None
        try:
            ctx = remedies.build_context(found, self.metrics[-1], self.pages[-1], first, self.uses)
        except ParseError as exc:
            self.note(f"remedies: {exc}")
            return found
        return self.explain_memory(remedies.refine(found, ctx))

    def explain_memory(self, found: list[Offender]) -> list[Offender]:
        """Explain memory with the container's figures and forecast its limit (--cgroup)."""
        memory = self.metrics[-1].values.memory if self.metrics else {}
        rss = memory.get("process_resident_memory_bytes")
        heap = memory.get("go_memstats_heap_inuse_bytes")
        return container.refine(found, self.containers, rss, heap)

    def report(self, url: str | None, grafana_url: str | None = None) -> TargetReport:
        view = self.view()
        found = self.detect(view)
        times = [p.at for p in view.metrics] + [h.at for h in view.heaps]
        times += [g.at for g in view.goroutines]
        notes = list(self.notes)
        if not view.heaps:
            notes.append("no heap profile: heap growth and children cost were not checked")
        if not view.goroutines:
            notes.append("no goroutine profile: goroutine leaks were not checked")
        if not view.metrics:
            notes.append(
                "no /metrics page: label explosions, children cost and memory were not checked"
            )
        if len(view.metrics) < 2 and len(view.heaps) < 2:
            notes.append("one snapshot only: nothing about growth can be said")
        return TargetReport(
            target=self.name,
            url=url,
            offenders=tuple(found),
            window_seconds=(max(times) - min(times)) if times else 0.0,
            snapshots=self.snapshots,
            notes=tuple(notes),
            flames=flamegraph.for_view(view),
            grafana_url=grafana_url,
        )


# --- live -----------------------------------------------------------------------------


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


def _progress(msg: str) -> None:
    click.echo(f"cardguard report: {msg}", err=True)


def _wait(seconds: float, what: str) -> None:
    """Sleep until the next snapshot, counting down on a terminal."""
    end = time.monotonic() + seconds
    tty = sys.stderr.isatty()
    if not tty:
        _progress(f"waiting {seconds:.0f}s for {what}")
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
        _progress(f"snapshot {i + 1}/{count} failed: {exc}")
        return
    if save is not None:
        snap.save(save / f"snapshot-{i:03d}")
    shown = w.add(snap, url)
    for why in live.missing.values():
        w.note(why)
    _progress(
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
        _progress("interrupted; reporting on the snapshots taken so far")
    return w.report(url, grafana_url)


# --- offline ---------------------------------------------------------------------------


def _read(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ProfileError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise ProfileError(str(path), f"larger than the limit of {max_bytes} bytes")
    return data


def _read_page(path: Path) -> bytes:
    data = _read(path)
    if data.startswith(_GZIP):
        try:
            with gzip.GzipFile(fileobj=__import__("io").BytesIO(data)) as fh:
                out = fh.read(DEFAULT_MAX_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise ParseError(str(path), 0, f"corrupt gzip data: {exc}") from exc
        if len(out) > DEFAULT_MAX_BYTES:
            raise ParseError(str(path), 0, f"decompressed page exceeds {DEFAULT_MAX_BYTES} bytes")
        return out
    return data


def load_saved(directory: Path) -> list[tuple[Snapshot, str]]:
    """Read the snapshots that ``--save`` wrote under ``directory``, oldest first."""
    dirs = sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith("snapshot-"))
    if not dirs:
        raise ProfileError(str(directory), "no snapshot-NNN directories (written by --save)")
    out = []
    for d in dirs:
        try:
            meta = json.loads((d / "meta.json").read_text())
            at = float(meta["at"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ProfileError(
                str(d / "meta.json"), f"unreadable snapshot metadata: {exc}"
            ) from exc
        snap = Snapshot(
            at=at,
            content_type=meta.get("content_type"),
            target=meta.get("target"),
            url=meta.get("url"),
        )
        for key, fname in FILES.items():
            for p in (d / fname, *(d / alt for alt in ALTERNATIVES.get(key, ()))):
                if p.exists():
                    setattr(snap, key, _read_page(p) if key == "metrics" else _read(p))
                    break
        if (d / "container.json").exists():
            try:
                snap.cgroup_memory = json.loads((d / "container.json").read_text())
            except (OSError, ValueError) as exc:
                raise ProfileError(str(d / "container.json"), f"unreadable: {exc}") from exc
        out.append((snap, str(d)))
    return out


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def load_files(
    metrics: Sequence[Path],
    heaps: Sequence[Path],
    goroutines: Sequence[Path],
    leak: Path | None,
) -> list[tuple[Snapshot, str]]:
    """Pair loose files into snapshots by position: the i-th metrics, heap and goroutine file.

    A snapshot's time is the heap profile's own timestamp when it has one, else
    the newest file modification time of its files.
    """
    n = max(len(metrics), len(heaps), len(goroutines), 1 if leak else 0)
    out = []
    for i in range(n):
        files = {
            "metrics": metrics[i] if i < len(metrics) else None,
            "heap": heaps[i] if i < len(heaps) else None,
            "goroutine": goroutines[i] if i < len(goroutines) else None,
            "goroutineleak": leak if leak is not None and i == n - 1 else None,
        }
        snap = Snapshot(at=0.0)
        at = 0.0
        for key, path in files.items():
            if path is None:
                continue
            setattr(snap, key, _read_page(path) if key == "metrics" else _read(path))
            at = max(at, _mtime(path))
        if snap.heap is not None:
            try:
                t = prof.decode(snap.heap, str(files["heap"])).time_nanos
                at = t / 1e9 if t else at
            except ProfileError:
                pass  # reported when the snapshot is analysed
        snap.at = at
        names = ", ".join(str(p) for p in files.values() if p is not None)
        out.append((snap, names))
    return out


# --- the command -------------------------------------------------------------------------


def _load_rules(path: Path | None) -> Rules:
    if path is None:
        return DEFAULT_RULES
    text = path.read_text(encoding="utf-8", errors="replace")
    if any(line.startswith("targets:") for line in text.splitlines()):
        rules = load_config(path).rules
        return rules if isinstance(rules, Rules) else DEFAULT_RULES
    return load_rules_file(path)


def _default_name(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


@click.command(
    "report",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.argument("target_url", required=False)
@click.option(
    "--duration",
    type=DURATION,
    default="2m",
    show_default=True,
    help="How long to watch a live target.",
)
@click.option(
    "--interval",
    type=DURATION,
    default=None,
    help="Time between snapshots (default: a quarter of --duration, at least 5s).",
)
@click.option(
    "--name",
    default=None,
    help="Target name in the report (default: HOST:PORT, or the name saved with --from).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(RENDERERS)),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report here instead of stdout.",
)
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Offender rules: a rules file, or a cardguard config with a rules: section.",
)
@click.option(
    "--fail-on",
    type=click.Choice(SEVERITIES),
    default=None,
    help="Exit 3 when an offender of this severity or worse is found.",
)
@timeout_option("10s")
@click.option(
    "--full-goroutines-limit",
    default=10000,
    show_default=True,
    type=int,
    help="Take the final debug=2 goroutine dump only under this many goroutines.",
)
@click.option("--metrics-path", default="/metrics", show_default=True)
@click.option("--pprof-path", default="/debug/pprof", show_default=True)
@click.option(
    "--save",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also save each live snapshot under DIR/snapshot-NNN/ (read back with --from).",
)
@click.option(
    "--from",
    "from_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Report on snapshots saved with --save.",
)
@click.option(
    "--metrics",
    "metrics_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A saved /metrics page (repeat, oldest first; .gz accepted).",
)
@click.option(
    "--heap",
    "heap_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A saved heap profile (repeat, oldest first).",
)
@click.option(
    "--heap-base",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="An earlier heap profile to compare against (go tool pprof -base).",
)
@click.option(
    "--goroutines",
    "goroutine_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A saved goroutine profile, any format (repeat, oldest first).",
)
@click.option(
    "--goroutineleak",
    "leak_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A saved /debug/pprof/goroutineleak profile.",
)
@click.option(
    "--cgroup",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The target's memory cgroup directory (v1 or v2): explain container memory (usage, "
    "working set, page cache) and forecast its limit.",
)
@click.option(
    "--baseline",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Snapshots saved with --save before a fix: say of each offender they show whether "
    "it is fixed or still growing.",
)
@click.option(
    "--usage-rules",
    multiple=True,
    metavar="GLOB",
    help="Prometheus rule files (globs, repeat): name the rules that use an exploding label.",
)
@click.option(
    "--usage-dashboards",
    multiple=True,
    metavar="GLOB",
    help="Grafana dashboard JSON files (globs, repeat): name the panels that use it.",
)
@click.option(
    "--grafana-url",
    default=None,
    metavar="URL",
    help="Grafana to link to: each offender links the cardguard / Target dashboard over its "
    "time range.",
)
@color_option()
def report(
    target_url: str | None,
    duration: float,
    interval: float | None,
    name: str | None,
    fmt: str,
    output: Path | None,
    rules_file: Path | None,
    fail_on: str | None,
    timeout: float,
    full_goroutines_limit: int,
    metrics_path: str,
    pprof_path: str,
    save: Path | None,
    from_dir: Path | None,
    metrics_files: tuple[Path, ...],
    heap_files: tuple[Path, ...],
    heap_base: Path | None,
    goroutine_files: tuple[Path, ...],
    leak_file: Path | None,
    usage_rules: tuple[str, ...],
    usage_dashboards: tuple[str, ...],
    baseline: Path | None,
    cgroup: Path | None,
    grafana_url: str | None,
    color: str,
) -> None:
    """Watch a Go service (or read saved files) and name its offenders, worst first.

    \b
    Live:     cardguard report http://127.0.0.1:6060 --duration 2m
    Saved:    cardguard report --from DIR              (DIR written by --save DIR)
    Files:    cardguard report --metrics m1.txt --metrics m2.txt \\
                  --heap-base heap1.pb.gz --heap heap2.pb.gz \\
                  --goroutines g1.txt --goroutines g2.txt [--goroutineleak leak.txt]

    Files given with the same option are taken oldest first; the i-th file of
    each option forms snapshot i. A live watch reads /metrics, the heap profile
    and the goroutine profile at the start, every --interval and at the end, then a
    debug=2 dump and goroutineleak (where served) once at the end.
    """
    offline = bool(
        from_dir or metrics_files or heap_files or heap_base or goroutine_files or leak_file
    )
    if target_url and offline:
        raise click.UsageError("give either TARGET_URL or saved files (--from, --metrics, ...)")
    if not target_url and not offline:
        raise click.UsageError("give TARGET_URL, --from DIR or saved files; see --help")
    if target_url and "://" not in target_url:
        raise click.UsageError(
            f"{target_url} is not a URL: it needs http:// or https://{missing_scheme(target_url)}"
        )
    try:
        rules = _load_rules(rules_file)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(1)
    baseline_snaps: list[tuple[Snapshot, str]] = []
    if baseline is not None:
        try:
            baseline_snaps = load_saved(baseline)
        except CardguardError as exc:
            click.echo(f"cardguard report: {exc}", err=True)
            sys.exit(1)
    uses = None
    if usage_rules or usage_dashboards:
        uses = usagefiles.read(UsageConfig(usage_rules, usage_dashboards, Path.cwd()))
        for problem in uses.problems:
            _progress(f"usage: {problem}")
    try:
        if target_url:
            url = target_url.rstrip("/")
            if url.endswith(metrics_path):
                url = url[: -len(metrics_path)]
            every = interval if interval is not None else max(5.0, duration / 4)
            every = min(every, duration) if duration > 0 else every
            result = watch_live(
                url,
                name=name or _default_name(url),
                duration=duration,
                interval=max(every, 0.5),
                timeout=timeout,
                full_limit=full_goroutines_limit,
                rules=rules,
                save=save,
                metrics_path=metrics_path,
                pprof_path=pprof_path,
                uses=uses,
                baseline=baseline_snaps,
                cgroup=cgroup,
                grafana_url=grafana_url,
            )
        else:
            saved_url: str | None = None
            if from_dir is not None:
                snaps = load_saved(from_dir)
                saved_url = next((s.url for s, _ in reversed(snaps) if s.url), None)
                saved = next((s.target for s, _ in reversed(snaps) if s.target), None)
                label = name or saved or str(from_dir)
            else:
                heaps = ([heap_base] if heap_base else []) + list(heap_files)
                snaps = load_files(metrics_files, heaps, goroutine_files, leak_file)
                label = name or "files"
            w = Watch(label, rules, uses=uses)
            w.add_baseline(baseline_snaps)
            for snap, where in snaps:
                w.add(snap, where)
            result = w.report(saved_url, grafana_url)
    except CardguardError as exc:
        click.echo(f"cardguard report: {exc}", err=True)
        sys.exit(1)
    colour = fmt == "text" and output is None and colour_wanted(color)
    text = render([result], fmt, colour=colour)
    _emit(text, output, colour=colour)
    if fail_on is not None and any(
        SEVERITY_RANK[o.severity] >= SEVERITY_RANK[fail_on] for o in result.offenders
    ):
        sys.exit(3)


def _emit(
    text: str,
    output: Path | None,
    write: Callable[[str], None] | None = None,
    colour: bool = False,
) -> None:
    if output is None:
        if write is not None:
            write(text.rstrip("\n"))
        else:
            click.echo(text.rstrip("\n"), color=colour)
        return
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, output)
    _progress(f"wrote {output}")
