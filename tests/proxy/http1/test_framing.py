"""How the client reads what a member writes, byte for byte (a scripted member over TLS on loopback):
keep-alive or not, 1xx answers, bodies delimited every way, failures before and during the body, retries
of a reused connection, flow control, idle expiry and closing."""

from __future__ import annotations

import asyncio

import pytest
from yarl import URL

from gateway_apiserver.proxy.http1 import InvalidAnswer
from gateway_apiserver.proxy.upstream_errors import Hop, describe_failure
from tests.fakes.proxying import eventually
from tests.fakes.scripted_member import ScriptedConnection, scripted_member
from tests.proxy.http1.helpers import body_of, fetch, pool_to, request

pytestmark = pytest.mark.timeout(30)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def hop(port: int) -> Hop:
    return Hop("c1", URL(f"https://127.0.0.1:{port}"))


def get(port: int, path: str = "/x") -> bytes:
    return request("GET", path, port=port)


async def answer_each(conn: ScriptedConnection, answer: bytes) -> None:
    """Answer every request on the connection with `answer`."""
    while await conn.read_request():
        await conn.send(answer)


# --- keep-alive -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", id="connection-close"),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", id="http-1.0"),
    ],
)
async def test_an_answer_that_ends_the_connection_is_never_reused(answer: bytes) -> None:
    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        await conn.send(answer)
        await conn.wait_closed_by_peer()  # the member keeps it open: the client must not reuse it anyway

    async with scripted_member(script) as member, asyncio.timeout(5):
        with pool_to(member.port, member.ca.cert_pem) as pool:
            results = [await fetch(pool, get(member.port)) for _ in range(2)]
            assert (pool.idle, pool.active) == (0, 0)
    assert results == [(200, b"ok"), (200, b"ok")]
    assert len(member.connections) == 2


async def test_informational_answers_are_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK.replace(
        b"Content-Length", b"X-A: 1\r\nContent-Length"
    )
    async with scripted_member(lambda conn: answer_each(conn, answer)) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            exchange = await pool.send(get(member.port), idempotent=True)
            body = await body_of(exchange)
            assert pool.idle == 1
    assert (exchange.status, exchange.reason, body) == (200, "OK", b"ok")
    assert exchange.headers == [(b"X-A", b"1"), (b"Content-Length", b"2")]
    assert exchange.content_length == 2


# --- bodies -----------------------------------------------------------------------------------


async def test_chunked_framing_is_decoded_and_chunks_that_came_with_the_head_come_first() -> None:
    go_on = asyncio.Event()

    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
        await go_on.wait()
        await conn.send(b"3\r\ntwo\r\n0\r\n\r\n")
        await conn.wait_closed_by_peer()

    received: list[bytes] = []
    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            exchange = await pool.send(get(member.port), idempotent=True)
            await asyncio.sleep(0.05)  # nothing reads the body yet
            done = exchange.relay(received.append)
            early = list(received)  # handed over within relay() itself
            go_on.set()
            await done
            assert (pool.idle, pool.active) == (1, 0)
    assert (exchange.content_length, early, received) == (None, [b"one"], [b"one", b"two"])


async def test_a_body_delimited_by_the_close_ends_with_it_and_the_connection_is_not_reused() -> None:
    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        await conn.send(b"the end")
        conn.close()

    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            exchange = await pool.send(get(member.port), idempotent=True)
            body = await body_of(exchange)
            assert (pool.idle, pool.active) == (0, 0)
    assert (exchange.content_length, body) == (None, b"until the end")


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", id="content-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n", id="chunked"),
    ],
)
async def test_an_eof_before_the_body_ends_fails_the_relay(head: bytes) -> None:
    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        await conn.send(head)
        await asyncio.sleep(0.05)
        await conn.send(b"part")
        await asyncio.sleep(0.05)
        conn.close()

    received: list[bytes] = []
    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            exchange = await pool.send(get(member.port), idempotent=True)
            with pytest.raises(asyncio.IncompleteReadError):
                await exchange.relay(received.append)
            assert (pool.idle, pool.active) == (0, 0)
    assert received == [b"part"]


async def test_a_reset_midway_fails_the_relay_with_connection_reset() -> None:
    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
        await asyncio.sleep(0.05)
        conn.reset()

    received: list[bytes] = []
    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            exchange = await pool.send(get(member.port), idempotent=True)
            with pytest.raises(ConnectionResetError):
                await exchange.relay(received.append)
            assert (pool.idle, pool.active) == (0, 0)
    assert received == [b"part"]


# --- failures before the answer ---------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 2OO OK\r\n\r\n", id="bad-status"),
        pytest.param(b"<html>not http</html>\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", id="two-lengths"),
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", id="101"),
    ],
)
async def test_an_answer_that_is_not_http_is_an_invalid_answer_and_a_502(answer: bytes) -> None:
    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        await conn.send(answer)
        await conn.wait_closed_by_peer()

    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            with pytest.raises(InvalidAnswer) as raised:
                await pool.send(get(member.port), idempotent=True)
            assert (pool.idle, pool.active) == (0, 0)
        await eventually(member.connections[0].reader.at_eof)  # the client dropped the connection
    status = describe_failure(hop(member.port), raised.value)
    assert (status.code, status.reason) == (502, "BadGateway")
    assert status.message == f'cluster "c1" at 127.0.0.1:{member.port} sent an answer that is not valid HTTP/1.1'


async def test_an_eof_before_any_answer_on_a_new_connection_is_not_retried() -> None:
    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        conn.close()

    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool, pytest.raises(asyncio.IncompleteReadError) as raised:
            await pool.send(get(member.port), idempotent=True)
    assert len(member.connections) == 1
    status = describe_failure(hop(member.port), raised.value)
    assert (status.code, status.message) == (
        502,
        f'cluster "c1" at 127.0.0.1:{member.port} closed the connection without answering',
    )


async def closes_the_second_request(conn: ScriptedConnection) -> None:
    """The first connection answers once, then closes when the next request arrives: the race of a member
    closing an idle connection just as the client reuses it. Later connections answer everything."""
    if conn.index == 0:
        await conn.read_request()
        await conn.send(OK)
        await conn.read_request()
        conn.close()
    else:
        await answer_each(conn, OK)


async def test_a_reused_connection_closed_by_the_member_is_retried_once_for_an_idempotent_request() -> None:
    async with scripted_member(closes_the_second_request) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            first = await fetch(pool, get(member.port, "/first"))
            second = await fetch(pool, request("DELETE", "/second", port=member.port))
            assert (pool.idle, pool.active) == (1, 0)
    assert (first, second) == ((200, b"ok"), (200, b"ok"))
    assert [len(conn.requests) for conn in member.connections] == [2, 1]  # sent twice: once lost, once answered
    assert [r.split(b" ")[1] for r in member.requests] == [b"/first", b"/second", b"/second"]


async def test_a_reused_connection_closed_by_the_member_fails_a_post() -> None:
    async with scripted_member(closes_the_second_request) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            await fetch(pool, get(member.port))
            body = b'{"kind":"ConfigMap"}'
            with pytest.raises(asyncio.IncompleteReadError) as raised:
                await pool.send(request("POST", "/x", port=member.port, body=body), body, idempotent=False)
            assert (pool.idle, pool.active) == (0, 0)
    assert len(member.connections) == 1  # never sent twice: the member may have acted on it
    status = describe_failure(hop(member.port), raised.value)
    assert (status.code, status.message) == (
        502,
        f'cluster "c1" at 127.0.0.1:{member.port} closed the connection without answering',
    )


async def test_an_idle_connection_the_member_closes_leaves_the_pool_at_once() -> None:
    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        await conn.send(OK)
        await asyncio.sleep(0.05)
        conn.close()

    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            assert await fetch(pool, get(member.port)) == (200, b"ok")
            idle_after_answer = pool.idle
            await eventually(lambda: pool.idle == 0, timeout=2)
            assert await fetch(pool, get(member.port)) == (200, b"ok")
    assert idle_after_answer == 1
    assert [len(conn.requests) for conn in member.connections] == [1, 1]  # the second went to a new connection


# --- flow control, expiry, closing ------------------------------------------------------------


async def test_pause_reading_stops_delivery_and_resume_reading_continues() -> None:
    written = asyncio.Event()

    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for event in (b"event-1\n", b"event-2\n", b"event-3\n"):
            await asyncio.sleep(0.1)
            await conn.send(b"%x\r\n%s\r\n" % (len(event), event))
        await conn.send(b"0\r\n\r\n")
        written.set()
        await conn.wait_closed_by_peer()

    received: list[bytes] = []
    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            exchange = await pool.send(get(member.port), idempotent=True)
            done = asyncio.ensure_future(exchange.relay(received.append))
            await eventually(lambda: received == [b"event-1\n"])
            exchange.pause_reading()
            await asyncio.wait_for(written.wait(), 5)
            await asyncio.sleep(0.2)
            while_paused = list(received)
            exchange.resume_reading()
            await asyncio.wait_for(done, 5)
            assert pool.idle == 1
    assert while_paused == [b"event-1\n"]
    assert received == [b"event-1\n", b"event-2\n", b"event-3\n"]


async def test_idle_connections_close_after_the_idle_timeout() -> None:
    async def script(conn: ScriptedConnection) -> None:
        await answer_each(conn, OK)

    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem, idle_timeout=0.3) as pool:
            await asyncio.gather(fetch(pool, get(member.port)), fetch(pool, get(member.port)))
            idle_at_first = pool.idle
            await asyncio.sleep(0.1)
            idle_before_the_timeout = pool.idle
            await eventually(lambda: pool.idle == 0, timeout=2)
            await eventually(lambda: all(conn.reader.at_eof() for conn in member.connections), timeout=2)
    assert (idle_at_first, idle_before_the_timeout) == (2, 2)
    assert len(member.connections) == 2


async def test_closing_the_pool_closes_idle_connections_now_and_active_ones_after_their_exchange() -> None:
    go_on = asyncio.Event()

    async def script(conn: ScriptedConnection) -> None:
        if conn.index == 1:
            await answer_each(conn, OK)
            return
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nha")
        await go_on.wait()
        await conn.send(b"lf")
        await conn.wait_closed_by_peer()

    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            held = await pool.send(get(member.port), idempotent=True)
            assert await fetch(pool, get(member.port)) == (200, b"ok")
            assert (pool.idle, pool.active) == (1, 1)
            pool.close()
            await eventually(member.connections[1].reader.at_eof)
            assert (pool.idle, pool.active, member.connections[0].reader.at_eof()) == (0, 1, False)
            go_on.set()
            assert await body_of(held) == b"half"
            await eventually(member.connections[0].reader.at_eof)
            assert (pool.idle, pool.active) == (0, 0)
            with pytest.raises(RuntimeError, match="the upstream pool is closed"):
                await pool.send(get(member.port), idempotent=True)


async def test_closing_an_exchange_abandons_its_connection_and_is_a_no_op_after_the_end() -> None:
    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        await conn.send(OK)
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
        await conn.wait_closed_by_peer()

    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            finished = await pool.send(get(member.port), idempotent=True)
            assert await body_of(finished) == b"ok"
            finished.close()  # after the end: the connection stays pooled
            assert (pool.idle, pool.active) == (1, 0)
            abandoned = await pool.send(get(member.port), idempotent=True)
            assert (pool.idle, pool.active) == (0, 1)
            abandoned.close()
            abandoned.close()
            assert (pool.idle, pool.active) == (0, 0)
            with pytest.raises(ConnectionAbortedError):
                await abandoned.relay(lambda chunk: None)
            await eventually(member.connections[0].reader.at_eof)
    assert len(member.connections) == 1


async def test_a_cancelled_send_abandons_its_connection() -> None:
    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        await conn.wait_closed_by_peer()  # never answers

    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await pool.send(get(member.port), idempotent=True)
            assert (pool.idle, pool.active) == (0, 0)
            await eventually(member.connections[0].reader.at_eof)


async def test_a_large_body_waits_in_the_member_until_relay_is_called() -> None:
    size = 32 * 1024 * 1024
    written = asyncio.Event()

    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
        written.set()
        await conn.wait_closed_by_peer()

    received = bytearray()
    # Plain TCP: an asyncio TLS server's drain() returns before its peer has read the bytes.
    async with scripted_member(script, tls=False) as member:
        with pool_to(member.port, None) as pool:
            exchange = await pool.send(get(member.port), idempotent=True)
            await asyncio.sleep(0.3)
            written_before_relay = written.is_set()  # the client stopped reading: the member's writes back up
            await asyncio.wait_for(exchange.relay(received.extend), 10)
            assert pool.idle == 1
    assert (written_before_relay, len(received), written.is_set()) == (False, size, True)


async def test_an_answer_nobody_asked_for_drops_the_idle_connection() -> None:
    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        await conn.send(OK)
        await asyncio.sleep(0.05)
        await conn.send(OK)  # a second answer to a single request
        await conn.wait_closed_by_peer()

    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            assert await fetch(pool, get(member.port)) == (200, b"ok")
            await eventually(lambda: pool.idle == 0, timeout=2)
            await eventually(member.connections[0].reader.at_eof)


@pytest.mark.parametrize("with_the_head", [True, False], ids=["chunk-with-the-head", "later-chunk"])
async def test_a_sink_that_raises_fails_the_relay_with_its_error_and_the_connection_closes(with_the_head: bool) -> None:
    async def script(conn: ScriptedConnection) -> None:
        await conn.read_request()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"
        await conn.send(head + b"ha" if with_the_head else head)
        await asyncio.sleep(0.1)
        await conn.send(b"ha" if with_the_head else b"half")
        await conn.wait_closed_by_peer()

    def sink(chunk: bytes) -> None:
        raise ValueError("the client's side broke")

    async with scripted_member(script) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool:
            exchange = await pool.send(get(member.port), idempotent=True)
            if with_the_head:
                await asyncio.sleep(0.05)  # the first chunk waits for relay()
            with pytest.raises(ValueError, match="the client's side broke"):
                await exchange.relay(sink)
            assert (pool.idle, pool.active) == (0, 0)
            await eventually(member.connections[0].reader.at_eof)


async def test_head_requests_are_refused_before_anything_is_sent() -> None:
    async with scripted_member(lambda conn: answer_each(conn, OK)) as member:
        with pool_to(member.port, member.ca.cert_pem) as pool, pytest.raises(ValueError, match="HEAD requests are not"):
            await pool.send(request("HEAD", "/x", port=member.port), idempotent=True)
    assert member.connections == []
