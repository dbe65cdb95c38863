"""Run every benchmark module in this package (``bench_*.py``), each through its ``main()``.

Usage: ``python -m benchmarks [NAME ...] [--OPTION ...]`` where NAME filters modules by
substring and the options after them (``--quick``, ``--runs 3``) are passed on to each
module's command line.
A benchmark that fails is reported with its traceback; the others still run,
and the exit status is non-zero.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    # Names first, then options with their values: `pprof --runs 3`.
    first = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    filters, options = argv[:first], argv[first:]
    if filters:
        names = [n for n in names if any(a in n for a in filters)]
    failed: list[str] = []
    for name in names:
        print(f"==== benchmarks.{name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        # Each benchmark sees a clean command line of its own.
        sys.argv = [f"benchmarks.{name}", *options]
        try:
            module.main()
        except (Exception, SystemExit):  # noqa: BLE001 - reported, and the exit status says so
            traceback.print_exc()
            failed.append(name)
        print(flush=True)
    if failed:
        print(f"failed benchmarks: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
