"""Load rules/settings.yml: the selectors and links generated rules and dashboards share.

Used by rules/generate.py and grafana/generate.py (both put this directory on
sys.path). Templates name a setting as ``%(name)s``, the way monitoring mixins
write ``%(jobSelector)s``; :func:`substitute` fills them in and refuses an
unknown name, so a typo cannot reach a rule file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

PATH = Path(__file__).resolve().parent / "settings.yml"

_STRING = r'"(?:[^"\\]|\\.)*"'
_MATCHER = rf"[A-Za-z_][A-Za-z0-9_]*\s*(?:=~|!~|!=|=)\s*{_STRING}"
MATCHERS = re.compile(rf"{_MATCHER}(?:\s*,\s*{_MATCHER})*")
LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class Settings:
    """The values of rules/settings.yml (see the comments there)."""

    cardguard_self_selector: str
    cardguard_selector: str
    go_selector: str
    cluster_label: str
    show_multi_cluster: bool
    runbook_url_base: str
    cardguard_url: str

    def values(self) -> dict[str, str]:
        """Return every setting as the text a template gets."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


class SettingsError(ValueError):
    """Every problem in a settings file, one per line, each naming file:line."""


def load(path: Path = PATH) -> Settings:
    """Read and check ``path``; raise SettingsError listing every problem at once."""
    root = yaml.compose(path.read_text())
    problems: list[str] = []
    if not isinstance(root, yaml.MappingNode):
        raise SettingsError(f"{path.name}:1: expected a mapping of settings")
    names = {f.name: f for f in fields(Settings)}
    found: dict[str, object] = {}
    for key_node, value_node in root.value:
        key, line = key_node.value, key_node.start_mark.line + 1
        if key not in names:
            problems.append(f"{path.name}:{line}: unknown setting {key!r}")
            continue
        value = yaml.safe_load(yaml.serialize(value_node))
        problem = _check(key, value)
        if problem:
            problems.append(f"{path.name}:{line}: {key}: {problem}")
        found[key] = value
    for missing in sorted(set(names) - set(found)):
        problems.append(f"{path.name}: missing setting {missing!r}")
    if problems:
        raise SettingsError("\n".join(problems))
    return Settings(**found)  # type: ignore[arg-type]


def _check(key: str, value: object) -> str | None:
    if key == "show_multi_cluster":
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if not isinstance(value, str) or not value:
        return f"expected a non-empty string, got {value!r}"
    if key.endswith("_selector") and not MATCHERS.fullmatch(value):
        return f'expected label matchers like job="cardguard", got {value!r}'
    if key == "cluster_label" and not LABEL.fullmatch(value):
        return f"expected a label name, got {value!r}"
    if key.endswith("_url") or key.endswith("_url_base"):
        if not re.fullmatch(r"https?://\S+", value) or value.endswith("/"):
            return f"expected an http(s) URL without a trailing slash, got {value!r}"
    return None


def substitute(template: str, settings: Settings, source: str = "template") -> str:
    """Replace every ``%(name)s`` in ``template`` with that setting's value."""
    values = settings.values()
    unknown = sorted({m for m in _PLACEHOLDER.findall(template) if m not in values})
    if unknown:
        raise SettingsError(f"{source}: no such setting: {', '.join(unknown)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
