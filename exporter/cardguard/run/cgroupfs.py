"""Read a process' or a container's memory cgroup (v1 or v2) into ``container.ContainerMemory``.

I/O: reads a few small files under the cgroup directory; parsing is in
``cardguard.detect.container``.
"""

from __future__ import annotations

from pathlib import Path

from cardguard.detect import container

V1_FILES = ("memory.usage_in_bytes", "memory.limit_in_bytes", "memory.stat")
V2_FILES = ("memory.current", "memory.max", "memory.stat")
MAX_BYTES = 1 << 20
MOUNT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str:
    with open(path, "rb") as fh:
        return fh.read(MAX_BYTES).decode("ascii", "replace")


def read(directory: str | Path) -> container.ContainerMemory:
    """Read the memory cgroup at ``directory`` (v2 when it has memory.current, else v1).

    Raises:
        ValueError: not a memory cgroup, or a file is unreadable or malformed.
    """
    d = Path(directory)
    v2 = (d / "memory.current").exists()
    names = V2_FILES if v2 else V1_FILES
    files = {}
    for name in names:
        try:
            files[name] = _read(d / name)
        except FileNotFoundError:
            if name in ("memory.max", "memory.limit_in_bytes"):
                continue  # the root cgroup has no limit file
            raise ValueError(f"{d}: no {name} (not a memory cgroup)") from None
        except OSError as exc:
            raise ValueError(f"{d / name}: cannot read: {exc.strerror or exc}") from None
    if v2:
        return container.from_v2(files, f"cgroup v2 {d}")
    return container.from_v1(files, f"cgroup v1 {d}")


def of_pid(pid: int | str = "self", mount: Path = MOUNT) -> Path | None:
    """Return the memory cgroup directory of a process (v1 memory controller, else v2)."""
    try:
        lines = _read(Path(f"/proc/{pid}/cgroup")).splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return mount / "memory" / path.lstrip("/")
    for line in lines:
        hier, controllers, path = line.split(":", 2)
        if hier == "0" and not controllers:
            return mount / path.lstrip("/")
    return None
