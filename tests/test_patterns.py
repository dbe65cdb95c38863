"""Label value classes: what a label's values look like."""

from __future__ import annotations

import uuid

import pytest

from cardguard.analyse import patterns


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([f"/api/v1/users/{i}/orders" for i in range(50)], "url_path"),
        (["https://example.com/a?b=1", "http://x.test/"], "url_path"),
        ([str(uuid.UUID(int=i * 7919 + 1)) for i in range(50)], "uuid"),
        ([f"{i * 2654435761 % 2**64:016x}" for i in range(1, 50)], "hex_id"),
        ([str(100000 + i) for i in range(50)], "numeric_id"),
        ([f"10.0.{i // 250}.{i % 250}" for i in range(50)], "ip"),
        (["[::1]:9090", "2001:db8::1", "127.0.0.1:8080"], "ip"),
        ([f"user{i}@example.com" for i in range(30)], "email"),
        (["2026-11-21T13:05:02Z", "2026-11-21T13:06:00.5+01:00", "2026-11-22"], "timestamp"),
        ([str(1795266345 + i) for i in range(40)], "timestamp"),
        (["GET", "POST", "PUT"], "enum"),
        (["200", "404", "500"], "enum"),
        (["0.005", "0.01", "+Inf"], "enum"),
        ([f"word{i}x" for i in range(100)], "other"),
    ],
)
def test_classify(values: list[str], expected: str) -> None:
    assert patterns.classify(values) == expected


def test_many_distinct_short_words_are_not_an_enum() -> None:
    sample = ["alpha", "beta", "gamma"]
    assert patterns.classify(sample, distinct=3) == "enum"
    assert patterns.classify(sample, distinct=5000) == "other"


def test_numbers_are_an_enum_until_there_are_many() -> None:
    assert patterns.classify(["1", "2", "3"], distinct=3) == "enum"
    assert patterns.classify(["1", "2", "3"], distinct=patterns.ENUM_MAX + 1) == "numeric_id"


def test_majority_decides_and_empty_values_do_not_count() -> None:
    mostly_paths = [f"/p/{i}" for i in range(9)] + ["oops"]
    assert patterns.classify(mostly_paths) == "url_path"
    half = [f"/p/{i}" for i in range(5)] + [f"w{i}" for i in range(5)]
    assert patterns.classify(half, distinct=1000) == "other"
    assert patterns.classify(["", "", "/a"]) == "url_path"
    assert patterns.classify([], distinct=0) == "enum"


def test_every_class_is_named_and_values_classify_alone() -> None:
    assert set(patterns.CLASSES) == {
        "url_path",
        "uuid",
        "hex_id",
        "numeric_id",
        "ip",
        "email",
        "timestamp",
        "enum",
        "other",
    }
    assert patterns.classify_value("deadbeef01") == "hex_id"
    assert patterns.classify_value("deadbeef") == "other"  # no digit: a word, not an id
    assert patterns.classify_value("not an ip") == "other"
