"""Pure analysis of Go pprof data: profile decoding, heap owners, goroutine groups.

Modules, lowest first:

- ``model``: what a decoded profile is (:class:`~cardguard.pprof.model.Profile`,
  its samples, locations and frames) and one sample type's column of it;
- ``prune``: pprof's ``drop_frames``/``keep_frames`` pruning;
- ``proto``: a parsed ``profile.proto`` message into a ``Profile``;
- ``legacy``: the other inputs ``go tool pprof`` reads (Go's ``debug=1``
  heap, mutex, block and count text, old binary CPU profiles), one module
  per format family, into the same ``Profile``;
- ``profile``: the entry point for bytes: gzip-compressed (inflated within a
  limit by :mod:`cardguard.gunzip`) or raw, profile.proto or legacy, with
  typed errors;
- ``heap``: flat and cumulative cost per function for any sample index, and
  growth between two snapshots (what ``go tool pprof -top [-base]`` shows);
- ``goroutines``: read goroutine profiles in all three formats (``debug=0``
  proto, ``debug=1`` counted stacks, ``debug=2`` full dump, also inside a
  crash report) and the ``goroutineleak`` profile; group goroutines by stack,
  creator and label; compare groups between snapshots;
- ``stacks``: whole stacks and the folded format; ``diff``: the
  ``-diff_base`` profile writer; ``units``: pprof's display units.

Nothing here does I/O: every function takes bytes or parsed objects.

The protobuf messages (``profile_pb2``) are built at import time from the
schema written in ``profile_pb2.py``, with pprof's published field numbers,
so any protobuf runtime from 5.26 on will do. ``profile_pb2.pyi`` (their types,
for mypy) is generated from it: after editing the schema run ``make proto``.
"""
