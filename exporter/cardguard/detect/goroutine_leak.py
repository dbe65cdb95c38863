"""``goroutine_leak``: a goroutine group that grows steadily, is blocked too long, or leaked.

Pure. Groups that serve connected clients (network reads, per-connection
loops, streams) come and go with the clients and are told apart; groups of
one cause (the stream's reader, sender and handler) are joined into one
finding; the goroutineleak profile, where the target serves one, confirms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cardguard.analyse.heap_sites import (
    MAX_STACK,
    allocations_of,
    enclosing,
    frame_site,
    goroutine_sites,
    is_runtime,
    is_std,
    short_name,
)
from cardguard.analyse.view import TargetView
from cardguard.detect.offender import (
    MAX_PER_KIND,
    Offender,
    make_offender,
    monotonic,
    trend,
    worse,
)
from cardguard.pprof.goroutines import GoroutineGroup
from cardguard.pprof.model import Frame, Profile
from cardguard.pprof.stacks import source_path
from cardguard.settings.rules import SEVERITY_RANK, GoroutineLeakRule, Severity, TargetRules

_BLOCKING = (
    (("runtime.chanrecv", "runtime.chanrecv1", "runtime.chanrecv2"), "chan receive"),
    (("runtime.chansend", "runtime.chansend1"), "chan send"),
    (("runtime.selectgo", "runtime.block"), "select"),
    (("sync.(*WaitGroup).Wait",), "WaitGroup.Wait"),
    (("sync.(*Cond).Wait",), "Cond.Wait"),
    (("sync.(*Mutex).Lock", "sync.(*RWMutex).Lock", "sync.(*RWMutex).RLock"), "mutex lock"),
    (("internal/poll.runtime_pollWait", "internal/poll.(*FD).Read"), "network or file IO"),
    (("time.Sleep",), "sleep"),
)


_TICKER_NAMES = ("time.NewTicker", "time.Tick")


_TIMER_NAMES = ("time.NewTimer", "time.After", "time.AfterFunc")


def _blocking_operation(
    g: GoroutineGroup, heap: Profile | None, raw: Sequence[str] = ()
) -> tuple[str, str | None]:
    """Describe what the group waits on (``chan receive on a ticker``) and where that was made.

    The wait state comes from a debug=2 dump; without one, from the frames that
    survive stack normalisation (poll waits, sleeps, locks). A ticker or timer
    is named when the goroutine's stack holds one or the heap profile shows the
    goroutine's function (or its creator) making one.
    """
    seen = (*raw, *g.frames)
    op = g.state or next((what for names, what in _BLOCKING if any(f in names for f in seen)), None)
    frames = set(seen)
    clock: str | None = None
    made_at: str | None = None
    if frames & set(_TICKER_NAMES) or any(f.startswith("time.(*Ticker)") for f in frames):
        clock = "ticker"
    elif heap is not None:
        callers = {g.function, enclosing(g.function)}
        if g.created_by:
            callers |= {g.created_by, enclosing(g.created_by)}
        for names, what in ((_TICKER_NAMES, "ticker"), (_TIMER_NAMES, "timer")):
            site = allocations_of(heap, names, callers)
            if site is not None:
                clock, made_at = what, frame_site(site)
                break
    if op is None:
        if clock is not None:
            return f"a wait on a {clock} (no debug=2 dump to name the operation)", made_at
        return "an unknown wait (no debug=2 dump to name it)", None
    return (f"{op} on a {clock}" if clock else op), made_at


# Frames of goroutines that serve a connected client: parked in a network read,
# a server's per-connection loop, or an RPC stream. They come and go with clients.
_LIVE_FRAMES = (
    "internal/poll.runtime_pollWait",
    "internal/poll.(*pollDesc).wait",
    "internal/poll.(*FD).Read",
    "net.(*conn).Read",
    "net.(*netFD).Read",
    "crypto/tls.(*Conn).Read",
    "net/http.(*conn).serve",
    "net/http.(*connReader).",
    "net/http.(*persistConn).",
    "golang.org/x/net/http2.(*serverConn).",
    "golang.org/x/net/http2.(*Framer).ReadFrame",
    "net/http.(*http2serverConn).",
    "google.golang.org/grpc/internal/transport.",
    "google.golang.org/grpc.(*Server).handleStream",
    "google.golang.org/grpc.(*Server).serveStreams",
    "google.golang.org/grpc.(*Server).processStreamingRPC",
    "google.golang.org/grpc.(*serverStream).",
    "google.golang.org/grpc.(*clientStream).",
    "github.com/gorilla/websocket.(*Conn).",
    "nhooyr.io/websocket.",
)


LIVE_STATES = ("IO wait",)


# Libraries whose frames are connection plumbing, like the standard library's.
_PLUMBING_PREFIXES = (
    "google.golang.org/grpc",
    "golang.org/x/net/http2",
    "github.com/gorilla/websocket",
    "nhooyr.io/websocket",
)


def live_frames(frames: Iterable[str]) -> str | None:
    """Name the connection work a stack (innermost frame first) waits in, if it does.

    Only the frames above the service's own code count: a handler of the service
    that blocks inside ``net/http.(*conn).serve`` waits on its own, not on a client.
    """
    for f in frames:
        for marker in _LIVE_FRAMES:
            if f.startswith(marker) or marker in f:
                if marker.startswith(("internal/poll.", "net.(", "crypto/tls.")):
                    return "parked in a network read"
                if "grpc" in marker or "websocket" in marker:
                    return "serving an RPC stream"
                return "serving a client connection"
        if not (is_runtime(f) or is_std(f) or f.startswith(_PLUMBING_PREFIXES)):
            return None
    return None


def _same_curve(a: Sequence[float], b: Sequence[float], tolerance: float = 0.2) -> bool:
    """Return whether two groups grew in step: the same share of their growth at each point,
    and the same share of their last count already there at the first."""
    if len(a) < 2 or len(a) != len(b):
        return False
    da, db = a[-1] - a[0], b[-1] - b[0]
    if da <= 0 or db <= 0:
        return False
    if abs(a[0] / a[-1] - b[0] / b[-1]) > tolerance:
        return False
    return all(
        abs((x - a[0]) / da - (y - b[0]) / db) <= tolerance for x, y in zip(a, b, strict=True)
    )


@dataclass
class _GroupFinding:
    """One goroutine group's numbers and judgement, before groups of one cause are joined."""

    group: GoroutineGroup
    counts: list[float]
    delta: float
    rate: float
    leaked: int
    reasons: list[str]
    severity: Severity | None
    live: str | None
    proof: str | None = None
    op: str = ""
    made_at: str | None = None
    creator: str | None = None
    raw: list[Frame] = field(default_factory=list)


def detect(view: TargetView, rules: TargetRules) -> list[Offender]:
    """Name the goroutine groups that leak, one offender per cause."""
    if not view.goroutines and not view.leaks:
        return []
    rule = rules.goroutine_leak
    heap = view.heaps[-1].profile if view.heaps else None
    sites = goroutine_sites(view.goroutine_profile) if view.goroutine_profile else {}
    latest = view.goroutines[-1] if view.goroutines else None
    first = view.goroutines[0] if view.goroutines else None
    leaked = {g.id: g for g in (view.leaks or ())}
    candidates: dict[str, GoroutineGroup] = {}
    if latest is not None:
        candidates.update((g.id, g) for g in latest.groups)
    for gid, g in leaked.items():
        candidates.setdefault(gid, g)
    span = (latest.at - first.at) if latest is not None and first is not None else 0.0
    every: dict[str, _GroupFinding] = {}
    for gid, g in candidates.items():
        counts = [
            float(next((x.count for x in p.groups if x.id == gid), 0)) for p in view.goroutines
        ]
        delta = counts[-1] - counts[0] if counts else 0.0
        rate = delta / span if span > 0 else 0.0
        reasons: list[str] = []
        severity: Severity | None = None
        n_leaked = leaked[gid].count if gid in leaked else (g.leaked or 0)
        if n_leaked > 0:
            reasons.append(f"{n_leaked} goroutines confirmed leaked by the goroutineleak profile")
            severity = rule.leaked_severity
        if (
            len(counts) >= 2
            and delta >= rule.min_growth
            and rate * 3600 >= rule.growth_per_hour
            and monotonic(counts, 0.0)
        ):
            reasons.append(
                f"grew from {counts[0]:.0f} to {counts[-1]:.0f} in {span:.0f}s "
                f"({rate:.3g}/s, steadily across {len(counts)} snapshots)"
            )
            severity = worse(severity, rule.severity)
        if (
            g.max_wait_minutes is not None
            and g.max_wait_minutes >= rule.max_wait_minutes
            and g.count >= rule.min_blocked
        ):
            reasons.append(
                f"{g.count} goroutines blocked, the longest for {g.max_wait_minutes} minutes "
                f"(limit {rule.max_wait_minutes:g})"
            )
            severity = worse(severity, rule.blocked_severity)
        raw = sites.get(gid, [])
        live = (
            live_frames(f.function for f in raw)
            or live_frames(g.frames)
            or ("parked in a network read" if g.state in LIVE_STATES else None)
        )
        every[gid] = _GroupFinding(g, counts, delta, rate, n_leaked, reasons, severity, live)
        every[gid].raw = raw
    # Live work by creator chain: a goroutine started by one that serves a client
    # (a stream's send loop started by its handler) lives as long as that client.
    live_functions = {f.group.function for f in every.values() if f.live}
    changed = True
    while changed:
        changed = False
        for f in every.values():
            creator = f.group.created_by
            if f.live is None and creator is not None and creator in live_functions:
                f.live = f"started by {short_name(creator)}, which serves a client"
                live_functions.add(f.group.function)
                changed = True
    flagged = [f for f in every.values() if f.severity is not None]
    if not flagged:
        return []
    # Live work by growth curve: growing in step with connection goroutines.
    live_curves = [f.counts for f in every.values() if f.live and f.delta > 0]
    for f in flagged:
        if f.live is None and any(_same_curve(f.counts, c) for c in live_curves):
            f.live = "grew in step with goroutines that serve client connections"
    for f in flagged:
        g = f.group
        f.op, f.made_at = _blocking_operation(g, heap, [fr.function for fr in f.raw])
        f.creator = g.created_by or _creator_guess(g)
        if f.leaked > 0:
            f.proof = "the goroutineleak profile"
        elif "ticker" in f.op and f.delta >= rule.min_growth and f.live is None:
            f.proof = "each waits on a ticker channel, which Ticker.Stop never closes"
        if f.live is not None and f.leaked <= 0 and f.severity is not None:
            f.severity = "info"
    causes = _join_causes(flagged)
    out = [_goroutine_offender(view, rule, members) for members in causes]
    out.sort(key=lambda o: (-SEVERITY_RANK[o.severity], -o.score))
    return out[:MAX_PER_KIND]


def _join_causes(flagged: list[_GroupFinding]) -> list[list[_GroupFinding]]:
    """Join groups of one cause (one creator chain, or one growth curve), biggest first."""
    order = sorted(flagged, key=lambda f: (-max(f.leaked, f.group.count), f.group.id))
    causes: list[list[_GroupFinding]] = []
    for f in order:
        home = None
        for members in causes:
            for m in members:
                chain = {m.group.function, m.creator, enclosing(m.group.function)}
                if (
                    (f.creator is not None and f.creator in chain)
                    or (m.creator is not None and m.creator == f.group.function)
                    or _same_curve(f.counts, m.counts)
                ):
                    home = members
                    break
            if home is not None:
                break
        if home is None:
            causes.append([f])
        else:
            home.append(f)
    return causes


def _goroutine_offender(
    view: TargetView, rule: GoroutineLeakRule, members: list[_GroupFinding]
) -> Offender:
    main = max(members, key=lambda m: (SEVERITY_RANK.get(m.severity or "info", 0), m.leaked))
    severity: Severity = "info"
    for m in members:
        if m.severity is not None:
            severity = worse(severity, m.severity)
    g = main.group
    gid = g.id
    op, made_at, creator = main.op, main.made_at, main.creator
    count = g.count if g.count else main.leaked
    total = sum(m.group.count or m.leaked for m in members)
    live = main.live if all(m.live for m in members) else None
    reasons = [r for m in members for r in (m.reasons if m is main else ())]
    summary = summary_text(main, rule, count, total, len(members), live)
    raw = main.raw
    evidence: dict[str, Any] = {
        "function": g.function,
        "group": gid,
        "created_by": creator,
        "goroutines": g.count,
        "leaked": main.leaked if view.leaks is not None or g.leaked is not None else None,
        "blocking": op,
        "state": g.state,
        "max_wait_seconds": None if g.max_wait_minutes is None else 60 * g.max_wait_minutes,
        "growth": main.delta,
        "growth_per_second": round(main.rate, 6),
        "live_work": live,
        "proof": main.proof,
        "stack": [frame_site(f) for f in raw[:MAX_STACK]] if raw else _group_stack(g),
        "reasons": reasons,
    }
    if len(members) > 1:
        evidence["same_cause"] = [
            {
                "group": m.group.id,
                "function": m.group.function,
                "created_by": m.creator,
                "goroutines": m.group.count,
                "growth": m.delta,
                "reasons": m.reasons,
            }
            for m in members
            if m is not main
        ]
    if made_at:
        evidence["made_at"] = made_at
    if len(main.counts) >= 2:
        evidence["trend"] = trend(
            f"goroutines in {short_name(g.function)}",
            "",
            [(p.at, c) for p, c in zip(view.goroutines, main.counts, strict=True)],
        )
    fix = fix_text(g.function, op, creator, made_at, live)
    return make_offender(
        "goroutine_leak",
        view.target,
        gid,
        severity,
        summary,
        evidence,
        fix,
        score=float(max(main.leaked, total, main.delta)),
    )


def summary_text(
    main: _GroupFinding,
    rule: GoroutineLeakRule,
    count: int,
    total: int,
    groups: int,
    live: str | None,
) -> str:
    """One sentence: how many goroutines, where, on what they wait, and whether they end."""
    g, op, creator = main.group, main.op, main.creator
    started = f" (started by {creator})" if creator else ""
    also = (
        f", with {total - count} more goroutines of the same cause in "
        f"{groups - 1} other group{'s' if groups > 2 else ''}"
        if groups > 1
        else ""
    )
    if live is not None:
        return (
            f"{count} goroutines in {g.function}{started} are live work, {live}{also}; "
            "they follow connected clients and end when the clients leave"
        )
    if main.proof is not None:
        return (
            f"{count} goroutines in {g.function}{started} are stuck on {op}"
            + (" and keep piling up" if main.delta >= rule.min_growth else "")
            + f"{also}; {short_name(g.function)} never returns ({main.proof})"
        )
    if main.delta >= rule.min_growth:
        return (
            f"{count} goroutines in {g.function}{started} wait on {op} and keep piling up"
            f"{also}; nothing seen so far ends them"
        )
    return f"{count} goroutines in {g.function}{started} wait on {op}{also}"


def fix_text(
    function: str, op: str, creator: str | None, made_at: str | None, live: str | None
) -> str:
    """What to change so the goroutines return (or why nothing needs to)."""
    if live is not None:
        return (
            f"Nothing to fix if the clients are expected: {function} ends when its client "
            "disconnects. If the clients should not stay connected, bound them (connection "
            "or stream limits, idle timeouts, keepalive) and make sure each stream's context "
            "is cancelled when its client goes."
        )
    if "ticker" in op:
        return (
            f"Give {function} a way out: select on the ticker channel together with a done "
            "channel or ctx.Done() and return when it fires. Ticker.Stop does not close the "
            "channel, so a loop ranging over ticker.C waits forever once the ticker stops."
            + (f" The ticker is made in {made_at}." if made_at else "")
        )
    return (
        f"Make sure {function} returns: close or cancel what it waits on ({op}) when "
        f"its work ends" + (f", and have {creator} wait for it or stop it" if creator else "") + "."
    )


def _group_stack(g: GoroutineGroup) -> list[str]:
    """The group's frames as ``function (file:line)``, where its input printed the line."""
    out = []
    for i, name in enumerate(g.frames[:MAX_STACK]):
        where = source_path(g.sites[i]) if i < len(g.sites) and g.sites[i] else ""
        out.append(f"{name} ({where})" if where else name)
    return out


def _creator_guess(g: GoroutineGroup) -> str | None:
    """Without a creator in the dump, a closure's enclosing function is the likely creator."""
    outer = enclosing(g.function)
    return outer if outer != g.function else None
