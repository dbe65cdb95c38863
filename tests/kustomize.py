"""Render a kustomization without kubectl: the few kustomize features deploy/kubernetes uses.

No kubectl or kustomize binary is installed here, so tests render
deploy/kubernetes/kustomization.yaml with this instead: ``resources`` (local
files, several documents each), ``namespace``, ``labels`` (``pairs``,
``includeSelectors``, ``includeTemplates``), ``images`` and ``replacements``
(one source field, targets selected by kind and name, field paths with
``[key=value]`` list selectors, ``delimiter``/``index`` options), applied in
kustomize's order. Any other key is refused rather than ignored, so a
kustomization that starts using another feature fails here until this learns it.
Where kubectl exists, tests/test_deploy.py compares this with ``kubectl kustomize``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

KNOWN = {"apiVersion", "kind", "namespace", "labels", "images", "resources", "replacements"}
# Kinds kustomize leaves without a namespace (the ones deploy/kubernetes could meet).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
# Where an object keeps its pod template, and the pod spec in it.
POD_SPECS = (("spec", "template", "spec"), ("spec",))


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not do, or does it wrong."""


def render(directory: Path) -> list[Doc]:
    """Return the objects ``kubectl kustomize directory`` would print, in resource order."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(k) - KNOWN
    if unknown:
        raise KustomizeError(f"kustomization.yaml: unsupported fields {sorted(unknown)}")
    docs: list[Doc] = []
    for name in k.get("resources", []):
        path = directory / name
        if not path.is_file():
            raise KustomizeError(f"kustomization.yaml: resource {name} is not a file here")
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    if "namespace" in k:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = k["namespace"]
    for entry in k.get("labels", []):
        _labels(docs, entry)
    for image in k.get("images", []):
        _image(docs, image)
    for replacement in k.get("replacements", []):
        _replace(docs, replacement)
    return docs


def _labels(docs: list[Doc], entry: dict[str, Any]) -> None:
    extra = set(entry) - {"pairs", "includeSelectors", "includeTemplates"}
    if extra:
        raise KustomizeError(f"labels: unsupported fields {sorted(extra)}")
    pairs = {str(k): str(v) for k, v in entry["pairs"].items()}
    if entry.get("includeSelectors", False):
        raise KustomizeError("labels: includeSelectors: true is not supported")
    for doc in docs:
        doc["metadata"].setdefault("labels", {}).update(pairs)
        template = doc.get("spec", {}).get("template")
        if entry.get("includeTemplates", False) and template is not None:
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def _image(docs: list[Doc], image: dict[str, Any]) -> None:
    name = image["name"]
    for doc in docs:
        for spec_path in POD_SPECS:
            spec = _get(doc, spec_path)
            if not isinstance(spec, dict):
                continue
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                current = container.get("image", "")
                base = current.split("@")[0].rsplit(":", 1)[0] if ":" in current else current
                if base != name:
                    continue
                tag = image.get("newTag") or (current.rsplit(":", 1)[1] if ":" in current else "")
                new = image.get("newName", name)
                container["image"] = f"{new}:{tag}" if tag else new


def _select(docs: list[Doc], select: dict[str, Any]) -> list[Doc]:
    extra = set(select) - {"kind", "name"}
    if extra:
        raise KustomizeError(f"replacements: unsupported select fields {sorted(extra)}")
    return [
        d
        for d in docs
        if d["kind"] == select["kind"]
        and d["metadata"]["name"] == select.get("name", d["metadata"]["name"])
    ]


def _segments(field_path: str) -> list[str]:
    out, buf, depth = [], "", 0
    for ch in field_path:
        if ch == "." and depth == 0:
            out.append(buf)
            buf = ""
            continue
        depth += ch == "["
        depth -= ch == "]"
        buf += ch
    out.append(buf)
    return out


def _step(node: Any, segment: str, field_path: str) -> Any:
    if segment.startswith("[") and segment.endswith("]"):
        key, _, value = segment[1:-1].partition("=")
        if not isinstance(node, list):
            raise KustomizeError(f"{field_path}: {segment} needs a list")
        found = [item for item in node if isinstance(item, dict) and str(item.get(key)) == value]
        if len(found) != 1:
            raise KustomizeError(f"{field_path}: {segment} matches {len(found)} items")
        return found[0]
    if isinstance(node, list) and segment.isdigit():
        return node[int(segment)]
    if not isinstance(node, dict) or segment not in node:
        raise KustomizeError(f"{field_path}: no field {segment!r}")
    return node[segment]


def _get(doc: Doc, path: tuple[str, ...]) -> Any:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _replace(docs: list[Doc], replacement: dict[str, Any]) -> None:
    source = replacement["source"]
    (src,) = _select(docs, {k: v for k, v in source.items() if k != "fieldPath"}) or [None]
    if src is None:
        raise KustomizeError(f"replacements: no source {source}")
    node: Any = src
    for segment in _segments(source["fieldPath"]):
        node = _step(node, segment, source["fieldPath"])
    value = str(node)
    for target in replacement["targets"]:
        options = target.get("options", {})
        if set(options) - {"delimiter", "index"}:
            raise KustomizeError(f"replacements: unsupported options {sorted(options)}")
        chosen = _select(docs, target["select"])
        if not chosen:
            raise KustomizeError(f"replacements: no target {target['select']}")
        for doc in chosen:
            for field_path in target["fieldPaths"]:
                *parents, last = _segments(field_path)
                parent: Any = doc
                for segment in parents:
                    parent = _step(parent, segment, field_path)
                old = _step(parent, last, field_path)
                if "delimiter" in options:
                    parts = str(old).split(options["delimiter"])
                    parts[options.get("index", 0)] = value
                    new: Any = options["delimiter"].join(parts)
                else:
                    new = copy.deepcopy(node)
                parent[last] = new
