"""Helpers for tests of the proxy subresource: a gateway serving given cluster Secrets, and URLs into it."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from gateway_apiserver.proxy import TRANSPORT_POOL, ProxySettings, TransportPool
from gateway_apiserver.security.authentication import bearer_token, strip_identity_headers, unauthorized
from gateway_apiserver.security.identity import UserInfo

from .gateway import ManualSecretSource, RunningGateway, running_gateway
from .member_apiserver import FakeMemberAPIServer
from .secrets import cluster_secret

PROXY = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{}/proxy"


def token_secret(name: str, member: FakeMemberAPIServer, rv: int = 1, **kwargs: Any) -> dict[str, Any]:
    """A ServiceAccountToken Secret for `member` (its token and CA unless given)."""
    kwargs.setdefault("token", member.token)
    kwargs.setdefault("ca_pem", member.ca_pem)
    return cluster_secret(name, rv, endpoint=kwargs.pop("endpoint", member.url), **kwargs)


FAST_PATH = True  # --proxy-fast-path of `gateway`: a test module may run its tests on both lanes (see use_both_lanes)


@asynccontextmanager
async def gateway(tmp_path: Path, *secrets: dict[str, Any], **settings: Any) -> AsyncIterator[RunningGateway]:
    """A running gateway serving `secrets`, its proxy tuned with `settings` (ProxySettings fields)."""
    async with running_gateway(tmp_path, ManualSecretSource(list(secrets)), proxy_fast_path=FAST_PATH) as gw:
        pool(gw).settings = ProxySettings(**settings)
        yield gw


class BearerTokens:
    """Authentication by a table of bearer tokens, standing in for the hosting cluster's TokenReview."""

    def __init__(self, users: Mapping[str, UserInfo]) -> None:
        self.users = {token: user.with_authenticated_group() for token, user in users.items()}

    async def authenticate(self, *, headers: Mapping[str, str], peer_certificate: x509.Certificate | None) -> UserInfo:
        """The token's user; 401 for any other token or none."""
        user = self.users.get(bearer_token(headers) or "")
        if user is None:
            raise unauthorized()
        return user

    def strip_identity_headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """`headers` without identity headers, as the product's authenticators do."""
        return strip_identity_headers(headers)


@asynccontextmanager
async def identity_gateway(
    tmp_path: Path, *secrets: dict[str, Any], users: Mapping[str, UserInfo], **config: Any
) -> AsyncIterator[RunningGateway]:
    """A running gateway whose callers are the bearer tokens of `users`, with Config `config` overrides
    (feature gates, the proxy configuration file); authorization allows every caller."""
    async with running_gateway(tmp_path, ManualSecretSource(list(secrets)), authenticator=BearerTokens(users), **config) as gw:
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


def exec_secret(tmp_path: Path, member: FakeMemberAPIServer, name: str, body: str) -> dict[str, Any]:
    """A Dynamic (exec plugin) Secret for `member`: `python3 <script>` running `body`.

    The script has json, sys and time imported, and appends one byte to `<name>.runs` per run.
    """
    script = tmp_path / f"{name}.py"
    script.write_text(f"import json, sys, time\nopen({str(tmp_path / (name + '.runs'))!r}, 'a').write('x')\n{body}\n")
    config = {"apiVersion": "client.authentication.k8s.io/v1", "command": "python3", "args": [str(script)]}
    return token_secret(name, member, credential_type="Dynamic", data={"exec": json.dumps(config)})


def exec_runs(tmp_path: Path, name: str) -> int:
    """How many times the plugin of `exec_secret(..., name, ...)` ran."""
    runs = tmp_path / f"{name}.runs"
    return len(runs.read_text()) if runs.exists() else 0


def status_body(code: int, message: str, reason: str | None = None) -> dict[str, Any]:
    """The Status object a client must get for a failure."""
    reasons = {502: "BadGateway", 503: "ServiceUnavailable", 504: "Timeout"}
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or reasons[code],
        "code": code,
    }


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


@pytest.fixture(params=["fast-lane", "aiohttp"])
def use_both_lanes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with plain proxied requests on the fast lane, then with aiohttp serving them (--proxy-fast-path=false)."""
    monkeypatch.setattr(sys.modules[__name__], "FAST_PATH", request.param == "fast-lane")
    return str(request.param)
