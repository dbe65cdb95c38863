"""One target's rounds: scrape /metrics, read heap, goroutine and goroutineleak profiles.

Gentle on targets: the ``debug=2`` goroutine dump stops the world, so it is
taken only when the last known goroutine count is under
``profiles.goroutine_full_max`` (the counted ``debug=0`` form otherwise);
``goroutineleak`` in ``auto`` mode is probed once and a 404 remembered for
:data:`~cardguard.run.worker.LEAK_REPROBE_SECONDS`. A failed fetch keeps the last
good data and only updates the endpoint's health.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from types import MappingProxyType

from cardguard.analyse.cardinality import Limits, PageAnalysis
from cardguard.detect import container, remedies
from cardguard.errors import FetchError, ParseError, ProfileError
from cardguard.parse import exposition
from cardguard.parse.overflow import OTHER
from cardguard.pprof import goroutines as gr
from cardguard.pprof import heap as hp
from cardguard.pprof import profile as prof
from cardguard.pprof.goroutines.proto import snapshot_of
from cardguard.run import cgroupfs
from cardguard.run.analysis import (
    AnalysisError,
    InlineAnalyser,
    PageRequest,
)
from cardguard.run.fetch import FetchResult, HTTPStatusError
from cardguard.run.lanes import no_lane, off_lane
from cardguard.run.snapshot import GoroutineState, HeapState, RawProfile, Visible, sticky
from cardguard.run.worker import (
    LEAK_REPROBE_SECONDS,
    MAX_KEPT_PROFILE_BYTES,
    SERIES_FINGERPRINTS,
    WorkerBase,
)
from cardguard.settings.config import GlobalConfig

log = logging.getLogger("cardguard.run.target_worker")


class TargetWorker(WorkerBase):
    """One target's rounds: a /metrics scrape, and heap, goroutine and goroutineleak profiles."""

    _cgroup_error: str | None = None  # the last cgroup read failure, logged once

    def scrape_metrics(self) -> None:
        """Fetch and analyse /metrics once; on failure keep the last good analysis."""
        self._guard("metrics", self._scrape_metrics)

    def _scrape_metrics(self) -> None:
        g, rules = self._settings()
        t = self.target
        accept = exposition.accept_header(t.native_histograms)
        res = self._fetch("metrics", t.metrics_url, accept=accept)
        if res is None:
            return
        at = self._clock()
        limits = Limits(
            exact_value_cap=g.exact_count_cap,
            max_families=max(1000, g.caps.families * 5),
            series_fingerprints=SERIES_FINGERPRINTS,
        )
        source = f"{t.name} {res.url}"
        traffic = rules.for_target(t.name).heap_growth.traffic_metric
        with self._lock:
            held, token = self.snapshot.analysis, self._page_token
        req = PageRequest(t.name, token, res.body, res.content_type, source, limits, traffic)
        try:
            with off_lane() if not isinstance(self._analyser, InlineAnalyser) else no_lane():
                result = self._analyser.analyse(req, held)
        except ParseError as exc:
            self._fail("metrics", "parse", str(exc), res.duration)
            return
        except AnalysisError as exc:
            if self._stop.is_set():
                return  # stopping: the analysis processes are gone
            raise RuntimeError(str(exc)) from None
        page = result.analysis if result.analysis is not None else held
        if page is None:
            raise RuntimeError("the analyser reused an analysis this worker does not hold")
        values, goroutines = result.values, result.goroutines
        reading = self._read_cgroup() if t.cgroup is not None else None
        if reading is not None:
            values = dataclasses.replace(values, container_memory_bytes=reading.usage_bytes)
        if self._stats is not None:
            self._stats.analysed(result.reused, result.analysed, result.cpu_seconds)
        with self._lock:
            self._page_token = result.token
            churn = self._churn.update(page, at)
            prev = self.snapshot
            added = dict(prev.series_added)
            removed = dict(prev.series_removed)
            visible, capped = self._visible_metrics(prev.visible, page, g)
            if not churn.baseline:
                # Counters start at 0 for every shown family (and the overflow), so
                # rate() works before the first change; the keys are bounded by the caps.
                for key in (*visible.families, OTHER):
                    added.setdefault(key, 0)
                    removed.setdefault(key, 0)
                for fc in churn.families:
                    key = fc.name if fc.name in visible.families else OTHER
                    if fc.series_added:
                        added[key] = added.get(key, 0) + fc.series_added
                    if fc.series_removed:
                        removed[key] = removed.get(key, 0) + fc.series_removed
            if goroutines is not None:
                self._last_goroutines = goroutines
            self._findings.saw(at, result.identity, reading)
            self._view.add_metrics(at, page, values, churn)
            self._publish_round(
                "metrics",
                res,
                rules,
                remedies.Page(res.body, page.format, source, at),
                analysis=page,
                analysis_at=at,
                churn=churn,
                series_added=MappingProxyType(added),
                series_removed=MappingProxyType(removed),
                visible=dataclasses.replace(visible, capped=capped),
                snapshots=prev.snapshots + 1,
            )

    def _read_cgroup(self) -> container.ContainerMemory | None:
        """Read the target's memory cgroup; a failure is logged when it first appears."""
        assert self.target.cgroup is not None
        try:
            reading = cgroupfs.read(self.target.cgroup)
        except ValueError as exc:
            if str(exc) != self._cgroup_error:
                log.warning(
                    "cannot read the target's memory cgroup: %s",
                    exc,
                    extra={"target": self.target.name, "endpoint": "cgroup", "reason": "read"},
                )
            self._cgroup_error = str(exc)
            return None
        self._cgroup_error = None
        return reading

    def _visible_metrics(
        self, vis: Visible, page: PageAnalysis, g: GlobalConfig
    ) -> tuple[Visible, frozenset[str]]:
        th, caps = g.thresholds, g.caps
        fams = sorted(
            (f for f in page.families if f.name != OTHER and f.series >= th.min_family_series),
            key=lambda f: (-f.series, f.name),
        )
        families, fam_folded = sticky(vis.families, (f.name for f in fams), caps.families)
        labs = sorted(
            (
                (lab.distinct_values, f.name, lab.name)
                for f in page.families
                if f.name != OTHER
                for lab in f.labels
                if lab.distinct_values >= th.min_label_values
            ),
            key=lambda x: (-x[0], x[1], x[2]),
        )
        labels, lab_folded = sticky(vis.labels, ((f, lab) for _, f, lab in labs), caps.labels)
        capped = set(vis.capped)
        if fam_folded or page.other_families:
            capped.add("family")
        if lab_folded:
            capped.add("label")
        return dataclasses.replace(vis, families=families, labels=labels), frozenset(capped)

    def collect_profiles(self) -> None:
        """Read heap, goroutine and goroutineleak profiles once, as configured."""
        p = self.target.profiles
        if p.heap:
            self.collect("heap")
        if p.goroutine:
            self.collect("goroutine")
        if p.goroutineleak != "false":
            self.collect("goroutineleak")

    def collect(self, endpoint: str) -> None:
        """Read one profile endpoint once: ``heap``, ``goroutine`` or ``goroutineleak``."""
        step = {
            "heap": self._collect_heap,
            "goroutine": self._collect_goroutines,
            "goroutineleak": self._collect_leaks,
        }[endpoint]
        self._guard(endpoint, step)

    def _collect_heap(self) -> None:
        t = self.target
        res = self._fetch("heap", t.pprof_url("heap"))
        if res is None:
            return
        at = self._clock()
        try:
            profile = prof.decode(res.body, f"{t.name} {res.url}", max_bytes=t.body_size_limit)
            inuse = hp.owners(profile, "inuse_space")
            objects = hp.owners(profile, "inuse_objects")
            prev = self._view.heaps[-1].profile if self._view.heaps else None
            delta = hp.diff(prev, profile, "inuse_space") if prev is not None else None
        except ProfileError as exc:
            self._fail("heap", "parse", str(exc), res.duration)
            return
        g, rules = self._settings()
        with self._lock:
            self._view.add_heap(at, profile)
            vis = self.snapshot.visible
            floor = inuse.total * g.thresholds.min_heap_owner_share
            owners = [f.name for f in inuse.functions if f.flat > 0 and f.flat >= floor]
            names, folded = sticky(vis.heap_owners, owners, g.caps.heap_owners)
            capped = vis.capped | ({"heap_owner"} if folded else set())
            self._publish_round(
                "heap",
                res,
                rules,
                heap=HeapState(at, inuse, objects, delta),
                visible=dataclasses.replace(vis, heap_owners=names, capped=frozenset(capped)),
                heap_window=(self._view.heaps[0], self._view.heaps[-1]),
                raw_profiles=self._kept("heap", at, res),
            )

    def _collect_goroutines(self) -> None:
        t = self.target
        full_max = t.profiles.goroutine_full_max
        known = self._last_goroutines
        full = known is not None and known < full_max
        fetched = self._fetch_goroutines(full)
        if fetched is None:
            return
        if known is None and not full and fetched[1].total < full_max:
            # First round: the count was unknown, so the cheap counted form was read
            # first. Now that it is known to be under the limit, take the full dump at
            # once, so groups are first published with their creators and their
            # created_by label does not change on the next round.
            fetched = self._fetch_goroutines(True) or fetched
        endpoint, snap, res, proto = fetched
        self._collecting(endpoint)  # the dump being processed, whichever was fetched last
        at = self._clock()
        groups = gr.group(snap)
        g, rules = self._settings()
        with self._lock:
            self._last_goroutines = snap.total
            prev_points = self._view.goroutines
            base = prev_points[-1].groups if prev_points else ()
            growth = gr.growth(base, groups) if prev_points else []
            self._view.add_goroutines(at, snap, groups, proto)
            cur = self.snapshot
            creators = dict(cur.group_creators)
            vis = cur.visible
            wanted = [
                grp.id
                for grp in groups
                if grp.count >= g.thresholds.min_goroutine_group or (grp.leaked or 0) > 0
            ]
            ids, folded = sticky(vis.groups, wanted, g.caps.goroutine_groups)
            for grp in groups:
                # A group's creator is known only from full dumps; remember it so the
                # group's labels do not change when the next round reads the counted form.
                if grp.id in ids and grp.created_by and grp.id not in creators:
                    creators[grp.id] = grp.created_by
            capped = vis.capped | ({"goroutine_group"} if folded else set())
            self._publish_round(
                endpoint,
                res,
                rules,
                goroutines=GoroutineState(
                    at, snap.total, snap.format, tuple(groups), tuple(growth)
                ),
                group_creators=MappingProxyType(creators),
                visible=dataclasses.replace(vis, groups=ids, capped=frozenset(capped)),
                raw_profiles=self._kept("goroutine", at, res),
            )

    def _kept(self, name: str, at: float, res: FetchResult) -> Mapping[str, RawProfile]:
        """The raw profiles to publish with ``res`` as the latest ``name``; called under _lock."""
        kept = dict(self.snapshot.raw_profiles)
        if len(res.body) <= MAX_KEPT_PROFILE_BYTES:
            kept[name] = RawProfile(at, res.body, res.content_type or "", res.url)
        else:
            kept.pop(name, None)
        return MappingProxyType(kept)

    def _fetch_goroutines(
        self, full: bool
    ) -> tuple[str, gr.GoroutineSnapshot, FetchResult, prof.Profile | None] | None:
        """Fetch and parse the goroutine profile, as a full dump (debug=2) or counted (debug=0).

        The counted form is read as profile.proto (``debug=0``): the same counts
        per stack as ``debug=1``, with file:line, runtime frames and labels, and
        about 1 ms more of the target's CPU per fetch on 1,000 goroutines
        (docs/performance.md, target cost). It is decoded once and returned too: it
        keeps what grouping drops, the runtime frames a wait parks in, with file:line.
        """
        t = self.target
        endpoint = "goroutine_full" if full else "goroutine"
        url = t.pprof_url("goroutine") + ("?debug=2" if full else "?debug=0")
        res = self._fetch(endpoint, url)
        if res is None:
            return None
        source = f"{t.name} {res.url}"
        proto = None
        try:
            if not full and gr.detect_format(res.body) == "proto":
                proto = prof.decode(res.body, source, keep_labels=True)
                snap = snapshot_of(proto, source)
            else:
                snap = gr.parse(res.body, source, fmt="debug2" if full else None)
        except ProfileError as exc:
            self._fail(endpoint, "parse", str(exc), res.duration)
            return None
        return endpoint, snap, res, proto

    def _collect_leaks(self) -> None:
        t = self.target
        mode = t.profiles.goroutineleak
        now = self._clock()
        if (
            mode == "auto"
            and self._leak_404_at is not None
            and now - self._leak_404_at < LEAK_REPROBE_SECONDS
        ):
            return
        start = time.monotonic()
        self._collecting("goroutineleak")
        try:
            with self._opening("goroutineleak") as timeout:
                res = self._get(
                    "goroutineleak", t.pprof_url("goroutineleak") + "?debug=1", timeout=timeout
                )
        except FetchError as exc:
            if mode == "auto" and isinstance(exc, HTTPStatusError) and exc.status == 404:
                with self._lock:
                    self._leak_404_at = now
                    if self.snapshot.goroutineleak_supported is not False:
                        log.info(
                            "target does not serve goroutineleak; asking again in %ds",
                            LEAK_REPROBE_SECONDS,
                            extra={"target": t.name, "endpoint": "goroutineleak"},
                        )
                    self._view.set_leaks(None)
                    self._publish(goroutineleak_supported=False, leaks=None)
                return
            self._fail("goroutineleak", exc.reason, str(exc), time.monotonic() - start)
            return
        try:
            snap = gr.parse(res.body, f"{t.name} {res.url}", kind="goroutineleak")
        except ProfileError as exc:
            self._fail("goroutineleak", "parse", str(exc), res.duration)
            return
        leaks = tuple(gr.group(snap))
        g, rules = self._settings()
        with self._lock:
            self._leak_404_at = None
            self._view.set_leaks(leaks)
            vis = self.snapshot.visible
            ids, folded = sticky(vis.groups, (lg.id for lg in leaks), g.caps.goroutine_groups)
            capped = vis.capped | ({"goroutine_group"} if folded else set())
            self._publish_round(
                "goroutineleak",
                res,
                rules,
                leaks=leaks,
                goroutineleak_supported=True,
                visible=dataclasses.replace(vis, groups=ids, capped=frozenset(capped)),
            )
