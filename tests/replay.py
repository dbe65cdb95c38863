"""A recorded watch replayed over HTTP: each endpoint answers its snapshots in order, then 503.

The snapshots are directories as ``cardguard report --save`` writes them
(tests/testdata/report/*/snapshot-NNN): the /metrics page, the heap profile
and the goroutine profile in proto form. A target built from them serves
exactly the bytes ``cardguard report --from`` reads, so serve's worker and
the report can be fed the same watch.
"""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path
from typing import Any

import local_http


def replay(snapshots: list[Path]) -> dict[str, local_http.Route]:
    """Routes that answer each endpoint's recorded bodies in order, then 503."""
    lock = threading.Lock()
    served: dict[str, int] = {}

    def route(endpoint: str, read: Any, content_type: str) -> local_http.Route:
        def handle(h: local_http.Handler) -> None:
            with lock:
                k = served.get(endpoint, 0)
                served[endpoint] = k + 1
            if k >= len(snapshots):
                h.send_body(503, b"the recording has ended\n")
                return
            h.send_body(200, read(snapshots[k]), content_type)

        return handle

    meta = json.loads((snapshots[0] / "meta.json").read_text())
    return {
        "/metrics": route(
            "metrics",
            lambda d: gzip.decompress((d / "metrics.txt.gz").read_bytes()),
            meta["content_type"],
        ),
        "/debug/pprof/heap": route(
            "heap", lambda d: (d / "heap.pb.gz").read_bytes(), "application/octet-stream"
        ),
        "/debug/pprof/goroutine": route(
            "goroutine", lambda d: (d / "goroutine.pb.gz").read_bytes(), "application/octet-stream"
        ),
    }
