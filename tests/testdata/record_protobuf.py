"""Record protobuf /metrics pages from nhserver (client_golang, native histograms) into metrics/.

Run through ``tests/testdata/record.sh protobuf`` (or directly with the venv's
python). nhserver is tests/testdata/metrics/nhserver, built against Debian's
client_golang 1.14; every page is fetched from the running program:

- ``nhserver.pb``          ``-users 20``, asked with Prometheus' protobuf-first Accept
                           header (served as ``application/vnd.google.protobuf;
                           proto=io.prometheus.client.MetricFamily; encoding=delimited``)
- ``nhserver.txt``         the same program, asked for text 0.0.4
- ``nhserver-10k.pb.gz``   ``-users 580`` (about 10,000 series) in protobuf, gzipped
                           here (the page itself is not gzip-encoded); the
                           benchmark's page
"""

from __future__ import annotations

import gzip
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import nhserver_support as nh  # noqa: E402

OUT = HERE / "metrics"


def main() -> None:
    binary = nh.build_nhserver()
    with tempfile.TemporaryDirectory(prefix="cardguard-record-") as tmp:
        with nh.start_nhserver(binary, Path(tmp) / "nh.log", "-users=20") as proc:
            pb = nh.fetch(proc, nh.PROTOBUF_ACCEPT).content
            txt = nh.fetch(proc, nh.TEXT_ACCEPT).content
        with nh.start_nhserver(binary, Path(tmp) / "nh10k.log", "-users=580") as proc:
            big = nh.fetch(proc, nh.PROTOBUF_ACCEPT).content
    (OUT / "nhserver.pb").write_bytes(pb)
    (OUT / "nhserver.txt").write_bytes(txt)
    (OUT / "nhserver-10k.pb.gz").write_bytes(gzip.compress(big, 9, mtime=0))
    for name, body in (("nhserver.pb", pb), ("nhserver.txt", txt), ("nhserver-10k.pb", big)):
        print(f"record: protobuf: {name} ({len(body)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
