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

import os
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import click

from cardguard.commands._options import (
    DURATION,
    color_option,
    colour_wanted,
    missing_scheme,
    timeout_option,
)
from cardguard.commands.live import progress, watch_live
from cardguard.commands.snapshots import Snapshot, load_files, load_saved
from cardguard.commands.watch import Watch
from cardguard.errors import CardguardError, ConfigError
from cardguard.expose.render.formats import RENDERERS, render
from cardguard.run import usagefiles
from cardguard.settings.config import load_config
from cardguard.settings.rulefile import load_rules_file
from cardguard.settings.rules import DEFAULT_RULES, SEVERITIES, SEVERITY_RANK, Rules
from cardguard.settings.usage import UsageConfig


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
            progress(f"usage: {problem}")
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
    progress(f"wrote {output}")
