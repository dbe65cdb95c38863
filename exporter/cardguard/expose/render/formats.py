"""The output formats of a report, in one map: :data:`RENDERERS`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cardguard.expose.render.html import render_html
from cardguard.expose.render.json import render_json
from cardguard.expose.render.markdown import render_markdown
from cardguard.expose.render.report import TargetReport
from cardguard.expose.render.text import render_text


class Renderer(Protocol):
    def __call__(self, reports: Sequence[TargetReport], *, colour: bool = False) -> str: ...


RENDERERS: dict[str, Renderer] = {
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
    "html": render_html,
}


def render(reports: Sequence[TargetReport], fmt: str, *, colour: bool = False) -> str:
    """Render ``reports`` in ``fmt`` (a key of :data:`RENDERERS`); ``colour``: ANSI, text only."""
    return RENDERERS[fmt](reports, colour=colour)
