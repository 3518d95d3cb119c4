"""When no connection can be made, `send` raises DialFailed carrying the raw cause, and describe_failure words it
as it does for the aiohttp path: refused, unresolvable, untrusted, not TLS, and a handshake that never ends."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest
from yarl import URL

from gateway_apiserver.proxy.http1 import DialFailed, UpstreamPool
from gateway_apiserver.proxy.upstream_errors import Hop, describe_failure
from tests.fakes.pki import make_ca
from tests.fakes.proxying import closed_port
from tests.fakes.scripted_member import ScriptedConnection, scripted_member
from tests.proxy.http1.helpers import pool_to, request

pytestmark = pytest.mark.timeout(30)


async def dial_failure(pool: UpstreamPool) -> DialFailed:
    with pytest.raises(DialFailed) as raised:
        await pool.send(request("GET", "/version", port=pool.port), idempotent=True)
    assert (pool.idle, pool.active) == (0, 0)
    return raised.value


def described(failure: DialFailed, host: str, port: int, connect_timeout: float = 10.0) -> tuple[int, str]:
    """(code, message) the client would get, through the DialFailed or its cause."""
    hop = Hop("c1", URL(f"https://{host}:{port}"), connect_timeout=connect_timeout)
    status, unwrapped = describe_failure(hop, failure.cause, connecting=True), describe_failure(hop, failure)
    assert (unwrapped.code, unwrapped.message) == (status.code, status.message)
    return status.code, status.message


async def test_a_refused_port() -> None:
    port = closed_port()
    with pool_to(port, make_ca().cert_pem) as pool:
        failure = await dial_failure(pool)
    assert isinstance(failure.cause, ConnectionRefusedError)
    assert described(failure, "127.0.0.1", port) == (
        503,
        f'cluster "c1" unreachable: connecting to 127.0.0.1:{port} failed: connection refused',
    )


async def test_a_host_that_does_not_resolve() -> None:
    with pool_to(6443, make_ca().cert_pem, host="nonexistent.invalid") as pool:
        failure = await dial_failure(pool)
    assert isinstance(failure.cause, socket.gaierror)
    assert described(failure, "nonexistent.invalid", 6443) == (
        503,
        'cannot resolve host "nonexistent.invalid" of cluster "c1": no such host',
    )


async def answer_each(conn: ScriptedConnection) -> None:
    while await conn.read_request():
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


async def test_a_member_certificate_from_another_ca() -> None:
    async with scripted_member(answer_each) as member:
        with pool_to(member.port, make_ca("not-the-members-ca").cert_pem) as pool:
            failure = await dial_failure(pool)
    assert isinstance(failure.cause, ssl.SSLCertVerificationError)
    assert described(failure, "127.0.0.1", member.port) == (
        502,
        f'TLS verification of cluster "c1" at 127.0.0.1:{member.port} failed: '
        "the member's certificate is not trusted by the cluster's CA bundle (ca.crt in its Secret)",
    )


async def test_a_plain_http_port() -> None:
    async def plain_http(conn: ScriptedConnection) -> None:
        await conn.reader.read(1)  # the ClientHello
        await conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        conn.close()

    async with scripted_member(plain_http, tls=False) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            failure = await dial_failure(pool)
    assert isinstance(failure.cause, ssl.SSLError)
    assert described(failure, "127.0.0.1", member.port) == (
        502,
        f'TLS handshake with cluster "c1" at 127.0.0.1:{member.port} failed: '
        "the member did not answer with TLS (is the endpoint an http:// address?)",
    )


async def test_a_member_that_never_answers_the_handshake_times_out_after_the_connect_timeout() -> None:
    async def silent(conn: ScriptedConnection) -> None:
        await conn.wait_closed_by_peer()

    async with scripted_member(silent, tls=False) as member:
        with pool_to(member.port, member.ca.cert_pem, connect_timeout=0.3) as pool:
            started = asyncio.get_running_loop().time()
            failure = await dial_failure(pool)
            took = asyncio.get_running_loop().time() - started
    assert isinstance(failure.cause, TimeoutError)
    assert 0.25 < took < 2
    assert described(failure, "127.0.0.1", member.port, connect_timeout=0.3) == (
        503,
        f'cluster "c1" unreachable: connecting to 127.0.0.1:{member.port} timed out after 0.3s',
    )


async def test_plain_http_members_are_reached_without_tls() -> None:
    async with scripted_member(answer_each, tls=False) as member:
        with pool_to(member.port, None) as pool:
            exchange = await pool.send(request("GET", "/version", port=member.port), idempotent=True)
            await exchange.relay(lambda chunk: None)
            assert (exchange.status, pool.idle) == (200, 1)
