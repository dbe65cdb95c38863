"""A gzip body of several members is read whole: by the fetcher and by ``cardguard cardinality``.

RFC 1952 lets a gzip stream hold several members, to be read as one, as Go's
gzip.Reader and gzip(1) do (cardguard's own /metrics sends two). The fetcher
is served such bodies by a real HTTP server on 127.0.0.1: with a length, and
streamed in pieces that split the second member's magic bytes. A second
member cut short is a ``decompress`` failure, as a single truncated one is.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import local_http
from cardguard.commands.cardinality import read_source
from cardguard.errors import FetchError
from cardguard.run.fetch import Fetcher
from cardguard.settings.targets import TargetConfig

FIRST = b"# TYPE first_total counter\n" + b"first_total 1\n" * 500
SECOND = b"# TYPE second gauge\n" + b"second 2\n" * 500
FIRST_GZ = gzip.compress(FIRST, mtime=0)
SECOND_GZ = gzip.compress(SECOND, mtime=0)
LIMIT = 1 << 20


def _gzip_body(body: bytes) -> local_http.Route:
    return lambda h: h.send_body(200, body, headers={"Content-Encoding": "gzip"})


def _in_pieces(h: local_http.Handler) -> None:
    """The two members streamed without a length, cut inside the second one's magic."""
    cut = len(FIRST_GZ) + 1

    def pieces() -> Iterator[bytes]:
        body = FIRST_GZ + SECOND_GZ
        for piece in (body[:cut], body[cut : cut + 10], body[cut + 10 :]):
            yield piece
            time.sleep(0.02)

    h.send_stream(pieces(), encoding="gzip")


@pytest.fixture(scope="module")
def server() -> Iterator[local_http.Running]:
    routes = {
        "/two": _gzip_body(FIRST_GZ + SECOND_GZ),
        "/two-in-pieces": _in_pieces,
        "/second-truncated": _gzip_body(FIRST_GZ + SECOND_GZ[:-6]),
        "/second-corrupt": _gzip_body(FIRST_GZ + SECOND_GZ[:10] + b"not deflate" * 4),
    }
    with local_http.serve(routes) as srv:
        yield srv


def _target(srv: local_http.Running) -> TargetConfig:
    return TargetConfig(name="t1", url=srv.base_url, timeout=5.0, body_size_limit=LIMIT)


@pytest.mark.parametrize("path", ["/two", "/two-in-pieces"])
def test_fetcher_returns_every_member(server: local_http.Running, path: str) -> None:
    t = _target(server)
    res = Fetcher(t).get(t.url + path)
    assert res.body == FIRST + SECOND
    assert res.wire_bytes == len(FIRST_GZ) + len(SECOND_GZ)


@pytest.mark.parametrize(
    ("path", "text"),
    [("/second-truncated", "truncated gzip"), ("/second-corrupt", "corrupt gzip")],
)
def test_a_bad_second_member_is_a_decompress_failure(
    server: local_http.Running, path: str, text: str
) -> None:
    t = _target(server)
    with pytest.raises(FetchError) as info:
        Fetcher(t).get(t.url + path)
    assert info.value.reason == "decompress"
    assert info.value.source == "t1"
    assert text in info.value.message and f"{t.url}{path}" in info.value.message


def test_members_past_the_limit_are_too_large(server: local_http.Running) -> None:
    # Each member alone fits; both together do not.
    limit = len(FIRST) + len(SECOND) - 1
    t = _target(server)
    with pytest.raises(FetchError) as info:
        Fetcher(t).get(t.url + "/two", max_bytes=limit)
    assert info.value.reason == "too_large"
    assert f"decompressed body exceeds the limit of {limit} bytes" in info.value.message


def test_cardinality_reads_every_member_of_a_file(tmp_path: Path) -> None:
    page = tmp_path / "page.txt.gz"
    page.write_bytes(FIRST_GZ + SECOND_GZ)
    assert read_source(str(page), timeout=1.0, max_bytes=LIMIT) == (FIRST + SECOND, None)


def test_cardinality_names_the_file_with_a_truncated_member(tmp_path: Path) -> None:
    page = tmp_path / "page.txt.gz"
    page.write_bytes(FIRST_GZ + SECOND_GZ[:-6])
    with pytest.raises(FetchError) as info:
        read_source(str(page), timeout=1.0, max_bytes=LIMIT)
    assert info.value.reason == "decompress"
    assert str(info.value).startswith(f"{page}: truncated gzip data")
