"""Typed errors shared by every layer of cardguard.

Each error carries the *source* it concerns (a target URL, a file path, or
``-`` for stdin) so that messages and logs always name what was wrong.
"""

from __future__ import annotations


class CardguardError(Exception):
    """Base class for every error cardguard raises on purpose."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message


class ParseError(CardguardError):
    """Exposition text that cannot be parsed; ``line`` is 1-based, 0 when unknown."""

    def __init__(self, source: str, line: int, message: str) -> None:
        where = f"{source}:{line}" if line else source
        Exception.__init__(self, f"{where}: {message}")
        self.source = source
        self.line = line
        self.message = message


class ProfileError(CardguardError):
    """A pprof profile or goroutine dump that cannot be decoded."""


class ConfigError(CardguardError):
    """One or more problems in a configuration file.

    ``problems`` holds every message (already prefixed with file:line), so that
    all errors are reported at once rather than only the first.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        Exception.__init__(self, "\n".join(problems) if problems else source)
        self.source = source
        self.message = "; ".join(problems)
        self.problems = problems


class FetchError(CardguardError):
    """A target could not be fetched.

    ``reason`` is one of a small fixed set (see ``cardguard.run.fetch.REASONS``) so
    it can be used as a bounded label value.
    """

    def __init__(self, source: str, reason: str, message: str) -> None:
        super().__init__(source, message)
        self.reason = reason
