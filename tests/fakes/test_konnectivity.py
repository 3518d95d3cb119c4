"""The fake Konnectivity proxy-server and agent speak ANP's protocol, driven by a raw gRPC client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from gateway_apiserver.proxy.konnectivity import konnectivity_pb2 as pb

from .konnectivity import NO_AGENT, FakeAgent, FakeProxyServer
from .pki import issue_client_cert, make_ca

pytestmark = pytest.mark.timeout(30)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data.upper())
        await writer.drain()
    writer.close()


@pytest.fixture
async def server() -> AsyncIterator[FakeProxyServer]:
    async with FakeProxyServer() as proxy_server:
        yield proxy_server


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        yield echo.sockets[0].getsockname()[1]
    finally:
        echo.close()


def _open_stream(server: FakeProxyServer, channel: aio.Channel) -> Any:
    proxy = channel.stream_stream(
        "/ProxyService/Proxy", request_serializer=pb.Packet.SerializeToString, response_deserializer=pb.Packet.FromString
    )
    return proxy(None)


def _channel(server: FakeProxyServer, client_ca: Any = None) -> aio.Channel:
    cert = issue_client_cert(client_ca, "stranger") if client_ca is not None else server.client_cert()
    creds = grpc.ssl_channel_credentials(server.ca.cert_pem, cert.key_pem, cert.cert_pem)
    return aio.secure_channel(f"127.0.0.1:{server.port}", creds, options=(("grpc.ssl_target_name_override", "localhost"),))


def _dial(address: str, random: int) -> pb.Packet:
    return pb.Packet(type=pb.DIAL_REQ, dialRequest=pb.DialRequest(protocol="tcp", address=address, random=random))


async def test_a_dial_reaches_the_agent_registered_for_the_destination_host_and_carries_bytes_both_ways(
    server: FakeProxyServer, echo_port: int
) -> None:
    async with (
        FakeAgent(server, "a1", ("cluster-a",), {"cluster-a:443": ("127.0.0.1", echo_port)}),
        _channel(server) as channel,
    ):
        await server.wait_for_agents(1)
        call = _open_stream(server, channel)
        await call.write(_dial("cluster-a:443", 42))
        answer = await call.read()
        assert (answer.type, answer.dialResponse.random, answer.dialResponse.error) == (pb.DIAL_RSP, 42, "")
        connect_id = answer.dialResponse.connectID
        assert connect_id > 0 and (server.dials, server.established, server.open_connections) == (1, 1, 1)
        await call.write(pb.Packet(type=pb.DATA, data=pb.Data(connectID=connect_id, data=b"hello")))
        data = await call.read()
        assert (data.type, data.data.connectID, data.data.data) == (pb.DATA, connect_id, b"HELLO")
        await call.write(pb.Packet(type=pb.CLOSE_REQ, closeRequest=pb.CloseRequest(connectID=connect_id)))
        closed = await call.read()
        assert (closed.type, closed.closeResponse.connectID, closed.closeResponse.error) == (pb.CLOSE_RSP, connect_id, "")
        await call.done_writing()
        assert (server.close_requests, server.open_connections) == (1, 0)


async def test_a_dial_to_a_host_no_agent_serves_is_answered_no_agent_available(server: FakeProxyServer, echo_port: int) -> None:
    async with FakeAgent(server, "a1", ("cluster-a",), {"cluster-a:443": ("127.0.0.1", echo_port)}), _channel(server) as channel:
        await server.wait_for_agents(1)
        call = _open_stream(server, channel)
        await call.write(_dial("cluster-b:443", 7))
        answer = await call.read()
        assert (answer.type, answer.dialResponse.random, answer.dialResponse.error) == (pb.DIAL_RSP, 7, NO_AGENT)
        await call.done_writing()
        assert (server.no_agent, server.established) == (1, 0)


async def test_an_agent_going_away_closes_its_connections_with_close_rsp(server: FakeProxyServer, echo_port: int) -> None:
    agent = FakeAgent(server, "a1", ("cluster-a",), {"cluster-a:443": ("127.0.0.1", echo_port)})
    await agent.connect()
    async with _channel(server) as channel:
        await server.wait_for_agents(1)
        call = _open_stream(server, channel)
        await call.write(_dial("cluster-a:443", 1))
        connect_id = (await call.read()).dialResponse.connectID
        await agent.disconnect()
        closed = await call.read()
        assert (closed.type, closed.closeResponse.connectID) == (pb.CLOSE_RSP, connect_id)
        call.cancel()
    assert server.agents == []


async def test_the_server_refuses_a_client_certificate_its_client_ca_did_not_sign(server: FakeProxyServer) -> None:
    async with _channel(server, client_ca=make_ca("another-ca")) as channel:
        call = _open_stream(server, channel)
        with pytest.raises(grpc.RpcError) as raised:
            await call.write(_dial("cluster-a:443", 1))
            await call.read()
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_server_restarts_on_the_same_port(server: FakeProxyServer, tmp_path: Path) -> None:
    port = server.port
    await server.stop()
    await server.start()
    assert server.port == port
    ca, cert, key = server.write_client_files(tmp_path)
    assert ca.read_bytes() == server.ca.cert_pem and cert.exists() and key.exists()
