"""``cardguard heap``: rank the functions owning a Go heap profile, or their growth.

The figures equal ``go tool pprof -top -nodefraction=0 -sample_index=X``
(and, with ``--base``, ``-base``) on the same files, in the profile's unit.
Any input pprof reads is read: profile.proto, and the legacy text Go serves
at ``?debug=1`` (heap, allocs, mutex, block, threadcreate), whose ``#``
lines name the frames (pprof needs the binary for that).

Text shows values in human units as pprof does (``13.15MB``: pprof's ``MB`` is
2^20 bytes); ``--unit`` picks one as ``go tool pprof -unit`` does. JSON keeps
the profile's own unit. ``--format folded`` writes one ``root;...;leaf value``
line per stack (two value columns, before and after, with ``--base``) for
flamegraph.pl, speedscope or Pyroscope. ``--format pprof`` writes a gzipped
profile.proto: with ``--base``, the difference as ``go tool pprof -diff_base``
builds it (base samples negated and labelled ``pprof::base``), so
``go tool pprof -top`` or ``-http`` on it shows what ``-diff_base`` shows.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from cardguard.commands import _sources
from cardguard.commands._options import color_option, colour_wanted, timeout_option
from cardguard.errors import FetchError, ProfileError
from cardguard.expose import ansi
from cardguard.gunzip import MAGIC as GZIP_MAGIC
from cardguard.pprof import diff as diff_mod
from cardguard.pprof import heap as hp
from cardguard.pprof import profile as prof
from cardguard.pprof import stacks, units
from cardguard.pprof.model import Profile, collector_paused

FORMATS = ("text", "json", "folded", "pprof")


def _load(source: str, timeout: float) -> Profile:
    where, data = _sources.load(source, "heap", timeout=timeout)
    return prof.decode(data, where)


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:6.2f}%" if whole else "      -"


def _report_json(report: hp.HeapReport, top: int) -> dict[str, Any]:
    funcs = report.functions[:top] if top else report.functions
    return {
        "source": report.source,
        "sample_index": report.sample_index,
        "unit": report.unit,
        "total": report.total,
        "functions": [{"name": f.name, "flat": f.flat, "cum": f.cum} for f in funcs],
    }


def _diff_json(d: hp.HeapDiff, top: int) -> dict[str, Any]:
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


def _report_text(
    report: hp.HeapReport, top: int, unit: str = units.AUTO, colour: bool = False
) -> str:
    funcs = report.functions[:top] if top else report.functions

    def v(x: int) -> str:
        return units.label(x, report.unit, unit)

    lines = [
        ansi.paint(
            f"{report.source}: {report.sample_index} ({report.unit}), total {v(report.total)}",
            "bold",
            colour,
        ),
        f"{'flat':>12} {'flat%':>7} {'cum':>12} {'cum%':>7}  function",
    ]
    for f in funcs:
        lines.append(
            f"{v(f.flat):>12} {_pct(f.flat, report.total)} {v(f.cum):>12} "
            f"{_pct(f.cum, report.total)}  {f.name}"
        )
    if top and len(report.functions) > top:
        lines.append(f"({len(report.functions) - top} more functions; --top 0 shows all)")
    return "\n".join(lines)


def _diff_text(d: hp.HeapDiff, top: int, unit: str = units.AUTO, colour: bool = False) -> str:
    funcs = d.functions[:top] if top else d.functions

    def v(x: int) -> str:
        return units.label(x, d.unit, unit)

    def dv(x: int) -> str:
        text = f"{units.signed(x, d.unit, unit):>12}"
        return ansi.paint(text, "red" if x > 0 else "green", colour and x != 0)

    lines = [
        ansi.paint(
            f"{d.base_source} -> {d.source}: {d.sample_index} ({d.unit}), "
            f"total {v(d.total)} ({units.signed(d.total_delta, d.unit, unit)})",
            "bold",
            colour,
        ),
        f"{'flat_delta':>12} {'cum_delta':>12} {'flat':>12} {'cum':>12}  function",
    ]
    for f in funcs:
        lines.append(
            f"{dv(f.flat_delta)} {dv(f.cum_delta)} {v(f.flat):>12} {v(f.cum):>12}  {f.name}"
        )
    if top and len(d.functions) > top:
        lines.append(f"({len(d.functions) - top} more functions; --top 0 shows all)")
    return "\n".join(lines)


def _folded(
    source: str, base_source: str | None, sample_index: str | None, timeout: float, lines: bool
) -> str:
    cur = _load(source, timeout) if base_source is None else None
    if cur is not None:
        return stacks.folded(stacks.profile_stacks(cur, cur.value_index(sample_index)), lines)
    assert base_source is not None
    base = _load(base_source, timeout)  # the base first, as for the text report
    cur = _load(source, timeout)
    ci = cur.value_index(sample_index)
    bi = base.value_index(cur.sample_types[ci].type)
    return stacks.folded_diff(
        stacks.profile_stacks(base, bi), stacks.profile_stacks(cur, ci), lines
    )


def _pprof(source: str, base_source: str | None, timeout: float) -> bytes:
    """The profile.proto to write: the difference with ``--base``, else SOURCE as served."""
    if base_source is not None:
        base_where, base = _sources.load(base_source, "heap", timeout=timeout)
        where, data = _sources.load(source, "heap", timeout=timeout)
        return diff_mod.diff_profile(base, data, base_where, where)
    where, data = _sources.load(source, "heap", timeout=timeout)
    diff_mod.parse_proto(data, where)  # refuse what pprof would not read as a proto
    return data if data.startswith(GZIP_MAGIC) else gzip.compress(data, mtime=0)


def _write(data: bytes, output: Path | None) -> None:
    """Write to ``output`` (atomically) or stdout; binary output never goes to a terminal."""
    if output is None:
        if data[:2] == GZIP_MAGIC and sys.stdout.isatty():
            raise click.UsageError(
                "--format pprof writes a gzipped profile: give --output FILE or redirect stdout"
            )
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, output)


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
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text, json, folded (flamegraph.pl, speedscope, Pyroscope) or pprof (gzipped "
    "profile.proto; with --base the difference, as go tool pprof -diff_base).",
)
@click.option(
    "--unit",
    default=units.AUTO,
    show_default=True,
    help="Text values in this unit, as go tool pprof -unit: B, kB, MB, GB (binary), or auto.",
)
@click.option("--lines", is_flag=True, help="folded: add each frame's (file:line).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of stdout.",
)
@timeout_option("30s")
@color_option()
def heap(
    source: str,
    base_source: str | None,
    sample_index: str | None,
    top: int,
    fmt: str,
    unit: str,
    lines: bool,
    output: Path | None,
    timeout: float,
    color: str,
) -> None:
    """Rank heap owners in SOURCE: a profile file, '-' or a target URL like http://host:6060.

    A file may be a .pb.gz profile or Go's heap?debug=1 text.
    """
    to_unit = units.canonical(unit)
    if to_unit is None:
        raise click.BadParameter(f"{unit!r}: use {', '.join(units.CHOICES)}", param_hint="--unit")
    colour = fmt == "text" and output is None and colour_wanted(color)
    try:
        if fmt == "pprof":
            _write(_pprof(source, base_source, timeout), output)
            return
        if fmt == "folded":
            _write(_folded(source, base_source, sample_index, timeout, lines).encode(), output)
            return
        if base_source is None:
            # One sample type is all a top needs: decoded in one pass, no Sample objects.
            where, data = _sources.load(source, "heap", timeout=timeout)
            with collector_paused():
                report = hp.owners_of(prof.decode_column(data, where, sample_index))
            if fmt == "json":
                text = json.dumps(_report_json(report, top), indent=2)
            else:
                text = _report_text(report, top, to_unit, colour)
        else:
            # The base first: when both are URLs, it is the earlier snapshot.
            base = _load(base_source, timeout)
            d = hp.diff(base, _load(source, timeout), sample_index)
            if fmt == "json":
                text = json.dumps(_diff_json(d, top), indent=2)
            else:
                text = _diff_text(d, top, to_unit, colour)
    except (ProfileError, FetchError) as exc:
        raise click.ClickException(str(exc)) from exc
    if output is not None:
        _write((text + "\n").encode(), output)
    else:
        click.echo(text, color=colour)
