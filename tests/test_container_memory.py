"""Container memory: page cache explained with figures from a real cgroup v1.

The demo runs in a memory cgroup of its own, made by the test as a child of
the test's own memory cgroup (so its accounting stays inside whatever
contains the test), and a second process in that cgroup reads a large file,
filling the page cache the cgroup is charged for, as a nightly backup does.
The process' memory stays flat; cardguard must say that usage is working set
plus page cache and which figure alerts should watch. Needs root and the
cgroup v1 memory controller; skipped with the reason otherwise. cgroup v2 is
tested on text in the format of the kernel's Documentation/admin-guide/cgroup-v2.rst
only: this machine mounts no v2 memory controller.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cardguard.detect import container
from cardguard.run import cgroupfs
from demo_support import DEMO_FAST_FLAGS
from support import cardguard_argv, http_ok, running_cardguard_serve, running_listener, wait_for

MiB = 1 << 20
FILE_BYTES = 320 * MiB


def v1_parent() -> Path:
    if os.geteuid() != 0:
        pytest.skip("making a memory cgroup needs root")
    own = cgroupfs.of_pid("self")
    if own is None or not str(own).startswith("/sys/fs/cgroup/memory"):
        pytest.skip("no cgroup v1 memory controller on this machine")
    if not (own / "memory.usage_in_bytes").exists():
        pytest.skip(f"{own} is not a v1 memory cgroup")
    return own


@pytest.fixture
def cgroup() -> Iterator[Path]:
    d = v1_parent() / f"cardguard-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    try:
        (d / "memory.limit_in_bytes").write_text(str(1 << 30))
        yield d
    finally:
        for pid in (d / "cgroup.procs").read_text().split():
            # only our own children can be left here; the fixtures stop them first
            (d.parent / "cgroup.procs").write_text(pid)
        d.rmdir()


def in_cgroup(d: Path, *argv: str) -> list[str]:
    """Argv that moves itself into cgroup ``d`` and then runs ``argv``."""
    return ["sh", "-c", f'echo $$ > {d}/cgroup.procs && exec "$@"', "sh", *argv]


def demo_in(d: Path, binary: Path, log: Path, *flags: str) -> Any:
    argv = in_cgroup(d, str(binary), "-listen=127.0.0.1:0", *flags)
    return running_listener(argv, log, "demo service in a cgroup")


def fill_page_cache(d: Path, f: Path) -> None:
    """Write a file outside the cgroup, drop it from the cache, then read it inside the cgroup."""
    block = bytes(range(256)) * 4096
    with open(f, "wb") as fh:
        for _ in range(FILE_BYTES // len(block)):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    subprocess.run(in_cgroup(d, "cat", str(f)), stdout=subprocess.DEVNULL, check=True)


def report(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        cardguard_argv("report", *args, "--format", "json"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def test_page_cache_is_explained_with_real_cgroup_figures(
    cgroup: Path, demo_binaries: dict[str, Path], tmp_path: Path
) -> None:
    with demo_in(cgroup, demo_binaries["current"], tmp_path / "demo.log", "-healthy") as demo:
        wait_for(lambda: http_ok(f"{demo.base_url}/metrics"), 30, "demo /metrics")
        assert str(demo.popen.pid) in (cgroup / "cgroup.procs").read_text()
        fill_page_cache(cgroup, tmp_path / "backup.tar")
        direct = cgroupfs.read(cgroup)
        assert direct.cache_bytes >= 0.8 * FILE_BYTES, direct
        doc = report(demo.base_url, "--duration", "2s", "--interval", "1s", "--cgroup", str(cgroup))
    o = next(o for o in doc["offenders"] if o["kind"] == "misleading_memory")
    ev = o["evidence"]
    c = ev["container"]
    # the figures are the cgroup's: page cache from the file read, a small process
    assert c["cache_bytes"] >= 0.8 * FILE_BYTES
    assert abs(c["usage_bytes"] - direct.usage_bytes) < 0.1 * direct.usage_bytes
    assert c["limit_bytes"] == 1 << 30
    assert c["usage_bytes"] == pytest.approx(c["working_set_bytes"] + c["reclaimable_bytes"])
    assert ev["resident_bytes"] < 64 * MiB < c["usage_bytes"]
    assert o["severity"] == "info"
    human = container.human
    assert o["summary"].startswith(
        f"container usage {human(c['usage_bytes'])} = working set "
        f"{human(c['working_set_bytes'])} + reclaimable page cache "
        f"{human(c['reclaimable_bytes'])}"
    )
    assert "; process RSS " in o["summary"] and "; Go heap in use " in o["summary"]
    assert "most of the usage is page cache" in o["summary"]
    assert "container_memory_working_set_bytes" in o["fix"]
    assert ev["alert_on"] == "container_memory_working_set_bytes"


def test_growing_offender_says_when_the_limit_is_reached(
    cgroup: Path, demo_binaries: dict[str, Path], tmp_path: Path
) -> None:
    (cgroup / "memory.limit_in_bytes").write_text(str(512 * MiB))
    flags = (*DEMO_FAST_FLAGS, "-mem-profile-rate=4096", "-cache-entry-bytes=16384")
    with demo_in(cgroup, demo_binaries["current"], tmp_path / "demo.log", *flags) as demo:
        wait_for(lambda: http_ok(f"{demo.base_url}/metrics"), 30, "demo /metrics")
        doc = report(demo.base_url, "--duration", "4s", "--interval", "2s", "--cgroup", str(cgroup))
    limited = [o for o in doc["offenders"] if "limit" in o["evidence"]]
    assert limited, [o["kind"] for o in doc["offenders"]]
    for o in limited:
        lim = o["evidence"]["limit"]
        assert lim["limit_bytes"] == 512 * MiB and lim["slope_bytes_per_hour"] > 0
        expected = (lim["limit_bytes"] - lim["working_set_bytes"]) / lim["slope_bytes_per_hour"]
        assert lim["eta_seconds"] == pytest.approx(expected * 3600, abs=1)
        assert "reaches its 512.0 MiB limit in about" in o["fix"]


def test_serve_reads_the_cgroup_of_each_target(
    cgroup: Path, demo_binaries: dict[str, Path], tmp_path: Path
) -> None:
    """The target's ``cgroup:`` key: serve explains the page cache as report --cgroup does."""
    with demo_in(cgroup, demo_binaries["current"], tmp_path / "demo.log", "-healthy") as demo:
        wait_for(lambda: http_ok(f"{demo.base_url}/metrics"), 30, "demo /metrics")
        fill_page_cache(cgroup, tmp_path / "backup.tar")
        (tmp_path / "cardguard.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            f"targets:\n  - name: demo\n    url: {demo.base_url}\n    cgroup: {cgroup}\n"
            "  - name: elsewhere\n"
            f"    url: {demo.base_url}\n    cgroup: {cgroup}/no-such-child\n"
        )
        with running_cardguard_serve(
            tmp_path / "serve.log", f"--config.file={tmp_path / 'cardguard.yml'}"
        ) as cg:

            def explained() -> dict[str, Any] | None:
                doc = requests.get(f"{cg.base_url}/report", params={"format": "json"}, timeout=30)
                by_name = {t["target"]: t for t in doc.json()["targets"]}
                found = [
                    o for o in by_name["demo"]["offenders"] if o["kind"] == "misleading_memory"
                ]
                return found[0] if found and "container" in found[0]["evidence"] else None

            wait_for(lambda: explained() is not None, 60, "serve to explain container memory")
            o = explained()
            logs = cg.logs()
    assert o is not None
    c = o["evidence"]["container"]
    assert c["cache_bytes"] >= 0.8 * FILE_BYTES and c["limit_bytes"] == 1 << 30
    assert c["source"] == f"cgroup v1 {cgroup}"
    assert o["summary"].startswith(f"container usage {container.human(c['usage_bytes'])} = ")
    assert o["evidence"]["alert_on"] == "container_memory_working_set_bytes"
    # A cgroup that cannot be read is logged once with the target, and nothing else breaks.
    bad = [json.loads(ln) for ln in logs.splitlines() if "memory cgroup" in ln]
    assert [(e["target"], e["endpoint"]) for e in bad] == [("elsewhere", "cgroup")], bad
    assert "Traceback" not in logs


# kernel Documentation/admin-guide/cgroup-v2.rst: memory.current, memory.max ("max" or bytes),
# memory.stat as "key value" lines with anon, file, ..., inactive_file, active_file, ...
V2_STAT = """anon 52428800
file 314572800
kernel 8388608
kernel_stack 196608
sock 0
shmem 0
file_mapped 1048576
file_dirty 0
file_writeback 0
inactive_anon 0
active_anon 52428800
inactive_file 293601280
active_file 20971520
unevictable 0
"""


def test_cgroup_v2_from_the_documented_format() -> None:
    files = {"memory.current": "377487360\n", "memory.max": "max\n", "memory.stat": V2_STAT}
    c = container.from_v2(files, "v2")
    assert c.usage_bytes == 377487360 and c.limit_bytes is None
    assert c.cache_bytes == 314572800 and c.rss_bytes == 52428800
    assert c.working_set_bytes == 377487360 - 293601280
    assert container.from_v2({**files, "memory.max": "536870912\n"}).limit_bytes == 512 * MiB
    with pytest.raises(ValueError, match=r"memory\.current"):
        container.from_v2({"memory.stat": V2_STAT})


def test_cadvisor_series() -> None:
    c = container.from_cadvisor(
        {
            "container_memory_usage_bytes": 400 * MiB,
            "container_memory_working_set_bytes": 100 * MiB,
            "container_memory_cache": 310 * MiB,
            "container_spec_memory_limit_bytes": 0,
        }
    )
    assert c is not None and c.limit_bytes is None and c.reclaimable_bytes == 300 * MiB
    assert container.eta_seconds(
        container.ContainerMemory(0, 100 * MiB, 0, None, 200 * MiB, "x"), 50 * MiB
    ) == pytest.approx(2 * 3600)


def test_of_pid_reads_this_process_cgroup() -> None:
    """of_pid finds the v1 memory cgroup of this very process, a real path with v1 files."""
    own = cgroupfs.of_pid("self")
    if own is None or not (own / "memory.usage_in_bytes").exists():
        pytest.skip("no cgroup v1 memory controller on this machine")
    r = cgroupfs.read(own)
    assert r.usage_bytes > 0 and r.source.startswith("cgroup v1 ")
