"""One duration and size grammar, one checker: a bad file per rule, good values in every section.

Every YAML file cardguard reads (the config, a rules file, the web config) is
checked by :mod:`cardguard.settings.checker`, and every duration and size in
them is read by :mod:`cardguard.quantities`, Prometheus' grammar. Each file
under ``testdata/grammar/`` breaks one rule once; its exact message is pinned
here, with file and line. The file name's first word says which loader reads it.
"""
# ruff: noqa: E501  (pinned messages stay on one line so they can be grepped)

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cardguard.errors import ConfigError
from cardguard.quantities import format_duration, parse_duration, parse_size
from cardguard.settings import webconfig
from cardguard.settings.config import Config, load_config, parse_config
from cardguard.settings.rulefile import load_rules_file
from support import TESTDATA

GRAMMAR = TESTDATA / "grammar"
LOADERS: dict[str, Callable[[Path], object]] = {
    "config": load_config,
    "rules": load_rules_file,
    "web": webconfig.load,
}

# --- the grammar itself -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15),
        ("1m", 60),
        ("2h", 7200),
        ("1m30s", 90),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("1d", 86400),
        ("2w", 14 * 86400),
        ("1y", 365 * 86400),
        ("1d12h", 36 * 3600),
        ("0", 0),
        ("0s", 0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


# Prometheus refuses each of these too: no fraction, no sign, no space, units in order, lower case.
@pytest.mark.parametrize(
    "text",
    ["", "fast", "15", "1.5s", "1.5h", "s", "1s1m", "-1s", "+1s", "10 s", "10S", "1h30", "1d1d"],
)
def test_bad_durations(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64MiB", 64 << 20),
        ("64MB", 64 << 20),  # Prometheus' body_size_limit: MB is MiB
        ("1.5MiB", 3 << 19),
        ("1.5GB", 3 << 29),
        ("512KiB", 512 << 10),
        ("512KB", 512 << 10),
        ("100B", 100),
        ("1.5B", 1),  # a fraction of a byte is dropped, as Prometheus drops it
        ("1TiB", 1 << 40),
        ("1048576", 1 << 20),  # a number of bytes
        ("64 MiB", 64 << 20),
        ("0", 0),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    ["", "big", "1.5", "512kB", "64mib", "64M", "-1MiB", "1e6", "1GiB512MiB", "MiB", ".5MiB"],
)
def test_bad_sizes(text: str) -> None:
    assert parse_size(text) is None


# --- one bad file per rule ----------------------------------------------------------

BAD: dict[str, list[str]] = {
    # durations in the config, one per key family
    "config-duration-word.yml": [
        "config-duration-word.yml:2: global.scrape_interval: expected a duration like 30s, got 'fast'",
    ],
    "config-duration-bare-number.yml": [
        "config-duration-bare-number.yml:4: targets[0].interval: expected a duration like 30s, got 15",
    ],
    "config-duration-fraction.yml": [
        "config-duration-fraction.yml:4: targets[0].timeout: expected a duration like 30s, got '1.5s'",
    ],
    "config-duration-order.yml": [
        "config-duration-order.yml:5: targets[0].profiles.interval: expected a duration like 30s, got '30s1m'",
    ],
    "config-duration-space.yml": [
        "config-duration-space.yml:5: targets[0].profiles.timeout: expected a duration like 30s, got '10 s'",
    ],
    "config-duration-target-defaults.yml": [
        "config-duration-target-defaults.yml:3: target_defaults.interval: expected a duration like 30s, got '1.5h'",
    ],
    "config-duration-negative.yml": [
        "config-duration-negative.yml:2: probe.cache_ttl: expected a duration like 30s, got '-10s'",
    ],
    "config-duration-zero.yml": [
        "config-duration-zero.yml:2: probe.state_ttl: must be longer than 0s, got '0s'",
    ],
    "config-duration-unit-case.yml": [
        "config-duration-unit-case.yml:2: probe.timeout: expected a duration like 30s, got '10S'",
    ],
    "config-duration-list.yml": [
        "config-duration-list.yml:3: probe.profiles.interval: expected a duration like 30s, got a list",
    ],
    "config-duration-too-long.yml": [
        "config-duration-too-long.yml:4: fleet[0].interval: must be at most 10y, got '11y'",
    ],
    "config-duration-fleet-timeout.yml": [
        "config-duration-fleet-timeout.yml:4: fleet[0].timeout: expected a duration like 30s, got '1h30'",
    ],
    "config-duration-rules.yml": [
        "config-duration-rules.yml:6: rules.goroutine_leak.max_wait: expected a duration like 30s, got '1.5h'",
    ],
    # sizes in the config, one per key family
    "config-size-word.yml": [
        "config-size-word.yml:4: targets[0].body_size_limit: expected a size like 64MiB or a number of bytes, got 'big'",
    ],
    "config-size-si-kilo.yml": [
        "config-size-si-kilo.yml:2: global.body_size_limit: expected a size like 64MiB or a number of bytes, got '512kB'",
    ],
    "config-size-lower-case.yml": [
        "config-size-lower-case.yml:4: targets[0].body_size_limit: expected a size like 64MiB or a number of bytes, got '64mib'",
    ],
    "config-size-fraction-without-unit.yml": [
        "config-size-fraction-without-unit.yml:2: global.body_size_limit: expected a size like 64MiB or a number of bytes, got 1.5",
    ],
    "config-size-negative.yml": [
        "config-size-negative.yml:2: probe.body_size_limit: expected a size like 64MiB or a number of bytes, got '-1MiB'",
    ],
    "config-size-zero.yml": [
        "config-size-zero.yml:4: fleet[0].body_size_limit: must be at least 1 byte, got 0",
    ],
    "config-size-too-large.yml": [
        "config-size-too-large.yml:3: target_defaults.body_size_limit: must be at most 9007199254740992 bytes, got '16EiB'",
    ],
    "config-size-rules.yml": [
        "config-size-rules.yml:6: rules.heap_growth.min_growth_bytes: expected a size like 64MiB or a number of bytes, got '4mb'",
    ],
    # the checker's other rules
    "config-unknown-key.yml": [
        "config-unknown-key.yml:4: fleet[0].intervall: unknown key; did you mean 'interval'?",
    ],
    "config-unknown-key-far.yml": [
        "config-unknown-key-far.yml:2: probe.colour: unknown key; expected one of: allow, allow_file_sd, cache_ttl, state_ttl, max_targets, metrics_path, pprof_path, timeout, body_size_limit, profiles",
    ],
    "config-negative-integer.yml": [
        "config-negative-integer.yml:3: global.thresholds.min_family_series: must be at least 0, got -1",
    ],
    "config-wrong-type.yml": [
        "config-wrong-type.yml:3: global.thresholds.min_heap_owner_share: expected a number, got a list",
    ],
    # a rules file: the same grammar and wording as the config
    "rules-duration-bare-number.yml": [
        "rules-duration-bare-number.yml:2: rules.goroutine_leak.max_wait: expected a duration like 30s, got 10",
    ],
    "rules-duration-zero.yml": [
        "rules-duration-zero.yml:3: rules.goroutine_leak.max_wait: must be longer than 0s, got 0",
    ],
    "rules-size-negative.yml": [
        "rules-size-negative.yml:2: rules.misleading_memory.min_gap_bytes: expected a size like 64MiB or a number of bytes, got '-64MiB'",
    ],
    "rules-size-list.yml": [
        "rules-size-list.yml:3: rules.children_heap_cost.min_bytes: expected a size like 64MiB or a number of bytes, got a list",
    ],
    "rules-wrong-type.yml": [
        "rules-wrong-type.yml:2: rules.label_explosion.series_share: expected a number, got 'half'",
    ],
    "rules-negative.yml": [
        "rules-negative.yml:2: rules.goroutine_leak.growth_per_hour: must be at least 0, got -1",
    ],
    "rules-unknown-key.yml": [
        "rules-unknown-key.yml:2: rules.heap_growth.min_growth_byte: unknown key; did you mean 'min_growth_bytes'?",
    ],
    # the web config (it has no duration or size)
    "web-unknown-key.yml": [
        "web-unknown-key.yml:1: http_server_configs: unknown key; did you mean 'http_server_config'?",
    ],
    "web-wrong-type.yml": [
        "web-wrong-type.yml:2: http_server_config.http2: expected true or false, got 'yes please'",
    ],
    "web-not-a-mapping.yml": [
        "web-not-a-mapping.yml:1: tls_server_config: expected a mapping, got a list",
    ],
    "web-duplicate-key.yml": [
        "web-duplicate-key.yml:3: http_server_config.http2: duplicate key (first given on line 2)",
    ],
}


def test_every_bad_file_is_pinned() -> None:
    assert {p.name for p in GRAMMAR.glob("*.yml")} == set(BAD)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_message(name: str) -> None:
    path = GRAMMAR / name
    with pytest.raises(ConfigError) as info:
        LOADERS[name.split("-", 1)[0]](path)
    assert [p.replace(str(path), name) for p in info.value.problems] == BAD[name]


# --- the same good values in every section that takes a duration or a size ---------

TARGET = "  - name: api\n    url: http://127.0.0.1:8080\n"
FLEET = "fleet:\n  - name: central\n    url: http://127.0.0.1:9090\n"
# A timeout must not exceed its interval: the interval beside it is four weeks.
DURATIONS: dict[str, tuple[str, Callable[[Config], float | None]]] = {
    "global.scrape_interval": (
        "global: {scrape_interval: VALUE}\ntargets:\n" + TARGET,
        lambda c: c.global_.scrape_interval,
    ),
    "global.scrape_timeout": (
        "global: {scrape_interval: 4w, scrape_timeout: VALUE}\ntargets:\n" + TARGET,
        lambda c: c.global_.scrape_timeout,
    ),
    "targets[].interval": (
        "targets:\n" + TARGET + "    interval: VALUE\n",
        lambda c: c.targets[0].interval,
    ),
    "targets[].timeout": (
        "targets:\n" + TARGET + "    interval: 4w\n    timeout: VALUE\n",
        lambda c: c.targets[0].timeout,
    ),
    "targets[].profiles.interval": (
        "targets:\n" + TARGET + "    profiles: {interval: VALUE}\n",
        lambda c: c.targets[0].profiles.interval,
    ),
    "targets[].profiles.timeout": (
        "targets:\n" + TARGET + "    profiles: {interval: 4w, timeout: VALUE}\n",
        lambda c: c.targets[0].profiles.timeout,
    ),
    "target_defaults.interval": (
        "target_files: [t.yml]\ntarget_defaults: {interval: VALUE}\n",
        lambda c: c.target_files.template.interval if c.target_files else None,
    ),
    "target_defaults.profiles.timeout": (
        "target_files: [t.yml]\ntarget_defaults: {profiles: {interval: 4w, timeout: VALUE}}\n",
        lambda c: c.target_files.template.profiles.timeout if c.target_files else None,
    ),
    "probe.cache_ttl": (
        "probe: {cache_ttl: VALUE}\n",
        lambda c: c.probe.cache_ttl if c.probe else None,
    ),
    "probe.state_ttl": (
        "probe: {state_ttl: VALUE}\n",
        lambda c: c.probe.state_ttl if c.probe else None,
    ),
    "probe.timeout": ("probe: {timeout: VALUE}\n", lambda c: c.probe.timeout if c.probe else None),
    "probe.profiles.interval": (
        "probe: {profiles: {interval: VALUE}}\n",
        lambda c: c.probe.profiles.interval if c.probe else None,
    ),
    "fleet[].interval": (FLEET + "    interval: VALUE\n", lambda c: c.fleet[0].interval),
    "fleet[].timeout": (
        FLEET + "    interval: 4w\n    timeout: VALUE\n",
        lambda c: c.fleet[0].timeout,
    ),
    "rules.goroutine_leak.max_wait": (
        "targets: []\nrules: {goroutine_leak: {max_wait: VALUE}}\n",
        lambda c: 60 * c.rules.defaults.goroutine_leak.max_wait_minutes,
    ),
    "rules.targets.api.goroutine_leak.max_wait": (
        "targets: []\nrules: {targets: {api: {goroutine_leak: {max_wait: VALUE}}}}\n",
        lambda c: 60 * c.rules.for_target("api").goroutine_leak.max_wait_minutes,
    ),
}
SIZES: dict[str, tuple[str, Callable[[Config], int | None]]] = {
    "global.body_size_limit": (
        "global: {body_size_limit: VALUE}\ntargets:\n" + TARGET,
        lambda c: c.global_.body_size_limit,
    ),
    "targets[].body_size_limit": (
        "targets:\n" + TARGET + "    body_size_limit: VALUE\n",
        lambda c: c.targets[0].body_size_limit,
    ),
    "target_defaults.body_size_limit": (
        "target_files: [t.yml]\ntarget_defaults: {body_size_limit: VALUE}\n",
        lambda c: c.target_files.template.body_size_limit if c.target_files else None,
    ),
    "probe.body_size_limit": (
        "probe: {body_size_limit: VALUE}\n",
        lambda c: c.probe.body_size_limit if c.probe else None,
    ),
    "fleet[].body_size_limit": (
        FLEET + "    body_size_limit: VALUE\n",
        lambda c: c.fleet[0].body_size_limit,
    ),
    "rules.children_heap_cost.min_bytes": (
        "targets: []\nrules: {children_heap_cost: {min_bytes: VALUE}}\n",
        lambda c: c.rules.defaults.children_heap_cost.min_bytes,
    ),
    "rules.heap_growth.min_growth_bytes": (
        "targets: []\nrules: {heap_growth: {min_growth_bytes: VALUE}}\n",
        lambda c: c.rules.defaults.heap_growth.min_growth_bytes,
    ),
    "rules.misleading_memory.min_gap_bytes": (
        "targets: []\nrules: {misleading_memory: {min_gap_bytes: VALUE}}\n",
        lambda c: c.rules.defaults.misleading_memory.min_gap_bytes,
    ),
    "rules.targets.api.heap_growth.min_growth_bytes": (
        "targets: []\nrules: {targets: {api: {heap_growth: {min_growth_bytes: VALUE}}}}\n",
        lambda c: c.rules.for_target("api").heap_growth.min_growth_bytes,
    ),
}
GOOD_DURATIONS = {"1d": 86400.0, "1h30m": 5400.0, "500ms": 0.5, "2w": 14 * 86400.0}
GOOD_SIZES = {"1.5MiB": 3 << 19, "64MiB": 64 << 20, "64MB": 64 << 20, "1048576": 1 << 20}


def _value(text: str, get: Callable[[Config], Any]) -> Any:
    return get(parse_config(text, "c.yml"))


@pytest.mark.parametrize("value", sorted(GOOD_DURATIONS))
@pytest.mark.parametrize("key", sorted(DURATIONS))
def test_every_duration_key_takes_the_grammar(key: str, value: str) -> None:
    text, get = DURATIONS[key]
    assert _value(text.replace("VALUE", value), get) == GOOD_DURATIONS[value]


@pytest.mark.parametrize("value", sorted(GOOD_SIZES))
@pytest.mark.parametrize("key", sorted(SIZES))
def test_every_size_key_takes_the_grammar(key: str, value: str) -> None:
    text, get = SIZES[key]
    assert _value(text.replace("VALUE", value), get) == GOOD_SIZES[value]


def test_a_rules_file_takes_the_same_values(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(
        "goroutine_leak: {max_wait: 1h30m}\n"
        "children_heap_cost: {min_bytes: 1.5MiB}\n"
        "heap_growth: {min_growth_bytes: 64MB}\n"
        "misleading_memory: {min_gap_bytes: 1048576}\n"
    )
    d = load_rules_file(path).defaults
    assert d.goroutine_leak.max_wait_minutes == 90
    assert d.children_heap_cost.min_bytes == 3 << 19
    assert d.heap_growth.min_growth_bytes == 64 << 20
    assert d.misleading_memory.min_gap_bytes == 1 << 20


@pytest.mark.parametrize("key", sorted(DURATIONS))
def test_every_duration_key_refuses_what_the_grammar_refuses(key: str) -> None:
    text, _ = DURATIONS[key]
    with pytest.raises(ConfigError) as info:
        parse_config(text.replace("VALUE", "1.5h"), "c.yml")
    (problem,) = info.value.problems
    assert problem.endswith("expected a duration like 30s, got '1.5h'"), problem


@pytest.mark.parametrize("key", sorted(SIZES))
def test_every_size_key_refuses_what_the_grammar_refuses(key: str) -> None:
    text, _ = SIZES[key]
    with pytest.raises(ConfigError) as info:
        parse_config(text.replace("VALUE", "512kB"), "c.yml")
    (problem,) = info.value.problems
    assert problem.endswith("expected a size like 64MiB or a number of bytes, got '512kB'"), problem
