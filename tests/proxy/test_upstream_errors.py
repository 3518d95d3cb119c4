"""What a client is told when the gateway cannot reach a member: one Status per cause, in words.

Each failure is met twice, by an ordinary request and by an upgrade (exec-style) request, which
dials its own connection: both must give the same Status. A failure of the cluster's
`proxy-url` proxy is blamed on the proxy (named without its user and password), never on the
member. No message carries Python internals ("[Errno", "Connect call failed", "_ssl.c").
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp_socks
import pytest
from aiohttp import RequestInfo, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway_apiserver.proxy.upstream_errors import DialFailed, Hop, InvalidAnswer, describe_failure
from tests.fakes.forward_proxies import http_connect_proxy, socks5_proxy
from tests.fakes.gateway import RunningGateway
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import issue_server_cert, make_ca, server_ssl_context
from tests.fakes.proxying import closed_port, gateway, proxied, status_body, token_secret

pytestmark = pytest.mark.timeout(60)
UPGRADE = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "v4.channel.k8s.io"}
INTERNALS = ("Errno", "Connect call failed", "_ssl.c", "Error(", "os_error", "ssl:default")


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 running `handle` per connection; yields its port."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)
        await handle(r, w)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await server.wait_closed()


async def reset_at_once(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """Accept, then reset the connection (RST, not FIN): a crashing server or a firewall."""
    w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.transport.abort()


async def never_speak(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """Accept TCP, then say nothing (no TLS handshake): a hung process."""
    await r.read()


async def outcomes(gw: RunningGateway, name: str) -> list[tuple[int, dict[str, Any]]]:
    """(status, body) of a GET and of an upgrade request to cluster `name`."""
    results = []
    async with gw.session() as client:
        async with client.get(proxied(name, "/version")) as resp:
            results.append((resp.status, await resp.json()))
        pod = "/api/v1/namespaces/default/pods/p1/exec?command=sh&stdin=true&stdout=true"
        async with client.post(proxied(name, pod), headers=UPGRADE) as resp:
            results.append((resp.status, await resp.json()))
    return results


async def assert_both(gw: RunningGateway, name: str, code: int, message: str) -> None:
    """A GET and an upgrade both get exactly this Status, free of Python internals."""
    for status, body in await outcomes(gw, name):
        assert (status, body["message"]) == (code, message)
        assert body == status_body(code, message)
        assert not any(marker in body["message"] for marker in INTERNALS), body["message"]


# --- the member cannot be reached -------------------------------------------------------------


async def test_a_dns_failure_names_the_host_and_the_cluster(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    secret = token_secret("c1", member, endpoint="https://nonexistent.invalid:6443")
    async with gateway(tmp_path, secret) as gw:
        await assert_both(gw, "c1", 503, 'cannot resolve host "nonexistent.invalid" of cluster "c1": no such host')


async def test_connection_refused(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    port = closed_port()
    async with gateway(tmp_path, token_secret("down", member, endpoint=f"https://127.0.0.1:{port}")) as gw:
        await assert_both(
            gw, "down", 503, f'cluster "down" unreachable: connecting to 127.0.0.1:{port} failed: connection refused'
        )


async def test_connection_reset_while_connecting(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with raw_server(reset_at_once) as port:
        secret = token_secret("rst", member, endpoint=f"https://127.0.0.1:{port}")
        async with gateway(tmp_path, secret) as gw:
            message = f'cluster "rst" unreachable: connecting to 127.0.0.1:{port} failed: connection reset by peer'
            await assert_both(gw, "rst", 503, message)


async def test_connect_timeout(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with raw_server(never_speak) as port:
        secret = token_secret("silent", member, endpoint=f"https://127.0.0.1:{port}")
        async with gateway(tmp_path, secret, connect_timeout=0.5) as gw:
            await assert_both(
                gw, "silent", 503, f'cluster "silent" unreachable: connecting to 127.0.0.1:{port} timed out after 0.5s'
            )


async def test_a_member_that_closes_without_answering(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    ctx = server_ssl_context(member.serving)

    async def read_head_then_close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.close()

    server = await asyncio.start_server(read_head_then_close, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        async with gateway(tmp_path, token_secret("mute", member, endpoint=f"https://127.0.0.1:{port}")) as gw:
            await assert_both(gw, "mute", 502, f'cluster "mute" at 127.0.0.1:{port} closed the connection without answering')
    finally:
        server.close()


# --- the member is reached but is not what the Secret says ------------------------------------


async def test_a_certificate_from_another_ca_is_not_trusted(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("wrongca", member, ca_pem=make_ca("other-ca").cert_pem)) as gw:
        message = (
            f'TLS verification of cluster "wrongca" at 127.0.0.1:{member.port} failed: '
            "the member's certificate is not trusted by the cluster's CA bundle (ca.crt in its Secret)"
        )
        await assert_both(gw, "wrongca", 502, message)
    assert member.requests == []


async def test_a_certificate_for_another_host_is_a_name_mismatch(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    member.serve_certificate(issue_server_cert(member.ca, dns_names=("elsewhere.invalid",), ip_addresses=()))
    async with gateway(tmp_path, token_secret("mismatch", member)) as gw:
        message = (
            f'TLS verification of cluster "mismatch" at 127.0.0.1:{member.port} failed: '
            "the member's certificate is not valid for \"127.0.0.1\" (the endpoint's host is not in its names)"
        )
        await assert_both(gw, "mismatch", 502, message)
    assert member.requests == []


async def test_a_plain_http_server_behind_an_https_endpoint(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    app = web.Application()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with gateway(tmp_path, token_secret("plain", member, endpoint=f"https://127.0.0.1:{port}")) as gw:
            message = (
                f'TLS handshake with cluster "plain" at 127.0.0.1:{port} failed: '
                "the member did not answer with TLS (is the endpoint an http:// address?)"
            )
            await assert_both(gw, "plain", 502, message)
    finally:
        await runner.cleanup()


# --- the proxy-url proxy fails, the member is fine --------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_a_dead_proxy_is_blamed_on_the_proxy_not_the_member(
    member: FakeMemberAPIServer, tmp_path: Path, scheme: str
) -> None:
    port = closed_port()
    secret = token_secret("c1", member, data={"proxy-url": f"{scheme}://user:pw-must-not-leak@127.0.0.1:{port}"})
    async with gateway(tmp_path, secret) as gw:
        await assert_both(
            gw,
            "c1",
            503,
            f'cluster "c1" unreachable: cannot connect to its proxy {scheme}://127.0.0.1:{port}: connection refused',
        )
    assert member.requests == []


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_a_proxy_whose_name_does_not_resolve_is_named(member: FakeMemberAPIServer, tmp_path: Path, scheme: str) -> None:
    secret = token_secret("c1", member, data={"proxy-url": f"{scheme}://user:pw-must-not-leak@nonexistent.invalid:3128"})
    async with gateway(tmp_path, secret) as gw:
        await assert_both(gw, "c1", 503, 'cannot resolve host "nonexistent.invalid" of the proxy of cluster "c1": no such host')
    assert member.requests == []


@pytest.mark.parametrize(
    ("refusal", "said"),
    [
        (407, "407 Proxy Authentication Required (check the user and password in proxy-url)"),
        (502, "502 Bad Gateway"),
    ],
)
async def test_a_proxy_refusing_connect_is_named_with_its_answer(
    member: FakeMemberAPIServer, tmp_path: Path, refusal: int, said: str
) -> None:
    heads: list[str] = []
    async with http_connect_proxy(heads, refuse_with=refusal) as port:
        secret = token_secret("c1", member, data={"proxy-url": f"http://user:pw-must-not-leak@127.0.0.1:{port}"})
        async with gateway(tmp_path, secret) as gw:
            tunnel = f"its proxy http://127.0.0.1:{port} refused the tunnel to 127.0.0.1:{member.port}"
            message = f'cluster "c1" unreachable: {tunnel}: {said}'
            await assert_both(gw, "c1", 503, message)
    assert len(heads) == 2 and all(head.startswith(f"CONNECT 127.0.0.1:{member.port} ") for head in heads)
    assert member.requests == []


async def test_a_socks5_proxy_refusing_connect_is_named_with_its_reply(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    asked: list[str] = []
    async with socks5_proxy(asked, reply=5) as port:
        secret = token_secret("c1", member, data={"proxy-url": f"socks5://127.0.0.1:{port}"})
        async with gateway(tmp_path, secret) as gw:
            message = (
                f'cluster "c1" unreachable: its proxy socks5://127.0.0.1:{port} refused the tunnel to '
                f"127.0.0.1:{member.port}: connection refused by the destination"
            )
            await assert_both(gw, "c1", 503, message)
    assert asked == [f"127.0.0.1:{member.port}"] * 2


@pytest.mark.parametrize("userinfo", ["user:pw-must-not-leak@", ""])
async def test_a_socks5_proxy_refusing_the_login_is_named(member: FakeMemberAPIServer, tmp_path: Path, userinfo: str) -> None:
    asked: list[str] = []
    async with socks5_proxy(asked, reject_login=True) as port:
        secret = token_secret("c1", member, data={"proxy-url": f"socks5://{userinfo}127.0.0.1:{port}"})
        async with gateway(tmp_path, secret) as gw:
            message = (
                f'cluster "c1" unreachable: its proxy socks5://127.0.0.1:{port} refused the gateway\'s login '
                "(check the user and password in proxy-url)"
            )
            await assert_both(gw, "c1", 503, message)
    assert asked == [] and member.requests == []


# --- causes too rare to stage on loopback: the exceptions the libraries raise for them ---------


def _verification_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message} (_ssl.c:1006)")
    err.verify_code, err.verify_message = code, message
    return err


HOP = Hop("c1", URL("https://member.example:6443"), "http://user:pw-must-not-leak@proxy.example:3128", 2.0)


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (
            _verification_error(9, "certificate is not yet valid"),
            502,
            'TLS verification of cluster "c1" at member.example:6443 failed: '
            "the member's certificate is not valid yet (check the clocks)",
        ),
        (
            socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
            503,
            'cannot resolve host "member.example" of cluster "c1": temporary failure in name resolution',
        ),
        (
            aiohttp_socks.ProxyTimeoutError("Proxy connection timed out: 2"),
            503,
            'cluster "c1" unreachable: connecting through its proxy http://proxy.example:3128 timed out after 2s',
        ),
        (
            aiohttp.ClientResponseError(
                RequestInfo(URL("https://member.example:6443/"), "GET", CIMultiDictProxy(CIMultiDict())),
                (),
                status=400,
                message="Invalid constant string",
            ),
            502,
            'cluster "c1" at member.example:6443 sent an answer that is not valid HTTP/1.1',
        ),
        (
            InvalidAnswer("unparsable answer: Invalid constant string"),  # the fast path's client
            502,
            'cluster "c1" at member.example:6443 sent an answer that is not valid HTTP/1.1',
        ),
        (
            InvalidAnswer("the member switched protocols (101) though no upgrade was asked for"),
            502,
            'cluster "c1" at member.example:6443 sent an answer that is not valid HTTP/1.1',
        ),
        (
            DialFailed(ConnectionRefusedError(111, "Connect call failed ('10.0.0.1', 6443)")),
            503,
            'cluster "c1" unreachable: connecting to member.example:6443 failed: connection refused',
        ),
        (
            asyncio.IncompleteReadError(b"", None),
            502,
            'cluster "c1" at member.example:6443 closed the connection without answering',
        ),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            502,
            'cluster "c1" at member.example:6443 reset the connection without answering',
        ),
        (
            aiohttp.ClientPayloadError("Response payload is not completed"),
            502,
            'the connection to cluster "c1" at member.example:6443 failed before it answered',
        ),
    ],
)
def test_rarer_causes_are_described_in_words(exc: BaseException, code: int, message: str) -> None:
    error = describe_failure(HOP, exc)
    assert (error.code, error.message) == (code, message)


def test_a_connect_timeout_through_a_proxy_names_both_hops() -> None:
    error = describe_failure(HOP, aiohttp.ConnectionTimeoutError("Connection timeout to host https://member.example:6443/"))
    where = "member.example:6443 through its proxy http://proxy.example:3128"
    message = f'cluster "c1" unreachable: connecting to {where} timed out after 2s'
    assert (error.code, error.message) == (503, message)
