"""cardguard as users get it: a wheel installed with pip into a clean venv, beside protobuf 5.x.

The wheel is built from this tree (``pip wheel --no-deps``) and installed by
path into a fresh ``python3 -m venv``, with cardguard's dependencies and
``protobuf>=5.26,<6`` from PyPI (the only network these tests use; skip them
offline with ``-m "not network"``). Everything then runs from that venv, in a
directory outside the checkout, so nothing can come from the source tree.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cardguard import shipped
from cardguard.version import git_head
from pprof_support import parse_top
from support import CACHE, DEBIAN_GO, REPO, TESTDATA, go_version

pytestmark = pytest.mark.network


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    workdir: Path  # outside the checkout
    env: dict[str, str]
    head: tuple[str, str] | None  # the checkout's git HEAD when the wheel was built

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "cardguard"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.workdir,
            env=self.env,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    tmp = tmp_path_factory.mktemp("packaging")
    wheels = tmp / "wheels"
    head = git_head(REPO)  # read first: others may commit while the wheel builds
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [wheel] = wheels.glob("cardguard-*.whl")
    venv = tmp / "venv"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel), "protobuf>=5.26,<6"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    workdir = tmp / "elsewhere"
    workdir.mkdir()
    yield Installed(wheel, venv, workdir, env, head)


def test_the_wheel_carries_the_demo_files_as_they_are_in_the_repository(
    installed: Installed,
) -> None:
    """One source of truth: the wheel's copies are the repository's files, byte for byte."""
    prefix = f"cardguard/{shipped.DIR}/"
    with zipfile.ZipFile(installed.wheel) as whl:
        names = [n for n in whl.namelist() if n.startswith(prefix)]
        copies = {n.removeprefix(prefix): whl.read(n) for n in names}
        stamp = json.loads(whl.read("cardguard/_build_info.json"))
    assert sorted(copies) == shipped.files(REPO)
    for rel, data in copies.items():
        assert data == (REPO / rel).read_bytes(), f"{rel} differs from the repository's"
    assert {"deploy/demo-service/main.go", "deploy/alertmanager/alertmanager.yml"} <= set(copies)
    head = installed.head
    assert stamp.get("revision") == (head[0] if head else None)
    assert re.fullmatch(r"\d{8}-\d\d:\d\d:\d\d", stamp["build_date"])


def test_version_names_the_build_and_the_protobuf_beside_it(installed: Installed) -> None:
    proc = installed.run("serve", "--version")
    assert proc.returncode == 0, proc.stderr
    head = installed.head
    if head is not None:
        assert f"(branch: {head[1]}, revision: {head[0]})" in proc.stdout
    assert re.search(r"^  protobuf version: 5\.\d+\.\d+ ", proc.stdout, re.M), proc.stdout
    assert "build date:       unknown" not in proc.stdout


def test_heap_on_a_recorded_profile_beside_protobuf_5(installed: Installed) -> None:
    """cardguard heap in the venv with protobuf 5.x gives go tool pprof's numbers."""
    vdir = TESTDATA / "pprof" / "go1.19"
    args = ("--sample-index", "inuse_objects", "--top", "0", "--format", "json")
    proc = installed.run("heap", str(vdir / "heap.pb.gz"), *args)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    want = parse_top(vdir / "heap.top.inuse_objects.txt")
    assert out["total"] == want.total
    assert {f["name"]: (f["flat"], f["cum"]) for f in out["functions"]} == want.rows


@pytest.mark.needs_go
def test_demo_once_from_the_wheel(installed: Installed, tmp_path: Path) -> None:
    """``cardguard demo --once`` from a pip install: build, stack, a leak alert, clean exit.

    The demo binary is built anew from the wheel's copy of the Go source (an empty demo
    cache), with Debian's Go 1.19; it shares the tests' Go build cache so that the compile
    takes seconds rather than minutes.
    """
    if not DEBIAN_GO.exists():
        pytest.skip("Debian's Go 1.19 is not installed")
    cache = tmp_path / "cache"
    (cache / "cardguard-demo").mkdir(parents=True)
    gocache = CACHE / f"gocache-{go_version(DEBIAN_GO)}"
    gocache.mkdir(parents=True, exist_ok=True)
    (cache / "cardguard-demo" / "gocache").symlink_to(gocache)
    env = {**installed.env, "XDG_CACHE_HOME": str(cache)}
    work = tmp_path / "work"
    argv = [str(installed.venv / "bin" / "cardguard"), "demo", "--once", "--duration=5m"]
    argv += ["--for-scale=120", f"--workdir={work}"]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=900, cwd=installed.workdir, env=env
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    # Built from the wheel's files (not a cached binary), configured from them too.
    assert f"building the demo service in {installed.venv}" in out, out
    assert f"{shipped.DIR}/deploy/demo-service" in out
    assert f"{shipped.DIR}/deploy/alertmanager/alertmanager.yml" in out
    assert re.search(
        r"\[alertmanager -> chat\] firing: CardguardOffender(Critical|Warning) .*\n"
        r"\s+cardguard names a (critical )?(label_explosion|goroutine_leak) offender",
        out,
    ), out
    assert "stopping (--once)" in out
