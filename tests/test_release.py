"""Release metadata: one version everywhere, the licence, classifiers and the changelog."""

from __future__ import annotations

import re
import tomllib

import trove_classifiers
import yaml

from cardguard import __version__
from support import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CHANGELOG = (REPO / "CHANGELOG.md").read_text()


def test_version_is_written_once() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "cardguard.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_images_carry_the_version() -> None:
    kustomization = yaml.safe_load(
        (REPO / "deploy" / "kubernetes" / "kustomization.yaml").read_text()
    )
    (image,) = kustomization["images"]
    assert image["name"] == "cardguard" and image["newTag"] == __version__
    sharded = (REPO / "deploy" / "kubernetes" / "cardguard-sharded.yaml").read_text()
    assert re.findall(r"image: cardguard:(\S+)", sharded) == [__version__]


def releases() -> list[tuple[str, str]]:
    return re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", CHANGELOG, re.M)


def test_changelog_follows_keep_a_changelog() -> None:
    headings = re.findall(r"^## \[([^\]]+)\]", CHANGELOG, re.M)
    assert headings[0] == "Unreleased", "others add to an Unreleased section at the top"
    assert releases(), "no released version"
    versions = [tuple(map(int, v.split("."))) for v, _ in releases()]
    assert versions == sorted(versions, reverse=True), "newest first"
    dates = [d for _, d in releases()]
    assert dates == sorted(dates, reverse=True)
    # The package is the newest release, or the one being prepared under Unreleased.
    assert releases()[0][0] == __version__
    for heading in headings:
        assert re.search(rf"^\[{re.escape(heading)}\]: https://\S+$", CHANGELOG, re.M), heading
    sections = re.findall(r"^### (\w+)$", CHANGELOG, re.M)
    assert set(sections) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_licence_metadata() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    # An SPDX licence expression replaces the licence classifier (PEP 639).
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    build = PYPROJECT["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in build)


def test_classifiers_are_pypis() -> None:
    classifiers = PYPROJECT["project"]["classifiers"]
    assert classifiers and set(classifiers) <= trove_classifiers.classifiers
    python = PYPROJECT["project"]["requires-python"]
    assert python == ">=3.11" and "Programming Language :: Python :: 3.11" in classifiers


def test_project_urls() -> None:
    urls = PYPROJECT["project"]["urls"]
    assert {"Homepage", "Source", "Issues", "Changelog"} <= set(urls)
    assert all(u.startswith("https://github.com/cardguard/cardguard") for u in urls.values())
    assert urls["Changelog"].endswith("/CHANGELOG.md")
