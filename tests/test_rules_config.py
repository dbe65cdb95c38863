"""The ``rules:`` section: defaults, overrides, and one bad file per validation rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardguard.errors import ConfigError
from cardguard.settings.config import parse_config
from cardguard.settings.rulefile import load_rules_file
from cardguard.settings.rules import DEFAULT_RULES
from support import TESTDATA

RULES = TESTDATA / "rules"

# One file per rule; the message each must produce, pinned (file prefix added below).
BAD: dict[str, list[str]] = {
    "bad_severity.yml": [
        "3: rules.label_explosion.severity: expected one of info, warning, critical, got 'high'"
    ],
    "bad_integer.yml": [
        "3: rules.label_explosion.distinct_values: expected an integer, got 'lots'"
    ],
    "zero_threshold.yml": ["3: rules.children_heap_cost.min_children: must be at least 1, got 0"],
    "bad_ratio.yml": ["3: rules.label_explosion.series_share: must be between 0 and 1, got 1.5"],
    "bad_pattern.yml": [
        "3: rules.label_explosion.suspect_patterns[1]: unknown pattern 'guid' (expected one of: "
        "url_path, uuid, hex_id, numeric_id, ip, email, timestamp, enum, other)"
    ],
    "bad_regex.yml": [
        "3: rules.allow.families[0]: invalid regular expression 'http_(requests': "
        "missing ), unterminated subpattern at position 5"
    ],
    "bad_glob_type.yml": ["3: rules.deny.labels[0]: expected a glob or re:<regex>, got 42"],
    "override_without_subject.yml": ["3: rules.overrides[0]: an override needs family or label"],
    "override_unknown_key.yml": [
        "4: rules.overrides[0].colour: unknown key; expected one of: family, label, ignore, "
        "severity, distinct_values, distinct_values_any, growth_per_hour, min_new_values, "
        "series_share, critical_distinct_values"
    ],
    "bad_duration.yml": [
        "3: rules.goroutine_leak.max_wait: expected a duration like 30s, got 'forever'"
    ],
    "bad_size.yml": [
        "3: rules.heap_growth.min_growth_bytes: "
        "expected a size like 64MiB or a number of bytes, got 'a lot'"
    ],
    "misleading_memory_not_info.yml": [
        "3: rules.misleading_memory.severity: "
        "must be info: memory that only looks large is not a leak"
    ],
    "memory_ratio_below_one.yml": [
        "3: rules.misleading_memory.rss_heap_ratio: must be at least 1, got 0.5"
    ],
    "unknown_section.yml": [
        "2: rules.label_explosions: unknown key; did you mean 'label_explosion'?"
    ],
    "duplicate_key.yml": [
        "4: rules.goroutine_leak.min_growth: duplicate key (first given on line 3)"
    ],
    "not_a_mapping.yml": ["2: rules.heap_growth: expected a mapping, got a list"],
    "deny_bad_min.yml": ["4: rules.deny.min_distinct_values: must be at least 1, got 0"],
    "target_bad_section.yml": [
        "4: rules.targets.api.goroutines: unknown key; did you mean 'goroutine_leak'?"
    ],
    "ignore_not_bool.yml": [
        "3: rules.overrides[0].ignore: expected true or false, got 'sometimes'"
    ],
    "many_errors.yml": [
        "4: rules.label_explosion.severity: expected one of info, warning, critical, got 'urgent'",
        "5: rules.label_explosion.growth_per_hour: must be at least 0, got -5",
        "7: rules.goroutine_leak.leaked_severity: "
        "expected one of info, warning, critical, got 'fatal'",
        "10: rules.targets.api.heap_growth.traffic_metric: invalid regular expression '[': "
        "unterminated character set at position 0",
    ],
}


def test_every_bad_file_is_listed() -> None:
    on_disk = {p.name for p in RULES.glob("*.yml")} - {"good.yml"}
    assert on_disk == set(BAD)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_rules_file_names_file_line_and_problem(name: str) -> None:
    path = RULES / name
    with pytest.raises(ConfigError) as err:
        load_rules_file(path)
    assert err.value.problems == [f"{path}:{m}" for m in BAD[name]]


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_rules_reported_through_the_config_loader(name: str) -> None:
    # Same file embedded in a full config: config.py hands the node to rulefile.load_rules.
    text = (RULES / name).read_text()
    config = text + "\ntargets:\n  - {name: api, url: 'http://127.0.0.1:9'}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(config, "cardguard.yml")
    assert err.value.problems == [f"cardguard.yml:{m}" for m in BAD[name]]


def test_missing_rules_section_gives_defaults() -> None:
    config = parse_config("targets:\n  - {name: api, url: 'http://127.0.0.1:9'}\n", "c.yml")
    assert config.rules == DEFAULT_RULES
    le = config.rules.for_target("api").label_explosion
    assert le.severity == "warning"
    assert "url_path" in le.suspect_patterns
    assert config.rules.for_target("api").misleading_memory.severity == "info"


def test_good_file_applies_every_section() -> None:
    rules = load_rules_file(RULES / "good.yml")
    d = rules.defaults
    assert d.label_explosion.distinct_values == 150
    assert d.label_explosion.suspect_patterns == ("url_path", "uuid")
    # per-family/label override
    assert d.label_rule("prometheus_http_requests_total", "handler").distinct_values == 1000
    assert d.label_rule("myapp_requests_total", "handler").distinct_values == 150
    # regex ignore and globs in allow-lists
    assert d.allowed("grpc_server_handled_total", "grpc_method")
    assert d.allowed("go_gc_duration_seconds", "quantile")
    assert d.allowed("http_requests_total", "le")
    assert not d.allowed("http_requests_total", "path")
    assert d.denied("x", "user_id") and d.denied("x", "contact_email") and not d.denied("x", "path")
    assert d.deny.severity == "critical" and d.deny.min_distinct_values == 3
    assert d.children_heap_cost.min_bytes == 2 * 1024 * 1024
    assert d.goroutine_leak.max_wait_minutes == 90
    assert d.heap_growth.traffic_metric.matches("myapp_requests_total")
    assert not d.heap_growth.traffic_metric.matches("myapp_requests_total_extra")
    assert d.misleading_memory.min_gap_bytes == 128 * 1024 * 1024
    # per-target override on top of the defaults, lists appended
    api = rules.for_target("api")
    assert api.label_explosion.distinct_values == 1000
    assert api.label_explosion.growth_per_hour == 300
    assert api.denied("x", "session") and api.denied("x", "user_id")
    assert not rules.for_target("other").denied("x", "session")


def test_rules_in_an_included_file(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text((RULES / "good.yml").read_text())
    cfg = tmp_path / "cardguard.yml"
    cfg.write_text("targets:\n  - {name: api, url: 'http://127.0.0.1:9'}\nrules: rules.yml\n")
    from cardguard.settings.config import load_config

    assert load_config(cfg).rules.defaults.label_explosion.distinct_values == 150


def test_included_file_errors_name_that_file(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text((RULES / "bad_severity.yml").read_text())
    cfg = tmp_path / "cardguard.yml"
    cfg.write_text(
        "targets:\n  - {name: api, url: 'http://127.0.0.1:9'}\nrules: rules.yml\nextra: 1\n"
    )
    from cardguard.settings.config import load_config

    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    problems = err.value.problems
    assert f"{tmp_path / 'rules.yml'}:{BAD['bad_severity.yml'][0]}" in problems
    assert any(p.startswith(f"{cfg}:4: extra") for p in problems)


def test_missing_included_file(tmp_path: Path) -> None:
    cfg = tmp_path / "cardguard.yml"
    cfg.write_text("targets:\n  - {name: api, url: 'http://127.0.0.1:9'}\nrules: nope.yml\n")
    from cardguard.settings.config import load_config

    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.problems == [
        f"{cfg}:3: rules: cannot read included rules file {str(tmp_path / 'nope.yml')!r}"
    ]
