"""``cardguard heap``: rank the functions owning a Go heap profile, or their growth.

The figures equal ``go tool pprof -top -nodefraction=0 -sample_index=X``
(and, with ``--base``, ``-base``) on the same files, in the profile's unit.
Any input pprof reads is read: profile.proto, and the legacy text Go serves
at ``?debug=1`` (heap, allocs, mutex, block, threadcreate), whose ``#``
lines name the frames (pprof needs the binary for that).
"""

from __future__ import annotations

import json
from typing import Any

import click

from cardguard.commands import _sources
from cardguard.errors import FetchError, ProfileError
from cardguard.pprof import heap as heap_mod
from cardguard.pprof import profile


def _load(source: str, timeout: float) -> profile.Profile:
    where, data = _sources.load(source, "heap", timeout=timeout)
    return profile.decode(data, where)


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:6.2f}%" if whole else "      -"


def _report_json(report: heap_mod.HeapReport, top: int) -> dict[str, Any]:
    funcs = report.functions[:top] if top else report.functions
    return {
        "source": report.source,
        "sample_index": report.sample_index,
        "unit": report.unit,
        "total": report.total,
        "functions": [{"name": f.name, "flat": f.flat, "cum": f.cum} for f in funcs],
    }


def _diff_json(d: heap_mod.HeapDiff, top: int) -> dict[str, Any]:
    funcs = d.functions[:top] if top else d.functions
    return {
        "source": d.source,
        "base": d.base_source,
        "sample_index": d.sample_index,
        "unit": d.unit,
        "total": d.total,
        "total_delta": d.total_delta,
        "functions": [
            {
                "name": f.name,
                "flat": f.flat,
                "cum": f.cum,
                "flat_delta": f.flat_delta,
                "cum_delta": f.cum_delta,
            }
            for f in funcs
        ],
    }


def _report_text(report: heap_mod.HeapReport, top: int) -> str:
    funcs = report.functions[:top] if top else report.functions
    lines = [
        f"{report.source}: {report.sample_index} ({report.unit}), total {report.total}",
        f"{'flat':>14} {'flat%':>7} {'cum':>14} {'cum%':>7}  function",
    ]
    for f in funcs:
        lines.append(
            f"{f.flat:>14} {_pct(f.flat, report.total)} {f.cum:>14} "
            f"{_pct(f.cum, report.total)}  {f.name}"
        )
    if top and len(report.functions) > top:
        lines.append(f"({len(report.functions) - top} more functions; --top 0 shows all)")
    return "\n".join(lines)


def _diff_text(d: heap_mod.HeapDiff, top: int) -> str:
    funcs = d.functions[:top] if top else d.functions
    lines = [
        f"{d.base_source} -> {d.source}: {d.sample_index} ({d.unit}), "
        f"total {d.total} ({d.total_delta:+d})",
        f"{'flat_delta':>14} {'cum_delta':>14} {'flat':>14} {'cum':>14}  function",
    ]
    for f in funcs:
        lines.append(f"{f.flat_delta:>+14d} {f.cum_delta:>+14d} {f.flat:>14} {f.cum:>14}  {f.name}")
    if top and len(d.functions) > top:
        lines.append(f"({len(d.functions) - top} more functions; --top 0 shows all)")
    return "\n".join(lines)


@click.command(name="heap")
@click.argument("source")
@click.option("--base", "base_source", help="Earlier snapshot: show growth since it (-base).")
@click.option(
    "--sample-index",
    default=None,
    help="alloc_objects, alloc_space, inuse_objects or inuse_space (default: the profile's).",
)
@click.option(
    "--top", "top", default=20, show_default=True, type=click.IntRange(min=0), help="0: all."
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--timeout", default=_sources.DEFAULT_TIMEOUT, show_default=True, type=float)
def heap(
    source: str,
    base_source: str | None,
    sample_index: str | None,
    top: int,
    fmt: str,
    timeout: float,
) -> None:
    """Rank heap owners in SOURCE: a profile file, '-' or a target URL like http://host:6060.

    A file may be a .pb.gz profile or Go's heap?debug=1 text.
    """
    try:
        if base_source is None:
            report = heap_mod.owners(_load(source, timeout), sample_index)
            out: Any = _report_json(report, top) if fmt == "json" else _report_text(report, top)
        else:
            # The base first: when both are URLs, it is the earlier snapshot.
            base = _load(base_source, timeout)
            d = heap_mod.diff(base, _load(source, timeout), sample_index)
            out = _diff_json(d, top) if fmt == "json" else _diff_text(d, top)
    except (ProfileError, FetchError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(out, indent=2) if fmt == "json" else out)
