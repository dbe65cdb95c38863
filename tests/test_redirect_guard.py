"""Redirects cannot carry credentials (or /probe) to another origin.

A real hostile target on 127.0.0.1 answers with a crafted ``Location``;
recording servers listen where each trick would lead (another port on
127.0.0.1, the same port on 127.0.0.2 and on ``[::1]``). Every trick must
fail with reason ``redirect`` while every recording server receives nothing
at all: no connection, so certainly no Authorization header or password.
The same holds through a real ``cardguard serve`` (a configured target with
a bearer token, and /probe), and a target that turns to a malformed
Location shows ``cardguard_scrape_success`` 0 there, not an internal error.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import local_http
from cardguard.errors import FetchError
from cardguard.run.fetch import Fetcher
from cardguard.settings.targets import BasicAuth, Secret, TargetConfig
from recorder import PAGE as PRIVATE_PAGE
from recorder import Recorder, ipv6_loopback, recording
from support import Process, cardguard_argv, http_ok, running, wait_for

GOOD_PAGE = b"# TYPE flipper_up gauge\nflipper_up 1\n"
TOKEN = "tok-SEKRIT-1"
PASSWORD = "pw-SEKRIT-2"
API_KEY = "key-SEKRIT-3"
SECRETS = (TOKEN, PASSWORD, API_KEY)


@dataclass
class Stage:
    """The hostile target and the recording servers where its redirects point."""

    target: local_http.Running
    other_port: Recorder  # 127.0.0.1, another port
    other_host: Recorder  # 127.0.0.2, the target's port
    v6: Recorder | None  # [::1], the target's port (None without IPv6 loopback)

    @property
    def port(self) -> int:
        return self.target.port

    def recorders(self) -> list[Recorder]:
        return [r for r in (self.other_port, self.other_host, self.v6) if r is not None]

    def locations(self) -> dict[str, str]:
        """Each trick: name -> the Location the target answers with."""
        p, r = self.port, self.other_port.port
        out = {
            # urlsplit reads host 127.0.0.1 port p (the rest is userinfo); urllib3 reads
            # port r and a path starting at the backslash. This one used to leak.
            "backslash": f"http://127.0.0.1:{r}\\@127.0.0.1:{p}/x",
            "protocol_relative": f"//127.0.0.1:{r}/x",
            "other_port": f"http://127.0.0.1:{r}/x",
            "other_host_address": f"http://127.0.0.2:{p}/x",
            # Same address, another name: still another origin, and not followed.
            "other_host_name": f"http://localhost:{p}/x",
            "userinfo": f"http://u:p@127.0.0.1:{p}/x",
            "malformed_space": f"http://127.0.0.1:{p} /x",
            "malformed_tab": f"http://127.0.0.1:{r}\t/x",
        }
        if self.v6 is not None:
            out["ipv6_loopback"] = f"http://[::1]:{p}/x"
        return out


@contextlib.contextmanager
def staged() -> Iterator[Stage]:
    """Start the target on a free port, then recorders on that same port at other addresses.

    The port comes from the target's own bind; if it happens to be taken on
    127.0.0.2 or ::1, the whole set starts again on another one.
    """
    for _ in range(20):
        with contextlib.ExitStack() as stack:
            target = stack.enter_context(local_http.serve({}))
            try:
                other_host = stack.enter_context(recording("127.0.0.2", target.port))
                v6 = stack.enter_context(recording("::1", target.port)) if ipv6_loopback() else None
            except OSError:
                continue
            other_port = stack.enter_context(recording("127.0.0.1"))
            yield Stage(target, other_port, other_host, v6)
            return
    raise RuntimeError("no port free on 127.0.0.1, 127.0.0.2 and ::1 at once")


@pytest.fixture(scope="module")
def stage() -> Iterator[Stage]:
    with staged() as s:
        yield s


def assert_nothing_reached(stage: Stage) -> None:
    for rec in stage.recorders():
        got = rec.received()
        assert got == [], f"{rec.netloc} was reached: {got!r}"
    followed = [path for path, _ in stage.target.server.requests if path.startswith("/x")]
    assert followed == [], followed


AUTHS: dict[str, dict[str, object]] = {
    "bearer": {"bearer_token": Secret(TOKEN)},
    "basic": {"basic_auth": BasicAuth(username="scraper", password=Secret(PASSWORD))},
}


def test_recorder_would_see_a_leak(stage: Stage) -> None:
    """The control: fetched directly, a recorder gets the request with its Authorization."""
    rec = stage.other_port
    t = TargetConfig(name="control", url=rec.base_url, bearer_token=Secret(TOKEN))
    assert Fetcher(t).get(rec.base_url + "/metrics").body == PRIVATE_PAGE
    sent = rec.received()
    assert len(sent) == 1 and f"Authorization: Bearer {TOKEN}".encode() in sent[0]
    rec.connections.clear()


@pytest.mark.parametrize("auth", sorted(AUTHS))
def test_no_redirect_trick_reaches_another_origin(stage: Stage, auth: str) -> None:
    locations = stage.locations()
    if stage.v6 is None:
        print("IPv6 loopback unavailable: the [::1] case is skipped")
    for case, location in locations.items():
        path = f"/{auth}/{case}"
        stage.target.routes[path] = local_http.redirect(location)
        t = TargetConfig(
            name="t1",
            url=stage.target.base_url,
            timeout=3.0,
            headers=(("X-Api-Key", Secret(API_KEY)),),
            **AUTHS[auth],  # type: ignore[arg-type]
        )
        before = len(stage.target.server.requests)
        with pytest.raises(FetchError) as info:
            Fetcher(t).get(t.url + path)
        err = info.value
        assert err.reason == "redirect", (case, err.reason, str(err))
        assert not any(s in str(err) for s in SECRETS), (case, str(err))
        # The target itself was asked once, with the credentials (they are configured
        # for it), and nothing was re-issued anywhere.
        asked = stage.target.server.requests[before:]
        assert [p for p, _ in asked] == [path], (case, asked)
        assert "Authorization" in asked[0][1] and asked[0][1]["X-Api-Key"] == API_KEY
        assert_nothing_reached(stage)


def test_redirect_messages_say_why(stage: Stage) -> None:
    t = TargetConfig(name="t1", url=stage.target.base_url, timeout=3.0)
    want = {
        "backslash": "contains a backslash",
        "protocol_relative": "redirected to another origin",
        "other_port": "redirected to another origin",
        "other_host_address": "redirected to another host",
        "other_host_name": "redirected to another host",
        "userinfo": "carries userinfo",
        "malformed_space": "contains whitespace or a control character",
        "malformed_tab": "contains whitespace or a control character",
        "ipv6_loopback": "redirected to another host",
    }
    for case, location in stage.locations().items():
        stage.target.routes[f"/why/{case}"] = local_http.redirect(location)
        with pytest.raises(FetchError) as info:
            Fetcher(t).get(f"{t.url}/why/{case}")
        assert want[case] in info.value.message, (case, info.value.message)
    assert_nothing_reached(stage)


def test_same_origin_redirect_still_followed_with_credentials(stage: Stage) -> None:
    p = stage.port
    stage.target.routes["/ok"] = local_http.ok(GOOD_PAGE)
    for i, location in enumerate(("/ok", f"http://127.0.0.1:{p}/ok", f"//127.0.0.1:{p}/ok")):
        stage.target.routes[f"/same/{i}"] = local_http.redirect(location)
        t = TargetConfig(name="t1", url=stage.target.base_url, bearer_token=Secret(TOKEN))
        res = Fetcher(t).get(f"{t.url}/same/{i}")
        assert res.body == GOOD_PAGE
        path, headers = stage.target.server.requests[-1]
        assert path == "/ok" and headers["Authorization"] == f"Bearer {TOKEN}"
    assert_nothing_reached(stage)


# --- through a real cardguard serve --------------------------------------------------


_LISTENING = re.compile(r'msg="cardguard listening" address=127\.0\.0\.1:(\d+)')


@contextlib.contextmanager
def cardguard_serve(work: Path, config: str) -> Iterator[Process]:
    """Run ``cardguard serve`` on 127.0.0.1 port 0; read the bound port from its log."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "cardguard.yml").write_text(config)
    argv = cardguard_argv(
        "serve", f"--config.file={work / 'cardguard.yml'}", "--web.listen-address=127.0.0.1:0"
    )
    with running(argv, work / "cardguard.log") as proc:

        def bound() -> bool:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"cardguard exited early:\n{proc.logs()[-4000:]}")
            m = _LISTENING.search(proc.logs())
            if m:
                proc.port = int(m.group(1))
            return m is not None

        wait_for(bound, 60, "cardguard serve to log its address")
        wait_for(lambda: http_ok(f"{proc.base_url}/-/ready"), 30, "cardguard to be ready")
        yield proc


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line.split("}", 1)[0]))
        if labels.items() <= got.items():
            return float(line.rsplit(" ", 1)[1])
    return None


def metrics(proc: Process) -> str:
    r = requests.get(f"{proc.base_url}/metrics", timeout=10)
    assert r.status_code == 200
    return r.text


def test_serve_target_turning_to_bad_redirects(stage: Stage, tmp_path: Path) -> None:
    """A target flips from a good page to a malformed Location, another to the backslash trick."""
    p = stage.port
    stage.target.routes["/flip/metrics"] = local_http.ok(GOOD_PAGE)
    stage.target.routes["/steal/metrics"] = local_http.ok(GOOD_PAGE)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    config = (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\ntargets:\n"
        f"  - name: flip\n    url: {stage.target.base_url}/flip\n"
        "    profiles: {enabled: false}\n"
        f"  - name: steal\n    url: {stage.target.base_url}/steal\n"
        f"    bearer_token_file: {token}\n    profiles: {{enabled: false}}\n"
    )
    with cardguard_serve(tmp_path / "cg", config) as cg:

        def success(target: str) -> float | None:
            return sample(
                metrics(cg), "cardguard_scrape_success", target=target, endpoint="metrics"
            )

        wait_for(lambda: success("flip") == 1 and success("steal") == 1, 60, "good scrapes")
        before = metrics(cg)
        for t in ("flip", "steal"):
            assert sample(
                before, "cardguard_scrape_failures_total", target=t, reason="redirect"
            ) in (
                None,
                0,
            )
        stage.target.routes["/flip/metrics"] = local_http.redirect(f"http://127.0.0.1:{p} /x")
        stage.target.routes["/steal/metrics"] = local_http.redirect(
            f"http://127.0.0.1:{stage.other_port.port}\\@127.0.0.1:{p}/x"
        )

        def redirect_failures(target: str) -> float:
            text = metrics(cg)
            return (
                sample(text, "cardguard_scrape_failures_total", target=target, reason="redirect")
                or 0
            )

        wait_for(lambda: redirect_failures("flip") >= 1, 60, "the malformed Location to fail")
        wait_for(lambda: redirect_failures("steal") >= 1, 60, "the backslash trick to fail")
        first = redirect_failures("flip")
        # The counter goes on moving with every round, and success stays 0.
        wait_for(lambda: redirect_failures("flip") > first, 30, "a second failed round")
        assert success("flip") == 0 and success("steal") == 0
        logs = cg.logs()
        for t in ("flip", "steal"):
            assert re.search(rf"target={t} endpoint=metrics reason=redirect", logs), logs[-3000:]
        assert "internal error" not in logs and "Traceback" not in logs, logs[-3000:]
        assert not any(s in logs for s in SECRETS)
    assert_nothing_reached(stage)


def test_probe_cannot_be_redirected_to_a_disallowed_service(stage: Stage, tmp_path: Path) -> None:
    p = stage.port
    config = (
        f"probe:\n  allow: ['127.0.0.1:{p}']\n  cache_ttl: 1s\n  timeout: 3s\n"
        "  profiles: {enabled: false}\n"
    )
    with cardguard_serve(tmp_path / "cg", config) as cg:
        # The recorders are services the allow-list refuses when asked for directly.
        for rec in stage.recorders():
            r = requests.get(f"{cg.base_url}/probe", params={"target": rec.netloc}, timeout=10)
            assert r.status_code == 403, (rec.netloc, r.text)
        for case, location in stage.locations().items():
            stage.target.routes[f"/probe-{case}/metrics"] = local_http.redirect(location)
            target = f"http://127.0.0.1:{p}/probe-{case}"
            r = requests.get(f"{cg.base_url}/probe", params={"target": target}, timeout=20)
            assert r.status_code == 200, (case, r.text)
            name = f"127.0.0.1:{p}"
            assert sample(r.text, "cardguard_scrape_success", target=name) == 0, (case, r.text)
            failed = sample(
                r.text, "cardguard_scrape_failures_total", target=name, reason="redirect"
            )
            assert failed == 1, (case, r.text)
            assert "recorder_private_page" not in r.text
            assert_nothing_reached(stage)
        assert "Traceback" not in cg.logs()
