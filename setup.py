"""What pyproject.toml cannot say: files a wheel gets at build time.

All metadata and configuration stay in pyproject.toml; this only extends
``build_py`` so that a built cardguard (wheel, or ``pip install .``) carries:

* the repository files ``cardguard demo`` needs (``cardguard.shipped.FILES``),
  copied under ``cardguard/_shipped/`` at their repository paths, so the
  repository keeps the only copy of each;
* ``cardguard/_build_info.json``: the git revision and branch it was built
  from and the build date, which ``cardguard --version`` and
  ``cardguard_build_info`` report (``SOURCE_DATE_EPOCH`` sets the date for
  reproducible builds).

An editable install copies nothing: cardguard then reads the checkout itself.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "exporter"))

from cardguard import shipped, version  # noqa: E402  (standard library only; see shipped.py)


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        package = Path(self.build_lib) / "cardguard"
        dest = package / shipped.DIR
        shutil.rmtree(dest, ignore_errors=True)
        for rel in shipped.files(ROOT):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, target)
        head = version.git_head(ROOT)
        built = time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time())))
        stamp = {"build_date": time.strftime("%Y%m%d-%H:%M:%S", built)}
        if head is not None:
            stamp.update(revision=head[0], branch=head[1])
        (package / version.BUILD_INFO_FILE).write_text(json.dumps(stamp, indent=1) + "\n")


setup(cmdclass={"build_py": BuildPy})
