"""Reduce a goroutine stack to the frames every format shows, so groups agree across formats.

Each format hides different runtime frames: a dump hides unexported
``runtime.`` functions anywhere (such as ``runtime.main`` under
``main.main``), debug=1 hides only those at the top, the proto hides none.
Every reader reduces its stacks with :func:`normalise_stack` (or
:func:`kept_positions`, when a frame's sites must follow it), so one stack has one
group id whichever format it came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

GOEXIT = "runtime.goexit"
# debug=1 (and Go's heap text) hides frames with these prefixes at the top of a stack.
_HIDDEN_LEAF_PREFIXES = ("runtime.", "internal/runtime/")
# Functions the compiler writes around a go or defer statement's call and a
# method value; Go's profiles skip them (its wrapper flag), so the dumps must too.
_WRAPPER = re.compile(r"(\.(go|defer)wrap\d+|-fm)$")


def _shown_in_dumps(name: str) -> bool:
    """Return whether a dump at the default GOTRACEBACK shows a frame of function ``name``.

    Go's traceback hides unexported ``runtime.`` functions and names without
    a package (cgo, assembly stubs); unsymbolised addresses are kept.
    """
    if name.startswith("runtime."):
        return len(name) > 8 and "A" <= name[8] <= "Z"
    return "." in name or name.startswith("0x") or name.startswith(("[", "<"))


def normalise_stack(names: Sequence[str]) -> tuple[str, ...]:
    """Reduce a stack (innermost first) to the frames every goroutine format shows.

    Drops ``runtime.goexit`` and the compiler's wrappers (``.gowrap1``,
    ``-fm``), which only a ``GOTRACEBACK=system`` dump shows; every frame a
    dump hides (unexported ``runtime.`` functions such as ``runtime.main``
    and ``runtime.gopark``); then the ``runtime.``/``internal/runtime/``
    frames left at the top, as debug=1 does. A stack made only of runtime
    frames keeps its outermost frame (``runtime.runFinalizers``), which every
    format shows.
    """
    return tuple(names[i] for i in kept_positions(names))


def kept_positions(names: Sequence[str]) -> list[int]:
    """Return the positions of the frames :func:`normalise_stack` keeps, so sites can follow."""
    positions = [i for i, n in enumerate(names) if n != GOEXIT and not _WRAPPER.search(n)]
    shown = [i for i in positions if _shown_in_dumps(names[i])]
    for j, i in enumerate(shown):
        if not names[i].startswith(_HIDDEN_LEAF_PREFIXES):
            return shown[j:]
    return [positions[-1]] if positions else []
