"""logfmt lines (``key=value key="two words"``), as go-kit's logger writes them.

One definition of how a value is quoted and escaped, for ``serve``'s log
formatter and for the log lines ``/probe?debug=true`` shows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

_NAMED_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    named = _NAMED_ESCAPES.get(c)
    if named is not None:
        return named
    if c == " " or c.isprintable():
        return c
    # Control characters (NUL, ESC, DEL, C1), line and paragraph separators, format
    # characters such as bidi overrides: a value, often a client's text, must not be
    # able to end the line, forge another one or drive the terminal that shows it.
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def value(v: Any) -> str:
    """Format one value: bare when it can be, else quoted with escapes."""
    s = str(v)
    if s and all(c.isprintable() and c not in ' ="\\' for c in s):
        return s
    return '"' + "".join(_escape(c) for c in s) + '"'


def line(fields: Mapping[str, Any]) -> str:
    """Format ``fields`` as one logfmt line, in their order."""
    return " ".join(f"{k}={value(v)}" for k, v in fields.items())


def timestamp(at: float) -> str:
    """Format a Unix time as the ``ts`` field: RFC 3339 UTC with milliseconds."""
    ms = int(at * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{ms:03d}Z"
