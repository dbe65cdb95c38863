"""``cardguard goroutines``: group a Go service's goroutines by stack, creator and label.

From a file, any format is read (``debug=0`` proto, ``debug=1``, ``debug=2``;
a ``goroutineleak`` profile too), and so is a crash report holding a dump
(``panic:`` or ``SIGQUIT`` output with ``GOTRACEBACK=all``, even indented as
pasted from a test log). From a target URL, the command asks
``/debug/pprof/goroutineleak?debug=1`` first where served (confirmed leaks),
then the counted ``debug=1`` profile, and the full ``debug=2`` dump only when
the goroutine count is under ``--max-full-dump`` (the dump stops the world).

``--label KEY`` splits each group by the goroutines' pprof label ``KEY``
(e.g. the handler or tenant set with ``pprof.Do``), keeping the
``--max-label-values`` largest values and folding the rest into
``__other__``.

Text shows each group's stack with file:line (``--stack-depth`` frames,
innermost first, build paths shortened to module paths). ``--format folded``
writes one ``root;...;leaf count`` line per stack for flamegraph.pl,
speedscope or Pyroscope.
"""

from __future__ import annotations

import json
import re
from typing import Any

import click

from cardguard.commands import _sources
from cardguard.commands._options import color_option, colour_wanted, timeout_option
from cardguard.errors import FetchError, ProfileError
from cardguard.expose import ansi
from cardguard.pprof import goroutines as gr
from cardguard.pprof import stacks
from cardguard.pprof.model import collector_paused

DEFAULT_STACK_DEPTH = 8


def _from_url(
    source: str,
    timeout: float,
    max_full_dump: int,
    leaks: bool,
    label: str | None,
    max_label_values: int,
) -> tuple[gr.GoroutineSnapshot, list[gr.GoroutineGroup], bool | None]:
    leak_snapshot = None
    leak_supported: bool | None = None
    if leaks:
        url = _sources.endpoint_url(source, "goroutineleak", "debug=1")
        try:
            leak_snapshot = gr.parse(_sources.fetch(url, timeout), url, kind="goroutineleak")
            leak_supported = True
        except FetchError as exc:
            if exc.reason != "http_status":
                raise
            leak_supported = False  # the target's Go does not serve it (before 1.26)
    url = _sources.endpoint_url(source, "goroutine", "debug=1")
    snapshot = gr.parse(_sources.fetch(url, timeout), url)
    if snapshot.total <= max_full_dump:
        url = _sources.endpoint_url(source, "goroutine", "debug=2")
        snapshot = gr.parse(_sources.fetch(url, timeout), url)
    groups = gr.group(snapshot, label, max_label_values)
    if leak_snapshot is not None:
        groups = gr.apply_leaks(groups, gr.group(leak_snapshot, label, max_label_values))
    return snapshot, groups, leak_supported


def _group_json(g: gr.GoroutineGroup) -> dict[str, Any]:
    return {
        "id": g.id,
        "count": g.count,
        "function": g.function,
        "frames": list(g.frames),
        "created_by": g.created_by,
        "state": g.state,
        # seconds, as cardguard_goroutine_group_max_wait_seconds (Go prints whole minutes)
        "max_wait_seconds": None if g.max_wait_minutes is None else 60 * g.max_wait_minutes,
        "leaked": g.leaked,
        "label": g.label,
        "sites": [stacks.source_path(s) for s in g.sites],
    }


_CRASH = re.compile(r"^(panic: |fatal error: |SIG[A-Z]+: |unexpected fault|runtime: )")


def _crash_line(preamble: str) -> str:
    """The line saying why the program died: ``panic: ...``, ``SIGQUIT: quit``; else the first."""
    lines = preamble.splitlines()
    return next((ln for ln in lines if _CRASH.match(ln)), lines[0])


def _text(
    snapshot: gr.GoroutineSnapshot,
    groups: list[gr.GoroutineGroup],
    creators: list[gr.CreatorGroup],
    leak_supported: bool | None,
    label: str | None,
    depth: int = DEFAULT_STACK_DEPTH,
    colour: bool = False,
) -> str:
    leaked = [g.leaked for g in groups if g.leaked is not None]
    head = (
        f"{snapshot.source}: {snapshot.kind} profile ({snapshot.format}), "
        f"total {snapshot.total}, {len(groups)} groups"
    )
    if leaked:
        head += f", {sum(leaked)} leaked"
    if leak_supported is False:
        head += " (goroutineleak not served)"
    lines = [ansi.paint(head, "bold", colour)]
    if snapshot.preamble:
        lines.append(f"crash: {_crash_line(snapshot.preamble)[:200]}")
    by = f"  {label}" if label is not None else ""
    lines.append(f"{'count':>7} {'leaked':>7} {'wait':>6}  {'id':<12}{by}  state / function")
    for g in groups:
        lk = "-" if g.leaked is None else str(g.leaked)
        wait = "-" if g.max_wait_minutes is None else f"{g.max_wait_minutes}m"
        state = f"[{g.state}] " if g.state else ""
        creator = f"  (created by {g.created_by})" if g.created_by else ""
        value = ""
        if label is not None:
            value = "  -" if g.label is None else f"  {json.dumps(g.label, ensure_ascii=False)}"
        lk = ansi.paint(f"{lk:>7}", "red", colour and bool(g.leaked))
        lines.append(
            f"{g.count:>7} {lk} {wait:>6}  {g.id:<12}{value}  {state}"
            f"{ansi.paint(g.function, 'bold', colour)}{creator}"
        )
        lines += _stack_lines(g, depth, colour)
    if any(c.created_by for c in creators):
        lines.append("")
        lines.append(f"{'count':>7} {'groups':>7}  created by")
        for c in creators:
            creator = c.created_by or "(none: started by the runtime)"
            lines.append(f"{c.count:>7} {c.groups:>7}  {creator}")
    return "\n".join(lines)


def _stack_lines(g: gr.GoroutineGroup, depth: int, colour: bool) -> list[str]:
    """The group's frames, innermost first, each with its file:line where the input has one."""
    shown = g.frames[:depth] if depth else g.frames
    out = []
    for i, name in enumerate(shown):
        site = stacks.source_path(g.sites[i]) if i < len(g.sites) and g.sites[i] else ""
        where = ansi.paint(f"  {site}", "dim", colour) if site else ""
        out.append(f"{'':>32}{name}{where}")
    if len(g.frames) > len(shown):
        out.append(f"{'':>32}... {len(g.frames) - len(shown)} more (--stack-depth 0 shows all)")
    return out


@click.command(name="goroutines")
@click.argument("source")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "folded"]),
    default="text",
    show_default=True,
    help="text, json or folded (one root;...;leaf count line per stack).",
)
@click.option(
    "--stack-depth",
    default=DEFAULT_STACK_DEPTH,
    show_default=True,
    type=click.IntRange(min=0),
    help="text: frames shown per group (0: all).",
)
@click.option("--lines", is_flag=True, help="folded: add each frame's (file:line).")
@click.option(
    "--input-format",
    type=click.Choice(["auto", *gr.FORMATS]),
    default="auto",
    show_default=True,
    help="Format of a file SOURCE.",
)
@click.option(
    "--leak-profile",
    is_flag=True,
    help="The file SOURCE is a goroutineleak profile (every goroutine in it leaked).",
)
@click.option(
    "--max-full-dump",
    default=10000,
    show_default=True,
    type=click.IntRange(min=0),
    help="From a URL, take the debug=2 dump only under this many goroutines.",
)
@click.option(
    "--leaks/--no-leaks",
    default=True,
    show_default=True,
    help="From a URL, ask /debug/pprof/goroutineleak where served.",
)
@click.option(
    "--label",
    default=None,
    metavar="KEY",
    help="Also group by the value of this pprof label (e.g. handler, tenant).",
)
@click.option(
    "--max-label-values",
    default=gr.DEFAULT_MAX_LABEL_VALUES,
    show_default=True,
    type=click.IntRange(min=1),
    help="With --label: keep this many values, fold the rest into __other__.",
)
@timeout_option("30s")
@color_option()
def goroutines(
    source: str,
    fmt: str,
    stack_depth: int,
    lines: bool,
    color: str,
    input_format: str,
    leak_profile: bool,
    max_full_dump: int,
    leaks: bool,
    label: str | None,
    max_label_values: int,
    timeout: float,
) -> None:
    """Group goroutines in SOURCE: a goroutine profile or crash dump file, '-' or a target URL."""
    leak_supported: bool | None = None
    try:
        if _sources.is_url(source) and _sources.is_target_base(source):
            snapshot, groups, leak_supported = _from_url(
                source, timeout, max_full_dump, leaks, label, max_label_values
            )
        else:
            where, data = _sources.load(source, "goroutine", timeout=timeout)
            # A dump's records hold no cycles: the collector would only rescan them.
            with collector_paused():
                snapshot = gr.parse(
                    data,
                    where,
                    fmt=None if input_format == "auto" else input_format,
                    kind="goroutineleak" if leak_profile else None,
                )
                groups = gr.group(snapshot, label, max_label_values)
    except (ProfileError, FetchError) as exc:
        raise click.ClickException(str(exc)) from exc
    creators = gr.by_creator(snapshot)
    if fmt == "json":
        out: dict[str, Any] = {
            "source": snapshot.source,
            "format": snapshot.format,
            "kind": snapshot.kind,
            "total": snapshot.total,
            "goroutineleak_supported": leak_supported,
            "label": label,
            "preamble": snapshot.preamble or None,
            "groups": [_group_json(g) for g in groups],
            "creators": [
                {
                    "created_by": c.created_by,
                    "count": c.count,
                    "groups": c.groups,
                    "leaked": c.leaked,
                }
                for c in creators
            ],
        }
        click.echo(json.dumps(out, indent=2))
    elif fmt == "folded":
        click.echo(stacks.folded(stacks.counted_stacks(snapshot.records), lines), nl=False)
    else:
        colour = colour_wanted(color)
        text = _text(snapshot, groups, creators, leak_supported, label, stack_depth, colour)
        click.echo(text, color=colour)
