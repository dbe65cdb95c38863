"""Every input of two other projects' test corpora, against that project's own result.

- ``corpora/google-pprof``: google/pprof's profile inputs. ``go tool pprof``
  reads each or refuses it; cardguard must do the same. A read input must
  give pprof's ``-top`` rows for every sample type and, where pprof keeps its
  parse of it (``profile/testdata/*.string``), the same samples, stacks and
  binaries. A refused one must be refused for pprof's reason.
- ``corpora/panicparse``: maruel/panicparse's goroutine dumps and what its
  parser makes of each (``expected.json``, recorded once as data). A dump
  it reads must give the same goroutines (id, state, minutes waited, thread
  locking, calls, creator); one it refuses must be refused for the same
  reason; text where it finds no dump must be refused. Race detector reports,
  which panicparse reads as goroutines, are no goroutine dump to cardguard:
  those are LEFT, and the test holds them to that.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from cardguard.errors import ProfileError
from cardguard.pprof import goroutines as gr
from cardguard.pprof import heap, profile
from cardguard.pprof.heap import normalise_function
from pprof_support import pprof_top, unit_flag
from support import TESTDATA

PPROF = TESTDATA / "corpora" / "google-pprof"
PANICPARSE = TESTDATA / "corpora" / "panicparse"
PANICPARSE_EXPECTED = json.loads((PANICPARSE / "expected.json").read_text())

# panicparse reads race detector reports as goroutines; cardguard reads dumps only.
LEFT = {"static/race.txt", "synthetic/30-Race.txt"}

# panicparse's refusal -> what cardguard says for the same fault.
REFUSALS = {
    "failed to parse int on line": ("line number out of range", "arguments Go does not print"),
    "nested aggregate-typed arguments exceeded depth limit": ("arguments nested deeper",),
    "unmatched opening curly bracket": ("unmatched opening curly bracket",),
    "unmatched closing curly bracket": ("unmatched closing curly bracket",),
    "inconsistent indentation": ("inconsistent indentation",),
    "expected a function after a goroutine header": ("expected a function after a goroutine",),
    "expected empty line after unavailable stack": ("expected an empty line after unavailable",),
    "expected a file after a function": ("expected a file after a function",),
    "expected a file after a created line": ("expected a file after a created line",),
}
NO_DUMP = re.compile(r"no goroutines in the dump|expected 'goroutine N \[state\]:'|not a goroutine")


def _pprof_inputs() -> list[Path]:
    return sorted(
        p
        for p in PPROF.rglob("*")
        if p.is_file() and p.suffix != ".string" and p.name not in ("LICENSE", "README.md")
    )


def _go(toolchains: dict[str, Path]) -> Path:
    go = toolchains.get("current")
    if go is None:
        pytest.fail("no current Go toolchain: run scripts/bootstrap.sh")
    return go


def _pprof_refusal(go: Path, path: Path) -> str | None:
    """Return why ``go tool pprof`` refuses ``path``, or ``None`` when it reads it."""
    proc = subprocess.run(
        [str(go), "tool", "pprof", "-raw", "-symbolize=none", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode == 0:
        return None
    m = re.search(r"parsing profile: (.+)", proc.stderr)
    assert m, proc.stderr
    return m.group(1).strip()


def _parse_golden(text: str) -> dict:
    """Read pprof's ``Profile.String()``: header, samples (values, location ids), locations."""
    out: dict = {"types": [], "samples": [], "locations": {}, "mappings": {}}
    section = None
    for line in text.splitlines():
        if section is None and line.startswith("PeriodType:"):
            out["period_type"] = tuple(line[len("PeriodType: ") :].split(" "))
        elif section is None and line.startswith("Period: "):
            out["period"] = int(line.split()[1])
        elif line in ("Samples:", "Locations", "Mappings"):
            section = line
        elif section == "Samples:":
            if not out["types"]:
                out["types"] = [tuple(t.split("/")) for t in line.split()]
            elif not line.startswith(" " * 16):  # not a label line
                values, _, locs = line.partition(":")
                out["samples"].append(
                    (tuple(map(int, values.split())), tuple(map(int, locs.split())))
                )
        elif section == "Locations":
            m = re.match(r"^\s*(\d+): (0x[0-9a-f]+)(?: M=(\d+))? ?(\S*)", line)
            if m:
                out["locations"][int(m.group(1))] = (
                    int(m.group(2), 16),
                    int(m.group(3) or 0),
                    m.group(4),
                )
        elif section == "Mappings":
            m = re.match(r"^(\d+): 0x[0-9a-f]+/0x[0-9a-f]+/0x[0-9a-f]+ ?(\S*)", line)
            if m:
                out["mappings"][int(m.group(1))] = m.group(2)
    return out


def _frame_key(prof: profile.Profile, lid: int) -> str | int:
    """A location's function name, or its address when it has none (as in pprof's dump)."""
    loc = prof.locations[lid]
    frame = loc.frames[0]
    unnamed = not frame.filename and (frame.function[:1] == "[" or frame.function == "<unknown>")
    return loc.address if unnamed else frame.function


def _check_golden(prof: profile.Profile, golden: dict) -> None:
    assert [(t.type, t.unit) for t in prof.sample_types] == golden["types"]
    assert prof.period == golden["period"]
    pt = prof.period_type
    assert ((pt.type, pt.unit) if pt else None) == golden["period_type"]
    locs = golden["locations"]
    want = Counter(
        (values, tuple(locs[i][2] or locs[i][0] for i in stack))
        for values, stack in golden["samples"]
    )
    got = Counter((s.values, tuple(_frame_key(prof, lid) for lid in s.stack)) for s in prof.samples)
    assert got == want
    binaries = {loc.address: loc.mapping for loc in prof.locations.values()}
    for address, mapping, function in locs.values():
        if not function:
            assert binaries[address] == golden["mappings"].get(mapping, ""), hex(address)


@pytest.mark.parametrize("path", _pprof_inputs(), ids=lambda p: str(p.relative_to(PPROF)))
def test_pprof_corpus(path: Path, toolchains: dict[str, Path]) -> None:
    go = _go(toolchains)
    refusal = _pprof_refusal(go, path)
    if refusal is not None:
        with pytest.raises(ProfileError) as exc:
            profile.decode(path.read_bytes(), str(path))
        assert refusal in exc.value.message
        return
    prof = profile.decode(path.read_bytes(), str(path))
    for st in prof.sample_types:
        want = pprof_top(
            go, "-symbolize=none", f"-sample_index={st.type}", *unit_flag(st.unit), str(path)
        )
        report = heap.owners(prof, st.type, fold_generics=False)
        assert report.total == want.total, st.type
        rows = {f.name: (f.flat, f.cum) for f in report.functions if f.flat or f.cum}
        assert rows == want.rows, st.type
    golden = path.with_name(path.name + ".string")
    if golden.exists():
        _check_golden(prof, _parse_golden(golden.read_text()))


def test_pprof_corpus_covers_every_format() -> None:
    names = {p.name for p in _pprof_inputs()}
    # gperftools and Go legacy text and binary, Java, profile.proto, and a refused one.
    for name in (
        "gobench.heap",
        "go.godoc.thread",
        "gobench.cpu",
        "cppbench.contention",
        "cppbench.thread",
        "java.heap",
        "java.cpu",
        "large.cpu",
        "7e3c92482f6f39fc502b822ded792c589849cca8",
    ):
        assert name in names


def _their_created_by(g: dict) -> str | None:
    if not g["created_by"]:
        return None
    # panicparse keeps Go 1.21+'s " in goroutine N" in the function's name.
    return normalise_function(re.sub(r" in goroutine \d+$", "", g["created_by"][0]["func"]))


def _their_calls(g: dict) -> list[str]:
    calls = [c["func"] for c in g["calls"]]
    # panicparse records a stack it could not see as one empty call.
    return [] if calls == [""] else calls


@pytest.mark.parametrize("name", sorted(PANICPARSE_EXPECTED))
def test_panicparse_corpus(name: str) -> None:
    expected = PANICPARSE_EXPECTED[name]
    theirs = expected["panicparse"]
    if "declared" in expected:
        # The synthetic cases' own expectations, which panicparse's test holds it to.
        assert theirs["goroutines"] == expected["declared"] or not expected["declared"]
        assert theirs["error"] == expected["declared_error"]
    data = (PANICPARSE / name).read_bytes()
    if name in LEFT:
        with pytest.raises(ProfileError, match="data race report"):
            gr.parse(data, name, fmt="debug2")
        return
    if theirs["error"] is not None:
        with pytest.raises(ProfileError) as exc:
            gr.parse(data, name, fmt="debug2")
        reasons = next(v for k, v in REFUSALS.items() if theirs["error"].startswith(k))
        assert any(r in exc.value.message for r in reasons), exc.value.message
        return
    if not theirs["goroutines"]:
        with pytest.raises(ProfileError, match=NO_DUMP):
            gr.parse(data, name, fmt="debug2")
        return
    snap = gr.parse(data, name, fmt="debug2")
    assert len(snap.records) == len(theirs["goroutines"])
    for rec, g in zip(snap.records, theirs["goroutines"], strict=True):
        assert rec.goroutine_id == g["id"]
        assert rec.state == g["state"]
        assert g["sleep_min"] == g["sleep_max"] == rec.wait_minutes
        assert bool(rec.locked) == g["locked"]
        # panicparse unescapes "%2e" in package paths; the dump prints it escaped.
        assert [c.replace("%2e", ".") for c in rec.printed or ()] == _their_calls(g)
        assert rec.created_by == _their_created_by(g)
