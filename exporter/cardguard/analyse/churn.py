"""Compare successive analyses of one target: series and label values added, removed, growing.

Pure and stateful: one ``ChurnTracker`` per target; feed it each
``PageAnalysis`` with the scrape time and read the ``ChurnReport``::

    tracker = ChurnTracker()
    report = tracker.update(analysis, now)      # now: seconds (time.time())
    report.family("http_requests_total").series_added
    report.label("api_latency", "start_point").growth_per_hour

Series identity comes from the fingerprints the analysis kept
(``Limits.series_fingerprints`` must be > 0 for series churn); label values
from each label's value sample. Both are ``HashSample``s: exact up to their
cap, beyond it a hash-selected 1/2**level sample, so added/removed counts are
then estimates scaled by 2**level and marked ``estimated``. The tracker holds
at most ``max_fingerprints`` series hashes and about ``max_value_hashes``
label-value hashes per target in total (it samples large families and labels
more coarsely to stay under them) and at most ``max_labels`` growth histories.

Growth per hour is the least-squares slope of a label's distinct-value count
over the last ``window`` seconds, so a steady leak of a few values per scrape
shows as a steady positive rate, and a one-off jump shows for one window.
The first update is a baseline: nothing is reported as added or removed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from cardguard.analyse.cardinality import HashSample, PageAnalysis


@dataclass(frozen=True)
class FamilyChurn:
    """Series of one family that appeared or disappeared since the previous update."""

    name: str
    series: int
    series_added: int
    series_removed: int
    estimated: bool
    tracked: bool = True
    """False when the analysis kept no fingerprints, so added/removed are unknown (0)."""


@dataclass(frozen=True)
class LabelChurn:
    """Values of one label that appeared or disappeared, and how fast the label grows."""

    family: str
    label: str
    distinct_values: int
    values_added: int
    values_removed: int
    growth_per_hour: float
    estimated: bool


@dataclass(frozen=True)
class ChurnReport:
    """What changed since the previous update of one ``ChurnTracker``."""

    timestamp: float
    baseline: bool
    families: tuple[FamilyChurn, ...]
    labels: tuple[LabelChurn, ...]

    def family(self, name: str) -> FamilyChurn | None:
        for fam in self.families:
            if fam.name == name:
                return fam
        return None

    def label(self, family: str, label: str) -> LabelChurn | None:
        for lab in self.labels:
            if lab.family == family and lab.label == label:
                return lab
        return None


@dataclass
class _History:
    """Distinct-value counts over the window: points at least ``min_spacing`` apart,
    plus the latest point, so memory is bounded however often the target is scraped."""

    points: deque[tuple[float, int]] = field(default_factory=deque)
    latest: tuple[float, int] | None = None

    def add(self, now: float, value: int, window: float, min_spacing: float) -> None:
        pts = self.points
        if not pts or now - pts[-1][0] >= min_spacing:
            pts.append((now, value))
            self.latest = None
        else:
            self.latest = (now, value)
        while len(pts) > 1 and now - pts[0][0] > window:
            pts.popleft()
        if pts and now - pts[0][0] > window:
            pts.popleft()

    def slope_per_hour(self) -> float:
        pts = list(self.points)
        if self.latest is not None:
            pts.append(self.latest)
        if len(pts) < 2:
            return 0.0
        n = len(pts)
        mt = sum(t for t, _ in pts) / n
        mv = sum(v for _, v in pts) / n
        den = sum((t - mt) ** 2 for t, _ in pts)
        if den == 0:
            return 0.0
        num = sum((t - mt) * (v - mv) for t, v in pts)
        return num / den * 3600.0


def _diff(old: HashSample, new: HashSample) -> tuple[int, int, bool]:
    level = max(old.level, new.level)
    a = old.aligned(level)
    b = new.aligned(level)
    return len(b - a) << level, len(a - b) << level, level > 0


def _same(before: tuple[HashSample, int] | None, now: tuple[HashSample, int]) -> bool:
    """Whether a bounded copy was made from this very sample with this budget."""
    return before is not None and before[0] is now[0] and before[1] == now[1]


def _shrink(sample: HashSample, budget: int) -> HashSample:
    """A copy of ``sample`` holding at most ``budget`` hashes (coarser level if needed)."""
    level = sample.level
    hashes = sample.hashes
    while len(hashes) > budget:
        level += 1
        sel = (1 << level) - 1
        hashes = {h for h in hashes if not h & sel}
    return HashSample(cap=max(budget, 1), level=level, hashes=set(hashes))


class ChurnTracker:
    """Series and label-value churn of one target across its scrapes; bounded memory."""

    def __init__(
        self,
        *,
        window: float = 3600.0,
        max_fingerprints: int = 200_000,
        max_value_hashes: int = 200_000,
        max_labels: int = 10_000,
        points_per_window: int = 60,
    ) -> None:
        self.window = window
        self.max_fingerprints = max_fingerprints
        self.max_value_hashes = max_value_hashes
        self.max_labels = max_labels
        self.min_spacing = window / points_per_window
        self._series: dict[str, HashSample] = {}
        self._values: dict[tuple[str, str], HashSample] = {}
        # The analysis' sample each bounded copy above was made from, and the budget: an
        # unchanged family (the same object, reused by cardguard.analyse.incremental) is not
        # copied or compared again.
        self._series_from: dict[str, tuple[HashSample, int]] = {}
        self._values_from: dict[tuple[str, str], tuple[HashSample, int]] = {}
        self._history: dict[tuple[str, str], _History] = {}
        self._seen = False

    def update(self, analysis: PageAnalysis, now: float) -> ChurnReport:
        baseline = not self._seen
        self._seen = True
        fams: list[FamilyChurn] = []
        labs: list[LabelChurn] = []
        series: dict[str, HashSample] = {}
        values: dict[tuple[str, str], HashSample] = {}
        series_from: dict[str, tuple[HashSample, int]] = {}
        values_from: dict[tuple[str, str], tuple[HashSample, int]] = {}
        with_prints = [f for f in analysis.families if f.fingerprints is not None]
        budget = self.max_fingerprints // max(1, len(with_prints))
        n_labels = sum(1 for f in analysis.families for lab in f.labels if lab.values is not None)
        value_budget = max(64, self.max_value_hashes // max(1, min(n_labels, self.max_labels)))
        for fam in analysis.families:
            added = removed = 0
            estimated = False
            if fam.fingerprints is not None:
                prev = self._series.get(fam.name)
                origin = (fam.fingerprints, budget)
                same = prev is not None and _same(self._series_from.get(fam.name), origin)
                cur = prev if same and prev is not None else _shrink(fam.fingerprints, budget)
                series[fam.name] = cur
                series_from[fam.name] = origin
                if same and not baseline:
                    estimated = not cur.exact
                elif prev is not None and not baseline:
                    added, removed, estimated = _diff(prev, cur)
                elif not baseline:
                    added, estimated = cur.estimate(), not cur.exact
            fams.append(
                FamilyChurn(
                    fam.name, fam.series, added, removed, estimated, fam.fingerprints is not None
                )
            )
            for lab in fam.labels:
                key = (fam.name, lab.name)
                hist = self._history.get(key)
                if hist is None and len(self._history) < self.max_labels:
                    hist = self._history[key] = _History()
                if hist is not None:
                    hist.add(now, lab.distinct_values, self.window, self.min_spacing)
                growth = hist.slope_per_hour() if hist is not None else 0.0
                v_added = v_removed = 0
                v_est = lab.estimated
                if lab.values is not None and len(values) < self.max_labels:
                    pv = self._values.get(key)
                    v_origin = (lab.values, value_budget)
                    v_same = pv is not None and _same(self._values_from.get(key), v_origin)
                    if v_same and pv is not None:
                        cur_values = pv
                    else:
                        cur_values = _shrink(lab.values, value_budget)
                    values[key] = cur_values
                    values_from[key] = v_origin
                    if v_same and not baseline:
                        v_est = v_est or not cur_values.exact
                    elif pv is not None and not baseline:
                        v_added, v_removed, sampled = _diff(pv, cur_values)
                        v_est = v_est or sampled
                    elif not baseline:
                        v_added = cur_values.estimate()
                        v_est = v_est or not cur_values.exact
                labs.append(
                    LabelChurn(
                        fam.name,
                        lab.name,
                        lab.distinct_values,
                        v_added,
                        v_removed,
                        growth,
                        v_est,
                    )
                )
        if not baseline:
            # Families gone since the last update: all their series were removed.
            present_fams = {f.name for f in analysis.families}
            for name, prev in self._series.items():
                if name not in present_fams:
                    fams.append(FamilyChurn(name, 0, 0, prev.estimate(), not prev.exact))
        self._series = series
        self._values = values
        self._series_from = series_from
        self._values_from = values_from
        present = set(values) | {(f.name, lab.name) for f in analysis.families for lab in f.labels}
        for key in [k for k in self._history if k not in present]:
            del self._history[key]
        return ChurnReport(now, baseline, tuple(fams), tuple(labs))
