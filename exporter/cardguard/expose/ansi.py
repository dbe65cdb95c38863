"""Colour for terminal text output: ANSI styles, and whether a stream should get them.

Renderers call :func:`paint` with ``on`` decided by the command, which asks
:func:`wanted`: colour on a terminal, never into a pipe or file, and never
when ``NO_COLOR`` is set to anything (https://no-color.org). ``--color`` on a
command overrides the guess either way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO

STYLES: Mapping[str, str] = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "critical": "1;31",
    "warning": "1;33",
    "info": "1;34",
}
CHOICES = ("auto", "always", "never")


def paint(text: str, style: str, on: bool) -> str:
    """Wrap ``text`` in the ANSI codes of ``style`` (a key of :data:`STYLES`) when ``on``."""
    if not on or not text:
        return text
    return f"\x1b[{STYLES[style]}m{text}\x1b[0m"


def wanted(stream: TextIO, choice: str = "auto", env: Mapping[str, str] | None = None) -> bool:
    """Return whether output to ``stream`` should be coloured (``choice``: auto/always/never)."""
    if choice != "auto":
        return choice == "always"
    environ = os.environ if env is None else env
    if environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and environ.get("TERM") != "dumb"


__all__ = ["CHOICES", "STYLES", "paint", "wanted"]
