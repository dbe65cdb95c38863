"""Read a YAML file into a node tree within bounds on size, nesting and alias expansion.

Every config-like file cardguard reads (the config, an included rules file,
the web config) goes through :func:`read` and :func:`compose`, so a typo, a binary file, a
5,000-deep ``[[[...]]]`` or a "billion laughs" alias bomb becomes one
:class:`~cardguard.errors.ConfigError` naming file and line, never a
``RecursionError`` or a process eating its memory.

The bounds hold while composing, before anything walks the tree:

* the text is at most :data:`MAX_BYTES`;
* collections nest at most :data:`MAX_DEPTH` levels (PyYAML's composer
  recurses once per level, so an unbounded depth ends in ``RecursionError``);
* the document, with every alias counted as the whole node it names, holds
  at most :data:`MAX_NODES` nodes. Aliases are not copied by the composer,
  but the validators walk them as if they were, so this is what bounds their
  work; an alias used inside the node it names (an endless tree) is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

from cardguard.errors import ConfigError

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 50_000


class _Refused(yaml.MarkedYAMLError):
    """A bound of this module was crossed; ``problem`` says which, ``problem_mark`` where."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe composer with a depth limit and a running count of expanded nodes."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._seen = 0  # nodes composed plus aliases met: bounds time and memory as we go
        self._open: set[str] = set()  # anchors of the collections being composed
        self._weight: dict[int, int] = {}  # id(node) -> its node count, aliases expanded

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        self._seen += 1
        if self._seen > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} YAML nodes", event.start_mark)
        if isinstance(event, AliasEvent):
            if event.anchor in self._open:
                raise _Refused(
                    f"alias *{event.anchor} is used inside the node it names", event.start_mark
                )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"YAML nested deeper than {MAX_DEPTH} levels", event.start_mark)
        anchor = event.anchor
        if anchor is not None:
            self._open.add(anchor)
        node = super().compose_node(parent, index)
        if node is None:  # not reached: the event was checked to start a node
            return None
        if anchor is not None:
            self._open.discard(anchor)
        self._depth -= 1
        weight = 1
        if isinstance(node, SequenceNode):
            weight += sum(self._weight[id(child)] for child in node.value)
        elif isinstance(node, MappingNode):
            weight += sum(self._weight[id(k)] + self._weight[id(v)] for k, v in node.value)
        if weight > MAX_NODES:
            raise _Refused(f"YAML aliases expand to more than {MAX_NODES} nodes", node.start_mark)
        self._weight[id(node)] = weight
        return node


def read(path: str | Path, source: str) -> str:
    """Return the text of the file at ``path``; ``source`` names it in errors.

    Raises:
        ConfigError: unreadable, larger than :data:`MAX_BYTES`, or not UTF-8 (with the line).
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(source, [f"{source}: cannot read: {reason}"]) from None
    if len(data) > MAX_BYTES:
        raise ConfigError(source, [f"{source}: larger than {MAX_BYTES >> 20} MiB; refused"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = f"0x{data[exc.start]:02x} at offset {exc.start}"
        raise ConfigError(source, [f"{source}:{line}: not UTF-8 text (byte {byte})"]) from None


def compose(text: str, source: str) -> Node | None:
    """Compose ``text`` into a node tree (None for an empty document) within the bounds.

    Raises:
        ConfigError: invalid YAML or a bound crossed, as ``source:line: message``.
    """
    if len(text) > MAX_BYTES:
        raise ConfigError(source, [f"{source}: larger than {MAX_BYTES >> 20} MiB; refused"])
    try:
        loader = _BoundedLoader(text)
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except _Refused as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(source, [f"{source}{line}: {exc.problem}; refused"]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(source, [f"{source}{line}: invalid YAML: {exc.problem}"]) from None
    except yaml.reader.ReaderError as exc:
        at = text[: exc.position].count("\n") + 1
        char: int | str | bytes = exc.character
        code = char if isinstance(char, int) else ord(char)
        raise ConfigError(
            source, [f"{source}:{at}: invalid YAML: character #x{code:04x} is not allowed"]
        ) from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(source, [f"{source}: invalid YAML: {first}"]) from None


# --- problems ------------------------------------------------------------------

MAX_PROBLEMS = 100
MAX_PROBLEM_CHARS = 300


def clip(text: str, limit: int = 60) -> str:
    """Shorten ``text`` for a message: a 1 MiB scalar must not become a 1 MiB error."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problem(source: str, node: Node | None, path: str, message: str) -> str:
    """Format one problem as ``source:line: path: message`` (without a line when node is None)."""
    where = f"{source}:{node.start_mark.line + 1}" if node is not None else source
    text = f"{where}: {path}: {message}" if path else f"{where}: {message}"
    return clip(text, MAX_PROBLEM_CHARS)


def limited(source: str, problems: list[str]) -> list[str]:
    """Keep the first :data:`MAX_PROBLEMS` problems and say how many more there were."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    more = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], f"{source}: {more} more problems not shown"]
