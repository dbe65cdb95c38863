"""Pure analysis of Go pprof data: profile decoding, heap owners, goroutine groups.

Modules:

- ``profile``: decode a gzip-compressed (or raw) ``profile.proto`` into a
  :class:`~cardguard.pprof.profile.Profile`, with typed errors and a limit on
  the decompressed size.
- ``legacy``: the other inputs ``go tool pprof`` reads (Go's ``debug=1``
  heap, mutex, block and count text, old binary CPU profiles), into the
  same ``Profile``.
- ``heap``: flat and cumulative cost per function for any sample index, and
  growth between two snapshots (what ``go tool pprof -top [-base]`` shows).
- ``goroutines``: read goroutine profiles in all three formats (``debug=0``
  proto, ``debug=1`` counted stacks, ``debug=2`` full dump, also inside a
  crash report) and the ``goroutineleak`` profile; group goroutines by stack,
  creator and label; track group growth.

Nothing here does I/O: every function takes bytes or parsed objects.

The protobuf messages (``profile_pb2``) are built at import time from the
schema written in ``profile_pb2.py``, with pprof's published field numbers,
so any protobuf runtime from 5.26 on will do. ``profile_pb2.pyi`` (their types,
for mypy) is generated from it: after editing the schema run ``make proto``.
"""
