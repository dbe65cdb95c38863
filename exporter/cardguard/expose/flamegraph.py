"""Flame graphs drawn by cardguard itself: trees of stacks and the inline SVG that shows them.

Three graphs per target, built by :func:`for_view` from what the target showed:

- **in-use heap**: the latest heap profile's ``inuse_space`` by stack;
- **heap growth**: the change between the first and the last heap profile of
  the watch, as ``go tool pprof -diff_base FIRST LAST`` measures it. A frame's
  width is how much changed beneath it (growth plus shrinkage, so neither
  hides the other); red frames grew, blue ones shrank, the deeper the colour
  the more one-sided the change;
- **goroutines**: goroutines by stack (from the goroutine profile when there
  is one, with the runtime's frames; otherwise from the groups of the latest
  snapshot, as grouping sees them).

The root is on top and callees hang below their callers, as in pprof's web
view; siblings are ordered widest first. Every frame carries its values in a
``<title>`` (the browser shows it on hover) and ``data-n``, which the page's
small search script (:data:`SCRIPT`) matches against; a page address ending
in ``#search=REGEX`` runs that search in every graph (a link to share). The
SVG needs no network and no script to be read.

Pure: profiles and groups in, strings out.
"""

from __future__ import annotations

import hashlib
import html
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cardguard.analyse.view import TargetView
from cardguard.errors import ProfileError
from cardguard.pprof.model import Profile
from cardguard.pprof.stacks import Stack, counted_stacks, profile_stacks

WIDTH = 1200
ROW = 18
MIN_PX = 0.5  # narrower frames are not drawn (their width still counts in their parent)
MAX_DEPTH = 80
CHAR_PX = 6.6  # average glyph advance at the 11px font, to fit names in frames


@dataclass(frozen=True)
class FlameNode:
    """One frame of a flame graph and everything called beneath it.

    ``value`` is the frame's width: the total for a plain graph, growth plus
    shrinkage for a comparison (then ``grew``/``shrank`` hold the two parts).
    ``site`` is the file:line of the heaviest stack through the frame.
    """

    name: str
    site: str
    value: int
    children: tuple[FlameNode, ...] = ()
    grew: int = 0
    shrank: int = 0
    self_value: int = 0


@dataclass(frozen=True)
class Flame:
    """A flame graph ready to draw: its tree, what it measures and what its width means."""

    key: str
    title: str
    unit: str
    root: FlameNode
    diff: bool = False
    caption: str = ""


class _Builder:
    __slots__ = ("best", "children", "grew", "name", "self_value", "shrank", "site", "value")

    def __init__(self, name: str, site: str) -> None:
        self.name = name
        self.site = site
        self.value = 0
        self.grew = 0
        self.shrank = 0
        self.self_value = 0
        self.best = 0
        self.children: dict[str, _Builder] = {}

    def add(self, stack: Stack, width: int, grew: int, shrank: int) -> None:
        node = self
        node.value += width
        node.grew += grew
        node.shrank += shrank
        for name, where in stack:
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = _Builder(name, where)
            child.value += width
            child.grew += grew
            child.shrank += shrank
            if width > child.best and where:
                child.best, child.site = width, where
            node = child
        node.self_value += width

    def freeze(self, depth: int = 0) -> FlameNode:
        kids: tuple[FlameNode, ...] = ()
        if depth < MAX_DEPTH:
            kids = tuple(
                c.freeze(depth + 1)
                for c in sorted(self.children.values(), key=lambda c: (-c.value, c.name))
            )
        return FlameNode(
            self.name, self.site, self.value, kids, self.grew, self.shrank, self.self_value
        )


def tree(stacks: Mapping[Stack, int], root: str = "all") -> FlameNode:
    """Build the flame tree of ``stacks`` (values must not be negative)."""
    b = _Builder(root, "")
    for stack, v in stacks.items():
        if v > 0:
            b.add(stack, v, 0, 0)
    return b.freeze()


def diff_tree(base: Mapping[Stack, int], cur: Mapping[Stack, int], root: str = "all") -> FlameNode:
    """Build the tree of the change from ``base`` to ``cur``: width is growth plus shrinkage."""
    b = _Builder(root, "")
    for stack in set(base) | set(cur):
        d = cur.get(stack, 0) - base.get(stack, 0)
        if d:
            b.add(stack, abs(d), max(d, 0), max(-d, 0))
    return b.freeze()


# --- building the graphs of one target -----------------------------------------------


def _inuse(profile: Profile) -> int:
    try:
        return profile.value_index("inuse_space")
    except ProfileError:
        return profile.value_index(None)


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts))


def for_view(view: TargetView) -> tuple[Flame, ...]:
    """The flame graphs of one target: in-use heap, heap growth over the watch, goroutines."""
    out: list[Flame] = []
    if view.heaps:
        last = view.heaps[-1]
        i = _inuse(last.profile)
        out.append(
            Flame(
                "heap",
                f"In-use heap at {_clock(last.at)} UTC",
                last.profile.sample_types[i].unit,
                tree(profile_stacks(last.profile, i)),
                caption="width: bytes in use beneath the frame (inuse_space)",
            )
        )
        if len(view.heaps) >= 2:
            first = view.heaps[0]
            j = _inuse(first.profile)
            span = last.at - first.at
            out.append(
                Flame(
                    "heap-diff",
                    f"Heap growth {_clock(first.at)} → {_clock(last.at)} UTC (+{span:.0f}s)",
                    last.profile.sample_types[i].unit,
                    diff_tree(profile_stacks(first.profile, j), profile_stacks(last.profile, i)),
                    diff=True,
                    caption=(
                        "width: bytes that changed beneath the frame; red grew, blue shrank "
                        "(go tool pprof -diff_base first.pb.gz last.pb.gz)"
                    ),
                )
            )
    if view.goroutine_profile is not None:
        stacks = profile_stacks(view.goroutine_profile, 0)
        at = view.goroutines[-1].at if view.goroutines else 0.0
        out.append(_goroutine_flame(stacks, at))
    elif view.goroutines:
        latest = view.goroutines[-1]
        out.append(_goroutine_flame(counted_stacks(latest.groups), latest.at))
    return tuple(out)


def _goroutine_flame(stacks: Mapping[Stack, int], at: float) -> Flame:
    when = f" at {_clock(at)} UTC" if at else ""
    return Flame(
        "goroutines",
        f"Goroutines{when}",
        "goroutines",
        tree(stacks),
        caption="width: goroutines whose stack passes through the frame",
    )


# --- drawing ---------------------------------------------------------------------------


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _hash(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=2).digest(), "big")


def _colour(node: FlameNode) -> str:
    """Warm colours, stable per name; the Go runtime in muted blue-grey."""
    h = _hash(node.name)
    if node.name.startswith(("runtime.", "internal/", "runtime/")):
        return f"hsl({200 + h % 20},{12 + h % 10}%,{72 + h % 8}%)"
    return f"hsl({8 + h % 40},{70 + h % 20}%,{58 + (h >> 6) % 10}%)"


def _diff_colour(node: FlameNode) -> str:
    if node.value == 0:
        return "#eeeeee"
    g = (node.grew - node.shrank) / node.value
    if g >= 0:
        return f"rgb(255,{round(230 - 160 * g)},{round(220 - 160 * g)})"
    g = -g
    return f"rgb({round(220 - 160 * g)},{round(230 - 110 * g)},255)"


def _klass(node: FlameNode) -> str:
    if node.grew > node.shrank:
        return "f grew"
    if node.shrank > node.grew:
        return "f shrank"
    return "f"


def svg(
    flame: Flame,
    fmt: Callable[[float], str],
    width: int = WIDTH,
) -> str:
    """Return the inline SVG of ``flame``; ``fmt`` renders a value in the flame's unit."""
    root = flame.root
    total = root.value
    if total <= 0:
        return ""
    scale = width / total
    rows: list[str] = []
    depth_seen = 0
    hidden = 0

    def title(node: FlameNode) -> str:
        lines = [node.name] + ([node.site] if node.site else [])
        share = node.value / total
        if flame.diff:
            net = node.grew - node.shrank
            lines.append(
                f"net {'+' if net >= 0 else '-'}{fmt(abs(net))}: grew {fmt(node.grew)}, "
                f"shrank {fmt(node.shrank)} ({share:.1%} of the change)"
            )
        else:
            lines.append(f"{fmt(node.value)} ({share:.1%})")
            if node.self_value:
                lines.append(f"self {fmt(node.self_value)}")
        return "\n".join(lines)

    # Iterative walk: (node, depth, x offset in value units).
    stack: list[tuple[FlameNode, int, float]] = [(root, 0, 0.0)]
    while stack:
        node, depth, x = stack.pop()
        w = node.value * scale
        if w < MIN_PX:
            hidden += 1
            continue
        depth_seen = max(depth_seen, depth)
        px, py = x * scale, depth * ROW
        fill = _diff_colour(node) if flame.diff else _colour(node)
        chars = int((w - 6) / CHAR_PX)
        label = ""
        if chars >= 3:
            name = node.name if depth else f"{node.name} ({fmt(total)})"
            label = name if len(name) <= chars else name[: chars - 1] + "…"
        rows.append(
            f'<g class="{_klass(node) if flame.diff else "f"}" data-n="{_esc(node.name)}" '
            f'data-x="{x:.0f}" data-w="{node.value}">'
            f"<title>{_esc(title(node))}</title>"
            f'<rect x="{px:.2f}" y="{py}" width="{max(w - 0.5, 0.1):.2f}" height="{ROW - 1}" '
            f'rx="1.5" fill="{fill}"/>'
            + (f'<text x="{px + 3:.2f}" y="{py + ROW - 5}">{_esc(label)}</text>' if label else "")
            + "</g>"
        )
        off = x
        kids = []
        for child in node.children:
            kids.append((child, depth + 1, off))
            off += child.value
        stack.extend(reversed(kids))
    height = (depth_seen + 1) * ROW
    fid = _esc(flame.key)
    return (
        f'<svg class="flame" id="flame-{fid}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'data-total="{total}" role="img" aria-label="{_esc(flame.title)}">'
        + "".join(rows)
        + "</svg>"
    )


def figure(flame: Flame, fmt: Callable[[float], str], target_id: str) -> str:
    """The flame graph with its title, caption and search box, as an HTML ``<figure>``."""
    body = svg(flame, fmt)
    if not body:
        return ""
    fid = f"{target_id}-{flame.key}"
    body = body.replace(f'id="flame-{_esc(flame.key)}"', f'id="flame-{_esc(fid)}"', 1)
    return (
        f'<figure class="flamegraph" data-flame="{_esc(fid)}">'
        f"<figcaption><strong>{_esc(flame.title)}</strong> "
        f'<span class="muted">{_esc(flame.caption)}</span>'
        f'<span class="search"><input type="search" placeholder="search functions" '
        f'aria-label="search {_esc(flame.title)}" data-for="flame-{_esc(fid)}">'
        f'<output data-for="flame-{_esc(fid)}"></output></span></figcaption>'
        f"{body}</figure>"
    )


CSS = """
figure.flamegraph{margin:10px 0 16px;background:#fff;border:1px solid #dfe3ea;border-radius:6px;
 padding:8px 10px}
figure.flamegraph figcaption{font-size:13px;margin:0 0 6px;display:flex;gap:10px;
 align-items:baseline;flex-wrap:wrap}
figure.flamegraph .search{margin-left:auto}
figure.flamegraph input{font:12px system-ui,sans-serif;padding:2px 6px;width:200px}
figure.flamegraph output{font-size:12px;color:#5a6478;margin-left:6px}
svg.flame{display:block;font:11px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
svg.flame text{fill:#1d2330;pointer-events:none}
svg.flame g:hover rect{stroke:#1d2330;stroke-width:1}
svg.flame g.hit rect{fill:#c03ad6}
svg.flame g.hit text{fill:#fff}
"""

# Highlights frames whose function matches the search box (a regular expression,
# or plain text when it does not compile) and says what share of the graph they cover.
SCRIPT = """
(function(){
function run(input){
  var svg=document.getElementById(input.dataset.for);
  var out=document.querySelector('output[data-for="'+input.dataset.for+'"]');
  if(!svg)return;
  var q=input.value.trim(),re=null;
  if(q){
    try{re=new RegExp(q,'i');}
    catch(e){re=new RegExp(q.replace(/[.*+?^${}()|[\\]\\\\]/g,'\\\\$&'),'i');}
  }
  var spans=[];
  svg.querySelectorAll('g.f').forEach(function(g){
    var hit=re!==null&&re.test(g.dataset.n);
    g.classList.toggle('hit',hit);
    if(hit)spans.push([+g.dataset.x,+g.dataset.x+(+g.dataset.w)]);
  });
  spans.sort(function(a,b){return a[0]-b[0];});
  var covered=0,end=-1;
  spans.forEach(function(s){if(s[1]<=end)return;covered+=s[1]-Math.max(s[0],end);end=s[1];});
  var share=(100*covered/(+svg.dataset.total)).toFixed(1);
  if(out)out.textContent=q?(spans.length+' frames, '+share+'% of the width'):'';
}
document.querySelectorAll('figure.flamegraph input[type=search]').forEach(function(i){
  i.addEventListener('input',function(){run(i);});
});
// A link may carry a search for every graph on the page: report#search=renderSection
var m=/(?:^#|&)search=([^&]*)/.exec(location.hash);
if(m){
  document.querySelectorAll('figure.flamegraph input[type=search]').forEach(function(i){
    i.value=decodeURIComponent(m[1]);run(i);
  });
}
document.querySelectorAll('a[data-search]').forEach(function(a){
  a.addEventListener('click',function(){
    var i=document.querySelector('input[data-for="'+a.getAttribute('href').slice(1)+'"]');
    if(i){i.value=a.dataset.search;run(i);}
  });
});
})();
"""


__all__ = [
    "CSS",
    "SCRIPT",
    "Flame",
    "FlameNode",
    "diff_tree",
    "figure",
    "for_view",
    "svg",
    "tree",
]
