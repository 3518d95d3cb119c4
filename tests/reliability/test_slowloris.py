"""Slow clients cannot hold connections: the TLS handshake and each request's headers have a deadline,
idle keep-alive connections are closed, and none of it cuts a long-running request.

Threat: 300 TLS connections each sending one header byte every 10 s held 300 sockets for as long
as they liked. Here the deadlines are shrunk (0.5 s for headers, 2.5 s idle) so the tests run in
seconds; the defaults are the kube-apiserver's 32 s and 90 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.secrets import cluster_secret

pytestmark = pytest.mark.timeout(60)

HEADER_TIMEOUT = 0.5
IDLE_TIMEOUT = 2.5  # longer than HEADER_TIMEOUT + SLACK: each test tells the two deadlines apart
SLACK = 1.0  # scheduling on a shared 2-core machine
ONE = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    source = ManualSecretSource([cluster_secret("c1")])
    async with running_gateway(tmp_path, source, read_header_timeout=HEADER_TIMEOUT, idle_timeout=IDLE_TIMEOUT) as gateway:
        yield gateway


async def tls_connect(gw: RunningGateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gw.server.port, ssl=gw.ssl_context())


async def seconds_until_closed(reader: asyncio.StreamReader, since: float | None = None) -> tuple[float, bytes]:
    """Read until the server closes; how long after `since` (default: now) it did, and what was read."""
    started, data = time.monotonic() if since is None else since, b""
    async with asyncio.timeout(10):
        while chunk := await reader.read(65536):
            data += chunk
    return time.monotonic() - started, data


async def trickle(writer: asyncio.StreamWriter, data: bytes, interval: float) -> None:
    """Send `data` one byte at a time, as a slowloris client does, until the server hangs up."""
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(interval)
    except (ConnectionError, ssl.SSLError):
        pass


async def get_one(gw: RunningGateway) -> tuple[int, dict[str, object]]:
    async with gw.session() as s, s.get(ONE) as r:
        return r.status, json.loads(await r.read())


async def test_slow_headers_are_cut_at_the_deadline_while_others_are_served(gw: RunningGateway) -> None:
    baseline = open_fds()
    connections = []
    for _ in range(30):
        connections.append((*await tls_connect(gw), time.monotonic()))
    request = f"GET {ONE} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {'a' * 200}\r\n\r\n".encode()
    pumps = [asyncio.create_task(trickle(w, request, 0.05)) for _, w, _ in connections]
    status, body = await get_one(gw)  # meanwhile, a well-behaved client on its own connection
    assert status == 200 and body["metadata"] == {**body["metadata"], "name": "c1"}  # type: ignore[dict-item]
    results = await asyncio.gather(*(seconds_until_closed(r, since=connected) for r, _, connected in connections))
    for elapsed, data in results:
        assert data == b""  # closed without an answer: nothing was asked yet
        assert HEADER_TIMEOUT - 0.1 <= elapsed <= HEADER_TIMEOUT + SLACK
    await asyncio.gather(*pumps)
    for _, w, _ in connections:
        w.close()
    for _ in range(100):
        if open_fds() <= baseline:
            break
        await asyncio.sleep(0.05)
    assert open_fds() <= baseline


async def test_a_connection_that_completes_the_handshake_but_sends_nothing_is_closed(gw: RunningGateway) -> None:
    reader, writer = await tls_connect(gw)
    elapsed, data = await seconds_until_closed(reader)
    writer.close()
    assert data == b""
    assert HEADER_TIMEOUT - 0.1 <= elapsed <= HEADER_TIMEOUT + SLACK


async def test_a_stalled_tls_handshake_is_closed(gw: RunningGateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)  # TCP only, no ClientHello
    writer.write(b"\x16\x03\x01")  # the first bytes of a handshake record, then nothing
    try:
        elapsed, data = await seconds_until_closed(reader)
    except ConnectionResetError:
        elapsed, data = 0.0, b"reset"
    writer.close()
    assert data == b""
    assert HEADER_TIMEOUT - 0.05 <= elapsed <= HEADER_TIMEOUT + SLACK


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(gw: RunningGateway) -> None:
    reader, writer = await tls_connect(gw)
    writer.write(f"GET {ONE} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    assert json.loads(await reader.readexactly(length))["metadata"]["name"] == "c1"
    elapsed, data = await seconds_until_closed(reader)
    writer.close()
    assert data == b""
    assert IDLE_TIMEOUT - 0.05 <= elapsed <= IDLE_TIMEOUT + SLACK


async def test_a_watch_outlives_both_deadlines(gw: RunningGateway) -> None:
    async with gw.session() as s, s.get("/apis/cluster.core.oam.dev/v1alpha1/clustergateways?watch=true") as r:
        assert r.status == 200
        first = json.loads(await r.content.readline())
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "c1")
        await asyncio.sleep(HEADER_TIMEOUT + IDLE_TIMEOUT + 0.5)
        gw.registry.apply("ADDED", cluster_secret("c2", 2))
        second = json.loads(await r.content.readline())
        assert (second["type"], second["object"]["metadata"]["name"]) == ("ADDED", "c2")


async def test_a_proxied_stream_outlives_both_deadlines(tmp_path: Path) -> None:
    async with FakeMemberAPIServer(log_interval=0.35, log_lines=10) as member:
        secret = cluster_secret("m", endpoint=member.url, token=member.token, ca_pem=member.ca_pem)
        source = ManualSecretSource([secret])
        async with (
            running_gateway(tmp_path, source, read_header_timeout=HEADER_TIMEOUT, idle_timeout=IDLE_TIMEOUT) as gw,
            gw.session() as s,
        ):
            path = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/m/proxy/api/v1/namespaces/default/pods/p/log"
            started = time.monotonic()
            async with s.get(path, params={"follow": "true"}) as r:
                assert r.status == 200
                lines = (await r.read()).decode().splitlines()
            assert time.monotonic() - started >= HEADER_TIMEOUT + IDLE_TIMEOUT
            assert [line.split(" at ")[0] for line in lines] == [f"line {i}" for i in range(10)]
