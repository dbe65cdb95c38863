"""Classify what a label's values look like: URL/path, UUID, IDs, IP, email, timestamp, enum.

Pure and cheap: ``classify(values, distinct)`` looks at a sample of a label's
values (and how many distinct values the label has) and names one class from
``CLASSES``. A class wins when at least ``MAJORITY`` of the non-empty sampled
values match it; the checks run from most to least specific. Numeric IDs are
only called so past ``ENUM_MAX`` distinct values, because a handful of numbers
(status codes, ports) is an enum, not an ID space.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence

from cardguard.settings.rules import PATTERN_NAMES

CLASSES = PATTERN_NAMES

ENUM_MAX = 20
MAJORITY = 0.8

_UUID = re.compile(
    r"\{?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\}?"
)
_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]{8,}")
_NUMERIC = re.compile(r"[0-9]+")
_EMAIL = re.compile(r"[^@\s/]+@[^@\s/]+\.[A-Za-z]{2,}")
_URL = re.compile(r"(?:[a-zA-Z][a-zA-Z0-9+.-]*://[^\s]+|/[^\s]*)")
_TIMESTAMP = re.compile(
    r"(?:"
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|1[0-9]{9}(?:\.[0-9]+)?"  # Unix seconds, 2001..2286
    r"|1[0-9]{12}"  # Unix milliseconds
    r"|1[0-9]{15}"  # Unix microseconds
    r"|1[0-9]{18}"  # Unix nanoseconds
    r")"
)


def _is_ip(value: str) -> bool:
    if not value or not (value[0].isdigit() or ":" in value):
        return False
    host = value
    # Allow "host:port" and "[v6]:port" forms seen in instance-like labels.
    if value.startswith("["):
        host = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        host = value.split(":", 1)[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_hex(value: str) -> bool:
    # Require a digit and a letter so plain numbers and words do not count.
    return (
        _HEX.fullmatch(value) is not None
        and any(c.isdigit() for c in value)
        and any(c in "abcdefABCDEF" for c in value.removeprefix("0x"))
    )


# Checked in this order; the first class most sampled values match wins.
_CHECKS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("uuid", lambda v: _UUID.fullmatch(v) is not None),
    ("ip", _is_ip),
    ("email", lambda v: _EMAIL.fullmatch(v) is not None),
    ("timestamp", lambda v: _TIMESTAMP.fullmatch(v) is not None),
    ("url_path", lambda v: _URL.fullmatch(v) is not None),
    ("hex_id", _is_hex),
    ("numeric_id", lambda v: _NUMERIC.fullmatch(v) is not None),
)


def classify_value(value: str) -> str:
    """Return the class of a single value (``other`` if nothing specific matches)."""
    for name, check in _CHECKS:
        if check(value):
            return name
    return "other"


def classify(values: Sequence[str], distinct: int | None = None) -> str:
    """Return the class that fits a label, from a sample of its values.

    Args:
        values: some distinct values of the label (a few hundred are plenty).
        distinct: how many distinct values the label has in all; defaults to
            ``len(values)``.
    """
    total = len(values) if distinct is None else distinct
    sample = [v for v in values if v]
    if not sample:
        return "enum" if total <= ENUM_MAX else "other"
    need = MAJORITY * len(sample)
    for name, check in _CHECKS:
        hits = sum(1 for v in sample if check(v))
        if hits >= need:
            if name == "numeric_id" and total <= ENUM_MAX:
                return "enum"
            if name == "timestamp" and total <= 1:
                return "enum"
            return name
    return "enum" if total <= ENUM_MAX else "other"
