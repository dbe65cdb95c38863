"""Tell who writes a page's series: an instrumented service, a Pushgateway, a textfile collector.

Pure. The fix for an exploding label depends on who writes the values: an
instrumented Go service keeps one child per value in its own heap (fix the
instrumentation); a Pushgateway keeps one group per grouping key until it is
deleted (fix the pushing job's grouping key); node_exporter's textfile
collector only reads ``*.prom`` files a script writes (fix the script).
``classify`` reads the families of one page: ``push_time_seconds`` with a
``job`` label is the Pushgateway's own series; ``node_textfile_mtime_seconds``
is the textfile collector's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

INSTRUMENTED = "instrumented"
PUSHGATEWAY = "pushgateway"
TEXTFILE = "textfile"

# Families node_exporter writes itself (any other family on its page came from a textfile).
NODE_OWN_PREFIXES = ("node_", "go_", "process_", "promhttp_")


@dataclass(frozen=True)
class Origin:
    """Where the page came from, and what identifies the writer.

    ``grouping_labels``: the Pushgateway's grouping labels (the labels of
    ``push_time_seconds``); ``files``: example ``file`` values of
    ``node_textfile_mtime_seconds``.
    """

    kind: str
    grouping_labels: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    def writes(self, family: str) -> str:
        """Return the kind that writes ``family`` on this page (a textfile or node_exporter)."""
        if self.kind == TEXTFILE and family.startswith(NODE_OWN_PREFIXES):
            return INSTRUMENTED
        return self.kind


def classify(labels: Iterable[tuple[str, str, tuple[str, ...]]]) -> Origin:
    """Classify a page from its ``(family, label, example values)`` triples."""
    push: list[str] = []
    files: tuple[str, ...] | None = None
    for family, label, examples in labels:
        if family == "push_time_seconds":
            push.append(label)
        elif family == "node_textfile_mtime_seconds":
            files = examples if label == "file" else (files or ())
    if "job" in push:
        return Origin(PUSHGATEWAY, grouping_labels=tuple(sorted(push)))
    if files is not None:
        return Origin(TEXTFILE, files=files)
    return Origin(INSTRUMENTED)
