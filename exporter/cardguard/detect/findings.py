"""A target's offenders as report and serve both give them: judged across a fix, safe fixes,
container memory explained.

Pure. Detection (:func:`cardguard.detect.detectors.detect`) reads a
:class:`~cardguard.analyse.view.TargetView`; three things it does not hold
turn its offenders into what an operator acts on, and :class:`Findings`
keeps them:

- which process and build served each page (:func:`verdict.identity`): a
  restart, or the end of snapshots saved before a fix, splits the watch, and
  each offender open before it is judged ``fixed`` or ``still growing`` on
  its own quantity (:mod:`cardguard.detect.verdict`);
- the latest page and the children each exploding family had when the watch
  began (or when serve first saw it explode): the relabel snippet is proven
  never to merge series, and the code fix names a normaliser and stale
  children (:mod:`cardguard.detect.remedies`), with the rules and panels that
  use the label;
- the container's memory readings: ``misleading_memory`` is explained as
  working set plus page cache, and a growing offender says when the limit
  is reached (:mod:`cardguard.detect.container`).

``cardguard report`` (commands/watch.py) keeps the first page whole, since it
watches one target for minutes. serve (run/worker.py) keeps no page between
rounds: the children of each exploding family, at most ``series_cap``, from
the round it was first seen; identities and readings within ``max_points``;
and it re-reads a page for fixes at most every ``refine_seconds``, reusing
the last fix of each offender in between (a reload that re-reads the
rules and dashboards makes the next page due). Everything is bounded by the
offender caps, the point bounds and ``series_cap``.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cardguard.analyse import usage
from cardguard.analyse.view import MetricsPoint, TargetView
from cardguard.detect import container, relabel, remedies, verdict
from cardguard.detect.detectors import detect
from cardguard.detect.offender import Offender
from cardguard.errors import ParseError
from cardguard.settings.rules import Rules

# Evidence keys remedies.refine sets; carried over to the same offender between refinements.
REFINED_KEYS = ("relabel", "source", "used_by", "code")


@dataclass
class Findings:
    """What one target's offenders are judged and refined with, beyond its view."""

    uses: usage.Index | None = None
    """Label uses in the rules and dashboards configured; None when none were given."""
    max_points: int | None = None
    """Identities and container readings kept (None: all, as ``report`` does)."""
    series_cap: int = relabel.MAX_SERIES
    """Series read per exploding family, to prove a relabel fix (past it, none is proven)."""
    children_cap: int = relabel.MAX_SERIES
    """Children kept per exploding family from when it was first seen (stale children)."""
    refine_seconds: float = 0.0
    """Least time between two readings of a page for fixes; 0 reads every page given."""
    baseline_at: float | None = None
    """Where snapshots saved before a fix end (``report --baseline``)."""
    first: remedies.Page | None = None
    """The first page of the watch, kept whole (``report``); serve keeps ``children``."""
    notes: list[str] = field(default_factory=list)
    identities: deque[tuple[float, verdict.Identity]] = field(init=False)
    readings: deque[tuple[float, container.ContainerMemory]] = field(init=False)
    children: dict[str, remedies.Children] = field(default_factory=dict, init=False)
    _fixes: dict[str, Offender] = field(default_factory=dict, init=False)
    _fixed_at: float | None = field(default=None, init=False)
    _fixed_uses: usage.Index | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.identities = deque(maxlen=self.max_points)
        self.readings = deque(maxlen=self.max_points)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
            del self.notes[:-20]

    def saw(
        self,
        at: float,
        identity: verdict.Identity | None = None,
        reading: container.ContainerMemory | None = None,
    ) -> None:
        """Record which process served a page read at ``at``, and the container's memory."""
        if identity is not None:
            if self.identities and self.identities[-1][1].restarted(identity):
                self.children.clear()  # the new process' children start afresh
            self.identities.append((at, identity))
        if reading is not None:
            self.readings.append((at, reading))

    def cut(self, since: float | None = None) -> tuple[float, dict[str, Any]] | None:
        """Where the watch splits into before and after a fix (``verdict.restart_cut``).

        ``since``: the oldest point still in the view; a restart before it is forgotten.
        """
        ids = [p for p in self.identities if since is None or p[0] >= since]
        return verdict.restart_cut(ids, self.baseline_at)

    def offenders(
        self, view: TargetView, rules: Rules, page: remedies.Page | None = None
    ) -> list[Offender]:
        """Detect, judge across a fix, rebuild fixes from ``page``, explain container memory.

        ``page`` is the latest /metrics page; without it (a profile round) each
        offender keeps the fix last built for it.
        """
        times = [p.at for p in view.metrics] + [h.at for h in view.heaps]
        times += [g.at for g in view.goroutines]
        cut = self.cut(min(times) if times else None)
        if cut is None:
            found = detect(view, rules)
        else:
            before, after = verdict.split(view, cut[0])
            judged = verdict.judge(detect(before, rules), before, after, restart=cut[1])
            found = verdict.merge(judged, detect(after, rules))
        found = self._remedied(found, view, page)
        memory = view.metrics[-1].values.memory if view.metrics else {}
        rss = memory.get("process_resident_memory_bytes")
        heap = memory.get("go_memstats_heap_inuse_bytes")
        return container.refine(found, list(self.readings), rss, heap)

    def _remedied(
        self, found: list[Offender], view: TargetView, page: remedies.Page | None
    ) -> list[Offender]:
        if not view.metrics:
            return found
        point = view.metrics[-1]
        subjects = {_subject(o) for o in found if o.kind == "label_explosion"}
        if not subjects:
            self.children.clear()
            self._fixes.clear()
            return found
        due = (
            page is not None
            and (
                self._fixed_at is None
                or page.at - self._fixed_at >= self.refine_seconds
                or not subjects <= self._fixes.keys()
                or self.uses is not self._fixed_uses  # the rules and dashboards were re-read
            )
            and page.at >= point.at
        )
        if due and page is not None:
            try:
                return self._refine(found, point, page)
            except ParseError as exc:
                self.note(f"remedies: {exc}")
        return [self._reuse(o) for o in found]

    def _refine(
        self, found: list[Offender], point: MetricsPoint, page: remedies.Page
    ) -> list[Offender]:
        first: remedies.Page | Mapping[str, remedies.Children] | None = self.first
        if first is None:
            types = remedies.exploding(found, point)
            for fam in [f for f in self.children if f not in types]:
                del self.children[fam]
            new = {f: t for f, t in types.items() if f not in self.children}
            if new:
                self.children.update(remedies.children_of(page, new, self.children_cap))
            first = self.children
        ctx = remedies.build_context(found, point, page, first, self.uses, self.series_cap)
        out = remedies.refine(found, ctx)
        self._fixes = {_subject(o): o for o in out if o.kind == "label_explosion"}
        self._fixed_at, self._fixed_uses = page.at, self.uses
        return out

    def _reuse(self, o: Offender) -> Offender:
        """``o`` with the fix last built for the same offender, if there is one."""
        if o.kind != "label_explosion":
            return o
        done = self._fixes.get(_subject(o))
        if done is None:
            return o
        ev = dict(o.evidence)
        ev.update({k: done.evidence[k] for k in REFINED_KEYS if k in done.evidence})
        return dataclasses.replace(o, evidence=ev, fix=done.fix, fix_snippet=done.fix_snippet)


def _subject(o: Offender) -> str:
    return f"{o.evidence.get('family', '')}\0{o.evidence.get('label', '')}"
