"""Snapshots of one target, as ``cardguard report --save`` writes them and ``--from`` reads them.

One directory per snapshot: ``meta.json`` (when, the content type, the target's
name and URL), the /metrics page gzipped, the heap and goroutine profiles as the
target served them, and a container memory reading when there was one. Every
file is read within a size limit, and a gzipped page through the one bounded
gunzip.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardguard.errors import ParseError, ProfileError
from cardguard.gunzip import MAGIC, GzipError, gunzip
from cardguard.pprof import profile as prof

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


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
            if key == "goroutine" and not body.startswith(MAGIC):
                name = ALTERNATIVES[key][0]
            (directory / name).write_bytes(body)
        if self.cgroup_memory is not None:
            (directory / "container.json").write_text(json.dumps(self.cgroup_memory) + "\n")


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
    if data.startswith(MAGIC):
        try:
            return gunzip(data, DEFAULT_MAX_BYTES)
        except GzipError as exc:
            raise ParseError(str(path), 0, exc.message) from None
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
