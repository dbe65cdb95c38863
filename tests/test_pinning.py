"""DNS rebinding: the address the allow-list approved is the address connected to.

A rebinding attacker's DNS server answers the first lookup of a name with an
allowed address and the next one with another (TTL 0, two record sets).
:class:`Rebinding` plays that server: it is passed where cardguard takes a
resolver, and answers differently on successive calls. That is the one
simulated part; both addresses are real listeners on the loopback network,
recording servers that note every byte they are sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from cardguard.expose import probe
from cardguard.run.fetch import Fetcher
from cardguard.settings import allowlist
from cardguard.settings.allowlist import Target
from cardguard.settings.config import GlobalConfig
from cardguard.settings.probe import ProbeConfig
from cardguard.settings.rules import DEFAULT_RULES, Rules
from cardguard.settings.targets import ProfilesConfig, Secret, TargetConfig
from recorder import PAGE, Recorder, recording

ALLOWED = "127.0.0.2"
OTHER = "127.0.0.1"


class Rebinding:
    """A rebinding DNS server: the first answer is ``first``, every later one ``then``."""

    def __init__(self, first: str, then: str) -> None:
        self.first, self.then = first, then
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append((host, port))
        return [self.first if len(self.lookups) == 1 else self.then]


@dataclass
class Pair:
    allowed: Recorder  # on ALLOWED
    other: Recorder  # on OTHER, the same port

    @property
    def port(self) -> int:
        return self.allowed.port


@contextlib.contextmanager
def pair() -> Iterator[Pair]:
    """Two recorders on one port: ALLOWED (port 0, read back) and OTHER (that port)."""
    for _ in range(20):
        with contextlib.ExitStack() as stack:
            allowed = stack.enter_context(recording(ALLOWED))
            try:
                other = stack.enter_context(recording(OTHER, allowed.port))
            except OSError:
                continue
            yield Pair(allowed, other)
            return
    raise RuntimeError(f"no port free on both {ALLOWED} and {OTHER}")


@pytest.fixture
def servers() -> Iterator[Pair]:
    with pair() as p:
        yield p


def requests_to(rec: Recorder) -> list[bytes]:
    return [c for c in rec.received() if c]


def test_fetch_connects_to_the_approved_address(servers: Pair) -> None:
    dns = Rebinding(ALLOWED, OTHER)
    name = f"rebind.test:{servers.port}"
    approved = allowlist.check(allowlist.build([f"{ALLOWED}/32"]), name, dns)
    assert isinstance(approved, Target) and approved.addresses == (ALLOWED,)
    t = TargetConfig(
        name="rebind",
        url=approved.url,
        addresses=approved.addresses,
        bearer_token=Secret("tok-SEKRIT"),
    )
    res = Fetcher(t, resolve=dns).get(t.metrics_url)
    assert res.body == PAGE
    assert len(dns.lookups) == 1  # the check's; the fetch asked nobody
    (sent,) = requests_to(servers.allowed)
    assert sent.startswith(b"GET /metrics HTTP/1.1\r\n")
    assert f"\r\nHost: rebind.test:{servers.port}\r\n".encode() in sent
    assert b"Authorization: Bearer tok-SEKRIT" in sent
    assert servers.other.received() == []


def test_without_the_approved_addresses_the_rebinding_would_work(servers: Pair) -> None:
    """The control: a fetcher that resolves for itself follows the second answer."""
    dns = Rebinding(ALLOWED, OTHER)
    approved = allowlist.check(
        allowlist.build([f"{ALLOWED}/32"]), f"rebind.test:{servers.port}", dns
    )
    assert isinstance(approved, Target)
    t = TargetConfig(name="rebind", url=approved.url)  # addresses dropped
    Fetcher(t, resolve=dns).get(t.metrics_url)
    assert len(requests_to(servers.other)) == 1
    assert servers.allowed.received() == []


def test_configured_target_resolves_once_per_fetch(servers: Pair) -> None:
    """Each fetch asks the resolver once and connects to exactly that answer."""
    dns = Rebinding(ALLOWED, OTHER)
    t = TargetConfig(name="named", url=f"http://svc.test:{servers.port}")
    fetcher = Fetcher(t, resolve=dns)
    fetcher.get(t.metrics_url)
    assert (len(requests_to(servers.allowed)), servers.other.received()) == (1, [])
    fetcher.get(t.metrics_url)
    assert len(requests_to(servers.other)) == 1
    assert dns.lookups == [("svc.test", servers.port)] * 2


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def settings() -> tuple[GlobalConfig, Rules]:
    return GlobalConfig(), DEFAULT_RULES


def probe_config(*allow: str) -> ProbeConfig:
    return ProbeConfig(
        allow=allowlist.build(allow),
        allow_entries=allow,
        cache_ttl=1.0,
        timeout=3.0,
        profiles=ProfilesConfig(enabled=False),
    )


def success(body: bytes) -> list[str]:
    return [
        line
        for line in body.decode().splitlines()
        if line.startswith("cardguard_scrape_success{") and 'endpoint="metrics"' in line
    ]


def test_probe_fetches_only_the_address_its_check_approved(servers: Pair) -> None:
    """``localhost`` is approved as ALLOWED by the rebinding DNS; the system would say OTHER.

    If the fetch resolved the name again (with the system resolver, as a
    fetcher on its own does), it would land on OTHER, where ``localhost``
    really is.
    """
    dns = Rebinding(ALLOWED, OTHER)
    clock = Clock()
    p = probe.Prober(probe_config(f"{ALLOWED}/32"), settings, resolve=dns, clock=clock)
    target = f"localhost:{servers.port}"
    r = p.probe(target)
    assert r.status == 200, r.body
    assert success(r.body) and success(r.body)[0].endswith(" 1.0"), success(r.body)
    (sent,) = requests_to(servers.allowed)
    assert f"\r\nHost: localhost:{servers.port}\r\n".encode() in sent
    assert servers.other.received() == []
    # The next lookup answers OTHER, which the allow-list refuses: no fetch at all.
    clock.now += 2
    again = p.probe(target)
    assert (again.status, again.reason) == (403, "address_not_allowed")
    assert servers.other.received() == []


def test_probe_follows_each_new_approval_not_a_stale_one(servers: Pair) -> None:
    """After a reload the old address is no longer allowed: the kept state must not keep it."""
    dns = Rebinding(ALLOWED, OTHER)
    clock = Clock()
    p = probe.Prober(probe_config(f"{ALLOWED}/32"), settings, resolve=dns, clock=clock)
    target = f"localhost:{servers.port}"
    assert p.probe(target).status == 200
    assert len(requests_to(servers.allowed)) == 1
    p.apply(probe_config(f"{OTHER}/32"))
    clock.now += 2
    r = p.probe(target)
    assert r.status == 200 and success(r.body)[0].endswith(" 1.0"), r.body
    assert len(requests_to(servers.other)) == 1
    assert len(requests_to(servers.allowed)) == 1  # the address approved before: not again
    assert p.stats().targets == 1  # same target, state kept
