"""Targets from the files ``target_files`` names: read at start, re-read when they change.

A fleet's target list need not live in cardguard's YAML: any tool that writes
Prometheus file_sd files (JSON or YAML target groups, :mod:`cardguard.settings.file_sd`)
can feed it. The globs are expanded and every file's ``stat`` compared every
:data:`REFRESH_SECONDS`; a file added, changed or removed changes the
targets. A file that cannot be read or parsed (being written, say) keeps the
targets it gave last time, with one error line; a target that cannot be used
is left out with one warning line naming it.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass

from cardguard.errors import ConfigError
from cardguard.settings import file_sd
from cardguard.settings.config import TargetFiles
from cardguard.settings.targets import TargetConfig

log = logging.getLogger("cardguard.run.targetfiles")

REFRESH_SECONDS = 5.0
MAX_FILE_BYTES = 64 * 1024 * 1024
_LOGGED_PROBLEMS = 10


@dataclass(frozen=True)
class _Seen:
    stat: tuple[int, int, int]  # mtime_ns, size, inode
    targets: tuple[TargetConfig, ...]


class TargetFileWatcher:
    """Reads the files of one ``target_files`` setting; :meth:`poll` says what changed."""

    def __init__(self, files: TargetFiles) -> None:
        self.files = files
        self._seen: dict[str, _Seen] = {}
        self._polled = False

    def paths(self) -> list[str]:
        found: set[str] = set()
        for pattern in self.files.patterns:
            found.update(p for p in glob.glob(pattern) if os.path.isfile(p))
        return sorted(found)

    def poll(self) -> tuple[TargetConfig, ...] | None:
        """Every file target now, or None when no file changed since the last poll."""
        paths = self.paths()
        changed = not self._polled or set(paths) != set(self._seen)
        seen: dict[str, _Seen] = {}
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone between glob and stat: as if never listed
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            old = self._seen.get(path)
            if old is not None and old.stat == key:
                seen[path] = old
                continue
            changed = True
            targets = self._read(path, st.st_size)
            if targets is None:
                # Unreadable or half-written: keep what it gave before (nothing if new).
                seen[path] = _Seen(key, old.targets if old is not None else ())
            else:
                seen[path] = _Seen(key, targets)
        self._seen = seen
        self._polled = True
        if not changed:
            return None
        return tuple(t for path in paths if path in seen for t in seen[path].targets)

    def _read(self, path: str, size: int) -> tuple[TargetConfig, ...] | None:
        if size > MAX_FILE_BYTES:
            log.error(
                "target file larger than %d bytes; keeping its previous targets",
                MAX_FILE_BYTES,
                extra={"file": path, "reason": "too_large"},
            )
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            groups = file_sd.parse(text, path)
        except (OSError, UnicodeDecodeError, ConfigError) as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else [f"{path}: {exc}"]
            log.error(
                "cannot read target file; keeping its previous targets: %s",
                "; ".join(problems[:_LOGGED_PROBLEMS]),
                extra={"file": path, "reason": "parse"},
            )
            return None
        targets, problems = file_sd.build(groups, self.files.template, path)
        if problems:
            more = f" (and {len(problems) - _LOGGED_PROBLEMS} more)" if len(problems) > 10 else ""
            log.warning(
                "targets left out: %s%s",
                "; ".join(problems[:_LOGGED_PROBLEMS]),
                more,
                extra={"file": path, "reason": "invalid_target"},
            )
        log.info("target file read", extra={"file": path, "targets": len(targets)})
        return tuple(targets)
