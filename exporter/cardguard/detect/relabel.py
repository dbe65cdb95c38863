"""Relabel fixes that never merge series: each candidate is judged on the family's live series.

Pure. A ``metric_relabel_configs`` rewrite that bounds an exploding label
(``/api/v1/users/1000/orders/9e37`` -> ``/api/*``) folds every series that
differed only in that label into one label set. Prometheus then appends one
of the folded samples per scrape and silently discards the rest: no error,
no duplicate or out-of-order counter moves (measured with Prometheus 2.42 on
the demo: 7,340 samples per scrape passed relabelling, 325 were appended
over all scrapes). So ``plan`` runs every candidate step on the series the
page holds (``series_of``) with the same semantics as Prometheus
(``simulate``) and offers a rewrite or label removal only when every
resulting label set stays unique. Otherwise it offers what is safe at scrape
time and says what it loses: dropping the exploding series (``action:
drop``), keeping a bounded allow-list of values (``action: keep``), and a
``sample_limit`` that fails the scrape past a size. Aggregating the values
belongs in the code (a bounded label) or in recording rules after ingestion.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cardguard.analyse import templates
from cardguard.parse.exposition import scan
from cardguard.parse.model import Format, Sample, SampleBlock
from cardguard.parse.tokens import unescape

Labels = tuple[tuple[str, str], ...]
"""A series' labels including ``__name__``, sorted by name."""

# Past this many series of one family the check stops reading (output stays bounded).
MAX_SERIES = 200_000
# A template with at most this many observed values is bounded enough for an allow-list.
ALLOW_TEMPLATE_MAX = 20
ALLOW_VALUES_MAX = 50
# Templates turned into rewrite steps, largest first.
MAX_REWRITE_TEMPLATES = 5
# Sample names a family's samples may carry (text, OpenMetrics and protobuf pages).
SUFFIXES = ("", "_total", "_created", "_sum", "_count", "_bucket", "_gsum", "_gcount", "_info")

_KEY_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_key(key: str) -> Labels:
    """Turn a series key ``name{a="1",b="2"}`` into sorted labels with ``__name__``."""
    brace = key.find("{")
    name = key if brace < 0 else key[:brace]
    pairs = [("__name__", name)]
    if brace >= 0:
        pairs += [(k, unescape(v.encode())) for k, v in _KEY_PAIR.findall(key, brace)]
    return tuple(sorted(pairs))


def _sample_labels(sample: Sample) -> Labels:
    return tuple(sorted((("__name__", sample.name), *sample.labels)))


def _block_keys(block: SampleBlock) -> Iterable[str]:
    text = block.data[block.start : block.end].decode("utf-8", "replace")
    for line in text.split("\n"):
        if line:
            # A validated line: the label block ends at the last '}', values hold none.
            end = line.rfind("}")
            yield line[: end + 1] if end >= 0 else line.split(" ", 1)[0]


def series_of(
    data: bytes,
    fmt: Format,
    source: str,
    families: Collection[str],
    cap: int = MAX_SERIES,
) -> dict[str, list[Labels]]:
    """Return the series of the named families on one page, at most ``cap`` per family.

    Raises:
        ParseError: the page is malformed.
    """
    out: dict[str, list[Labels]] = {f: [] for f in families}
    for event in scan(data, fmt, source):
        if isinstance(event, SampleBlock):
            got = out.get(event.family)
            if got is not None and len(got) < cap:
                got.extend(parse_key(k) for k in _block_keys(event))
                del got[cap:]
        elif isinstance(event, Sample):
            got = out.get(event.family)
            if got is not None and len(got) < cap:
                got.append(_sample_labels(event))
    return out


# --- Prometheus relabelling, as far as the steps below use it -------------------------


def _expand(template: str, m: re.Match[str]) -> str:
    def one(g: re.Match[str]) -> str:
        ref = g.group(1) or g.group(2)
        try:
            return m.group(int(ref) if ref.isdigit() else ref) or ""
        except IndexError:
            return ""

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, template)


def apply_step(step: Mapping[str, Any], labels: dict[str, str]) -> bool:
    """Apply one relabel step to ``labels`` in place as Prometheus does; False: drop the series.

    Supports ``replace`` (the default), ``keep``, ``drop`` and ``labeldrop``, with
    ``source_labels``, ``separator`` (default ``;``), ``regex`` (fully anchored,
    default ``(.*)``), ``target_label`` and ``replacement`` (default ``$1``); an
    empty result removes the target label.
    """
    action = step.get("action", "replace")
    regex = re.compile(step.get("regex", "(.*)"))
    if action == "labeldrop":
        for name in [n for n in labels if regex.fullmatch(n)]:
            del labels[name]
        return True
    value = step.get("separator", ";").join(labels.get(s, "") for s in step["source_labels"])
    m = regex.fullmatch(value)
    if action == "keep":
        return m is not None
    if action == "drop":
        return m is None
    if action != "replace":
        raise ValueError(f"relabel action {action!r} is not simulated")
    if m is None:
        return True
    target = _expand(step["target_label"], m)
    result = _expand(step.get("replacement", "$1"), m)
    if result:
        labels[target] = result
    else:
        labels.pop(target, None)
    return True


@dataclass(frozen=True)
class Outcome:
    """What a list of steps does to a family's series."""

    before: int
    kept: int
    after: int
    """Distinct label sets left; ``kept - after`` series were folded into others."""
    largest_merge: int
    merge_example: tuple[str, ...] = ()

    @property
    def merged(self) -> int:
        return self.kept - self.after

    @property
    def dropped(self) -> int:
        return self.before - self.kept


def simulate(steps: Sequence[Mapping[str, Any]], series: Sequence[Labels]) -> Outcome:
    """Run ``steps`` on every series and count what is dropped and what folds together."""
    groups: dict[Labels, list[Labels]] = {}
    kept = 0
    for s in series:
        labels = dict(s)
        if all(apply_step(step, labels) for step in steps):
            kept += 1
            groups.setdefault(tuple(sorted(labels.items())), []).append(s)
    largest = max((len(g) for g in groups.values()), default=0)
    example: tuple[str, ...] = ()
    if largest > 1:
        worst = max(groups.values(), key=len)
        example = tuple(_key(s) for s in worst[:3])
    return Outcome(len(series), kept, len(groups), largest, example)


def _key(labels: Labels) -> str:
    d = dict(labels)
    name = d.pop("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(d.items()))
    return f"{name}{{{inner}}}"


# --- candidates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One relabel remedy for one label of one family, and what it does to the live series.

    ``steps`` are ``metric_relabel_configs`` entries as plain data (what the
    snippet shows); ``scrape`` holds scrape-config keys instead (``sample_limit``).
    """

    kind: str
    """``rewrite``, ``remove_label``, ``drop``, ``keep`` or ``sample_limit``."""
    description: str
    steps: tuple[Mapping[str, Any], ...]
    outcome: Outcome
    scrape: Mapping[str, Any] = field(default_factory=dict)
    loses: str = ""
    """What the remedy loses, in words (empty for a rewrite that loses nothing)."""

    @property
    def safe(self) -> bool:
        return self.outcome.merged == 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "description": self.description,
            "series_before": self.outcome.before,
            "series_after": self.outcome.after,
            "dropped": self.outcome.dropped,
            "merged": self.outcome.merged,
        }
        if self.outcome.largest_merge > 1:
            out["largest_merge"] = self.outcome.largest_merge
            out["merge_example"] = list(self.outcome.merge_example)
        if self.steps:
            out["metric_relabel_configs"] = [dict(s) for s in self.steps]
        if self.scrape:
            out["scrape_config"] = dict(self.scrape)
        if self.loses:
            out["loses"] = self.loses
        return out


@dataclass(frozen=True)
class Plan:
    """The relabel remedies for one exploding label: the safe ones offered, the rest refused."""

    family: str
    label: str
    series: int
    offered: tuple[Candidate, ...]
    refused: tuple[Candidate, ...]
    checked: bool
    """Whether the candidates were judged on the live series (False: none was given)."""
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked_series": self.series if self.checked else None,
            "truncated": self.truncated,
            "offered": [c.to_dict() for c in self.offered],
            "refused": [c.to_dict() for c in self.refused],
        }

    def snippet(self) -> str:
        return render(self)


def _names_regex(family: str, names: Iterable[str] | None = None) -> str:
    got = sorted(set(names or ()))
    if not got:
        # Unchecked: every sample name the family may carry.
        tails = "|".join(s for s in SUFFIXES if s)
        return f"{templates.regex_escape(family)}(?:{tails})?"
    if len(got) == 1:
        return templates.regex_escape(got[0])
    return "(?:" + "|".join(templates.regex_escape(n) for n in got) + ")"


def _scoped(family: str, names: Iterable[str], label: str, value_regex: str) -> dict[str, Any]:
    return {
        "source_labels": ["__name__", label],
        "separator": ";",
        "regex": f"{_names_regex(family, names)};{value_regex}",
    }


def _nice_limit(n: int) -> int:
    """Round a sample limit up to two significant digits (1,234 -> 1,300)."""
    if n <= 100:
        return 100
    mag = 10 ** (int(math.log10(n)) - 1)
    return int(math.ceil(n / mag) * mag)


def plan(
    family: str,
    label: str,
    pattern: str,
    series: Sequence[Labels] | None,
    *,
    examples: Sequence[str] = (),
    total_series: int = 0,
    other_families: Sequence[str] = (),
    truncated: bool = False,
) -> Plan:
    """Judge relabel remedies for ``label`` on ``family`` on the family's live ``series``.

    Args:
        series: every series of the family on the latest page (``series_of``);
            ``None`` when the page is not at hand: then no rewrite is offered,
            since none can be shown safe.
        examples: a few values, used for the regexes when ``series`` is None.
        total_series: series on the whole page (for ``sample_limit``).
        other_families: other families on the page that carry ``label`` (a
            ``keep`` must let their series through).
    """
    rows = list(series or ())
    names = {dict(s)["__name__"] for s in rows}
    values = sorted({v for s in rows for k, v in s if k == label})
    groups = templates.group(values or examples, pattern)
    exploding = [g for g in groups if len(g.values) > ALLOW_TEMPLATE_MAX]
    if not exploding:
        exploding = [g for g in groups if not g.bounded]
    bounded = [g for g in groups if g not in exploding]
    refused: list[Candidate] = []
    offered: list[Candidate] = []
    checked = series is not None
    # A rewrite is proven only on every series: one read up to a cap proves nothing about
    # the series past it, so it is refused (dropping, keeping and limits never merge).
    proven = checked and not truncated

    def judge(c: Candidate) -> None:
        (offered if proven and c.safe else refused).append(c)

    # 1. Rewrites to a bounded form; only ever offered when no series fold together.
    rewrites: list[tuple[str, list[dict[str, Any]]]] = []
    top = [g for g in exploding if not g.bounded][:MAX_REWRITE_TEMPLATES]
    if top:
        steps = []
        for g in top:
            step = _scoped(family, names, label, templates.template_regex(g.template))
            step.update(target_label=label, replacement=g.template.replace("$", "$$"))
            steps.append(step)
        shown = ", ".join(g.template for g in top[:3])
        rewrites.append((f"rewrite {label} to its template ({shown})", steps))
    if pattern == "url_path":
        step = _scoped(family, names, label, r"(/[^/?]*).*")
        step.update(target_label=label, replacement="${1}/*")
        rewrites.append((f"rewrite {label} to its first path segment (${{1}}/*)", [step]))
    for desc, steps in rewrites:
        judge(Candidate("rewrite", desc, tuple(steps), simulate(steps, rows)))
    step = _scoped(family, names, label, ".+")
    step.update(target_label=label, replacement="")
    judge(
        Candidate(
            "remove_label",
            f"remove {label} from {family} only (an empty value deletes a label)",
            (step,),
            simulate([step], rows),
        )
    )

    # 2. What is safe at scrape time whatever the series: dropping never merges.
    if exploding or not checked:
        regex = "|".join(templates.template_regex(g.template) for g in exploding[:10])
        if len(exploding) > 10 or not regex or not checked:
            # Unchecked, a few examples cannot show every form the values take.
            regex = ".+"
        step = _scoped(family, names, label, f"(?:{regex})" if "|" in regex else regex)
        step["action"] = "drop"
        out = simulate([step], rows)
        like = ", ".join(g.template for g in exploding[:2])
        c = Candidate(
            "drop",
            f"drop the series of {family} whose {label} looks like {like}"
            if regex != ".+"
            else f"drop every series of {family} that has a {label}",
            (step,),
            out,
            loses=(
                f"{out.dropped} of {out.before} series of {family} now, and every later one "
                f"with such a {label}: their samples are never stored"
                if checked
                else f"every series of {family} with such a {label}: their samples are never stored"
            ),
        )
        offered.append(c) if c.safe else refused.append(c)
    allowed = [v for g in bounded for v in g.values][:ALLOW_VALUES_MAX]
    if allowed and checked:
        alts = "|".join(templates.regex_escape(v) for v in allowed)
        parts = ["[^;]*;", f"{_names_regex(family, names)};(?:{alts})"]
        if other_families:
            others = sorted(set(other_families) - {family})
            if others:
                alias = [n + s for n in others for s in SUFFIXES]
                parts.append(_names_regex(others[0], alias) + ";.*")
        step = {
            "source_labels": ["__name__", label],
            "separator": ";",
            "regex": "|".join(parts),
            "action": "keep",
        }
        out = simulate([step], rows)
        c = Candidate(
            "keep",
            f"keep only {len(allowed)} known {label} values on {family}",
            (step,),
            out,
            loses=(
                f"{out.dropped} of {out.before} series of {family} now, and every series "
                f"of any family with a {label} value not listed (a new route included)"
            ),
        )
        offered.append(c) if c.safe else refused.append(c)
    if total_series:
        dropped = next((c.outcome.dropped for c in offered if c.kind in ("drop", "keep")), 0)
        limit = _nice_limit(2 * max(1, total_series - dropped))
        offered.append(
            Candidate(
                "sample_limit",
                f"fail the scrape when it returns more than {limit} samples after relabelling",
                (),
                Outcome(len(rows), len(rows), len(rows), 1),
                scrape={"sample_limit": limit},
                loses=(
                    "the whole scrape once over the limit: up is 0 and none of the target's "
                    "samples are stored until it shrinks"
                ),
            )
        )
    return Plan(family, label, len(rows), tuple(offered), tuple(refused), checked, truncated)


# --- the snippet -------------------------------------------------------------------------


# Characters a YAML single-quoted scalar cannot hold as they are: line breaks
# (folded into spaces) and control characters (not allowed at all).
_UNQUOTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", '"': '\\"'}


def _yaml_str(s: str) -> str:
    """``s`` as a YAML scalar that reads back as exactly ``s``, on one line.

    Legacy names stay bare; other strings (UTF-8 names with dots, quotes or
    spaces, regexes) are single-quoted, or double-quoted with escapes when
    they hold a line break or a control character.
    """
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s):
        return s
    if _UNQUOTABLE.search(s) is None:
        return "'" + s.replace("'", "''") + "'"
    return '"' + "".join(_ESCAPES.get(c) or _escape(c) for c in s) + '"'


def _escape(c: str) -> str:
    return f"\\u{ord(c):04x}" if _UNQUOTABLE.fullmatch(c) else c


def _one_line(text: str) -> str:
    """A comment's text with the line breaks and controls of names escaped."""
    return _UNQUOTABLE.sub(lambda m: _ESCAPES.get(m.group()) or _escape(m.group()), text)


def _step_lines(step: Mapping[str, Any]) -> list[str]:
    lines = []
    first = True
    for key in ("source_labels", "separator", "regex", "target_label", "replacement", "action"):
        if key not in step:
            continue
        val = step[key]
        if isinstance(val, list):
            text = "[" + ", ".join(_yaml_str(v) for v in val) + "]"
        else:
            text = _yaml_str(str(val))
        lines.append(("- " if first else "  ") + f"{key}: {text}")
        first = False
    return lines


def render(p: Plan) -> str:
    """Return the ``fix_snippet``: the first safe relabel remedy active, the others commented."""
    out: list[str] = []
    rewrites = [c for c in p.offered if c.kind in ("rewrite", "remove_label")]
    if p.checked and not rewrites:
        out.append(
            f"# No rewrite or removal of {p.label} is safe: each one tried on the {p.series} "
            f"live series of {p.family}"
        )
        out.append(
            "# folds series together, and Prometheus would keep one arbitrary sample of "
            "each folded set, silently:"
        )
    elif not p.checked:
        out.append(
            f"# Rewriting {p.label} to a bounded form folds series together unless another "
            "label tells them apart;"
        )
        out.append(
            "# Prometheus then keeps one arbitrary sample of each folded set, silently. "
            "Not offered unchecked."
        )
    for c in p.refused:
        if c.kind in ("rewrite", "remove_label") and p.checked:
            out.append(
                f"#   {c.description}: {c.outcome.kept} series -> {c.outcome.after} "
                f"(up to {c.outcome.largest_merge} into one)"
            )
    out.append(
        "# Aggregating values belongs in the code (a bounded label) or in recording rules "
        "after ingestion."
    )
    active = True
    relabels = [c for c in p.offered if c.steps]
    if relabels:
        out.append("metric_relabel_configs:")
    for i, c in enumerate(relabels):
        head = f"{'' if i == 0 else 'or: '}{c.description}"
        out.append(f"  # {head}" + (f"; loses {c.loses}" if c.loses else "; loses nothing"))
        for line in (ln for s in c.steps for ln in _step_lines(s)):
            out.append(("  " if active else "  # ") + line)
        active = False
    for c in p.offered:
        if c.scrape:
            out.append(f"# and in the scrape config: {c.description}; loses {c.loses}")
            for k, v in c.scrape.items():
                out.append(f"# {k}: {v}")
    out.append("# (label_limit caps labels per series, not values: it does not bound this label)")
    # Names go into comments too: a newline in one must not end its comment.
    return "\n".join(_one_line(line) for line in out) + "\n"
