"""The TCP ports a process listens on, read from Linux's /proc.

For programs started on ``127.0.0.1:0`` that log the address they were given
rather than the port they bound (Prometheus, Alertmanager, Go's net/http):
the port is read back, exactly, and never guessed by binding a free port,
letting it go and hoping nothing takes it before the program binds it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in the st column of /proc/net/tcp


def listening_ports(pid: int) -> list[int]:
    """Return the TCP ports process ``pid`` listens on, sorted.

    The process' socket inodes (``/proc/<pid>/fd/*`` -> ``socket:[inode]``) are
    matched against the LISTEN rows of its ``net/tcp`` and ``net/tcp6``: no port
    another process owns is ever named.

    Raises:
        OSError: the process is gone, or its /proc entries cannot be read.
    """
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed while we looked
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():  # no IPv6 in this kernel
            continue
        for row in path.read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == _LISTEN and cols[9] in inodes:
                ports.add(int(cols[1].rpartition(":")[2], 16))
    return sorted(ports)
