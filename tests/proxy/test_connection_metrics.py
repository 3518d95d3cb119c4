"""`gateway_apiserver_upstream_connections{cluster,state}`: the connections the gateway holds to each member,
read from its pools when /metrics is scraped. Real proxied traffic over TLS to a fake member, scraped over TLS
and read with prometheus-client's parser.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway_apiserver.proxy import connection_metrics
from gateway_apiserver.proxy.connection_metrics import pooled_connections
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.proxying import gateway, pool, proxied, token_secret
from tests.observability.test_metrics import scrape, send, series

pytestmark = pytest.mark.timeout(60)
CM = "/api/v1/namespaces/default/configmaps"
CONNECTIONS = "gateway_apiserver_upstream_connections"


def connections(cluster: str, idle: int, active: int) -> dict[tuple[tuple[str, str], ...], float]:
    """The two samples of one cluster."""
    return {(("cluster", cluster), ("state", "idle")): idle, (("cluster", cluster), ("state", "active")): active}


async def test_sequential_requests_leave_one_idle_connection_and_an_unused_cluster_has_none(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    async with gateway(tmp_path, token_secret("a", member), token_secret("b", member)) as gw:
        _, before = await scrape(gw)
        assert [await send(gw, "GET", "a", CM) for _ in range(5)] == [200] * 5
        _, after = await scrape(gw)
    assert series(before, CONNECTIONS) == {}
    assert series(after, CONNECTIONS) == connections("a", idle=1, active=0)
    assert len(member.connections) == 1  # the member agrees: one handshake, reused by all five


async def test_a_held_watch_is_an_active_connection_and_closing_it_closes_the_member_connection(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    async with gateway(tmp_path, token_secret("a", member)) as gw:
        assert await send(gw, "GET", "a", CM) == 200
        async with gw.session() as s, s.get(proxied("a", CM), params={"watch": "true"}) as resp:
            assert resp.status == 200
            _, during = await scrape(gw)
        for _ in range(100):  # the gateway sees the client leave a moment later
            _, after = await scrape(gw)
            if series(after, CONNECTIONS) != series(during, CONNECTIONS):
                break
            await asyncio.sleep(0.05)
    assert series(during, CONNECTIONS) == connections("a", idle=0, active=1)  # the watch took the idle one
    assert series(after, CONNECTIONS) == connections("a", idle=0, active=0)  # a cut stream is never reused


async def test_the_series_of_a_deleted_cluster_disappear(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    secret_a, secret_b = token_secret("a", member), token_secret("b", member)
    async with gateway(tmp_path, secret_a, secret_b) as gw:
        assert [await send(gw, "GET", name, CM) for name in ("a", "b")] == [200, 200]
        _, before = await scrape(gw)
        gw.registry.apply("DELETED", token_secret("a", member, rv=2))
        for _ in range(100):  # its idle connection is closed by a task the deletion starts
            _, after = await scrape(gw)
            if series(after, CONNECTIONS) != series(before, CONNECTIONS):
                break
            await asyncio.sleep(0.02)
    assert series(before, CONNECTIONS) == {**connections("a", idle=1, active=0), **connections("b", idle=1, active=0)}
    assert series(after, CONNECTIONS) == connections("b", idle=1, active=0)


def test_a_connector_laid_out_otherwise_reads_as_unknown() -> None:
    """What a future aiohttp may look like: no `_conns`, or a `_conns` of another shape."""
    assert pooled_connections(SimpleNamespace(closed=False, _acquired=set())) is None
    assert pooled_connections(SimpleNamespace(closed=False, _conns={"k": [object()]}, _acquired=set())) is None
    assert pooled_connections(None) is None
    assert pooled_connections(SimpleNamespace(closed=True)) == (0, 0)


async def test_an_unreadable_pool_leaves_the_series_out_and_the_scrape_answers(
    member: FakeMemberAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(connection_metrics, "pooled_connections", lambda connector: None)
    async with gateway(tmp_path, token_secret("a", member)) as gw:
        assert await send(gw, "GET", "a", CM) == 200
        with caplog.at_level(logging.WARNING, logger=connection_metrics.__name__):
            _, first = await scrape(gw)  # scrape() asserts the 200
            _, second = await scrape(gw)
    assert series(first, CONNECTIONS) == series(second, CONNECTIONS) == {}
    assert series(first, "ocm_proxy_proxied_requests_by_cluster_total") == {(("cluster", "a"), ("code", "200")): 1}
    assert [r.getMessage() for r in caplog.records] == [
        "this aiohttp's connection pool cannot be read: upstream connections go unreported"
    ]  # once, not at every scrape


async def test_the_fast_paths_connections_are_counted_with_the_sessions(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("a", member)) as gw:
        assert (
            await send(gw, "HEAD", "a", CM) == 200
        )  # one idle connection in the aiohttp session (HEAD is never on the fast lane)
        transport = pool(gw).transports()[0]
        credential, tls = await transport.authenticate()
        fast = transport.http1_pool(tls)
        assert fast is not None
        auth = "".join(f"{name}: {value}\r\n" for name, value in credential.headers().items()).encode()

        def head(path: str) -> bytes:
            return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{member.port}\r\n".encode() + auth + b"\r\n"

        watch = await fast.send(head(f"{CM}?watch=true"), idempotent=True)
        relayed = watch.relay(lambda chunk: None)
        listed = await fast.send(head(CM), idempotent=True)
        await listed.relay(lambda chunk: None)
        _, during = await scrape(gw)
        watch.close()
        with pytest.raises(ConnectionAbortedError):
            await relayed
        _, after = await scrape(gw)
    assert series(during, CONNECTIONS) == connections("a", idle=2, active=1)  # session 1 idle; fast path 1 idle, 1 watch
    assert series(after, CONNECTIONS) == connections("a", idle=2, active=0)
    assert len(member.connections) == 3
