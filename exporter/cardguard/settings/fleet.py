"""The ``fleet:`` section: central Prometheus servers whose TSDB status cardguard reads.

The ``fleet:`` section of the config::

    fleet:
      - name: central
        url: http://prometheus.monitoring.svc:9090
        interval: 2m          # Prometheus caches these lists for 30s anyway
        timeout: 10s
        limit: 50             # ?limit=N
        cap: 50               # at most this many names per list in cardguard's output
        basic_auth: {username: cardguard, password_file: /etc/cardguard/prom-pass}
        tls: {ca_file: /etc/cardguard/ca.crt}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from yaml.nodes import Node

from cardguard.settings.checker import Ctx, join
from cardguard.settings.targets import (
    NAME_RE,
    BasicAuth,
    TargetConfig,
    TLSConfig,
    check_url,
    load_basic_auth,
    load_tls,
)

_KEYS = (
    "name",
    "url",
    "interval",
    "timeout",
    "limit",
    "cap",
    "body_size_limit",
    "basic_auth",
    "bearer_token_file",
    "tls",
    "containers",
)
_CONTAINER_KEYS = ("name", "cadvisor", "process")


@dataclass(frozen=True)
class FleetContainer:
    """A container whose memory the server's cAdvisor series show (``containers:``).

    ``cadvisor`` selects its cAdvisor series (``{namespace="shop",container="api"}``),
    ``process`` the process' own client_golang series (``{job="api"}``); each must pick
    one series per metric (the largest is taken otherwise).
    """

    name: str
    cadvisor: str
    process: str = ""


@dataclass(frozen=True)
class FleetServer:
    """One central Prometheus server to read TSDB status from."""

    name: str
    url: str
    interval: float = 120.0
    timeout: float = 10.0
    limit: int = 50
    cap: int = 50
    body_size_limit: int = 16 * 1024 * 1024
    basic_auth: BasicAuth | None = None
    bearer_token_file: Path | None = None
    tls: TLSConfig = field(default_factory=TLSConfig)
    containers: tuple[FleetContainer, ...] = ()

    @property
    def status_url(self) -> str:
        return f"{self.url.rstrip('/')}/api/v1/status/tsdb?limit={self.limit}"

    def target_config(self) -> TargetConfig:
        """The fetch settings for this server, in the shape the fetcher takes."""
        return TargetConfig(
            name=self.name,
            url=self.url,
            interval=self.interval,
            timeout=self.timeout,
            body_size_limit=self.body_size_limit,
            basic_auth=self.basic_auth,
            bearer_token_file=self.bearer_token_file,
            tls=self.tls,
        )


def load_fleet_config(node: Node | None, ctx: Ctx) -> tuple[FleetServer, ...]:
    """Build the ``fleet:`` list, reporting every problem on ``ctx``."""
    out: list[FleetServer] = []
    seen: set[str] = set()
    for i, item in enumerate(ctx.sequence(node, "fleet")):
        path = join("fleet", i)
        sec = ctx.section(item, path, _KEYS)
        if sec is None:
            continue
        d = FleetServer(name="", url="")
        name = sec.required("name", ctx.string)
        if name is not None and not NAME_RE.match(name):
            ctx.error(sec.value_node("name"), join(path, "name"), f"invalid name {name!r}")
            name = None
        if name is not None and name in seen:
            ctx.error(sec.value_node("name"), join(path, "name"), f"duplicate name {name!r}")
        url = sec.required("url", ctx.string)
        if url is not None and not check_url(ctx, sec.value_node("url"), join(path, "url"), url):
            url = None
        interval = sec.get("interval", ctx.duration, d.interval)
        timeout = sec.get("timeout", ctx.duration, min(d.timeout, interval))
        if timeout > interval:
            ctx.error(sec.value_node("timeout"), join(path, "timeout"), "must not exceed interval")
        ba_node = sec.value_node("basic_auth")
        server = FleetServer(
            name=name or "",
            url=(url or "").rstrip("/"),
            interval=interval,
            timeout=timeout,
            limit=sec.get("limit", ctx.positive, d.limit),
            cap=sec.get("cap", ctx.positive, d.cap),
            body_size_limit=sec.get("body_size_limit", ctx.size, d.body_size_limit),
            basic_auth=load_basic_auth(ctx, ba_node, join(path, "basic_auth"))
            if ba_node is not None
            else None,
            bearer_token_file=sec.optional("bearer_token_file", ctx.file),
            tls=load_tls(ctx, sec.value_node("tls"), join(path, "tls")),
            containers=_load_containers(
                ctx, sec.value_node("containers"), join(path, "containers")
            ),
        )
        if name is None or url is None:
            continue
        seen.add(name)
        out.append(server)
    return tuple(out)


def _selector(ctx: Ctx, node: Node, path: str) -> str | None:
    import promql_parser

    text = ctx.string(node, path)
    if text is None:
        return None
    try:
        promql_parser.parse("x" + text)
    except ValueError:
        ctx.error(node, path, f'expected a label selector like {{job="api"}}, got {text!r}')
        return None
    if not text.strip().startswith("{"):
        ctx.error(node, path, f'expected a label selector like {{job="api"}}, got {text!r}')
        return None
    return text.strip()


def _load_containers(ctx: Ctx, node: Node | None, path: str) -> tuple[FleetContainer, ...]:
    out = []
    for i, item in enumerate(ctx.sequence(node, path)):
        p = join(path, i)
        sec = ctx.section(item, p, _CONTAINER_KEYS)
        if sec is None:
            continue
        name = sec.required("name", ctx.string)
        cadvisor = sec.required("cadvisor", lambda n, q: _selector(ctx, n, q))
        process = sec.get("process", lambda n, q: _selector(ctx, n, q), "")
        if name is not None and cadvisor is not None:
            out.append(FleetContainer(name, cadvisor, process or ""))
    return tuple(out)
