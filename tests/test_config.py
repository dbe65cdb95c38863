"""Config loading: one bad file per validation rule with its message pinned, plus defaults."""
# ruff: noqa: E501  (pinned messages stay on one line so they can be grepped)

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from cardguard.errors import ConfigError
from cardguard.settings import config, targets
from cardguard.settings.config import Caps, load_config, parse_config
from cardguard.settings.targets import Secret
from support import TESTDATA, cardguard_argv

CONFIGS = TESTDATA / "config"

# Every bad file and the exact messages it must produce (file name relative to CONFIGS).
EXPECTED: dict[str, list[str]] = {
    "bad-basic-auth-both.yml": [
        "bad-basic-auth-both.yml:5: targets[0].basic_auth: set only one of password and password_file",
    ],
    "bad-basic-auth-none.yml": [
        "bad-basic-auth-none.yml:5: targets[0].basic_auth: one of password or password_file is required",
    ],
    "bad-cap-zero.yml": [
        "bad-cap-zero.yml:3: global.caps.families: must be at least 1, got 0",
    ],
    "bad-duplicate-key.yml": [
        "bad-duplicate-key.yml:4: targets[0].url: duplicate key (first given on line 3)",
    ],
    "bad-duplicate-name.yml": [
        "bad-duplicate-name.yml:4: targets[1].name: duplicate target name 'api' (also targets[0])",
    ],
    "bad-duration.yml": [
        "bad-duration.yml:4: targets[0].interval: expected a duration like 30s, got 'fast'",
    ],
    "bad-empty.yml": [
        "bad-empty.yml: the file is empty; at least targets is required",
    ],
    "bad-global-timeout.yml": [
        "bad-global-timeout.yml:3: global.scrape_timeout: must not exceed global.scrape_interval (10s)",
    ],
    "bad-goroutineleak.yml": [
        "bad-goroutineleak.yml:5: targets[0].profiles.goroutineleak: expected one of auto, true, false, got 'sometimes'",
    ],
    "bad-header.yml": [
        "bad-header.yml:5: targets[0].headers.Accept-Encoding: cardguard sets this header itself",
        "bad-header.yml:6: targets[0].headers.Bad Header: not a valid HTTP header name",
    ],
    "bad-insecure-not-bool.yml": [
        "bad-insecure-not-bool.yml:5: targets[0].tls.insecure_skip_verify: expected true or false, got 'yes please'",
    ],
    "bad-many.yml": [
        "bad-many.yml:2: global.scrape_interval: expected a duration like 30s, got 15",
        "bad-many.yml:6: targets[0].interval: expected a duration like 30s, got 'soon'",
        "bad-many.yml:8: targets[1].url: expected an http:// or https:// URL, got 'localhost:9100'",
        "bad-many.yml:10: targets[1].profiles.goroutine_full_max: must be at least 0, got -1",
    ],
    "bad-metrics-path.yml": [
        "bad-metrics-path.yml:4: targets[0].metrics_path: must start with '/', got 'metrics'",
    ],
    "bad-missing-file.yml": [
        "bad-missing-file.yml:4: targets[0].bearer_token_file: file not found: no-such-token.txt",
    ],
    "bad-missing-name.yml": [
        "bad-missing-name.yml:2: targets[0].name: required",
    ],
    "bad-missing-targets.yml": [
        "bad-missing-targets.yml:1: targets: required "
        "(or target_files, or a probe section for /probe-only use)",
    ],
    "bad-name-chars.yml": [
        "bad-name-chars.yml:2: targets[0].name: use 1-64 characters from A-Z a-z 0-9 _ . : -, got 'my api'",
    ],
    "bad-profiles-key.yml": [
        "bad-profiles-key.yml:6: targets[0].profiles.goroutines: unknown key; did you mean 'goroutine'?",
    ],
    "bad-rules.yml": [
        "bad-rules.yml:6: rules.label_explosion.severity: expected one of info, warning, critical, got 'loud'",
    ],
    "bad-size.yml": [
        "bad-size.yml:2: global.body_size_limit: expected a size like 64MiB or a number of bytes, got 'lots'",
    ],
    "bad-targets-not-list.yml": [
        "bad-targets-not-list.yml:2: targets: expected a list, got a mapping",
    ],
    "bad-threshold-type.yml": [
        "bad-threshold-type.yml:3: global.thresholds.min_label_values: expected an integer, got 'many'",
    ],
    "bad-timeout-over-interval.yml": [
        "bad-timeout-over-interval.yml:5: targets[0].timeout: timeout 20s must not exceed interval 10s",
    ],
    "bad-tls-cert-without-key.yml": [
        "bad-tls-cert-without-key.yml:5: targets[0].tls: cert_file and key_file must be given together",
    ],
    "bad-tls-on-http.yml": [
        "bad-tls-on-http.yml:5: targets[0].tls: tls is set but the url is http://",
    ],
    "bad-two-auths.yml": [
        "bad-two-auths.yml:2: targets[0]: set only one of basic_auth, bearer_token and bearer_token_file",
    ],
    "bad-unknown-key.yml": [
        "bad-unknown-key.yml:2: global.scrape_intervall: unknown key; did you mean 'scrape_interval'?",
    ],
    "bad-unknown-top.yml": [
        "bad-unknown-top.yml:1: targetz: unknown key; did you mean 'targets'?",
    ],
    "bad-url-credentials.yml": [
        "bad-url-credentials.yml:3: targets[0].url: credentials in the URL are not allowed; use basic_auth",
    ],
    "bad-url-query.yml": [
        "bad-url-query.yml:3: targets[0].url: the base URL must not have a query or fragment",
    ],
    "bad-url-scheme.yml": [
        "bad-url-scheme.yml:3: targets[0].url: expected an http:// or https:// URL, got 'ftp://127.0.0.1:8080'",
    ],
    "bad-yaml-syntax.yml": [
        "bad-yaml-syntax.yml:4: invalid YAML: expected ',' or ']', but got '<stream end>'",
    ],
    # Files that once crashed a reload: each must be one clean, located error.
    "bad-url-ipv6.yml": [
        "bad-url-ipv6.yml:3: targets[0].url: invalid URL 'http://[::1': IPv6 addresses go in balanced brackets, like http://[::1]:8080",
        "bad-url-ipv6.yml:5: targets[1].url: invalid URL 'http://[::1]x:9100': only a :port may follow ']'",
        "bad-url-ipv6.yml:7: targets[2].url: invalid URL 'http://[not-an-address]:6379': what is in brackets is not an IPv6 address",
        "bad-url-ipv6.yml:9: targets[3].url: invalid port in 'http://127.0.0.1:99999'",
        "bad-url-ipv6.yml:11: targets[4].url: URL must not contain spaces or control characters, got 'http://exa mple.internal:80'",
    ],
    "bad-deep-nesting.yml": [
        "bad-deep-nesting.yml:4: YAML nested deeper than 64 levels; refused",
    ],
    "bad-yaml-bomb.yml": [
        "bad-yaml-bomb.yml:8: YAML aliases expand to more than 50000 nodes; refused",
    ],
    "bad-recursive-alias.yml": [
        "bad-recursive-alias.yml:4: alias *targets is used inside the node it names; refused",
    ],
    "bad-wrong-types.yml": [
        "bad-wrong-types.yml:4: global.caps.families: must be at most 9007199254740992, got 999999999999999999999999999999999999999999999999999999999...",
        "bad-wrong-types.yml:5: global.thresholds.min_label_values: expected an integer, got 1.5",
        "bad-wrong-types.yml:5: global.thresholds.min_heap_owner_share: expected a finite number, got .nan",
        "bad-wrong-types.yml:2: global.scrape_interval: expected a duration like 30s, got a list",
        "bad-wrong-types.yml:3: global.exact_count_cap: expected an integer, got many",
        "bad-wrong-types.yml:11: targets[0]: keys must be strings",
        "bad-wrong-types.yml:7: targets[0].name: expected a non-empty string, got a list",
        "bad-wrong-types.yml:8: targets[0].url: expected an http:// or https:// URL, got '8080'",
        "bad-wrong-types.yml:9: targets[0].interval: must be at most 10y, got '99999999999999999999s'",
        "bad-wrong-types.yml:10: targets[0].profiles.enabled: expected true or false, got maybe",
        "bad-wrong-types.yml:10: targets[0].profiles.goroutine_full_max: expected an integer, got .inf",
        "bad-wrong-types.yml:12: targets[1]: expected a mapping, got 'db'",
    ],
    "bad-not-utf8.yml": [
        "bad-not-utf8.yml:4: not UTF-8 text (byte 0xe9 at offset 79)",
    ],
    "bad-binary.yml": [
        "bad-binary.yml:3: invalid YAML: character #x0000 is not allowed",
    ],
}


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [p.replace(str(path), path.name) for p in info.value.problems]


def test_every_bad_file_is_pinned() -> None:
    on_disk = {p.name for p in CONFIGS.glob("bad-*.yml")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_config_message(name: str) -> None:
    assert problems_of(CONFIGS / name) == EXPECTED[name]


def test_all_errors_reported_at_once() -> None:
    assert len(problems_of(CONFIGS / "bad-many.yml")) == 4


def test_good_full_config_values() -> None:
    cfg = load_config(CONFIGS / "good-full.yml")
    g = cfg.global_
    assert (g.scrape_interval, g.scrape_timeout) == (15.0, 5.0)
    assert g.body_size_limit == 16 * 1024 * 1024
    assert g.exact_count_cap == 5000
    assert g.caps == Caps(
        families=100, labels=200, heap_owners=20, goroutine_groups=20, offenders=30
    )
    th = g.thresholds
    assert (th.min_family_series, th.min_label_values) == (10, 5)
    assert (th.min_heap_owner_share, th.min_goroutine_group) == (0.05, 3)
    api, minimal = cfg.targets
    assert api.url == "https://127.0.0.1:8443"
    assert api.metrics_url == "https://127.0.0.1:8443/internal/metrics"
    assert api.pprof_url("heap") == "https://127.0.0.1:8443/debug/pprof/heap"
    assert (api.interval, api.timeout) == (60.0, 30.0)
    assert api.basic_auth is not None and api.basic_auth.password_file == CONFIGS / "password.txt"
    assert api.tls.ca_file == CONFIGS / "ca.pem"
    assert api.tls.server_name == "api.internal"
    assert api.tls.insecure_skip_verify is False
    assert api.profiles.interval == 120.0
    assert api.profiles.goroutine_full_max == 500
    assert api.profiles.goroutineleak == "false"
    # Target defaults come from global.
    assert (minimal.interval, minimal.timeout, minimal.body_size_limit) == (15.0, 5.0, 16 << 20)
    assert minimal.profiles.enabled and minimal.profiles.goroutineleak == "auto"
    assert minimal.profiles.timeout == 5.0
    assert cfg.target("minimal") is minimal and cfg.target("nope") is None


def test_minimal_config_defaults() -> None:
    cfg = parse_config("targets:\n  - {name: a, url: 'http://127.0.0.1:1'}\n", "inline.yml")
    t = cfg.targets[0]
    assert (t.interval, t.timeout) == (30.0, 10.0)
    assert t.body_size_limit == 64 << 20
    assert t.metrics_url == "http://127.0.0.1:1/metrics"
    assert t.profiles.interval == 60.0 and t.profiles.goroutine_full_max == 2000
    assert cfg.global_.caps == Caps()
    # No rules section: the rules module's defaults.
    from cardguard.settings.rules import DEFAULT_RULES

    assert cfg.rules is DEFAULT_RULES


def test_secrets_never_in_repr() -> None:
    text = """
targets:
  - name: a
    url: http://127.0.0.1:1
    headers: {X-Api-Key: key-material-1}
    basic_auth: {username: u, password: hunter2-secret}
"""
    cfg = parse_config(text, "inline.yml")
    shown = repr(cfg) + str(cfg)
    assert "hunter2-secret" not in shown and "key-material-1" not in shown
    assert "<secret>" in shown
    ba = cfg.targets[0].basic_auth
    assert ba is not None and ba.password is not None
    assert ba.password.reveal() == "hunter2-secret"
    assert repr(Secret("x")) == "<secret>" and f"{Secret('x')}" == "<secret>"


def test_credentials_in_url_are_not_echoed() -> None:
    problems = problems_of(CONFIGS / "bad-url-credentials.yml")
    assert not any("hunter2" in p for p in problems)


def test_check_config_command(tmp_path: Path) -> None:
    bad = subprocess.run(
        cardguard_argv("check-config", str(CONFIGS / "bad-many.yml")),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    for line in EXPECTED["bad-many.yml"]:
        assert line.replace("bad-many.yml", str(CONFIGS / "bad-many.yml")) in bad.stderr
    assert "4 errors" in bad.stderr
    good = subprocess.run(
        cardguard_argv("check-config", str(CONFIGS / "good-full.yml")),
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stderr
    assert "OK, 2 target(s)" in good.stdout
    assert "api: https://127.0.0.1:8443/internal/metrics every 1m" in good.stdout
    missing = subprocess.run(
        cardguard_argv("check-config", str(tmp_path / "nope.yml")), capture_output=True, text=True
    )
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_example_config_validates_and_documents_every_option() -> None:
    from support import REPO

    example = REPO / "deploy" / "cardguard.yml"
    cfg = load_config(example)
    assert [t.name for t in cfg.targets] == ["demo", "api"]
    text = example.read_text()
    keys = (
        *config._GLOBAL_KEYS,
        *config._CAPS_KEYS,
        *config._THRESHOLD_KEYS,
        *targets._TARGET_KEYS,
        *targets._BASIC_AUTH_KEYS,
        *targets._TLS_KEYS,
        *targets._PROFILE_KEYS,
        *config._TOP_KEYS,
    )
    missing = [k for k in keys if f"{k}:" not in text]
    assert missing == []
    # The documented defaults are the real defaults.
    api = cfg.targets[1]
    assert cfg.global_ == config.GlobalConfig()
    assert api.profiles == targets.ProfilesConfig(timeout=5.0)


# --- no file, however broken, may crash a (re)load ---------------------------

HOSTILE = [
    "bad-url-ipv6.yml",
    "bad-deep-nesting.yml",
    "bad-yaml-bomb.yml",
    "bad-recursive-alias.yml",
    "bad-wrong-types.yml",
    "bad-not-utf8.yml",
    "bad-binary.yml",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file_is_refused_quickly(name: str) -> None:
    # The bomb expands to 9**10 nodes and the nesting is 5,000 deep; both are refused
    # while composing, long before either could exhaust memory or the stack.
    start = time.monotonic()
    assert problems_of(CONFIGS / name) == EXPECTED[name]
    assert time.monotonic() - start < 5


def test_aliases_within_bounds_still_work() -> None:
    text = """
targets:
  - name: a
    url: http://127.0.0.1:1
    headers: &team {X-Team: payments}
  - name: b
    url: http://127.0.0.1:2
    headers: *team
"""
    cfg = parse_config(text, "inline.yml")
    assert [dict(t.headers)["X-Team"].reveal() for t in cfg.targets] == ["payments"] * 2


def test_file_size_is_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.yml"
    big.write_text("targets: []\n" + "#" * (1 << 20) + "\n")
    assert problems_of(big) == ["big.yml: larger than 1 MiB; refused"]


def test_problem_list_is_bounded() -> None:
    text = "targets:\n" + "".join(
        f"  - {{name: t{i}, url: 'http://127.0.0.1:1', interval: x}}\n" for i in range(300)
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "many.yml")
    problems = info.value.problems
    assert len(problems) == 101
    assert problems[0] == "many.yml:2: targets[0].interval: expected a duration like 30s, got 'x'"
    assert problems[-1] == "many.yml: 200 more problems not shown"


def test_long_values_are_clipped_in_messages() -> None:
    value = "x" * 100_000
    with pytest.raises(ConfigError) as info:
        parse_config(
            f"targets:\n  - {{name: a, url: 'http://127.0.0.1:1', interval: {value}}}\n", "f"
        )
    (problem,) = info.value.problems
    assert problem.startswith("f:2: targets[0].interval: expected a duration like 30s, got 'xxx")
    assert len(problem) < 300


@pytest.mark.parametrize(
    ("profiles", "message"),
    [
        (
            "{goroutineleak: !!bool maybe}",
            "goroutineleak: expected one of auto, true, false, got maybe",
        ),
        ("{enabled: !!bool maybe}", "enabled: expected true or false, got maybe"),
        ("{goroutine_full_max: !!int 12abc}", "goroutine_full_max: expected an integer, got 12abc"),
        (
            "{interval: 1y1w1d1h1m1s1ms1}",
            "interval: expected a duration like 30s, got '1y1w1d1h1m1s1ms1'",
        ),
    ],
)
def test_tagged_values_that_do_not_fit_their_tag(profiles: str, message: str) -> None:
    text = f"targets:\n  - {{name: a, url: 'http://127.0.0.1:1', profiles: {profiles}}}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "p.yml")
    assert info.value.problems == [f"p.yml:2: targets[0].profiles.{message}"]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("{label_explosion: {growth_per_hour: 1e999}}", "expected a finite number, got '1e999'"),
        ("{label_explosion: {growth_per_hour: .nan}}", "expected a finite number, got .nan"),
        ("{label_explosion: {distinct_values: !!int lots}}", "expected an integer, got lots"),
        ("{heap_growth: {min_growth_bytes: " + "9" * 400 + "MiB}}", "expected a size like 64MiB"),
        ("{goroutine_leak: {max_wait: " + "9" * 5000 + "m}}", "expected a duration like 30s"),
        ("{allow: {families: ['re:" + "(" * 1000 + ")" * 1000 + "']}}", "nested too deeply"),
        ("{allow: {families: ['re:a{99999999999}']}}", "the repetition number is too large"),
        ("{targets: {[api]: {}}}", "target names must be strings"),
    ],
)
def test_rules_values_that_used_to_raise(rules: str, message: str) -> None:
    text = f"targets: []\nrules: {rules}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "r.yml")
    (problem,) = info.value.problems
    assert problem.startswith("r.yml:2: rules.") and message in problem, problem


def test_included_rules_file_is_bounded_too(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_bytes(b"label_explosion:\n  severity: " + b"[" * 5000 + b"\n")
    cfg = tmp_path / "cardguard.yml"
    cfg.write_text("targets: []\nrules: rules.yml\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert info.value.problems == [
        f"{tmp_path / 'rules.yml'}:2: YAML nested deeper than 64 levels; refused"
    ]


def test_check_config_reports_the_same_errors() -> None:
    for name in HOSTILE:
        out = subprocess.run(
            cardguard_argv("check-config", str(CONFIGS / name)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 1, name
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        for line in EXPECTED[name]:
            assert line.replace(name, str(CONFIGS / name), 1) in out.stderr, (name, out.stderr)
