"""The suite needs nothing beside the repository: no test names a path outside it.

A fresh ``git clone`` into an empty folder must test as it is, so test data
that came from elsewhere is copied under tests/testdata with its licence.
"""

from __future__ import annotations

import re

from support import REPO, TESTDATA

# A path that leaves the checkout: the parent of the repository, or a sibling
# folder reached with '..' (as the conformance cases once were, in ../shared).
_OUTSIDE = re.compile(r"REPO\.parent\b|[\"']\.\./|\.\./shared|/work/shared")


def test_no_test_reads_outside_the_repository() -> None:
    offenders = []
    for path in sorted((REPO / "tests").glob("*.py")):
        if path.name == "test_self_contained.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _OUTSIDE.search(line):
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []


def test_copied_corpora_carry_their_licence() -> None:
    cases = TESTDATA / "openmetrics-parsers"
    assert (cases / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")
    assert sum(1 for p in cases.iterdir() if p.is_dir()) == 211
