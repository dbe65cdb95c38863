"""Derive bounded forms of label values: ``/orders/123/items`` -> ``/orders/{id}/items``.

Pure. A *template* is what a careful service would have put in the label: a
URL path with its ID-like segments replaced by ``{id}`` (a UUID by
``{uuid}``), any other unbounded value (an ID, an address, a timestamp) by a
placeholder for its class (``cardguard.analyse.patterns``). ``group`` sorts observed
values by template, so a caller can tell the few templates that hold most of
a label's values (the explosion) from the values that are already bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cardguard.analyse import patterns

# The placeholder each unbounded value class is folded to.
PLACEHOLDERS = {
    "uuid": "{uuid}",
    "hex_id": "{id}",
    "numeric_id": "{id}",
    "ip": "{ip}",
    "email": "{email}",
    "timestamp": "{timestamp}",
}
_HEXISH = re.compile(r"(?:0x)?[0-9a-fA-F]{6,}")
_DIGITS = re.compile(r"[0-9]+")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,}")


def segment_template(segment: str) -> str:
    """Return ``{id}``/``{uuid}``/... for an ID-like path segment, else the segment itself."""
    if not segment:
        return segment
    cls = patterns.classify_value(segment)
    if cls == "uuid":
        return "{uuid}"
    if cls in ("numeric_id", "hex_id", "ip", "email", "timestamp"):
        return PLACEHOLDERS[cls]
    if _DIGITS.fullmatch(segment):
        return "{id}"
    # Hex shorter than patterns' hex_id (a formatted uint32 has 1 to 8 digits) and random
    # tokens: a digit among them tells an ID from a word such as "profile" or "v1".
    digits = sum(c.isdigit() for c in segment)
    if _HEXISH.fullmatch(segment) and digits:
        return "{id}"
    if _TOKEN.fullmatch(segment) and digits >= 2:
        return "{id}"
    return segment


def template_of(value: str, pattern: str) -> str:
    """Return the bounded form of one value of a label whose values look like ``pattern``."""
    if pattern == "url_path" or value.startswith("/"):
        scheme_host = ""
        path = value
        if "://" in value:
            scheme, _, rest = value.partition("://")
            host, slash, path = rest.partition("/")
            scheme_host, path = f"{scheme}://{host}", slash + path
        path = path.split("?", 1)[0].split("#", 1)[0]
        return scheme_host + "/".join(segment_template(s) for s in path.split("/"))
    if pattern in PLACEHOLDERS:
        return PLACEHOLDERS[pattern]
    cls = patterns.classify_value(value)
    return PLACEHOLDERS.get(cls, value)


@dataclass(frozen=True)
class Template:
    """One template and the observed values that fold into it."""

    template: str
    values: tuple[str, ...]

    @property
    def bounded(self) -> bool:
        """Whether the template is the value itself (nothing in it was ID-like)."""
        return self.values == (self.template,)


def group(values: Iterable[str], pattern: str) -> list[Template]:
    """Group values by template, most values first (then by template text)."""
    by: dict[str, list[str]] = {}
    for v in values:
        by.setdefault(template_of(v, pattern), []).append(v)
    out = [Template(t, tuple(sorted(vs))) for t, vs in by.items()]
    out.sort(key=lambda t: (-len(t.values), t.template))
    return out


def template_regex(template: str) -> str:
    """Return an RE2/Python regex matching the values a template stands for.

    ``{uuid}``/``{id}``/... match one path segment (``[^/]+``) inside a path, any
    non-empty value when the template is only a placeholder.
    """
    if template in PLACEHOLDERS.values():
        return ".+"
    out = []
    for piece in re.split(r"(\{[a-z]+\})", template):
        if piece in PLACEHOLDERS.values():
            out.append("[^/]+")
        else:
            out.append(regex_escape(piece))
    return "".join(out)


_SPECIAL = set("\\.^$|?*+()[]{}")


def regex_escape(text: str) -> str:
    """Escape regex metacharacters only (RE2 rejects Python's escapes of spaces and letters)."""
    return "".join("\\" + c if c in _SPECIAL else c for c in text)
