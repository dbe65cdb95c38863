"""Recorded pprof fixtures (tests/testdata/pprof/<go1.N>/), what Go printed about them,
and the small Go programs the pprof tests build and run (tests/testdata/pprof/programs/).

The fixtures come from tests/testdata/record.sh; the ``*.top.*.txt`` files
next to each profile are ``go tool pprof -top`` output of the matching Go
toolchain, and ``*.debug1.txt`` are the goroutine counts Go printed itself.

The programs are stdlib-only modules, built in module mode with a ``go.mod``
naming the toolchain's own Go version, so that the runtime behaves as that
release defaults (Go 1.27 prints goroutine labels in dumps; a GOPATH build
would get Go 1.20's defaults).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from support import CACHE, TESTDATA, go_version

PPROF_DATA = TESTDATA / "pprof"
PROGRAMS = PPROF_DATA / "programs"
HEAP_INDICES = ("alloc_objects", "alloc_space", "inuse_objects", "inuse_space")

# Rows of -top written with -unit=B, -unit=ns or -unit=us (or plain counts). pprof
# prints a tiny share in exponent form (9.4e-05%: a short wait in a mutex profile).
_PCT = r"-?[\d.]+(?:e[-+]?\d+)?%"
_ROW = re.compile(
    rf"^\s*(-?\d+)(?:B|ns|us)?\s+{_PCT}\s+{_PCT}\s+(-?\d+)(?:B|ns|us)?\s+{_PCT}\s+(.+?)"
    r"(?: \((?:partial-)?inline\))?$"
)
_TOTAL = re.compile(r"accounting for (-?\d+)(?:B|ns|us)?, [\d.]+% of (-?\d+)(?:B|ns|us)? total")


@dataclass(frozen=True)
class PprofTop:
    """Parsed ``go tool pprof -top`` output: total and (flat, cum) by function."""

    total: int
    accounted: int  # "Showing nodes accounting for X": the sum of the flat column
    rows: dict[str, tuple[int, int]]


def parse_top(path: Path) -> PprofTop:
    """Parse -top output written with ``-unit=B`` (bytes) or plain counts."""
    return parse_top_text(path.read_text(), str(path))


def parse_top_text(text: str, path: str = "-top") -> PprofTop:
    """Parse -top output (``-unit=B``, ``-unit=ns`` or counts) given as text."""
    m = _TOTAL.search(text)
    assert m, f"{path}: no total line"
    rows: dict[str, tuple[int, int]] = {}
    started = False
    for line in text.splitlines():
        if line.strip().startswith("flat"):
            started = True
            continue
        if not started:
            continue
        r = _ROW.match(line)
        assert r, f"{path}: unparsed row {line!r}"
        rows[r.group(3)] = (int(r.group(1)), int(r.group(2)))
    return PprofTop(int(m.group(2)), int(m.group(1)), rows)


def version_dirs() -> list[Path]:
    """Return the recorded fixture directories, one per Go version."""
    return sorted(p for p in PPROF_DATA.iterdir() if (p / "VERSION").exists())


def version_ids() -> list[str]:
    return [p.name for p in version_dirs()]


def leak_dirs() -> list[Path]:
    """Fixture directories whose Go served /debug/pprof/goroutineleak."""
    return [p for p in version_dirs() if (p / "goroutineleak.debug1.txt").exists()]


def go_minor(go: Path) -> str:
    """Return ``1.N`` for a toolchain whose ``go env GOVERSION`` is ``go1.N.x``."""
    m = re.match(r"go(\d+\.\d+)", go_version(go))
    assert m, go_version(go)
    return m.group(1)


def build_program(name: str, go: Path, *, inline: bool = True, test: bool = False) -> Path:
    """Build tests/testdata/pprof/programs/<name> as a module of ``go``'s own Go version.

    Cached under CACHE by source, toolchain and flags, as support.cached_go_build
    does. ``inline=False`` builds everything with ``-gcflags=all=-l``;
    ``test=True`` builds the package's test binary (``go test -c``).
    """
    src = PROGRAMS / name
    h = hashlib.sha256()
    for f in sorted(src.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(src).as_posix().encode())
            h.update(f.read_bytes())
    flags = [] if inline else ["-gcflags=all=-l"]
    command = ["test", "-c"] if test else ["build"]
    h.update(" ".join(command + flags).encode())
    out = CACHE / "bin" / f"{name}-{go_version(go)}-{h.hexdigest()[:12]}"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(prefix="cardguard-gomod-") as tmp:
        mod = Path(tmp) / name
        shutil.copytree(src, mod)
        (mod / "go.mod").write_text(f"module {name}\n\ngo {go_minor(go)}\n")
        env = dict(os.environ)
        env.update(
            GO111MODULE="on",
            GOFLAGS="-mod=mod",
            GOPROXY="off",
            GOTOOLCHAIN="local",
            GOCACHE=str(CACHE / f"gocache-{go_version(go)}"),
            GOPATH=str(Path(tmp) / "gopath"),
            CGO_ENABLED="0",
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_name(out.name + ".tmp")
        proc = subprocess.run(
            [str(go), *command, *flags, "-o", str(tmp_out), "."],
            cwd=mod,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"go build of {src} with {go} failed:\n{proc.stderr}")
        tmp_out.replace(out)
    return out


def pprof_top(go: Path, *args: str) -> PprofTop:
    """Run ``go tool pprof -top -nodefraction=0 ARGS`` and parse what it prints."""
    proc = subprocess.run(
        [str(go), "tool", "pprof", "-top", "-nodefraction=0", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return parse_top_text(proc.stdout, " ".join(args))


def unit_flag(unit: str) -> list[str]:
    """The -unit flag that makes pprof print a sample type's values unscaled."""
    return {"bytes": ["-unit=B"], "nanoseconds": ["-unit=ns"], "microseconds": ["-unit=us"]}.get(
        unit, []
    )
