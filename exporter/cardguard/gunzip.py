"""The one bounded gunzip: whole gzip streams, every member, never past a size limit.

Pure: bytes in, bytes out. The fetcher feeds it a body chunk by chunk as the
network delivers it; the profile decoder and the ``cardinality`` command give
it a whole file. Either way the output is inflated in steps bounded by what is
left of ``max_bytes``, so a gzip bomb costs at most ``max_bytes`` of memory.

A stream may hold several members (RFC 1952, section 2.2): they decompress as
one, as Go's ``gzip.Reader`` and gzip(1) do. cardguard's own ``/metrics``
sends two. Bytes after the last member that do not start another member are
padding, ignored as gzip(1) ignores trailing zeros.

One error type, :class:`GzipError`, with a ``reason`` of ``corrupt``,
``truncated`` or ``too_large``; each caller turns it into its own typed error
(a fetch failure, a profile error) naming the target or file.
"""

from __future__ import annotations

import zlib

MAGIC = b"\x1f\x8b"


class GzipError(Exception):
    """Gzip data that cannot be inflated within the limit."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "corrupt", "truncated" or "too_large"
        self.message = message


class Inflater:
    """Inflate a gzip stream fed in pieces, refusing output past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0  # bytes of output so far
        self._d: zlib._Decompress | None = zlib.decompressobj(wbits=31)
        self._pending = b""  # the start of what may be the next member
        self._padding = False  # the stream ended; the rest is ignored

    def feed(self, data: bytes) -> bytes:
        """Inflate ``data``, the next piece of the stream; return the new output."""
        out: list[bytes] = []
        data = self._pending + data if self._pending else data
        self._pending = b""
        while data and not self._padding:
            if self._d is None:
                # Between members: another member must start with the magic.
                if len(data) < len(MAGIC):
                    self._pending = data
                    break
                if not data.startswith(MAGIC):
                    self._padding = True
                    break
                self._d = zlib.decompressobj(wbits=31)
            d = self._d
            try:
                chunk = d.decompress(data, self.max_bytes - self.size + 1)
            except zlib.error as exc:
                raise GzipError("corrupt", f"corrupt gzip data: {exc}") from None
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise GzipError(
                    "too_large", f"decompressed data exceeds the limit of {self.max_bytes} bytes"
                )
            out.append(chunk)
            if d.eof:
                data = d.unused_data
                self._d = None
            elif d.unconsumed_tail:
                data = d.unconsumed_tail
            else:
                data = b""
        return b"".join(out)

    def finish(self) -> None:
        """Check that the stream ended at the end of a member."""
        if self._d is not None:
            raise GzipError("truncated", "truncated gzip data (the stream ends inside a member)")


def gunzip(data: bytes, max_bytes: int) -> bytes:
    """Inflate a whole gzip stream, every member, refusing output past ``max_bytes``.

    Raises:
        GzipError: corrupt or truncated data, or output past the limit.
    """
    inflater = Inflater(max_bytes)
    out = inflater.feed(data)
    inflater.finish()
    return out
