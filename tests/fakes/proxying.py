"""Helpers for tests of the proxy subresource: a gateway serving given cluster Secrets, and URLs into it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gateway_apiserver.proxy import TRANSPORT_POOL, ProxySettings, TransportPool

from .gateway import ManualSecretSource, RunningGateway, running_gateway
from .member_apiserver import FakeMemberAPIServer
from .secrets import cluster_secret

PROXY = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{}/proxy"


def token_secret(name: str, member: FakeMemberAPIServer, rv: int = 1, **kwargs: Any) -> dict[str, Any]:
    """A ServiceAccountToken Secret for `member` (its token and CA unless given)."""
    kwargs.setdefault("token", member.token)
    kwargs.setdefault("ca_pem", member.ca_pem)
    return cluster_secret(name, rv, endpoint=kwargs.pop("endpoint", member.url), **kwargs)


@asynccontextmanager
async def gateway(tmp_path: Path, *secrets: dict[str, Any], **settings: Any) -> AsyncIterator[RunningGateway]:
    """A running gateway serving `secrets`, its proxy tuned with `settings` (ProxySettings fields)."""
    async with running_gateway(tmp_path, ManualSecretSource(list(secrets))) as gw:
        pool(gw).settings = ProxySettings(**settings)
        yield gw


def pool(gw: RunningGateway) -> TransportPool:
    """The gateway's transport pool."""
    assert gw.server.app is not None
    return gw.server.app[TRANSPORT_POOL]


def proxied(name: str, path: str) -> str:
    """The gateway path that proxies `path` to cluster `name`."""
    return PROXY.format(name) + path


async def status_of(gw: RunningGateway, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """GET `path` on the gateway: (HTTP status, JSON body)."""
    async with gw.session() as client, client.get(path, **kwargs) as resp:
        return resp.status, await resp.json()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `check()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
