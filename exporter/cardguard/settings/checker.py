"""The one YAML checker: typed reads of a node tree, every problem as ``file:line: path: message``.

Every YAML file cardguard validates (the config, a rules file, the web config)
is read through a :class:`Ctx` over the node tree of
:func:`cardguard.settings.yamlfile.compose`, so each value still knows its
line. A read never raises and never stops at the first problem: it records
the problem on the :class:`Ctx` and returns None (or the default), and the
loader raises one :class:`~cardguard.errors.ConfigError` with all of them.

:meth:`Ctx.section` checks a mapping's keys (unknown ones get a "did you
mean", repeated ones the line of the first) and returns a :class:`Section`
whose getters fall back to a default; the scalar readers (:meth:`Ctx.string`,
:meth:`Ctx.integer`, :meth:`Ctx.number`, :meth:`Ctx.duration`,
:meth:`Ctx.size`, ...) share one wording, and durations and sizes one grammar,
:mod:`cardguard.quantities`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from cardguard.quantities import parse_duration, parse_size
from cardguard.settings import yamlfile

T = TypeVar("T")

# The largest integer, size or duration (in seconds) a value may hold: far above
# anything sensible, and small enough for every C API and float it reaches.
MAX_INT = 2**53
MAX_DURATION = 10 * 365 * 86400.0
_MAX_DURATION_TEXT = "10y"
INVALID: Any = object()
"""What :func:`value_of` returns for a scalar whose text does not fit its tag."""
_DIGITS_RE = re.compile(r"^[-+]?[0-9_]+$")
# YAML 1.1 reads 1e6 (no dot) as a string; it is still a number.
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_CLOSE_ENOUGH = 0.75


def value_of(node: ScalarNode) -> Any:
    """Return the scalar as YAML 1.1 reads it; :data:`INVALID` when its text does not fit its tag.

    ``!!int abc``, ``!!bool maybe`` and 5,000-digit integers raise inside PyYAML's
    constructor (ValueError, KeyError, ...); here they are just invalid values. A
    fresh constructor per call: a shared one caches every node it ever saw.
    """
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return INVALID


def describe(node: Node) -> str:
    """Show a node in a message: a scalar's text (quoted when a string), else its kind."""
    if isinstance(node, ScalarNode):
        if node.tag.endswith(":null"):
            return "null"
        if node.tag.endswith(":str"):
            return yamlfile.clip(repr(node.value))
        return yamlfile.clip(str(node.value))
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "an unknown node"


def is_null(node: Node) -> bool:
    """Whether ``node`` is YAML null (a key given with no value reads as absent)."""
    return isinstance(node, ScalarNode) and node.tag.endswith(":null")


def is_text(node: Node) -> bool:
    """Whether ``node`` is a string scalar."""
    return isinstance(node, ScalarNode) and node.tag.endswith(":str")


def join(path: str, key: str | int) -> str:
    """Extend a config path: ``join("targets", 2)`` -> ``targets[2]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _unknown_key(key: str, allowed: Iterable[str]) -> str:
    options = list(allowed)
    found = difflib.get_close_matches(key, options, n=1, cutoff=_CLOSE_ENOUGH)
    if found:
        return f"unknown key; did you mean {found[0]!r}?"
    return f"unknown key; expected one of: {', '.join(options)}"


class Ctx:
    """Collects problems as ``file:line: path: message`` while a file is validated.

    ``base_dir`` is what relative file names are resolved against: the directory
    of the file being read.
    """

    def __init__(self, source: str, base_dir: Path | None = None) -> None:
        self.source = source
        self.base_dir = base_dir if base_dir is not None else Path.cwd()
        self.problems: list[str] = []

    def error(self, node: Node | None, path: str, message: str) -> None:
        """Record one problem at ``node``'s line (or without a line when node is None)."""
        self.problems.append(yamlfile.problem(self.source, node, path, message))

    def section(self, node: Node | None, path: str, keys: Iterable[str]) -> Section | None:
        """Check that ``node`` is a mapping with only ``keys``; None after recording a problem.

        A null node (the key present with no value) reads as an empty section.
        """
        if node is None or is_null(node):
            return Section(self, path, {}, node)
        if not isinstance(node, MappingNode):
            self.error(node, path, f"expected a mapping, got {describe(node)}")
            return None
        allowed = tuple(keys)
        items: dict[str, tuple[Node, Node]] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                self.error(knode, path, "keys must be strings")
                continue
            key = str(knode.value)
            kpath = join(path, yamlfile.clip(key))
            if key in items:
                first = items[key][0].start_mark.line + 1
                self.error(knode, kpath, f"duplicate key (first given on line {first})")
                continue
            if key not in allowed:
                self.error(knode, kpath, _unknown_key(key, allowed))
                continue
            items[key] = (knode, vnode)
        return Section(self, path, items, node)

    def sequence(self, node: Node | None, path: str) -> list[Node]:
        """Return the items of a list node; [] after recording a problem when it is not a list."""
        if node is None or is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            self.error(node, path, f"expected a list, got {describe(node)}")
            return []
        return list(node.value)

    # Scalar readers: each returns None after recording a problem.

    def string(self, node: Node, path: str) -> str | None:
        """A non-empty string; a number or boolean where text is expected is its text."""
        if is_text(node) and node.value != "":
            return str(node.value)
        if isinstance(node, ScalarNode) and node.tag.endswith((":int", ":float", ":bool")):
            return str(node.value)
        self.error(node, path, f"expected a non-empty string, got {describe(node)}")
        return None

    def strings(self, node: Node | None, path: str) -> tuple[str, ...]:
        """A list of non-empty strings; the bad items are problems and left out."""
        out = []
        for i, item in enumerate(self.sequence(node, path)):
            text = self.string(item, join(path, i))
            if text is not None:
                out.append(text)
        return tuple(out)

    def boolean(self, node: Node, path: str) -> bool | None:
        if isinstance(node, ScalarNode) and node.tag.endswith(":bool"):
            value = value_of(node)
            if isinstance(value, bool):
                return value
        self.error(node, path, f"expected true or false, got {describe(node)}")
        return None

    def integer(self, node: Node, path: str, minimum: int = 0) -> int | None:
        value = value_of(node) if isinstance(node, ScalarNode) else INVALID
        if value is INVALID and node.tag.endswith(":int") and _DIGITS_RE.match(node.value):
            # More digits than int() takes: certainly out of range, on the side of its sign.
            value = -(MAX_INT + 1) if node.value.startswith("-") else MAX_INT + 1
        if not isinstance(value, int) or isinstance(value, bool) or not node.tag.endswith(":int"):
            self.error(node, path, f"expected an integer, got {describe(node)}")
            return None
        if value < minimum:
            self.error(node, path, f"must be at least {minimum}, got {describe(node)}")
            return None
        if value > MAX_INT:
            self.error(node, path, f"must be at most {MAX_INT}, got {describe(node)}")
            return None
        return value

    def positive(self, node: Node, path: str) -> int | None:
        """An integer of at least 1: a count or a cap."""
        return self.integer(node, path, minimum=1)

    def number(
        self, node: Node, path: str, minimum: float = 0.0, maximum: float | None = None
    ) -> float | None:
        value = INVALID
        if isinstance(node, ScalarNode) and node.tag.endswith((":int", ":float")):
            value = value_of(node)
        elif is_text(node) and _FLOAT_RE.match(node.value):
            value = float(node.value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(node, path, f"expected a number, got {describe(node)}")
            return None
        try:
            value = float(value)
        except OverflowError:  # an int too large for a float
            value = math.inf
        if not math.isfinite(value):
            self.error(node, path, f"expected a finite number, got {describe(node)}")
            return None
        if value < minimum or (maximum is not None and value > maximum):
            if maximum is None:
                bound = f"at least {minimum:g}"
            else:
                bound = f"between {minimum:g} and {maximum:g}"
            self.error(node, path, f"must be {bound}, got {describe(node)}")
            return None
        if value > MAX_INT:
            self.error(node, path, f"must be at most {MAX_INT}, got {describe(node)}")
            return None
        return value

    def ratio(self, node: Node, path: str) -> float | None:
        """A number from 0 to 1: a share."""
        return self.number(node, path, 0.0, 1.0)

    def duration(self, node: Node, path: str) -> float | None:
        """Seconds from a duration in :func:`cardguard.quantities.parse_duration`'s grammar."""
        value = parse_duration(str(node.value)) if isinstance(node, ScalarNode) else None
        if value is None:
            self.error(node, path, f"expected a duration like 30s, got {describe(node)}")
            return None
        if value <= 0:
            self.error(node, path, f"must be longer than 0s, got {describe(node)}")
            return None
        if value > MAX_DURATION:
            self.error(node, path, f"must be at most {_MAX_DURATION_TEXT}, got {describe(node)}")
            return None
        return value

    def size(self, node: Node, path: str, minimum: int = 1) -> int | None:
        """Bytes from a size in :func:`cardguard.quantities.parse_size`'s grammar."""
        value = parse_size(str(node.value)) if isinstance(node, ScalarNode) else None
        if value is None:
            self.error(
                node,
                path,
                f"expected a size like 64MiB or a number of bytes, got {describe(node)}",
            )
            return None
        if value < minimum:
            unit = "byte" if minimum == 1 else "bytes"
            self.error(node, path, f"must be at least {minimum} {unit}, got {describe(node)}")
            return None
        if value > MAX_INT:
            self.error(node, path, f"must be at most {MAX_INT} bytes, got {describe(node)}")
            return None
        return value

    def choice(self, node: Node, path: str, choices: Iterable[str]) -> str | None:
        options = tuple(choices)
        if isinstance(node, ScalarNode) and str(node.value) in options:
            return str(node.value)
        self.error(node, path, f"expected one of {', '.join(options)}, got {describe(node)}")
        return None

    def file(self, node: Node, path: str) -> Path | None:
        """Return a path resolved against :attr:`base_dir`; the file must exist."""
        text = self.string(node, path)
        if text is None:
            return None
        p = Path(text)
        if not p.is_absolute():
            p = self.base_dir / p
        try:
            found = p.is_file()
        except (OSError, ValueError):  # a name too long for the OS, or with a NUL in it
            found = False
        if not found:
            self.error(node, path, f"file not found: {yamlfile.clip(text)}")
            return None
        return p


class Section:
    """A checked mapping: typed getters that fall back to a default after a problem."""

    def __init__(
        self, ctx: Ctx, path: str, items: dict[str, tuple[Node, Node]], node: Node | None
    ) -> None:
        self.ctx = ctx
        self.path = path
        self.items = items
        self.node = node

    def has(self, key: str) -> bool:
        return key in self.items

    def value_node(self, key: str) -> Node | None:
        entry = self.items.get(key)
        return entry[1] if entry else None

    def key_path(self, key: str) -> str:
        return join(self.path, key)

    def get(self, key: str, convert: Callable[[Node, str], T | None], default: T) -> T:
        """Convert ``key`` with a Ctx reader; ``default`` when absent, null or invalid."""
        node = self.value_node(key)
        if node is None or is_null(node):
            return default
        value = convert(node, self.key_path(key))
        return default if value is None else value

    def optional(self, key: str, convert: Callable[[Node, str], T | None]) -> T | None:
        node = self.value_node(key)
        if node is None or is_null(node):
            return None
        return convert(node, self.key_path(key))

    def required(self, key: str, convert: Callable[[Node, str], T | None]) -> T | None:
        node = self.value_node(key)
        if node is None or is_null(node):
            self.ctx.error(self.node, self.key_path(key), "required")
            return None
        return convert(node, self.key_path(key))
