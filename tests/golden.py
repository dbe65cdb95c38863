"""Golden files: whole documents cardguard writes, compared byte for byte.

They live under tests/testdata/golden/ (report/, heap/, goroutines/, metrics/), each
rendered from a recorded input in tests/testdata/. After an intended change
to an output, regenerate them and read the diff before committing:

    CARDGUARD_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q \
        tests/test_render.py tests/test_golden.py tests/test_metrics_golden.py

HTML goldens are normalised first (:func:`normalise_html`): clock times and
dates, and the millisecond range of Grafana links, become placeholders, so a
golden pins the page's structure and figures, not when it was made.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from support import TESTDATA

GOLDEN = TESTDATA / "golden"
REGEN = "CARDGUARD_REGEN_GOLDEN"

_DATETIME = re.compile(r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}Z?")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_CLOCK = re.compile(r"\b\d{2}:\d{2}(?::\d{2})?\b")
_RANGE = re.compile(r"from=\d+&(amp;)?to=\d+")


def normalise_html(text: str) -> str:
    """Replace what depends on when the page was made (times, dates, link ranges)."""
    text = _RANGE.sub(lambda m: f"from=<ms>&{m.group(1) or ''}to=<ms>", text)
    text = _DATETIME.sub("<datetime>", text)
    text = _DATE.sub("<date>", text)
    return _CLOCK.sub("<time>", text)


def check_golden(name: str, text: str, normalise: Callable[[str], str] | None = None) -> None:
    """Compare ``text`` with tests/testdata/golden/``name`` (or write it under REGEN)."""
    if normalise is not None:
        text = normalise(text)
    path = GOLDEN / name
    if os.environ.get(REGEN):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with {REGEN}=1 (see tests/golden.py)"
    want = path.read_text(encoding="utf-8")
    assert text == want, f"{name} differs from its golden; see tests/golden.py to regenerate"
