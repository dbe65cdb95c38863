"""Extract panicparse's goroutine-dump test inputs, and what panicparse makes of each.

panicparse keeps its dumps inside Go test source, so this script runs
panicparse's own parser to write them out as data:

- ``synthetic/NN-name.txt``: every input of ``TestScanSnapshotSynthetic``
  (stack/context_test.go), with the goroutines and error that test declares;
- ``static/panicweb.txt``, ``static/race.txt``: the two recorded outputs in
  internal/internaltest;
- ``generated/<go>/<style>.txt``: the crashes of panicparse's ``cmd/panic``
  (every style but the race-detector ones), run with GOTRACEBACK=all and
  built with each Go toolchain the tests have.

``expected.json`` holds, per input, what panicparse's ``stack.ScanSnapshot``
returns for it (goroutines, error) and, for the synthetic cases, the
goroutines the test declares. Nothing of panicparse's code is kept.

Run from the repository root, with a bare clone of panicparse::

    .venv/bin/python tests/testdata/corpora/panicparse/extract.py PANICPARSE_GIT_DIR COMMIT

It needs no network: go-cmp, which panicparse's tests import, is replaced by a
stand-in with the one function they use.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
sys.path.insert(0, str(REPO / "tests"))

from support import go_toolchains, go_version  # noqa: E402

MODULE = "github.com/maruel/panicparse/v2"

CMP_STANDIN = """package cmp

import (
	"fmt"
	"reflect"
)

type Option interface{}

// Diff reports "" when x and y are deeply equal.
func Diff(x, y interface{}, opts ...Option) string {
	if reflect.DeepEqual(x, y) {
		return ""
	}
	return fmt.Sprintf("-%#v\\n+%#v", x, y)
}
"""

HARNESS = """package stack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/maruel/panicparse/v2/internal/internaltest"
)

type syntheticCase struct {
	name   string
	in     []string
	prefix string
	suffix string
	err    error
	want   []*Goroutine
}

type cgCall struct {
	Func string `json:"func"`
	File string `json:"file"`
	Line int    `json:"line"`
}

type cgGoroutine struct {
	ID        int      `json:"id"`
	State     string   `json:"state"`
	SleepMin  int      `json:"sleep_min"`
	SleepMax  int      `json:"sleep_max"`
	Locked    bool     `json:"locked"`
	Calls     []cgCall `json:"calls"`
	Elided    bool     `json:"elided"`
	CreatedBy []cgCall `json:"created_by"`
	RaceAddr  uint64   `json:"race_addr"`
}

type cgResult struct {
	Goroutines []cgGoroutine `json:"goroutines"`
	Error      *string       `json:"error"`
	PrefixLen  int           `json:"prefix_len"`
}

func cgCalls(s Stack) []cgCall {
	out := []cgCall{}
	for _, c := range s.Calls {
		out = append(out, cgCall{c.Func.Complete, c.RemoteSrcPath, c.Line})
	}
	return out
}

func cgGoroutines(gs []*Goroutine) []cgGoroutine {
	out := []cgGoroutine{}
	for _, g := range gs {
		out = append(out, cgGoroutine{
			g.ID, g.State, g.SleepMin, g.SleepMax, g.Locked, cgCalls(g.Stack),
			g.Stack.Elided, cgCalls(g.CreatedBy), g.RaceAddr,
		})
	}
	return out
}

func cgErr(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}

func cgScan(data []byte) cgResult {
	prefix := bytes.Buffer{}
	s, _, err := ScanSnapshot(bytes.NewReader(data), &prefix, defaultOpts())
	r := cgResult{Goroutines: []cgGoroutine{}, Error: cgErr(err), PrefixLen: prefix.Len()}
	if s != nil {
		r.Goroutines = cgGoroutines(s.Goroutines)
	}
	if err == io.EOF {
		r.Error = nil
	}
	return r
}

func cgWrite(name string, v interface{}) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err)
	}
	if err := os.WriteFile(filepath.Join(os.Getenv("CG_OUT"), name), b, 0o644); err != nil {
		panic(err)
	}
}

func cardguardSynthetic(data []syntheticCase) {
	type entry struct {
		Name     string        `json:"name"`
		Input    string        `json:"input"`
		Declared []cgGoroutine `json:"declared"`
		DeclErr  *string       `json:"declared_error"`
		Got      cgResult      `json:"panicparse"`
	}
	out := []entry{}
	for _, c := range data {
		in := strings.Join(c.in, "\\n")
		declErr := cgErr(c.err)
		if c.err == io.EOF {
			declErr = nil
		}
		out = append(out, entry{c.name, in, cgGoroutines(c.want), declErr, cgScan([]byte(in))})
	}
	cgWrite("synthetic.json", out)
}

func TestCardguardDump(t *testing.T) {
	dir := os.Getenv("CG_INPUTS")
	files := map[string]string{}
	files["static/panicweb.txt"] = string(internaltest.StaticPanicwebOutput())
	files["static/race.txt"] = string(internaltest.StaticPanicRaceOutput())
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			files[filepath.ToSlash(rel)] = string(b)
		}
		return nil
	})
	names := []string{}
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	type entry struct {
		Name  string   `json:"name"`
		Input string   `json:"input"`
		Got   cgResult `json:"panicparse"`
	}
	out := []entry{}
	for _, n := range names {
		out = append(out, entry{n, files[n], cgScan([]byte(files[n]))})
	}
	cgWrite("files.json", out)
	fmt.Println("dumped", len(out))
}
"""


def _go_env(go: Path, gopath: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOPATH=str(gopath),
        GO111MODULE="off",
        GOFLAGS="",
        GOTOOLCHAIN="local",
        GOPROXY="off",
        CGO_ENABLED="0",
        GOCACHE=str(gopath / f"cache-{go_version(go)}"),
    )
    return env


def _checkout(git_dir: Path, commit: str, dest: Path) -> None:
    tar = subprocess.run(
        ["git", "--git-dir", str(git_dir), "archive", commit],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(dest, filter="data")


def _patch_synthetic(path: Path) -> None:
    """Name the table type of TestScanSnapshotSynthetic and hand the table to the harness."""
    src = path.read_text()
    start = src.index("func TestScanSnapshotSynthetic(")
    decl = re.compile(r"\tdata := \[\]struct \{\n(?:\t\t.*\n)+?\t\}\{\n")
    m = decl.search(src, start)
    assert m is not None, "table declaration not found"
    src = src[: m.start()] + "\tdata := []syntheticCase{\n" + src[m.end() :]
    loop = "\tfor i, line := range data {\n"
    at = src.index(loop, start)
    src = src[:at] + "\tcardguardSynthetic(data)\n" + src[at:]
    path.write_text(src)


def _generate(go: Path, gopath: Path, out: Path) -> None:
    """Build panicparse's cmd/panic with ``go`` and record every crash style's output."""
    env = _go_env(go, gopath)
    binary = gopath / f"panic-{go_version(go)}"
    subprocess.run(
        [str(go), "build", "-o", str(binary), f"{MODULE}/cmd/panic"],
        check=True,
        env=env,
        cwd=gopath,
    )
    styles = subprocess.run(
        [str(binary), "dump_commands"], check=True, capture_output=True, text=True
    ).stdout.split()
    out.mkdir(parents=True, exist_ok=True)
    run_env = {"PATH": "/usr/bin:/bin", "GOTRACEBACK": "all"}
    for style in styles:
        if style.startswith("race"):
            continue  # needs the race detector (cgo)
        proc = subprocess.run(
            [str(binary), style], env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        (out / f"{style}.txt").write_bytes(proc.stdout)


def main() -> None:
    git_dir, commit = Path(sys.argv[1]), sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="panicparse-") as tmp:
        gopath = Path(tmp)
        src = gopath / "src" / MODULE
        _checkout(git_dir, commit, src)
        cmp_dir = gopath / "src" / "github.com" / "google" / "go-cmp" / "cmp"
        cmp_dir.mkdir(parents=True)
        (cmp_dir / "cmp.go").write_text(CMP_STANDIN)
        _patch_synthetic(src / "stack" / "context_test.go")
        (src / "stack" / "zz_cardguard_test.go").write_text(HARNESS)

        inputs = gopath / "inputs"
        for label, go in sorted(go_toolchains().items()):
            _generate(go, gopath, inputs / "generated" / label)

        go = go_toolchains()["current"]
        env = _go_env(go, gopath)
        env.update(CG_OUT=str(gopath), CG_INPUTS=str(inputs))
        for test in ("TestScanSnapshotSynthetic", "TestCardguardDump"):
            subprocess.run(
                [str(go), "test", "-count=1", "-run", f"^{test}$", f"{MODULE}/stack"],
                check=True,
                env=env,
                cwd=gopath,
            )

        for d in ("synthetic", "static", "generated"):
            shutil.rmtree(HERE / d, ignore_errors=True)
        expected: dict[str, dict] = {}
        synthetic = json.loads((gopath / "synthetic.json").read_text())
        for i, case in enumerate(synthetic):
            name = f"synthetic/{i:02d}-{case['name']}.txt"
            (HERE / name).parent.mkdir(parents=True, exist_ok=True)
            (HERE / name).write_text(case["input"])
            expected[name] = {
                "panicparse": case["panicparse"],
                "declared": case["declared"],
                "declared_error": case["declared_error"],
            }
        for entry in json.loads((gopath / "files.json").read_text()):
            path = HERE / entry["name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(entry["input"])
            expected[entry["name"]] = {"panicparse": entry["panicparse"]}
        (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(expected)} inputs to {HERE}")


if __name__ == "__main__":
    main()
