"""Benchmark: the protobuf exposition decoder, hand-written versus upb message classes.

``cardguard.parse.protobuf`` reads the MetricFamily wire format by hand. The
alternative it was measured against is here: message classes built at import
time from a ``FileDescriptorProto`` assembled in Python (no generated
``*_pb2.py``, so any protobuf runtime from 5.26 on can build them) and parsed
by the runtime's C decoder (upb), then walked to yield the same events. Both
produce exactly the same ``Family``/``Sample`` stream (checked before timing).

The page is ``tests/testdata/metrics/nhserver-10k.pb.gz``: about 10,000
series recorded from tests/testdata/metrics/nhserver (client_golang), with
counters, summaries, classic and native histograms.

Run: ``python -m benchmarks exposition_proto [--runs N]`` (at least 15 runs;
medians), or ``--quick`` (one run) as CI does. Environment:
``CARDGUARD_BENCH_RUNS``. Times are this process' CPU time, so other work on
the machine disturbs them less.
"""

from __future__ import annotations

import functools
import gzip
import os
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

from benchmarks._harness import options, stages
from cardguard.errors import ParseError
from cardguard.parse import protobuf
from cardguard.parse.model import Event, Family, Sample

PAGE = Path(__file__).resolve().parent.parent / "tests/testdata/metrics/nhserver-10k.pb.gz"

_F = descriptor_pb2.FieldDescriptorProto
# metrics.proto (client_model), message by message: (name, number, type, label, type_name).
_SCHEMA: dict[str, list[tuple[str, int, int, int, str]]] = {
    "LabelPair": [("name", 1, _F.TYPE_STRING, 1, ""), ("value", 2, _F.TYPE_STRING, 1, "")],
    "Gauge": [("value", 1, _F.TYPE_DOUBLE, 1, "")],
    "Counter": [
        ("value", 1, _F.TYPE_DOUBLE, 1, ""),
        ("exemplar", 2, _F.TYPE_MESSAGE, 1, ".io.prometheus.client.Exemplar"),
        ("created_timestamp", 3, _F.TYPE_MESSAGE, 1, ".google.protobuf.Timestamp"),
    ],
    "Quantile": [("quantile", 1, _F.TYPE_DOUBLE, 1, ""), ("value", 2, _F.TYPE_DOUBLE, 1, "")],
    "Summary": [
        ("sample_count", 1, _F.TYPE_UINT64, 1, ""),
        ("sample_sum", 2, _F.TYPE_DOUBLE, 1, ""),
        ("quantile", 3, _F.TYPE_MESSAGE, 3, ".io.prometheus.client.Quantile"),
        ("created_timestamp", 4, _F.TYPE_MESSAGE, 1, ".google.protobuf.Timestamp"),
    ],
    "Untyped": [("value", 1, _F.TYPE_DOUBLE, 1, "")],
    "Histogram": [
        ("sample_count", 1, _F.TYPE_UINT64, 1, ""),
        ("sample_count_float", 4, _F.TYPE_DOUBLE, 1, ""),
        ("sample_sum", 2, _F.TYPE_DOUBLE, 1, ""),
        ("bucket", 3, _F.TYPE_MESSAGE, 3, ".io.prometheus.client.Bucket"),
        ("created_timestamp", 15, _F.TYPE_MESSAGE, 1, ".google.protobuf.Timestamp"),
        ("schema", 5, _F.TYPE_SINT32, 1, ""),
        ("zero_threshold", 6, _F.TYPE_DOUBLE, 1, ""),
        ("zero_count", 7, _F.TYPE_UINT64, 1, ""),
        ("zero_count_float", 8, _F.TYPE_DOUBLE, 1, ""),
        ("negative_span", 9, _F.TYPE_MESSAGE, 3, ".io.prometheus.client.BucketSpan"),
        ("negative_delta", 10, _F.TYPE_SINT64, 3, ""),
        ("negative_count", 11, _F.TYPE_DOUBLE, 3, ""),
        ("positive_span", 12, _F.TYPE_MESSAGE, 3, ".io.prometheus.client.BucketSpan"),
        ("positive_delta", 13, _F.TYPE_SINT64, 3, ""),
        ("positive_count", 14, _F.TYPE_DOUBLE, 3, ""),
        ("exemplars", 16, _F.TYPE_MESSAGE, 3, ".io.prometheus.client.Exemplar"),
    ],
    "Bucket": [
        ("cumulative_count", 1, _F.TYPE_UINT64, 1, ""),
        ("cumulative_count_float", 4, _F.TYPE_DOUBLE, 1, ""),
        ("upper_bound", 2, _F.TYPE_DOUBLE, 1, ""),
        ("exemplar", 3, _F.TYPE_MESSAGE, 1, ".io.prometheus.client.Exemplar"),
    ],
    "BucketSpan": [("offset", 1, _F.TYPE_SINT32, 1, ""), ("length", 2, _F.TYPE_UINT32, 1, "")],
    "Exemplar": [
        ("label", 1, _F.TYPE_MESSAGE, 3, ".io.prometheus.client.LabelPair"),
        ("value", 2, _F.TYPE_DOUBLE, 1, ""),
        ("timestamp", 3, _F.TYPE_MESSAGE, 1, ".google.protobuf.Timestamp"),
    ],
    "Metric": [
        ("label", 1, _F.TYPE_MESSAGE, 3, ".io.prometheus.client.LabelPair"),
        ("gauge", 2, _F.TYPE_MESSAGE, 1, ".io.prometheus.client.Gauge"),
        ("counter", 3, _F.TYPE_MESSAGE, 1, ".io.prometheus.client.Counter"),
        ("summary", 4, _F.TYPE_MESSAGE, 1, ".io.prometheus.client.Summary"),
        ("untyped", 5, _F.TYPE_MESSAGE, 1, ".io.prometheus.client.Untyped"),
        ("histogram", 7, _F.TYPE_MESSAGE, 1, ".io.prometheus.client.Histogram"),
        ("timestamp_ms", 6, _F.TYPE_INT64, 1, ""),
    ],
    "MetricFamily": [
        ("name", 1, _F.TYPE_STRING, 1, ""),
        ("help", 2, _F.TYPE_STRING, 1, ""),
        ("type", 3, _F.TYPE_ENUM, 1, ".io.prometheus.client.MetricType"),
        ("metric", 4, _F.TYPE_MESSAGE, 3, ".io.prometheus.client.Metric"),
        ("unit", 5, _F.TYPE_STRING, 1, ""),
    ],
}


def metric_family_class() -> Any:
    """Build io.prometheus.client.MetricFamily from a FileDescriptorProto made here."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="io/prometheus/client/metrics.proto",
        package="io.prometheus.client",
        syntax="proto2",
        dependency=["google/protobuf/timestamp.proto"],
    )
    enum = fdp.enum_type.add(name="MetricType")
    for i, n in enumerate(
        ("COUNTER", "GAUGE", "SUMMARY", "UNTYPED", "HISTOGRAM", "GAUGE_HISTOGRAM")
    ):
        enum.value.add(name=n, number=i)
    for msg, fields in _SCHEMA.items():
        m = fdp.message_type.add(name=msg)
        for name, number, ftype, label, type_name in fields:
            f = m.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    ts = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(ts)
    pool.Add(ts)
    pool.Add(fdp)
    desc = pool.FindMessageTypeByName("io.prometheus.client.MetricFamily")
    return message_factory.GetMessageClass(desc)


_TYPES = protobuf.TYPES
_fmt = functools.lru_cache(maxsize=4096)(protobuf.format_float)


def upb_parse(data: bytes, source: str, mf_class: Any) -> Iterator[Event]:
    """The same events as protobuf.parse, from upb-decoded messages (valid input only)."""
    pos = 0
    n = len(data)
    ordinal = 0
    while pos < n:
        ordinal += 1
        length = shift = 0
        while True:
            b = data[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        mf = mf_class.FromString(data[pos : pos + length])
        pos += length
        if not mf.metric:
            continue
        name = mf.name
        ftype = mf.type
        yield Family(name, _TYPES[ftype], mf.help or None, mf.unit or None, ordinal)
        native = False
        if ftype in (4, 5):
            h0 = mf.metric[0].histogram
            native = bool(
                h0.positive_span
                or h0.negative_span
                or h0.positive_delta
                or h0.negative_delta
                or h0.positive_count
                or h0.negative_count
                or h0.zero_threshold > 0
                or h0.zero_count > 0
                or h0.zero_count_float > 0
            )
        for m in mf.metric:
            labels = tuple((lp.name, lp.value) for lp in m.label)
            ts = m.timestamp_ms / 1000.0 if m.timestamp_ms else None
            if ftype == 0:
                yield Sample(name, name, labels, m.counter.value, ts, ordinal)
            elif ftype == 1:
                yield Sample(name, name, labels, m.gauge.value, ts, ordinal)
            elif ftype == 3:
                yield Sample(name, name, labels, m.untyped.value, ts, ordinal)
            elif ftype == 2:
                s = m.summary
                for q in s.quantile:
                    yield Sample(
                        name, name, (*labels, ("quantile", _fmt(q.quantile))), q.value, ts, ordinal
                    )
                yield Sample(name, name + "_sum", labels, s.sample_sum, ts, ordinal)
                yield Sample(name, name + "_count", labels, float(s.sample_count), ts, ordinal)
            else:
                h = m.histogram
                total = h.sample_count_float if h.sample_count_float > 0 else float(h.sample_count)
                if native:
                    yield Sample(name, name, labels, total, ts, ordinal)
                    continue
                inf = False
                for b in h.bucket:
                    le = _fmt(b.upper_bound)
                    c = b.cumulative_count_float
                    c = c if c > 0 else float(b.cumulative_count)
                    yield Sample(name, name + "_bucket", (*labels, ("le", le)), c, ts, ordinal)
                    if le == "+Inf":
                        inf = True
                        break
                if not inf:
                    yield Sample(
                        name, name + "_bucket", (*labels, ("le", "+Inf")), total, ts, ordinal
                    )
                yield Sample(name, name + "_sum", labels, h.sample_sum, ts, ordinal)
                yield Sample(name, name + "_count", labels, total, ts, ordinal)


def main(argv: list[str] | None = None) -> None:
    """Time both decoders on the recorded page (CPU time, interleaved) and print the ratio."""
    args = options(__doc__.splitlines()[0] if __doc__ else None, argv)
    runs = int(os.environ.get("CARDGUARD_BENCH_RUNS", 1 if args.quick else max(args.runs, 15)))
    data = gzip.decompress(PAGE.read_bytes())
    mf_class = metric_family_class()
    hand = list(protobuf.parse(data, "page"))
    upb = list(upb_parse(data, "page", mf_class))
    if hand != upb:
        raise ParseError("page", 0, "the two decoders disagree")
    samples = sum(isinstance(e, Sample) for e in hand)
    print(f"page: {PAGE.name}, {len(data):,} bytes, {samples:,} samples")
    # Interleaved (stages() runs every step once per round), so that a busy
    # machine slows both alike.
    measured = stages(
        [
            (
                "upb classes from descriptor_pb2 (peer)",
                lambda: list(upb_parse(data, "page", mf_class)),
            ),
            (
                "hand-written wire reader (cardguard)",
                lambda: list(protobuf.parse(data, "page")),
            ),
            (
                "(building the Sample objects alone)",
                lambda: [Sample("a", "a", (), 0.0, None, 0) for _ in hand],
            ),
        ],
        runs,
    )
    peer = statistics.median(measured[0][1])
    print(f"\n== protobuf exposition decoders (CPU time, medians of {runs} runs, in process)")
    print(f"{'decoder':<44} {'ms':>9} {'us per sample':>14} {'vs peer':>8}")
    for name, times in measured:
        med = statistics.median(times)
        print(f"{name:<44} {med * 1000:>9.1f} {med * 1e6 / samples:>14.3f} {med / peer:>8.2f}")


if __name__ == "__main__":
    main()
