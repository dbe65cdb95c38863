"""Profile a cardguard command in this process; draw its flame graph with cardguard's renderer.

Usage::

    python -m benchmarks.profile [--svg FILE] [--folded FILE] -- cardguard-args...
    python -m benchmarks.profile --svg docs/flame-cardinality.svg -- \\
        cardinality ~/.cache/cardguard-bench/client_golang-200000-1.txt --format json

The command runs under pyinstrument (a sampling profiler: 1 ms interval, wall
time of this thread, start-up and imports included); its samples are folded
into ``root;...;leaf microseconds`` stacks (``--folded``, for flamegraph.pl
or speedscope) and drawn by :mod:`cardguard.expose.flamegraph` (``--svg``), the
renderer of the report's heap and goroutine graphs. A frame is
``function`` and its ``file:line``; the widest frames are where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path
from typing import Any

from cardguard.expose import flamegraph
from cardguard.pprof.stacks import Stack

# Frames of the profiler and of the command-line plumbing say nothing about cardguard.
_SKIP_FILES = ("pyinstrument/", "click/", "benchmarks/profile.py")


def _fold(frame: Any, path: Stack, out: dict[Stack, int]) -> None:
    if frame.is_synthetic:
        return
    site = f"{frame.file_path_short}:{frame.line_no}" if frame.line_no else frame.file_path_short
    here = (
        path if frame.file_path_short.startswith(_SKIP_FILES) else (*path, (frame.function, site))
    )
    children = [c for c in frame.children if not c.is_synthetic]
    own = frame.time - sum(c.time for c in children)
    micros = round(own * 1e6)
    if micros > 0 and here:
        out[here] = out.get(here, 0) + micros
    for child in children:
        _fold(child, here, out)


def profile(args: list[str], interval: float = 0.001) -> dict[Stack, int]:
    """Run ``cardguard ARGS`` under pyinstrument; return microseconds per whole stack."""
    from pyinstrument import Profiler

    from cardguard.cli import main as cli

    profiler = Profiler(interval=interval)
    sink = io.StringIO()
    profiler.start()
    try:
        with contextlib.redirect_stdout(sink), contextlib.suppress(SystemExit):
            cli.main(args=args, prog_name="cardguard", standalone_mode=True)
    finally:
        profiler.stop()
    stacks: dict[Stack, int] = {}
    root = profiler.last_session.root_frame()
    if root is not None:
        _fold(root, (), stacks)
    return stacks


def folded(stacks: dict[Stack, int]) -> str:
    """Brendan Gregg's folded format: ``root;...;leaf value``, one line per stack."""
    lines = [";".join(name for name, _ in stack) + f" {v}" for stack, v in stacks.items()]
    return "\n".join(sorted(lines)) + "\n"


def svg(stacks: dict[Stack, int], title: str) -> str:
    """A standalone SVG of the stacks, drawn by cardguard.expose.flamegraph."""
    flame = flamegraph.Flame(
        key="cardguard", title=title, unit="microseconds", root=flamegraph.tree(stacks, title)
    )
    body = flamegraph.svg(flame, lambda us: f"{us / 1000:.1f} ms")
    # The report styles its graphs with its page's CSS; a file on its own carries the few rules.
    style = (
        "<style>text{font:11px sans-serif;fill:#000;pointer-events:none}"
        "g.f rect{stroke:#fff;stroke-width:0.3}</style>"
    )
    return body.replace(">", ">" + style, 1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--svg", type=Path, help="write the flame graph here")
    ap.add_argument("--folded", type=Path, help="write the folded stacks here")
    ap.add_argument("--title", default="", help="the graph's root frame (default: the command)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="cardguard's arguments, after --")
    args = ap.parse_args(argv)
    command = [a for a in args.command if a != "--"] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give cardguard's arguments after --")
    stacks = profile(command)
    total = sum(stacks.values())
    title = args.title or "cardguard " + " ".join(Path(a).name if "/" in a else a for a in command)
    if args.folded:
        args.folded.write_text(folded(stacks))
    if args.svg:
        args.svg.write_text(svg(stacks, title) + "\n")
    by_leaf: dict[str, int] = {}
    for stack, v in stacks.items():
        by_leaf[stack[-1][0]] = by_leaf.get(stack[-1][0], 0) + v
    print(f"{title}: {total / 1e6:.3f} s sampled; widest leaves:", file=sys.stderr)
    for name, v in sorted(by_leaf.items(), key=lambda kv: -kv[1])[:12]:
        print(f"{v / 1000:10.1f} ms {100 * v / total:5.1f}%  {name}", file=sys.stderr)


if __name__ == "__main__":
    main()
