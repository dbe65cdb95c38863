"""Options and hints the commands share: one duration grammar, colour, URLs typed without a scheme.

Every ``--timeout`` (and ``report``'s ``--duration``/``--interval``) takes a
duration in the config file's grammar (:func:`cardguard.quantities.parse_duration`:
``10s``, ``1m30s``, ``500ms``); a bare number is refused with the duration
it probably meant. ``--color`` is ``auto`` (a terminal without ``NO_COLOR``),
``always`` or ``never``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cardguard.expose import ansi
from cardguard.quantities import parse_duration

F = TypeVar("F", bound=Callable[..., Any])

_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
# host:port, [v6]:port or localhost, optionally with a path: a URL missing its scheme.
_HOST_PORT = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):\d{1,5}(?:/\S*)?$"
)


class Duration(click.ParamType):
    """A duration such as ``10s``, ``1m30s`` or ``500ms``, converted to seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        text = str(value).strip()
        seconds = parse_duration(text)
        if seconds is None:
            hint = ""
            if _NUMBER.match(text):
                number = float(text)
                meant = f"{int(number)}s" if number == int(number) else f"{round(number * 1000)}ms"
                hint = f"; did you mean {meant}?"
            self.fail(
                f"expected a duration like 10s, 1m30s or 500ms, got {text!r}{hint}", param, ctx
            )
        return float(seconds)


DURATION = Duration()


def timeout_option(
    default: str, help: str = "Deadline for each request to the target."
) -> Callable[[F], F]:
    """The ``--timeout`` option, a :data:`DURATION`."""
    return click.option("--timeout", type=DURATION, default=default, show_default=True, help=help)


def color_option() -> Callable[[F], F]:
    """The ``--color`` option: auto, always or never."""
    return click.option(
        "--color",
        "color",
        type=click.Choice(ansi.CHOICES),
        default="auto",
        show_default=True,
        help="Colour text output: auto is on for a terminal unless NO_COLOR is set.",
    )


def colour_wanted(choice: str) -> bool:
    """Whether stdout gets colour under ``--color choice``."""
    return ansi.wanted(sys.stdout, choice)


def scheme_hint(source: str) -> str | None:
    """Return ``http://SOURCE`` when SOURCE looks like a URL typed without its scheme."""
    if "://" in source or not _HOST_PORT.match(source):
        return None
    return f"http://{source}"


def missing_scheme(source: str) -> str:
    """The sentence to add to an error about SOURCE when it lacks a scheme, else ``""``."""
    meant = scheme_hint(source)
    return f"; did you mean {meant}?" if meant else ""


__all__ = [
    "DURATION",
    "Duration",
    "color_option",
    "colour_wanted",
    "missing_scheme",
    "scheme_hint",
    "timeout_option",
]
