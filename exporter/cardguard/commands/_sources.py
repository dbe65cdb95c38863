"""Where the ``heap`` and ``goroutines`` commands read from: a file, stdin or a target URL.

A SOURCE is a path, ``-`` for stdin, or an ``http(s)://`` URL. A URL with no
path (``http://127.0.0.1:6060``) or ending in the pprof root
(``.../debug/pprof``) is a target base; any other URL names the endpoint
itself. All HTTP goes through :func:`fetch` and so through
:mod:`cardguard.run.fetch` with its size and time limits.
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit, urlunsplit

from cardguard.commands._options import missing_scheme
from cardguard.errors import ProfileError

PPROF_ROOT = "/debug/pprof"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def is_url(source: str) -> bool:
    """Return whether ``source`` is an http(s) URL rather than a file."""
    return source.startswith(("http://", "https://"))


def is_target_base(url: str) -> bool:
    """Return whether ``url`` names a target (or its pprof root) rather than one endpoint."""
    path = urlsplit(url).path.rstrip("/")
    return path == "" or path.endswith(PPROF_ROOT)


def endpoint_url(url: str, endpoint: str, query: str = "") -> str:
    """Return the URL of pprof ``endpoint`` (e.g. ``heap``) of the target at ``url``."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith(PPROF_ROOT):
        path += PPROF_ROOT
    return urlunsplit(parts._replace(path=f"{path}/{endpoint}", query=query, fragment=""))


def fetch(url: str, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """GET ``url`` within limits and return the body.

    Raises:
        FetchError: the target could not be fetched (reason from cardguard.run.fetch.REASONS).
    """
    from cardguard.run.fetch import Fetcher
    from cardguard.settings.targets import TargetConfig

    target = TargetConfig(name=url, url=url, timeout=timeout, body_size_limit=max_bytes)
    return Fetcher(target).get(url, timeout=timeout, max_bytes=max_bytes).body


def read_file(source: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a file (or stdin for ``-``), refusing more than ``max_bytes``.

    Raises:
        ProfileError: the file cannot be read or is too large.
    """
    try:
        if source == "-":
            data = sys.stdin.buffer.read(max_bytes + 1)
        else:
            with open(source, "rb") as fh:
                data = fh.read(max_bytes + 1)
    except OSError as exc:
        hint = missing_scheme(source) if isinstance(exc, FileNotFoundError) else ""
        raise ProfileError(source, f"cannot read: {exc.strerror or exc}{hint}") from exc
    if len(data) > max_bytes:
        raise ProfileError(source, f"larger than the limit of {max_bytes} bytes")
    return data


def load(
    source: str, endpoint: str, query: str = "", timeout: float = DEFAULT_TIMEOUT
) -> tuple[str, bytes]:
    """Return (where it came from, body) for SOURCE; a target base gets ``endpoint?query``.

    Raises:
        ProfileError: unreadable file.
        FetchError: unreachable URL.
    """
    if not is_url(source):
        return source, read_file(source)
    url = endpoint_url(source, endpoint, query) if is_target_base(source) else source
    return url, fetch(url, timeout)
