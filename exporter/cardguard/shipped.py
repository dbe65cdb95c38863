"""Repository files a pip-installed cardguard carries for ``cardguard demo``, and where they are.

The repository keeps the one copy of each: the demo Go service in
``deploy/demo-service/``, the alert rules in ``rules/``, the Alertmanager
routing in ``deploy/alertmanager/`` and the dashboards in ``grafana/``.
Building a wheel copies them into the package, under :data:`DIR`, at the same
relative paths (``setup.py``); an installed cardguard reads them there, a
source checkout (an editable install, the tests) reads the repository itself.
tests/test_packaging.py builds a wheel and checks its copies equal the files.

No dependencies beyond the standard library: ``setup.py`` imports this
module while building, before any of cardguard's requirements are installed.
"""

from __future__ import annotations

from pathlib import Path

DIR = "_shipped"  # inside the installed package
# Repository-relative globs: what the demo reads (see cardguard.commands.demo).
FILES = (
    "deploy/demo-service/*.go",
    "deploy/demo-service/README.md",
    "deploy/alertmanager/alertmanager.yml",
    "rules/*.rules.yml",
    "grafana/dashboards/*.json",
)
_PACKAGE = Path(__file__).resolve().parent


def files(repository: Path) -> list[str]:
    """Return the repository-relative paths :data:`FILES` names, sorted.

    Raises:
        FileNotFoundError: a glob matches nothing (a partial tree must not build a wheel
            whose ``cardguard demo`` then fails).
    """
    out: set[str] = set()
    for pattern in FILES:
        found = [p for p in repository.glob(pattern) if p.is_file()]
        if not found:
            raise FileNotFoundError(f"{repository}: nothing matches {pattern}")
        out.update(p.relative_to(repository).as_posix() for p in found)
    return sorted(out)


def root() -> Path | None:
    """Where the shipped files are: in the installed package, else in a source checkout."""
    installed = _PACKAGE / DIR
    if installed.is_dir():
        return installed
    checkout = _PACKAGE.parent.parent  # exporter/cardguard -> the repository
    if (checkout / "pyproject.toml").is_file() and (checkout / "deploy").is_dir():
        return checkout
    return None
