"""Upgrade tunnels (`handle_upgrade`) end to end: kubectl exec over WebSocket v5, a raw SPDY-style
echo, refusals that must not open a tunnel, disconnects from either side, and no leaks.

The gateway's proxy handler is built elsewhere; here a tiny TLS aiohttp app stands in for it:
it authenticates the client token, swaps in the member credential and calls `handle_upgrade`
(plain GETs, which kubectl needs before exec, are forwarded with an aiohttp client).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web
from multidict import CIMultiDict

from gateway_apiserver.proxy.upgrade import handle_upgrade, is_upgrade_request
from tests.fakes.member_upgrade import FakeUpgradeMember
from tests.fakes.pki import client_ssl_context, issue_server_cert, make_ca, server_ssl_context

pytestmark = [
    pytest.mark.timeout(90),
    # An unclosed stream or transport is a leak: fail instead of warning.
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

CLIENT_TOKEN = "client-token"
_DROP = frozenset({"authorization", "host", "content-length", "transfer-encoding", "keep-alive", "te", "trailer"})


class Gateway:
    """A stand-in for the gateway's proxy route: `/proxy/<path>` -> member `<path>`."""

    def __init__(
        self,
        member: FakeUpgradeMember,
        *,
        member_url: yarl.URL | None = None,
        member_ssl: ssl.SSLContext | None = None,
        response_timeout: float = 10.0,
    ) -> None:
        self.member = member
        self.response_timeout = response_timeout
        self.member_url = member_url
        self.member_ssl = member_ssl
        self.ca = make_ca("test-gateway-ca")
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/proxy/{path:.*}", self._proxy)
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=server_ssl_context(issue_server_cert(self.ca))).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {CLIENT_TOKEN}":
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        base = self.member_url or self.member.url
        target = yarl.URL(str(base) + request.raw_path.removeprefix("/proxy"), encoded=True)
        ctx = self.member_ssl or self.member.client_ssl_context()
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _DROP)
        headers["Authorization"] = f"Bearer {self.member.token}"
        if is_upgrade_request(request):
            return await handle_upgrade(request, target, ctx, headers, connect_timeout=2, response_timeout=self.response_timeout)
        if self.session is None:
            self.session = aiohttp.ClientSession(auto_decompress=False)
        async with self.session.request(request.method, target, headers=headers, ssl=ctx) as resp:
            body = await resp.read()
            return web.Response(status=resp.status, body=body, content_type=resp.content_type)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=client_ssl_context(self.ca.cert_pem))

    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/proxy"


@pytest.fixture
async def member() -> AsyncIterator[FakeUpgradeMember]:
    fake = FakeUpgradeMember()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def gateway(member: FakeUpgradeMember) -> AsyncIterator[Gateway]:
    gw = Gateway(member)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state (fd and task counts, sockets) that has no event
            await asyncio.sleep(0.02)


# --- kubectl exec over WebSocket v5 --------------------------------------------------------


async def kubectl(gateway: Gateway, tmp_path: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    ca = tmp_path / "gateway-ca.crt"
    ca.write_bytes(gateway.ca.cert_pem)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--server={gateway.url()}",
        f"--certificate-authority={ca}",
        f"--token={CLIENT_TOKEN}",
        "--namespace=default",
        "--request-timeout=20s",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(30):
            out, err = await proc.communicate(stdin)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_kubectl_exec_prints_stdout(gateway: Gateway, member: FakeUpgradeMember, tmp_path: Path) -> None:
    code, out, err = await kubectl(gateway, tmp_path, "exec", "mypod", "--", "echo", "hello", "world")
    assert (code, out) == (0, "hello world\n"), err
    [conn] = member.upgrades
    headers = conn.request.headers
    assert conn.status == 101 and conn.request.target.startswith("/api/v1/namespaces/default/pods/mypod/exec?")
    assert headers["Upgrade"].lower() == "websocket" and "v5.channel.k8s.io" in headers["Sec-WebSocket-Protocol"]
    # The member sees the gateway's credential for it, never the client's.
    assert headers.getall("Authorization") == [f"Bearer {member.token}"]


async def test_kubectl_exec_exits_with_the_remote_exit_code(gateway: Gateway, tmp_path: Path) -> None:
    code, out, err = await kubectl(gateway, tmp_path, "exec", "mypod", "--", "sh", "-c", "exit 3")
    assert code == 3, (out, err)


async def test_kubectl_exec_stdin_reaches_the_member(gateway: Gateway, tmp_path: Path) -> None:
    code, out, err = await kubectl(gateway, tmp_path, "exec", "-i", "mypod", "--", "cat", stdin=b"ping\npong\n")
    assert (code, out) == (0, "ping\npong\n"), err


async def test_kubectl_exec_refused_is_reported_not_tunnelled(
    gateway: Gateway, member: FakeUpgradeMember, tmp_path: Path
) -> None:
    code, _, err = await kubectl(gateway, tmp_path, "exec", "forbidden", "--", "echo", "x")
    assert code != 0 and "forbidden" in err
    # kubectl tries WebSocket, then falls back to SPDY on the non-101: both refusals relayed, no tunnel.
    assert [c.request.headers["Upgrade"].lower() for c in member.upgrades] == ["websocket", "spdy/3.1"]
    assert all(c.status == 403 and c.received == b"" for c in member.upgrades)


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(["v4.channel.k8s.io"], "v4.channel.k8s.io"), (["v4.channel.k8s.io", "v5.channel.k8s.io"], "v5.channel.k8s.io")],
)
async def test_websocket_subprotocol_is_the_members_choice(gateway: Gateway, offered: list[str], chosen: str) -> None:
    url = f"{gateway.url()}/api/v1/namespaces/default/pods/mypod/exec?command=echo&command=hi&stdout=true"
    ctx = client_ssl_context(gateway.ca.cert_pem)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=offered, ssl=ctx, headers={"Authorization": f"Bearer {CLIENT_TOKEN}"}) as ws,
    ):
        assert ws.protocol == chosen
        async with asyncio.timeout(5):
            messages = [m.data async for m in ws if m.type == aiohttp.WSMsgType.BINARY]
    assert messages[0] == b"\x01hi\n"
    assert json.loads(messages[1][1:]) == {"metadata": {}, "status": "Success"} and messages[1][0] == 3
    assert ws.close_code == 1000


# --- raw SPDY-style tunnel -------------------------------------------------------------------


def spdy_request(gateway: Gateway, pod: str = "mypod", verb: str = "portforward") -> bytes:
    return (
        f"POST /proxy/api/v1/namespaces/default/pods/{pod}/{verb} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{gateway.port}\r\n"
        f"Authorization: Bearer {CLIENT_TOKEN}\r\n"
        "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        "X-Stream-Protocol-Version: portforward.k8s.io\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def open_tunnel(gateway: Gateway, pod: str = "mypod") -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await gateway.connect()
    writer.write(spdy_request(gateway, pod))
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


async def test_spdy_echo_is_byte_for_byte(gateway: Gateway, member: FakeUpgradeMember) -> None:
    reader, writer, head = await open_tunnel(gateway)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nUpgrade: SPDY/3.1\r\n" in head
    assert b"\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n" in head  # the member's pick, not the client's list
    small = bytes(range(256)) + b"HTTP/1.1 200 OK\r\n\r\n"
    writer.write(small)
    async with asyncio.timeout(5):
        assert await reader.readexactly(len(small)) == small
    big = os.urandom(1024 * 1024)
    writer.write(big)
    async with asyncio.timeout(20):
        echoed = await asyncio.gather(writer.drain(), reader.readexactly(len(big)))
    assert echoed[1] == big
    [conn] = member.upgrades
    assert bytes(conn.received) == small + big
    assert conn.request.headers.getall("X-Stream-Protocol-Version") == ["portforward.k8s.io", "v4.channel.k8s.io"]
    writer.close()


async def test_refusal_is_relayed_and_nothing_is_forwarded(gateway: Gateway, member: FakeUpgradeMember) -> None:
    reader, writer, head = await open_tunnel(gateway, pod="forbidden")
    assert head.startswith(b"HTTP/1.1 403 ")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if line)
    assert headers["Connection"].lower() == "close" and headers["Content-Type"].startswith("application/json")
    # Bytes a client sends as if the tunnel were open must never reach the member.
    writer.write(b"SMUGGLED " * 100)
    async with asyncio.timeout(5):
        body = await reader.read()  # the rest of the response, then EOF: the gateway closed
    status = json.loads(body)
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 403, "Forbidden")
    [conn] = member.upgrades
    await eventually(conn.closed.is_set)
    assert conn.received == b""
    writer.close()


async def test_client_disconnect_closes_the_member_side(gateway: Gateway, member: FakeUpgradeMember) -> None:
    reader, writer, head = await open_tunnel(gateway)
    assert head.startswith(b"HTTP/1.1 101 ")
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"
    writer.transport.abort()
    await eventually(member.upgrades[0].closed.is_set)


async def test_member_disconnect_closes_the_client_side(gateway: Gateway, member: FakeUpgradeMember) -> None:
    reader, writer, head = await open_tunnel(gateway)
    assert head.startswith(b"HTTP/1.1 101 ")
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"
    await member.close_upgraded()
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()


# --- errors before any tunnel ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _status_of(gateway: Gateway, pod: str = "mypod") -> tuple[str, dict[str, Any]]:
    """The status line and the Status body a tunnel attempt got."""
    reader, writer, head = await open_tunnel(gateway, pod)
    async with asyncio.timeout(5):
        body = await reader.read()
    writer.close()
    return head.split(b"\r\n", 1)[0].decode(), json.loads(body)


async def test_unreachable_member_is_503(member: FakeUpgradeMember) -> None:
    gw = Gateway(member, member_url=yarl.URL(f"https://127.0.0.1:{_free_port()}"))
    await gw.start()
    try:
        line, status = await _status_of(gw)
    finally:
        await gw.stop()
    assert line.startswith("HTTP/1.1 503") and status["reason"] == "ServiceUnavailable"


async def test_untrusted_member_certificate_is_502(member: FakeUpgradeMember) -> None:
    gw = Gateway(member, member_ssl=client_ssl_context(make_ca("wrong-ca").cert_pem))
    await gw.start()
    try:
        line, status = await _status_of(gw)
    finally:
        await gw.stop()
    assert line.startswith("HTTP/1.1 502") and "TLS verification" in status["message"]
    assert member.upgrades == []


async def test_member_that_never_answers_is_504_and_closed(member: FakeUpgradeMember) -> None:
    gw = Gateway(member, response_timeout=0.5)
    await gw.start()
    try:
        line, status = await _status_of(gw, pod="hang")
    finally:
        await gw.stop()
    assert line.startswith("HTTP/1.1 504") and status["reason"] == "Timeout"
    [conn] = member.upgrades
    await eventually(conn.closed.is_set)
    assert conn.received == b""


# --- leaks ---------------------------------------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _one_of_each(gateway: Gateway, member: FakeUpgradeMember) -> None:
    """An echo closed by the client, one closed by the member, a refusal, and a WebSocket exec."""
    for closer in ("client", "member"):
        reader, writer, _ = await open_tunnel(gateway)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        if closer == "client":
            writer.transport.abort()
        else:
            await member.close_upgraded()
            assert await reader.read() == b""
            writer.close()
    reader, writer, _ = await open_tunnel(gateway, pod="forbidden")
    await reader.read()
    writer.close()
    url = f"{gateway.url()}/api/v1/namespaces/default/pods/mypod/exec?command=echo&command=x&stdout=true"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            url,
            protocols=["v5.channel.k8s.io"],
            ssl=client_ssl_context(gateway.ca.cert_pem),
            headers={"Authorization": f"Bearer {CLIENT_TOKEN}"},
        ) as ws,
    ):
        async for _ in ws:
            pass
    await eventually(lambda: all(c.closed.is_set() for c in member.upgrades))


async def test_no_fd_or_task_leak(gateway: Gateway, member: FakeUpgradeMember) -> None:
    async with asyncio.timeout(30):
        await _one_of_each(gateway, member)  # warm up lazily created state
        await asyncio.sleep(0.2)
        fds, tasks = _fds(), len(asyncio.all_tasks())
        for _ in range(5):
            await _one_of_each(gateway, member)
    await eventually(lambda: _fds() <= fds and len(asyncio.all_tasks()) <= tasks, timeout=10)
    assert gateway.runner is not None and gateway.runner.server is not None
    await eventually(lambda: len(gateway.runner.server.connections) == 0)  # type: ignore[union-attr]
