"""glibc malloc settings for cardguard's long-running processes (serve and its analysis workers)."""

from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
LARGE = 1 << 20


def return_large_buffers() -> None:
    """Have glibc give freed blocks of 1 MiB and more back to the system at once.

    glibc raises its mmap threshold each time a large block is freed, so later
    bodies (pages and profiles, up to ``body_size_limit``) come from the arenas
    and stay there after use; with a pool of fetch threads every arena ends up
    holding the largest body it ever saw (tests/test_hostile.py measured the
    serve process at 419 MiB peak without this, 139 MiB with it). A fixed
    threshold keeps such blocks out of the arenas. Elsewhere than glibc this
    does nothing.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, LARGE)
    except (OSError, AttributeError):
        pass
