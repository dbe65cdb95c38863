"""Allow-list decisions for /probe targets, with the system resolver where names are involved."""

from __future__ import annotations

import socket
from collections.abc import Sequence

import pytest

from cardguard.errors import ConfigError
from cardguard.settings import allowlist
from cardguard.settings.allowlist import Refusal, Target


def system_resolve(host: str, port: int) -> Sequence[str]:
    return sorted({str(ai[4][0]) for ai in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def decide(entries: list[str], target: str | None) -> Target | Refusal:
    return allowlist.check(allowlist.build(entries), target, system_resolve)


def test_empty_allow_list_refuses_everything() -> None:
    r = decide([], "127.0.0.1:9100")
    assert isinstance(r, Refusal) and r.reason == "not_allowed"
    assert "no allow-list" in r.message


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (None, "missing_target"),
        ("", "missing_target"),
        ("file:///etc/passwd", "scheme"),
        ("file:/etc/passwd", "scheme"),
        ("gopher://127.0.0.1:70/", "scheme"),
        ("ftp://127.0.0.1/", "scheme"),
        ("http://user:secret@127.0.0.1:9100", "userinfo"),
        ("http://user@127.0.0.1:9100", "userinfo"),
        ("http://127.0.0.1:99999", "invalid_target"),
        ("http://127.0.0.1 :80", "invalid_target"),
        ("http:///metrics", "invalid_target"),
    ],
)
def test_malformed_or_dangerous_targets_are_refused(target: str | None, reason: str) -> None:
    r = decide(["127.0.0.0/8", "localhost"], target)
    assert isinstance(r, Refusal), r
    assert r.reason == reason
    assert "secret" not in r.message


def test_host_entries_with_and_without_port() -> None:
    entries = ["app.example.com:9100", "db.example.com"]
    ok = decide(entries, "app.example.com:9100")
    assert isinstance(ok, Target) and ok.url == "http://app.example.com:9100"
    assert isinstance(decide(entries, "http://APP.example.com.:9100/"), Target)
    wrong_port = decide(entries, "app.example.com:9101")
    assert isinstance(wrong_port, Refusal) and wrong_port.reason == "not_allowed"
    assert isinstance(decide(entries, "db.example.com:1234"), Target)
    https = decide(entries, "https://db.example.com")
    assert isinstance(https, Target) and https.port == 443 and https.scheme == "https"


def test_globs_match_names_not_suffix_tricks() -> None:
    entries = ["*.svc.cluster.local:8080"]
    assert isinstance(decide(entries, "api.ns.svc.cluster.local:8080"), Target)
    r = decide(entries, "svc.cluster.local.evil.com:8080")
    assert isinstance(r, Refusal) and r.reason == "not_allowed"


def test_cidr_checks_ip_literals_and_every_resolved_address() -> None:
    assert isinstance(decide(["127.0.0.0/8"], "127.0.0.5:9100"), Target)
    r = decide(["10.0.0.0/8"], "127.0.0.1:9100")
    assert isinstance(r, Refusal) and r.reason == "address_not_allowed"
    # localhost resolves (really, through the system resolver) to a loopback address,
    # so a CIDR list without loopback refuses it even though the name looks harmless.
    r = decide(["10.0.0.0/8"], "localhost:9100")
    assert isinstance(r, Refusal) and r.reason == "address_not_allowed"
    assert "resolves to" in r.message
    ok = decide(["127.0.0.0/8", "::1/128"], "localhost:9100")
    assert isinstance(ok, Target) and ok.addresses


def test_one_bad_address_among_many_refuses() -> None:
    allow = allowlist.build(["10.0.0.0/8"])

    def two(host: str, port: int) -> Sequence[str]:
        # A name with two A records, one inside and one outside: fixed table,
        # because no real zone here has that shape.
        return ["10.1.2.3", "169.254.169.254"]

    r = allowlist.check(allow, "metrics.example:9100", two)
    assert isinstance(r, Refusal) and r.reason == "address_not_allowed"
    assert "169.254.169.254" in r.message


def test_ipv4_mapped_ipv6_is_checked_as_ipv4() -> None:
    r = decide(["10.0.0.0/8"], "http://[::ffff:127.0.0.1]:9100")
    assert isinstance(r, Refusal) and r.reason == "address_not_allowed"
    assert isinstance(decide(["127.0.0.0/8"], "http://[::ffff:127.0.0.1]:9100"), Target)


def test_dns_failure_is_a_refusal() -> None:
    r = decide(["10.0.0.0/8"], "no-such-host.invalid:9100")
    assert isinstance(r, Refusal) and r.reason == "dns"
    assert "no-such-host.invalid" in r.message


def test_file_sd_targets_are_allowed() -> None:
    sd = allowlist.parse_file_sd(
        '[{"targets": ["10.0.0.7:9100", "app:8080", "[::1]:9000"], "labels": {"job": "x"}}]',
        "sd.json",
    )
    allow = allowlist.build([]).with_file_sd(sd)
    assert isinstance(allowlist.check(allow, "10.0.0.7:9100", system_resolve), Target)
    assert isinstance(allowlist.check(allow, "http://[::1]:9000", system_resolve), Target)
    r = allowlist.check(allow, "10.0.0.7:9101", system_resolve)
    assert isinstance(r, Refusal) and r.reason == "not_allowed"
    yaml_sd = allowlist.parse_file_sd("- targets: ['app:8080']\n", "sd.yml")
    assert yaml_sd == frozenset({("app", 8080)})


def test_bad_entries_and_file_sd_are_reported_all_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        allowlist.build(["10.0.0.0/33", "host:notaport", "", "[::1"], source="cardguard.yml:7")
    assert len(err.value.problems) == 4
    assert err.value.problems[0].startswith("cardguard.yml:7[0]: invalid CIDR")
    with pytest.raises(ConfigError) as err:
        allowlist.parse_file_sd('[{"targets": ["a:1", 5]}, {"nope": 1}]', "sd.json")
    assert len(err.value.problems) == 2
    with pytest.raises(ConfigError, match=r"sd\.json: invalid file_sd"):
        allowlist.parse_file_sd("[{", "sd.json")
