"""The package's shape: layers that import one way, no circles, small modules, pure analysis.

docs/architecture.md draws the layers; these tests hold the code to the drawing.
Imports are read from the source with ``ast`` (function-level and
``TYPE_CHECKING`` imports included), so a circle hidden inside a function
counts as a circle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "exporter" / "cardguard"

# Lowest first. A module may import its own layer and the layers below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("errors", "quantities", "logfmt", "gunzip", "version")),
    ("settings", ("settings",)),
    ("parse", ("parse", "pprof")),
    ("analyse", ("analyse",)),
    ("detect", ("detect",)),
    ("run", ("run",)),
    ("expose", ("expose",)),
    ("commands", ("commands", "shipped")),
    ("entry", ("cli", "__main__")),
)
PURE = ("parse", "pprof", "analyse", "detect")
# What a pure module must not import: the network, processes, threads.
IO_MODULES = (
    "requests",
    "urllib3",
    "socket",
    "ssl",
    "http",
    "urllib.request",
    "subprocess",
    "multiprocessing",
    "threading",
    "concurrent",
    "asyncio",
    "selectors",
    "signal",
)
# Calls that read or write files.
IO_CALLS = ("open", "read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "glob")
MAX_LINES = 600


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``name`` imports, absolute, with the line; names of the package resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            yield mod, node.lineno
            for alias in node.names:
                yield f"{mod}.{alias.name}", node.lineno


def internal_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for mod, _ in imports_of(name, path):
            if mod in mods and mod != name and not name.startswith(mod + "."):
                graph[name].add(mod)
    return graph


def layer_of(name: str) -> int:
    first = name.split(".")[1] if "." in name else ""
    for rank, (_, tops) in enumerate(LAYERS):
        if first in tops:
            return rank
    raise AssertionError(f"{name} is in no layer: add it to LAYERS and docs/architecture.md")


def test_every_module_is_in_a_layer() -> None:
    for name in modules():
        if name != "cardguard":
            layer_of(name)


def test_imports_go_down_the_layers() -> None:
    wrong = []
    for name, deps in internal_graph().items():
        if name == "cardguard":
            continue
        for dep in deps:
            if dep != "cardguard" and layer_of(dep) > layer_of(name):
                wrong.append(
                    f"{name} ({LAYERS[layer_of(name)][0]}) imports "
                    f"{dep} ({LAYERS[layer_of(dep)][0]})"
                )
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circles() -> None:
    graph = internal_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in modules():
        if v not in index:
            visit(v)
    assert not circles, "\n".join(" <-> ".join(c) for c in circles)


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_size(name: str) -> None:
    path = modules()[name]
    if path.name == "profile_pb2.py":
        return
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PKG.parent)} has {lines} lines"


def test_pure_layers_do_no_io() -> None:
    wrong = []
    pure = {rank for rank, (layer, _) in enumerate(LAYERS) if layer in PURE}
    for name, path in modules().items():
        if name == "cardguard" or layer_of(name) not in pure:
            continue
        for mod, line in imports_of(name, path):
            if any(mod == io or mod.startswith(io + ".") for io in IO_MODULES):
                wrong.append(f"{path.relative_to(PKG.parent)}:{line} imports {mod}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                called = (
                    f.id
                    if isinstance(f, ast.Name)
                    else f.attr
                    if isinstance(f, ast.Attribute)
                    else ""
                )
                if called in IO_CALLS:
                    wrong.append(f"{path.relative_to(PKG.parent)}:{node.lineno} calls {called}()")
    assert not wrong, "\n".join(wrong)


def test_architecture_doc_names_every_folder() -> None:
    """docs/architecture.md draws the layout; a new folder must be drawn there too."""
    doc = (PKG.parent.parent / "docs" / "architecture.md").read_text()
    folders = sorted(
        str(p.relative_to(PKG)) + "/" for p in PKG.rglob("*") if (p / "__init__.py").is_file()
    )
    missing = [f for f in folders if f not in doc and f.split("/")[-2] + "/" not in doc]
    assert not missing, f"docs/architecture.md does not name {missing}"
