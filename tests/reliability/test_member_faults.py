"""Threat model: a member cluster misbehaves. Its callers get a clear, bounded answer; nobody else notices.

Every test runs a faulty member next to a healthy one and asserts both: the exact Status (or the
exact kind of broken stream) the faulty member's callers see, and that the healthy member is
served correctly, and promptly, at the same time.

| Fault                                   | What the caller sees                                   |
|-----------------------------------------|--------------------------------------------------------|
| member down (port closed)               | 503 ServiceUnavailable naming the address and cause   |
| member dies in the middle of a body     | the stream breaks (no clean end), at once, no hang     |
| member slower than the request timeout  | 504 Timeout for short requests; watches are not cut    |
| member token rotated in its Secret      | in-flight requests finish; new ones use it within 1 s  |
| member certificate expired, then renewed| 502 naming the expiry, then served, with no restart    |
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from gateway_apiserver.config import Config
from gateway_apiserver.registry.informer import SecretInformer, load_hosting_config
from gateway_apiserver.server import GatewayServer
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import issue_server_cert
from tests.fakes.proxying import closed_port, eventually, gateway, pool, proxied, status_body, token_secret

pytestmark = pytest.mark.timeout(60)
NS = "/api/v1/namespaces/default"
T = TypeVar("T")


@pytest.fixture
async def healthy() -> AsyncIterator[FakeMemberAPIServer]:
    """The member that stays well throughout."""
    async with FakeMemberAPIServer() as server:
        yield server


@pytest.fixture
async def faulty() -> AsyncIterator[FakeMemberAPIServer]:
    """The member the test breaks."""
    async with FakeMemberAPIServer() as server:
        yield server


async def timed(awaitable: Awaitable[T]) -> tuple[T, float]:
    """The result of `awaitable` and how long it took."""
    started = time.monotonic()
    result = await awaitable
    return result, time.monotonic() - started


async def served(client: aiohttp.ClientSession, name: str = "healthy") -> float:
    """GET /version on cluster `name` (the healthy one by default): 200 with the member's body. Returns the latency."""
    started = time.monotonic()
    async with client.get(proxied(name, "/version")) as resp:
        assert resp.status == 200
        assert (await resp.json())["gitVersion"] == "v1.32.0-fake-member"
    return time.monotonic() - started


async def get_status(client: aiohttp.ClientSession, path: str) -> tuple[int, dict[str, Any]]:
    """GET `path`: (status, JSON body)."""
    async with client.get(path) as resp:
        return resp.status, await resp.json()


async def test_an_unreachable_member_fails_alone(healthy: FakeMemberAPIServer, tmp_path: Path) -> None:
    port = closed_port()
    secrets = [token_secret("healthy", healthy), token_secret("down", healthy, endpoint=f"https://127.0.0.1:{port}")]
    async with gateway(tmp_path, *secrets) as gw, gw.session() as client:
        results = await asyncio.gather(
            *(get_status(client, proxied("down", "/version")) for _ in range(10)),
            *(served(client) for _ in range(10)),
        )
    expected = status_body(503, f'cluster "down" unreachable: connecting to 127.0.0.1:{port} failed: connection refused')
    assert results[:10] == [(503, expected)] * 10
    assert all(latency < 2.0 for latency in results[10:])
    assert len(healthy.requests) == 10


async def test_a_member_dying_mid_body_breaks_the_stream_at_once(
    healthy: FakeMemberAPIServer, faulty: FakeMemberAPIServer, tmp_path: Path
) -> None:
    secrets = [token_secret("healthy", healthy), token_secret("faulty", faulty)]
    async with gateway(tmp_path, *secrets) as gw, gw.session() as client:
        # A large chunked list: the first bytes arrive, then the member's connection is cut.
        async with client.get(proxied("faulty", "/apis/bulk.test/v1/items?mb=50")) as resp:
            assert resp.status == 200 and resp.headers.get("Transfer-Encoding") == "chunked"
            assert (await resp.content.readany()).startswith(b'{"kind":"List"')
            started = time.monotonic()
            assert faulty.abort_streams() == 1
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(resp.content.read(), 5)
            assert time.monotonic() - started < 2.0  # noticed at once, not after a timeout
            await served(client)

        # A watch: one event arrives, then the member's connection is cut: the client sees a break, not an end.
        async with client.get(proxied("faulty", f"{NS}/configmaps?watch=true")) as resp:
            faulty.store.create("configmaps", "default", {"metadata": {"name": "before-the-cut"}})
            event = json.loads(await asyncio.wait_for(resp.content.readline(), 2))
            assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "before-the-cut")
            started = time.monotonic()
            assert faulty.abort_streams() == 1
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(resp.content.read(), 5)
            assert time.monotonic() - started < 2.0  # noticed at once, not after a timeout
            await served(client)

        # Nothing is left in flight, and the member, whose connections were cut, is served again.
        await eventually(lambda: all(t.active == 0 for t in pool(gw)._transports.values()))
        await served(client, "faulty")


async def test_a_slow_member_gets_504_for_short_requests_but_its_watches_live_on(
    healthy: FakeMemberAPIServer, faulty: FakeMemberAPIServer, tmp_path: Path
) -> None:
    secrets = [token_secret("healthy", healthy), token_secret("faulty", faulty)]
    # Wide margins on a shared 2-core machine: a 2 s timeout against a member that would take 10 s.
    async with gateway(tmp_path, *secrets, request_timeout=2.0) as gw, gw.session() as client:
        rv = faulty.store.rv
        async with client.get(proxied("faulty", f"{NS}/configmaps?watch=true&resourceVersion={rv}")) as watch:
            assert watch.status == 200
            (slow, took), *latencies = await asyncio.gather(
                timed(get_status(client, proxied("faulty", "/slow?seconds=10"))),
                *(served(client) for _ in range(5)),
            )
            assert slow == (504, status_body(504, 'cluster "faulty" did not answer within 2s'))
            assert 2.0 <= took < 6.0
            assert all(latency < 2.0 for latency in latencies)  # none waited for the slow member
            await asyncio.sleep(0.5)  # the watch has now been idle well past the request timeout
            faulty.store.create("configmaps", "default", {"metadata": {"name": "late"}})
            event = json.loads(await asyncio.wait_for(watch.content.readline(), 2))
            assert event["object"]["metadata"]["name"] == "late"
        await eventually(lambda: faulty.cancelled == ["slow", "watch"])  # both upstream requests were closed


async def test_an_expired_member_certificate_then_a_renewed_one(
    healthy: FakeMemberAPIServer, faulty: FakeMemberAPIServer, tmp_path: Path
) -> None:
    faulty.serve_certificate(issue_server_cert(faulty.ca, ip_addresses=("127.0.0.1",), expired=True))
    secrets = [token_secret("healthy", healthy), token_secret("faulty", faulty)]
    async with gateway(tmp_path, *secrets) as gw, gw.session() as client:
        expired, latency = await asyncio.gather(get_status(client, proxied("faulty", "/version")), served(client))
        where = f'cluster "faulty" at 127.0.0.1:{faulty.port}'
        message = f"TLS verification of {where} failed: the member's certificate (or one in its chain) has expired"
        assert expired == (502, status_body(502, message))
        assert latency < 1.0 and faulty.requests == []

        # The member's certificate is renewed: the next request succeeds, on the same gateway and transport.
        faulty.serve_certificate(issue_server_cert(faulty.ca, ip_addresses=("127.0.0.1",)))
        await served(client, "faulty")
        assert pool(gw).built == 2  # one transport per cluster, never rebuilt
        await served(client)


# --- a Secret changes under load: hosting mode, through the real informer ---------------------------


async def hosted_gateway(tmp_path: Path, hosting: FakeKubeAPIServer) -> GatewayServer:
    """A gateway reading its cluster Secrets from `hosting` (the fake kube-apiserver) through its informer."""
    hosting.policy = [PolicyRule(groups=("system:masters",))]
    kubeconfig = hosting.write_kubeconfig(tmp_path / "hosting.kubeconfig")
    source = SecretInformer(await load_hosting_config(str(kubeconfig)), "vela-system", watch_timeout=30)
    config = Config(
        secure_port=0,
        bind_address="127.0.0.1",
        cert_dir=tmp_path / "certs",
        secret_namespace="vela-system",
        kubeconfig=kubeconfig,
        health_probe_interval=0,  # these tests count the members' requests
    )
    gw = GatewayServer(config, source=source)
    await gw.start()
    await asyncio.wait_for(gw.registry.synced.wait(), 10)
    return gw


def _client(gw: GatewayServer, hosting: FakeKubeAPIServer) -> aiohttp.ClientSession:
    """A client of `gw` authenticated as the hosting cluster's admin."""
    assert gw.cert is not None
    ctx = ssl.create_default_context(cafile=str(gw.cert.cert_file))
    return aiohttp.ClientSession(
        base_url=f"https://127.0.0.1:{gw.port}",
        connector=aiohttp.TCPConnector(ssl=ctx),
        headers={"Authorization": f"Bearer {hosting.token}"},
    )


async def test_a_rotated_token_applies_to_new_requests_within_a_second_and_spares_those_in_flight(
    healthy: FakeMemberAPIServer, faulty: FakeMemberAPIServer, tmp_path: Path, kube_apiserver: FakeKubeAPIServer
) -> None:
    label = {"cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken"}
    for name, member in (("healthy", healthy), ("rotating", faulty)):
        data: dict[str, str | bytes] = {"endpoint": member.url, "ca.crt": member.ca_pem, "token": member.token}
        kube_apiserver.create_secret("vela-system", name, labels=label, data=data)
    old, new = faulty.token, "rotated-token-0123456789"
    faulty.tokens[new] = "member-admin"  # the member accepts both during the rotation, as a kube-apiserver does
    gw = await hosted_gateway(tmp_path, kube_apiserver)
    try:
        async with _client(gw, kube_apiserver) as client:
            in_flight = [asyncio.create_task(get_status(client, proxied("rotating", "/slow?seconds=2"))) for _ in range(5)]
            await eventually(lambda: faulty.open_streams == 5)
            rotated: dict[str, str | bytes] = {"endpoint": faulty.url, "ca.crt": faulty.ca_pem, "token": new}
            kube_apiserver.update_secret("vela-system", "rotating", data=rotated)
            rotated_at = time.monotonic()

            seen: list[str] = []
            while not seen or seen[-1] != new:
                async with client.get(proxied("rotating", "/echo/who")) as resp:
                    assert resp.status == 200
                    headers = dict((k.lower(), v) for k, v in (await resp.json())["headers"])
                    seen.append(headers["authorization"].removeprefix("Bearer "))
                assert time.monotonic() - rotated_at < 1.0, f"still {len(seen)} requests with the old token after 1 s"
            assert faulty.open_streams == 5  # the old requests are still in flight on the retired connections
            await served(client)
            for _ in range(5):  # and from now on, only the new one
                await served(client, "rotating")

            results = await asyncio.gather(*in_flight)
            assert results == [(200, {"slept": True})] * 5
    finally:
        await gw.stop()
    slow = faulty.requests_to("/slow")
    assert [r.headers["Authorization"] for r in slow] == [f"Bearer {old}"] * 5
    assert set(seen[:-1]) <= {old}
    assert [r.headers["Authorization"] for r in faulty.requests_to("/version")] == [f"Bearer {new}"] * 5
