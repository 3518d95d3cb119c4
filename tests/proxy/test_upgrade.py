"""Upgrade tunnels through the gateway's proxy route, in hosting mode with delegated authentication
and authorization: SPDY/3.1 and WebSocket (`v5.channel.k8s.io`) requests written byte for byte,
and aiohttp's WebSocket client.

What is specified here:
- a caller whom authentication or authorization refuses gets the gateway's Status, and the
  member is never dialled;
- the member receives exactly the gateway's headers: the caller's token, `Impersonate-*` and
  `X-Remote-*` never reach it;
- the tunnel opens only on the member's 101; any other answer is relayed and both
  connections close, so no byte the client sends after it reaches the member;
- bytes pass unchanged both ways (1 MiB echo), a disconnect on either side closes the other,
  failures before any tunnel are Status objects, and nothing leaks.
kubectl itself is driven in test_exec_through_the_gateway.py.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import yarl

from tests.fakes.hosting import CLUSTERGATEWAYS, FRONT_PROXY_CN, HostingGateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_upgrade import FakeUpgradeMember
from tests.fakes.pki import issue_client_cert
from tests.proxy.conftest import ALICE_TOKEN, MALLORY_TOKEN, UPGRADE_ANSWER_TIMEOUT

pytestmark = [
    pytest.mark.timeout(90),
    # An unclosed stream or transport is a leak: fail instead of warning.
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

PROTOCOLS = ["SPDY/3.1", "websocket"]
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455's example answer to WS_KEY
# What an attacker writes in: the aggregator's identity headers and impersonation.
FORGED = [
    ("X-Remote-User", "admin"),
    ("X-Remote-Group", "system:masters"),
    ("X-Remote-Extra-Scopes", "all"),
    ("Impersonate-User", "admin"),
    ("Impersonate-Group", "system:masters"),
    ("Impersonate-Uid", "0"),
    ("Impersonate-Extra-Scopes", "all"),
]
PROXY_ATTRIBUTES = {
    "group": "cluster.core.oam.dev",
    "version": "v1alpha1",
    "resource": "clustergateways",
    "subresource": "proxy",
}


def member_path(protocol: str, pod: str) -> str:
    """The member path kubectl uses: WebSocket exec (GET), SPDY port-forward (POST)."""
    if protocol == "websocket":
        return f"/api/v1/namespaces/default/pods/{pod}/exec?command=echo&command=hi&stdout=true"
    return f"/api/v1/namespaces/default/pods/{pod}/portforward"


def upgrade_request(
    gateway: HostingGateway,
    protocol: str,
    *,
    pod: str = "mypod",
    cluster: str = "m1",
    headers: list[tuple[str, str]] | None = None,
) -> bytes:
    """An upgrade request head as kubectl writes it; `headers` default to alice's bearer token."""
    method = "GET" if protocol == "websocket" else "POST"
    lines = [
        f"{method} {CLUSTERGATEWAYS}/{cluster}/proxy{member_path(protocol, pod)} HTTP/1.1",
        f"Host: 127.0.0.1:{gateway.port}",
        "Connection: Upgrade",
        f"Upgrade: {protocol}",
    ]
    if protocol == "websocket":
        lines += ["Sec-WebSocket-Version: 13", f"Sec-WebSocket-Key: {WS_KEY}", "Sec-WebSocket-Protocol: v5.channel.k8s.io"]
    else:
        lines += ["X-Stream-Protocol-Version: portforward.k8s.io", "X-Stream-Protocol-Version: v4.channel.k8s.io"]
        lines += ["Content-Length: 0"]
    lines += [f"{k}: {v}" for k, v in (headers if headers is not None else [("Authorization", f"Bearer {ALICE_TOKEN}")])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def send_upgrade(
    gateway: HostingGateway, protocol: str, **kwargs: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Write an upgrade request on a fresh connection; the reader, writer and the response head."""
    reader, writer = await gateway.open_connection(kwargs.pop("client", None))
    writer.write(upgrade_request(gateway, protocol, **kwargs))
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


def parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The status line and the header lines of a response head."""
    status_line, *lines = head.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
    pairs = [line.split(": ", 1) for line in lines]
    return status_line, [(k, v) for k, v in pairs]


async def refused(
    gateway: HostingGateway, protocol: str, *, smuggle: bytes = b"", **kwargs: Any
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """An upgrade attempt that must not tunnel: its status line, headers (lower-cased names) and JSON body.

    `smuggle`: bytes written right after the request, as if the tunnel were open; then the
    gateway must have closed the connection after its answer."""
    reader, writer, head = await send_upgrade(gateway, protocol, **kwargs)
    try:
        writer.write(smuggle)
        status_line, pairs = parse_head(head)
        headers = {k.lower(): v for k, v in pairs}
        async with asyncio.timeout(10):
            body = await reader.readexactly(int(headers["content-length"]))
            if smuggle:
                assert await reader.read() == b"", "the connection stayed open after a refused upgrade"
    finally:
        writer.close()
    return status_line, headers, json.loads(body)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state (fd and task counts, sockets) that has no event
            await asyncio.sleep(0.02)


def forbidden(verb: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'clustergateways.cluster.core.oam.dev "m1" is forbidden: User "mallory" cannot {verb} resource '
        '"clustergateways/proxy" in API group "cluster.core.oam.dev" at the cluster scope',
        "reason": "Forbidden",
        "details": {"name": "m1", "group": "cluster.core.oam.dev", "kind": "clustergateways"},
        "code": 403,
    }


# --- refused before the member is dialled ------------------------------------------------------


@pytest.mark.parametrize(("protocol", "verb"), [("SPDY/3.1", "create"), ("websocket", "get")])
async def test_a_caller_whom_authorization_denies_is_refused_before_the_member_is_dialled(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember, protocol: str, verb: str
) -> None:
    headers = [("Authorization", f"Bearer {MALLORY_TOKEN}")]
    status_line, _, body = await refused(tunnelling_gateway, protocol, headers=headers)
    assert (status_line, body) == ("HTTP/1.1 403 Forbidden", forbidden(verb))
    assert tunnelling_gateway.reviews() == [
        {
            "user": "mallory",
            "uid": "m-1",
            "groups": ["system:authenticated"],
            "resourceAttributes": {**PROXY_ATTRIBUTES, "verb": verb, "name": "m1"},
        }
    ]
    assert (upgrade_member.connections, upgrade_member.requests) == (0, [])


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_caller_whom_authentication_refuses_is_refused_before_the_member_is_dialled(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember, protocol: str
) -> None:
    headers = [("Authorization", "Bearer not-a-known-token")]
    status_line, _, body = await refused(tunnelling_gateway, protocol, headers=headers)
    assert (status_line, body) == (
        "HTTP/1.1 401 Unauthorized",
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
         "reason": "Unauthorized", "code": 401},
    )  # fmt: skip
    assert tunnelling_gateway.reviews() == []
    assert (upgrade_member.connections, upgrade_member.requests) == (0, [])


# --- what the member receives ------------------------------------------------------------------


def expected_member_headers(
    gateway: HostingGateway, member: FakeUpgradeMember, protocol: str, audit_id: str
) -> list[tuple[str, str]]:
    """Every header of the upgrade request as the member must receive it, in order."""
    if protocol == "websocket":
        own = [("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", WS_KEY), ("Sec-WebSocket-Protocol", "v5.channel.k8s.io")]
    else:
        own = [("X-Stream-Protocol-Version", "portforward.k8s.io"), ("X-Stream-Protocol-Version", "v4.channel.k8s.io")]
    return [
        ("Host", member.url.raw_authority),
        *own,
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", f"127.0.0.1:{gateway.port}"),
        ("Audit-ID", audit_id),  # the gateway's own, the one it answered the client with
        ("Authorization", f"Bearer {member.token}"),  # the gateway's credential for the member, never the caller's
        ("Connection", "Upgrade"),
        ("Upgrade", protocol),
        *([("Content-Length", "0")] if protocol == "SPDY/3.1" else []),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("caller", ["bearer-token", "front-proxy"])
async def test_caller_identity_headers_are_stripped_on_an_upgrade(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember, protocol: str, caller: str
) -> None:
    """alice with forged identity headers, by token or through the aggregator (whose X-Remote-* name her)."""
    gateway = tunnelling_gateway
    if caller == "front-proxy":
        client = issue_client_cert(gateway.front_proxy_ca, FRONT_PROXY_CN)
        headers = [("X-Remote-User", "alice"), ("X-Remote-Group", "devs"), *FORGED[3:]]
    else:
        client, headers = None, [("Authorization", f"Bearer {ALICE_TOKEN}"), *FORGED]
    _, writer, head = await send_upgrade(gateway, protocol, headers=headers, client=client)
    writer.close()
    status_line, response_headers = parse_head(head)
    assert status_line == "HTTP/1.1 101 Switching Protocols"
    [audit_id] = [v for k, v in response_headers if k == "Audit-Id"]
    verb = "get" if protocol == "websocket" else "create"
    identity = {"user": "alice", "groups": ["devs", "system:authenticated"]} | ({"uid": "a-1"} if client is None else {})
    assert gateway.reviews() == [identity | {"resourceAttributes": {**PROXY_ATTRIBUTES, "verb": verb, "name": "m1"}}]
    [request] = upgrade_member.requests
    assert list(request.headers.items()) == expected_member_headers(gateway, upgrade_member, protocol, audit_id)
    assert request.method == ("GET" if protocol == "websocket" else "POST")
    assert request.target == member_path(protocol, "mypod")


# --- a tunnel only after a 101 -----------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_members_101_opens_the_tunnel_with_the_members_headers(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember, protocol: str
) -> None:
    reader, writer, head = await send_upgrade(tunnelling_gateway, protocol)
    status_line, all_headers = parse_head(head)
    assert status_line == "HTTP/1.1 101 Switching Protocols"
    # The member's headers, as it sent them, plus the gateway's own Date, Server and Audit-Id.
    headers = [(k, v) for k, v in all_headers if k not in ("Date", "Server", "Audit-Id")]
    assert [k for k, _ in all_headers if (k, _) not in headers] == ["Date", "Server", "Audit-Id"]
    if protocol == "websocket":
        assert headers == [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", WS_ACCEPT),
            ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"),
        ]
        async with asyncio.timeout(5):
            frame = await reader.readexactly(2 + 4)
        assert frame == b"\x82\x04\x01hi\n"  # a binary frame on channel 1 (stdout): "hi\n"
    else:
        # The member's pick of X-Stream-Protocol-Version, not the client's list.
        chosen = ("X-Stream-Protocol-Version", "portforward.k8s.io")
        assert headers == [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), chosen]
        writer.write(b"ping")
        async with asyncio.timeout(5):
            assert await reader.readexactly(4) == b"ping"
    writer.close()
    [conn] = upgrade_member.upgrades
    assert conn.status == 101


def member_answer(pod: str, protocol: str) -> tuple[str, dict[str, Any]]:
    """The status line and body FakeUpgradeMember answers an upgrade for `pod` with."""
    if pod == "no-switch":
        return "HTTP/1.1 200 OK", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    verb = "exec" if protocol == "websocket" else "portforward"
    message = f'pods "forbidden" is forbidden: User "member" cannot create resource "pods/{verb}"'
    return "HTTP/1.1 403 Forbidden", {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": "Forbidden",
        "code": 403, "details": {"name": "forbidden", "kind": f"pods/{verb}"},
    }  # fmt: skip


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("pod", ["forbidden", "no-switch"])
async def test_any_other_answer_is_relayed_with_no_tunnel(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember, protocol: str, pod: str
) -> None:
    """The member's refusal (or a 200 that switches nothing) reaches the client; bytes sent after it never reach the member."""
    line, headers, body = await refused(tunnelling_gateway, protocol, pod=pod, smuggle=b"SMUGGLED " * 100)
    assert (line, body) == member_answer(pod, protocol)
    assert headers["connection"] == "close" and headers["content-type"] == "application/json"
    [conn] = upgrade_member.upgrades
    await eventually(conn.closed.is_set)
    assert (conn.status, bytes(conn.received)) == (int(line.split()[1]), b"")


# --- the tunnel ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(["v4.channel.k8s.io"], "v4.channel.k8s.io"), (["v4.channel.k8s.io", "v5.channel.k8s.io"], "v5.channel.k8s.io")],
)
async def test_websocket_subprotocol_is_the_members_choice(
    tunnelling_gateway: HostingGateway, offered: list[str], chosen: str
) -> None:
    path = f"{CLUSTERGATEWAYS}/m1/proxy{member_path('websocket', 'mypod')}"
    async with (
        tunnelling_gateway.session() as session,
        session.ws_connect(path, protocols=offered, headers={"Authorization": f"Bearer {ALICE_TOKEN}"}) as ws,
    ):
        assert ws.protocol == chosen
        async with asyncio.timeout(5):
            messages = [m.data async for m in ws if m.type == aiohttp.WSMsgType.BINARY]
    assert messages == [b"\x01hi\n", b"\x03" + json.dumps({"metadata": {}, "status": "Success"}).encode()]
    assert ws.close_code == 1000


async def test_spdy_port_forward_bytes_pass_unchanged_both_ways(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember
) -> None:
    reader, writer, head = await send_upgrade(tunnelling_gateway, "SPDY/3.1")
    assert head.startswith(b"HTTP/1.1 101 ")
    small = bytes(range(256)) + b"HTTP/1.1 200 OK\r\n\r\n"  # looks like HTTP: must pass untouched
    writer.write(small)
    async with asyncio.timeout(5):
        assert await reader.readexactly(len(small)) == small
    big = os.urandom(1024 * 1024)
    writer.write(big)
    async with asyncio.timeout(20):
        echoed = await asyncio.gather(writer.drain(), reader.readexactly(len(big)))
    assert echoed[1] == big
    [conn] = upgrade_member.upgrades
    assert bytes(conn.received) == small + big
    writer.close()


async def test_client_disconnect_closes_the_member_side(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember
) -> None:
    reader, writer, head = await send_upgrade(tunnelling_gateway, "SPDY/3.1")
    assert head.startswith(b"HTTP/1.1 101 ")
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"
    writer.transport.abort()
    await eventually(upgrade_member.upgrades[0].closed.is_set)


async def test_member_disconnect_closes_the_client_side(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember
) -> None:
    reader, writer, head = await send_upgrade(tunnelling_gateway, "SPDY/3.1")
    assert head.startswith(b"HTTP/1.1 101 ")
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"
    await upgrade_member.close_upgraded()
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()


# --- failures before any tunnel ------------------------------------------------------------------


def failure(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason,
            "code": code}  # fmt: skip


async def test_an_unreachable_member_is_503(tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember) -> None:
    status_line, _, body = await refused(tunnelling_gateway, "SPDY/3.1", cluster="down")
    assert status_line == "HTTP/1.1 503 Service Unavailable"
    down = yarl.URL(tunnelling_gateway.server.registry.get("down").address or "")
    message = f'cluster "down" unreachable: connecting to {down.raw_authority} failed: connection refused'
    assert body == failure(503, "ServiceUnavailable", message)
    assert upgrade_member.connections == 0


async def test_an_untrusted_member_certificate_is_502(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember
) -> None:
    status_line, _, body = await refused(tunnelling_gateway, "SPDY/3.1", cluster="wrong-ca")
    assert status_line == "HTTP/1.1 502 Bad Gateway"
    message = (
        f'TLS verification of cluster "wrong-ca" at {upgrade_member.url.raw_authority} failed: '
        "the member's certificate is not trusted by the cluster's CA bundle (ca.crt in its Secret)"
    )
    assert body == failure(502, "BadGateway", message)
    assert upgrade_member.requests == []  # the handshake failed: no request head was sent


async def test_a_member_that_never_answers_is_504_and_closed(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember
) -> None:
    status_line, _, body = await refused(tunnelling_gateway, "SPDY/3.1", pod="hang")
    assert status_line == "HTTP/1.1 504 Gateway Timeout"
    message = f'cluster "m1" at {upgrade_member.url.raw_authority} did not answer the upgrade within {UPGRADE_ANSWER_TIMEOUT:g}s'
    assert body == failure(504, "Timeout", message)
    [conn] = upgrade_member.upgrades
    await eventually(conn.closed.is_set)
    assert conn.received == b""


# --- leaks ---------------------------------------------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _one_of_each(gateway: HostingGateway, member: FakeUpgradeMember) -> None:
    """An echo closed by the client, one closed by the member, a refusal, a denial and a WebSocket exec."""
    for closer in ("client", "member"):
        reader, writer, _ = await send_upgrade(gateway, "SPDY/3.1")
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        if closer == "client":
            writer.transport.abort()
        else:
            await member.close_upgraded()
            assert await reader.read() == b""
            writer.close()
    await refused(gateway, "SPDY/3.1", pod="forbidden", smuggle=b"x")
    await refused(gateway, "websocket", headers=[("Authorization", f"Bearer {MALLORY_TOKEN}")])
    path = f"{CLUSTERGATEWAYS}/m1/proxy{member_path('websocket', 'mypod')}"
    async with (
        gateway.session() as session,
        session.ws_connect(path, protocols=["v5.channel.k8s.io"], headers={"Authorization": f"Bearer {ALICE_TOKEN}"}) as ws,
    ):
        async for _ in ws:
            pass
    await eventually(lambda: all(c.closed.is_set() for c in member.upgrades))


async def test_no_fd_or_task_leak(tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember) -> None:
    """Every socket of the gateway, the member and the clients is in this process: the fd count covers them all."""
    async with asyncio.timeout(40):
        await _one_of_each(tunnelling_gateway, upgrade_member)  # warm up lazily created state (pools, caches)
        await asyncio.sleep(0.2)
        fds, tasks = _fds(), len(asyncio.all_tasks())
        for _ in range(5):
            await _one_of_each(tunnelling_gateway, upgrade_member)
    await eventually(lambda: _fds() <= fds and len(asyncio.all_tasks()) <= tasks, timeout=10)
    assert tunnelling_gateway.server.in_flight.count == 0


# --- /metrics --------------------------------------------------------------------------------------


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape_as_alice(gateway: HostingGateway, kube_apiserver: FakeKubeAPIServer) -> Samples:
    """GET /metrics as alice (granted it here): every sample, by name and sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    rule = PolicyRule(users=("alice",), verbs=("get",), non_resource_urls=("/metrics",))
    if rule not in kube_apiserver.policy:
        kube_apiserver.policy.append(rule)
    async with gateway.session() as s, s.get("/metrics", headers={"Authorization": f"Bearer {ALICE_TOKEN}"}) as r:
        assert r.status == 200
        text = await r.text()
    families = text_string_to_metric_families(text)
    return {(x.name, tuple(sorted(x.labels.items()))): x.value for f in families for x in f.samples}


async def test_an_open_tunnel_is_a_gauge_and_counts_its_101_once_closed(
    tunnelling_gateway: HostingGateway, kube_apiserver: FakeKubeAPIServer
) -> None:
    async def scrape() -> Samples:
        return await scrape_as_alice(tunnelling_gateway, kube_apiserver)

    tunnels, by_cluster = "gateway_apiserver_proxy_open_tunnels", "ocm_proxy_proxied_requests_by_cluster_total"
    _, writer, head = await send_upgrade(tunnelling_gateway, "SPDY/3.1")
    assert head.startswith(b"HTTP/1.1 101 ")
    during = await scrape()
    writer.transport.abort()
    after = during
    for _ in range(100):  # the gateway sees the tunnel end a moment later
        after = await scrape()
        if after.get((tunnels, (("cluster", "m1"),))) == 0:
            break
        await asyncio.sleep(0.05)
    assert (during[(tunnels, (("cluster", "m1"),))], (by_cluster, (("cluster", "m1"), ("code", "101"))) in during) == (1, False)
    assert (after[(tunnels, (("cluster", "m1"),))], after[(by_cluster, (("cluster", "m1"), ("code", "101")))]) == (0, 1)


async def test_tunnel_bytes_are_counted_each_way_while_it_is_open_and_exactly_once_it_ends(
    tunnelling_gateway: HostingGateway, kube_apiserver: FakeKubeAPIServer, upgrade_member: FakeUpgradeMember
) -> None:
    """The tunnel's pumps report every METER_EVERY_BYTES (1 MiB) each way and the rest at the end; the response
    bytes also hold the 101 head. The member connection is an active upstream connection while the tunnel is open."""
    from gateway_apiserver.proxy.upgrade import METER_EVERY_BYTES

    m1 = (("cluster", "m1"),)
    to_member, to_client = "gateway_apiserver_proxy_request_body_bytes_total", "gateway_apiserver_proxy_response_bytes_total"
    connections = "gateway_apiserver_upstream_connections"
    active, idle = (connections, (*m1, ("state", "active"))), (connections, (*m1, ("state", "idle")))
    reader, writer, head = await send_upgrade(tunnelling_gateway, "SPDY/3.1")
    assert head.startswith(b"HTTP/1.1 101 ")
    sent = b"x" * 100 + os.urandom(3 * 1024 * 1024)
    writer.write(sent)
    async with asyncio.timeout(20):
        echoed = await asyncio.gather(writer.drain(), reader.readexactly(len(sent)))
    assert echoed[1] == sent
    await eventually(lambda: len(upgrade_member.upgrades[0].received) == len(sent))
    for _ in range(40):  # the pump may still be awaiting the write of the last chunk the client has read
        during = await scrape_as_alice(tunnelling_gateway, kube_apiserver)
        if during[(to_client, m1)] > len(sent) - METER_EVERY_BYTES:
            break
        await asyncio.sleep(0.05)
    writer.transport.abort()
    after = during
    for _ in range(100):  # the gateway sees the tunnel end a moment later
        after = await scrape_as_alice(tunnelling_gateway, kube_apiserver)
        if after[("gateway_apiserver_proxy_open_tunnels", m1)] == 0:
            break
        await asyncio.sleep(0.05)
    assert len(sent) - METER_EVERY_BYTES < during[(to_member, m1)] <= len(sent)
    assert len(sent) - METER_EVERY_BYTES < during[(to_client, m1)] <= len(sent)
    assert (during[active], during[idle]) == (1, 0)
    assert after[(to_member, m1)] == len(sent)
    assert after[(to_client, m1)] == len(head) + len(sent)
    assert (after[active], after[idle]) == (0, 0)
