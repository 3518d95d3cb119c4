"""The fast lane shares each connection with aiohttp: every request is served by exactly one of them, in order.

A stub handler serves `/fast/...` on the lane and answers `lane <method> <target> <body>`; the aiohttp
application answers everything else with `aiohttp <method> <path> <body>`. Real TLS sockets, raw bytes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from gateway_apiserver.observability.access_log import AccessLogger
from gateway_apiserver.serving.fast_request import FastRequest
from gateway_apiserver.serving.listener import MAX_FIELD_SIZE, ConnectionTimeouts, listen
from tests.fakes.pki import client_ssl_context, issue_server_cert, make_ca, server_ssl_context

pytestmark = pytest.mark.timeout(30)


@dataclass
class StubHandler:
    """Serves /fast/... on the lane; `/fast/slow` waits for `release`, `/fast/stream` writes until cancelled."""

    served: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    paused_seen: bool = False

    def accepts(self, method: str, target: str) -> bool:
        return target.startswith("/fast/")

    async def serve(self, request: FastRequest) -> None:
        self.served.append(request.target)
        request.audit_id = "lane-audit"
        try:
            if request.target.startswith("/fast/early"):  # answers before reading the body
                request.write_head(200, "OK", [b"Content-Type: text/plain"], 5)
                request.write_body(b"early")
                return
            await request.body_ready
            if request.target == "/fast/slow":
                await self.release.wait()
            if request.target == "/fast/stream":
                request.write_head(200, "OK", [b"Content-Type: text/plain"], None)
                while True:
                    request.write_body(b"x" * 65536)
                    self.paused_seen = self.paused_seen or request.paused
                    await asyncio.sleep(0.001)
            body = b"lane %s %s %s" % (request.method.encode(), request.target.encode(), request.body)
            request.write_head(200, "OK", [b"Content-Type: text/plain"], len(body))
            request.write_body(body)
        except asyncio.CancelledError:
            self.cancelled.append(request.target)
            raise


@dataclass
class Served:
    port: int
    handler: StubHandler
    server: web.Server
    ca_pem: bytes

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=client_ssl_context(self.ca_pem))


async def aiohttp_answer(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(text=f"aiohttp {request.method} {request.path_qs} {body.decode()}")


async def serve(idle: float = 90.0, read_header: float = 32.0) -> AsyncIterator[Served]:
    ca = make_ca("lane-ca")
    pair = issue_server_cert(ca)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", aiohttp_answer)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    handler = StubHandler()
    server = await listen(
        runner,
        sock,
        server_ssl_context(pair),
        ConnectionTimeouts(read_header=read_header, idle=idle),
        access_log_class=AccessLogger,
        access_log=logging.getLogger("test.fast_lane.access"),
        fast_handler=handler,
    )
    assert runner.server is not None
    try:
        yield Served(sock.getsockname()[1], handler, runner.server, ca.cert_pem)
    finally:
        server.close()
        await runner.cleanup()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async for s in serve():
        yield s


def get(path: str, *extra: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: test", *extra]) + "\r\n\r\n").encode()


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = "\r\n".join([f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *extra])
    return (head + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer with a Content-Length or chunked body."""
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
        if "content-length" in headers:
            return status, headers, await reader.readexactly(int(headers["content-length"]))
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, headers, body
            body += chunk[:-2]


async def closed(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(10):
        try:
            return await reader.read(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True


async def test_requests_alternate_between_the_lane_and_aiohttp_on_one_connection(served: Served) -> None:
    reader, writer = await served.connect()
    expected = []
    for i in range(5):
        writer.write(get(f"/fast/{i}"))
        expected.append(f"lane GET /fast/{i} ")
        writer.write(get(f"/api/{i}"))
        expected.append(f"aiohttp GET /api/{i} ")
        writer.write(post(f"/fast/p{i}", b"body-%d" % i))
        expected.append(f"lane POST /fast/p{i} body-{i}")
        writer.write(post(f"/api/p{i}", b"api-body-%d" % i))
        expected.append(f"aiohttp POST /api/p{i} api-body-{i}")
    answers = [(await read_answer(reader))[2].decode() for _ in expected]
    assert answers == expected  # pipelined in one stream: every answer, in order
    assert served.handler.served == [target for i in range(5) for target in (f"/fast/{i}", f"/fast/p{i}")]
    assert len(served.server.connections) == 1
    writer.close()


async def test_the_lane_answers_with_aiohttps_headers_and_its_own_audit_id(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(get("/fast/h"))
    status, headers, body = await read_answer(reader)
    assert (status, body) == (200, b"lane GET /fast/h ")
    assert headers["audit-id"] == "lane-audit"
    assert headers["server"] == "gateway-apiserver"
    assert headers["content-type"] == "text/plain"
    assert "connection" not in headers  # HTTP/1.1 keep-alive, as aiohttp says it: nothing
    writer.close()


async def test_one_write_holding_a_lane_request_and_an_aiohttp_request_with_a_body(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(post("/api/first", b"0123456789") + get("/fast/second") + post("/fast/third", b"abc") + get("/api/fourth"))
    answers = [(await read_answer(reader))[2] for _ in range(4)]
    assert answers == [
        b"aiohttp POST /api/first 0123456789",
        b"lane GET /fast/second ",
        b"lane POST /fast/third abc",
        b"aiohttp GET /api/fourth ",
    ]
    writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "why"),
    [
        (b"POST /fast/c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "chunked body"),
        (b"GET /fast/v HTTP/1.0\r\nHost: t\r\n\r\n", "HTTP/1.0"),
        (b"HEAD /fast/h HTTP/1.1\r\nHost: t\r\n\r\n", "HEAD"),
        (post("/fast/e", b"abc", "Expect: 100-continue"), "Expect"),
        (post("/fast/big", b"x" * (1024 * 1024 + 1)), "a body over 1 MiB"),
        (get("/fast/x", "X-Long: " + "a" * MAX_FIELD_SIZE), "a header over the field limit"),
    ],
    ids=["chunked", "http10", "head", "expect", "big-body", "long-header"],
)
async def test_unusual_requests_stay_with_aiohttp(served: Served, request_bytes: bytes, why: str) -> None:
    reader, writer = await served.connect()
    writer.write(request_bytes)
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
    assert served.handler.served == [], why
    assert not head.startswith(b"HTTP/1.1 200 OK\r\n") or b"Audit-Id: lane-audit" not in head, why
    writer.close()


async def test_a_malformed_head_gets_aiohttps_status_answer_and_the_connection_closes(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(get("/fast/1"))
    assert (await read_answer(reader))[2] == b"lane GET /fast/1 "
    writer.write(b"GET /fast/2 HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n")
    status, _, body = await read_answer(reader)
    assert status == 400
    assert b'"kind":"Status"' in body and b'"reason":"BadRequest"' in body
    assert await closed(reader)
    assert served.handler.served == ["/fast/1"]


async def test_an_upgrade_goes_to_aiohttp_for_good(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(get("/fast/u", "Connection: Upgrade", "Upgrade: websocket"))
    status, _, body = await read_answer(reader)
    assert (status, body) == (200, b"aiohttp GET /fast/u ")
    assert served.handler.served == []
    writer.close()


async def test_connection_close_on_a_lane_request_ends_the_connection_after_its_answer(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(get("/fast/bye", "Connection: close"))
    status, headers, body = await read_answer(reader)
    assert (status, headers["connection"], body) == (200, "close", b"lane GET /fast/bye ")
    assert await closed(reader)


async def test_an_answer_before_the_whole_body_ends_the_connection(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(post("/fast/early", b"0123456789")[:-5])  # five body bytes never come
    status, _, body = await read_answer(reader)
    assert (status, body) == (200, b"early")
    assert await closed(reader)  # the rest of that body must never be read as a request


async def test_a_client_that_leaves_cancels_the_lane_request(served: Served) -> None:
    _, writer = await served.connect()
    writer.write(get("/fast/slow"))
    await asyncio.sleep(0.2)
    writer.transport.abort()
    async with asyncio.timeout(5):
        while served.handler.cancelled != ["/fast/slow"]:  # noqa: ASYNC110 - the handler's own list, polled
            await asyncio.sleep(0.02)


async def test_a_slow_reader_pauses_the_lane_stream(served: Served) -> None:
    _, writer = await served.connect()
    writer.write(get("/fast/stream"))
    async with asyncio.timeout(10):
        while not served.handler.paused_seen:  # noqa: ASYNC110 - nobody reads: the transport passes its high-water mark
            await asyncio.sleep(0.02)
    writer.transport.abort()


async def test_aiohttps_idle_timer_spares_a_long_lane_request_and_resumes_after_it() -> None:
    async for s in serve(idle=0.5):
        reader, writer = await s.connect()
        writer.write(get("/fast/slow"))
        await asyncio.sleep(1.5)  # three idle timeouts while the lane's request runs
        s.handler.release.set()
        assert (await read_answer(reader))[2] == b"lane GET /fast/slow "
        answered = time.monotonic()
        assert await closed(reader)  # idle after the answer: closed by aiohttp's timer
        assert time.monotonic() - answered < 0.5 + 2.0  # slack for a shared machine


async def test_the_header_deadline_applies_to_the_request_after_a_lane_request() -> None:
    async for s in serve(read_header=0.5):
        reader, writer = await s.connect()
        writer.write(get("/fast/1"))
        assert (await read_answer(reader))[2] == b"lane GET /fast/1 "
        writer.write(b"GET /fast/2 HTTP/1.1\r\nHo")  # never finished
        started = time.monotonic()
        assert await closed(reader)
        assert time.monotonic() - started < 0.5 + 2.0
        assert s.handler.served == ["/fast/1"]
