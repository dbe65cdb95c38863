"""Prometheus file_sd target groups (JSON or YAML) read into cardguard targets.

Pure: text in, groups and :class:`~cardguard.settings.targets.TargetConfig` objects out.
The format is Prometheus' ``file_sd_configs`` one::

    [{"targets": ["10.0.0.1:6060", "api-2.prod:6060"],
      "labels": {"__scheme__": "https", "__metrics_path__": "/internal/metrics"}}]

``labels`` is optional. The labels cardguard reads, all optional:

* ``__scheme__``: ``http`` (default) or ``https``;
* ``__metrics_path__``, ``__pprof_path__``: override the target defaults;
* ``cardguard_target``: the target's name (its ``target`` label); by default
  ``host:port``, with characters a name cannot hold replaced by ``_``.

Other labels are accepted and not used: cardguard's series carry only
``target``, so its own cardinality stays bounded (add labels with Prometheus'
relabelling where cardguard is scraped).

Every other setting (interval, timeouts, auth, TLS, profiles) comes from the
``target_defaults:`` section (by default the ``global:`` one), given as the
``template`` target.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from cardguard.errors import ConfigError
from cardguard.settings import yamlfile
from cardguard.settings.checker import Ctx
from cardguard.settings.targets import NAME_RE, TargetConfig, check_url

NAME_LABEL = "cardguard_target"
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.:-]")
_PATH_LABELS = {"__metrics_path__": "metrics_path", "__pprof_path__": "pprof_path"}


@dataclass(frozen=True)
class TargetGroup:
    """One entry of a file_sd file: addresses sharing labels."""

    targets: tuple[str, ...]
    labels: Mapping[str, str]


def parse(text: str, source: str) -> tuple[TargetGroup, ...]:
    """Read a file_sd file's target groups; JSON when it starts with ``[``, else YAML.

    Raises:
        ConfigError: naming ``source`` and every group or target that is wrong.
    """
    data: Any
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(
                source, [f"{source}: invalid file_sd file: invalid JSON: {exc}"]
            ) from None
    else:
        # The bounded loader the config uses: no alias bombs, no runaway nesting.
        node = yamlfile.compose(text, source)
        data = [] if node is None else _plain(node)
    if not isinstance(data, list):
        raise ConfigError(source, [f"{source}: expected a list of target groups"])
    groups: list[TargetGroup] = []
    problems: list[str] = []
    for i, item in enumerate(data):
        where = f"{source}: [{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("targets"), list):
            problems.append(f"{where}: expected a mapping with a 'targets' list")
            continue
        unknown = set(item) - {"targets", "labels"}
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(map(str, unknown))}")
        labels = item.get("labels") or {}
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            problems.append(f"{where}.labels: expected a mapping of strings to strings")
            labels = {}
        addresses = []
        for j, t in enumerate(item["targets"]):
            if not isinstance(t, str) or not t.strip():
                problems.append(f"{where}.targets[{j}]: expected a non-empty string")
                continue
            addresses.append(t.strip())
        groups.append(TargetGroup(tuple(addresses), MappingProxyType(dict(labels))))
    if problems:
        raise ConfigError(source, problems)
    return tuple(groups)


def _plain(node: Any) -> Any:
    """A composed YAML node as plain lists, dicts and strings (scalars stay text)."""
    from yaml.nodes import MappingNode, SequenceNode

    if isinstance(node, SequenceNode):
        return [_plain(n) for n in node.value]
    if isinstance(node, MappingNode):
        return {_plain(k): _plain(v) for k, v in node.value}
    return node.value


def default_name(address: str) -> str:
    """The name of a target found at ``address`` (``host:port``): what a name may hold."""
    return _NOT_IN_NAME.sub("_", address)[:64]


def build(
    groups: Iterable[TargetGroup], template: TargetConfig, source: str
) -> tuple[list[TargetConfig], list[str]]:
    """Targets from ``groups`` with ``template``'s settings; and the problems, one per target.

    A target that cannot be used (a bad address, name or label) is left out and
    named in the problems; the others are kept.
    """
    out: list[TargetConfig] = []
    problems: list[str] = []
    for gi, group in enumerate(groups):
        labels = group.labels
        scheme = labels.get("__scheme__", "http")
        overrides: dict[str, str] = {}
        bad = None
        if scheme not in ("http", "https"):
            bad = f"__scheme__ must be http or https, got {scheme!r}"
        for label, key in _PATH_LABELS.items():
            value = labels.get(label)
            if value is not None:
                if not value.startswith("/"):
                    bad = f"{label} must start with '/', got {value!r}"
                overrides[key] = value
        for ti, address in enumerate(group.targets):
            where = f"[{gi}].targets[{ti}]"
            if bad is not None:
                problems.append(f"{source}: {where}: {bad}")
                continue
            url = f"{scheme}://{address}"
            ctx = Ctx(source)
            if not check_url(ctx, None, where, url) or urlpath(url):
                problems.extend(ctx.problems or [f"{source}: {where}: expected host:port"])
                continue
            name = labels.get(NAME_LABEL) or default_name(address)
            if len(group.targets) > 1 and NAME_LABEL in labels:
                name = f"{name}-{ti}"
            if not NAME_RE.match(name):
                problems.append(f"{source}: {where}: invalid {NAME_LABEL} {name!r}")
                continue
            out.append(
                replace(
                    template,
                    name=name,
                    url=url,
                    metrics_path=overrides.get("metrics_path", template.metrics_path),
                    pprof_path=overrides.get("pprof_path", template.pprof_path),
                )
            )
    return out, problems


def urlpath(url: str) -> str:
    """The path of ``scheme://address`` (a file_sd address must not have one)."""
    rest = url.split("://", 1)[1]
    return rest[rest.index("/") :] if "/" in rest else ""


def from_files(
    texts: Sequence[tuple[str, str]], template: TargetConfig
) -> tuple[list[TargetConfig], list[str]]:
    """Targets from several files' texts ``(source, text)``, in order; problems of all."""
    out: list[TargetConfig] = []
    problems: list[str] = []
    for source, text in texts:
        try:
            groups = parse(text, source)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        found, bad = build(groups, template, source)
        out.extend(found)
        problems.extend(bad)
    return out, problems
