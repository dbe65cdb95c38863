"""Which build of cardguard this is, for ``--version`` and ``cardguard_build_info``.

As Prometheus' ``version`` package: the version, the revision and branch it was
built from and when, and the runtime it runs on. Python has no link-time flags,
so a wheel carries the revision, branch and date in ``_build_info.json``, which
``setup.py`` writes while building it. A source checkout (an editable install,
the tests) reads them from its ``.git`` directory instead; otherwise they are
``unknown``.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from cardguard import __version__

UNKNOWN = "unknown"
BUILD_INFO_FILE = "_build_info.json"  # written into the package by setup.py
_PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BuildInfo:
    """The values ``cardguard --version`` prints and ``cardguard_build_info`` carries as labels."""

    version: str
    revision: str
    branch: str
    build_date: str
    python_version: str
    python_implementation: str
    protobuf_version: str
    protobuf_implementation: str  # upb, python or cpp
    platform: str

    def labels(self) -> dict[str, str]:
        """The labels of ``cardguard_build_info``: all but the build date and protobuf backend."""
        out = asdict(self)
        del out["build_date"], out["protobuf_implementation"]
        return out


def git_head(root: Path) -> tuple[str, str] | None:
    """Return ``(revision, branch)`` of the git checkout at ``root`` by reading ``.git``.

    No git binary is run. A detached HEAD gives branch ``HEAD``, as Prometheus'
    builds say. None when ``root`` is not a checkout or its files cannot be read.
    """
    dot_git = root / ".git"
    try:
        if dot_git.is_file():  # a worktree: "gitdir: <path>"
            gitdir = Path(dot_git.read_text().split(":", 1)[1].strip())
            gitdir = gitdir if gitdir.is_absolute() else root / gitdir
        else:
            gitdir = dot_git
        head = (gitdir / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head, "HEAD"
        ref = head[5:]
        common = gitdir
        if (gitdir / "commondir").is_file():
            common = gitdir / (gitdir / "commondir").read_text().strip()
        for d in (gitdir, common):
            if (d / ref).is_file():
                return (d / ref).read_text().strip(), ref.removeprefix("refs/heads/")
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha, ref.removeprefix("refs/heads/")
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return None


def _built() -> dict[str, str]:
    stamp = _PACKAGE / BUILD_INFO_FILE
    if stamp.is_file():
        try:
            data = json.loads(stamp.read_text())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            return {k: str(v) for k, v in data.items()}
    checkout = _PACKAGE.parent.parent  # exporter/cardguard -> the repository
    if (checkout / "pyproject.toml").is_file():
        head = git_head(checkout)
        if head is not None:
            return {"revision": head[0], "branch": head[1]}
    return {}


def _protobuf() -> tuple[str, str]:
    try:
        import google.protobuf
        from google.protobuf.internal import api_implementation
    except ImportError:
        return UNKNOWN, UNKNOWN
    return google.protobuf.__version__, api_implementation.Type()


def build_info() -> BuildInfo:
    """Collect this process's build information."""
    built = _built()
    protobuf_version, protobuf_implementation = _protobuf()
    return BuildInfo(
        version=__version__,
        revision=built.get("revision", UNKNOWN),
        branch=built.get("branch", UNKNOWN),
        build_date=built.get("build_date", UNKNOWN),
        python_version=platform.python_version(),
        python_implementation=platform.python_implementation(),
        protobuf_version=protobuf_version,
        protobuf_implementation=protobuf_implementation,
        platform=f"{sys.platform}/{platform.machine()}",
    )


def text(program: str = "cardguard") -> str:
    """Return the ``--version`` text, laid out as Prometheus' ``version.Print``."""
    b = build_info()
    return (
        f"{program}, version {b.version} (branch: {b.branch}, revision: {b.revision})\n"
        f"  build date:       {b.build_date}\n"
        f"  python version:   {b.python_version} ({b.python_implementation})\n"
        f"  protobuf version: {b.protobuf_version} ({b.protobuf_implementation})\n"
        f"  platform:         {b.platform}"
    )
