"""A Konnectivity (apiserver-network-proxy) proxy-server and agent, as OCM's cluster-proxy runs them.

`FakeProxyServer` is real gRPC over mutual TLS on 127.0.0.1 (a server certificate, and client
certificates required and verified against its client CA, as ANP's mTLS frontend does). It serves

* `/ProxyService/Proxy` to clients (the gateway): one dial per stream. A DIAL_REQ goes to the agent
  chosen by destHost (the address without its port, matched against the agents' `host=` identifiers);
  without one the client gets a DIAL_RSP whose error is `No agent available`. DIAL_RSP, DATA and
  CLOSE_RSP from the agent come back on the stream that dialled; DATA and CLOSE_REQ from the client
  go to that agent; DIAL_CLS withdraws a pending dial. After a CLOSE_REQ the server stops reading the
  stream (the agent's CLOSE_RSP still comes back), and a client stream that ends closes its connections
  at the agent.
* `/AgentService/Connect` to agents, identified by the gRPC metadata `agentid` and `agentidentifiers`
  (URL-encoded, e.g. `host=cluster-a`; gRPC lower-cases metadata keys, so these are the keys a real
  agent's `agentID` and `agentIdentifiers` arrive as), answered with `serverid` and `servercount` headers.
  An agent that goes away gets a CLOSE_RSP sent for each of its open connections.

`FakeAgent` connects to the server over real gRPC (its own client certificate) and dials what
DIAL_REQs ask over real TCP (`routes` maps "host:port" to where it really listens, as the agent's
ExternalName Service named after the cluster points at `kubernetes.default`).

Counters (`dials`, `established`, `open_connections`, `close_requests`, `no_agent`) let tests assert how
many tunnels were opened; `stop()`/`start()` restart the server on the same port; `FakeAgent.disconnect()`
takes an agent away, `FakeAgent.answering = False` leaves dials unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import grpc
from grpc import aio

from gateway_apiserver.proxy.konnectivity import konnectivity_pb2 as pb

from .pki import CertKey, issue_client_cert, issue_server_cert, make_ca, write_pair

NO_AGENT = "No agent available"  # ANP's ErrNotFound text
_CHUNK = 32 * 1024


def _codec_handler(service: str, method: str, behaviour: Any) -> grpc.GenericRpcHandler[Any, Any]:
    handler = grpc.stream_stream_rpc_method_handler(
        behaviour, request_deserializer=pb.Packet.FromString, response_serializer=pb.Packet.SerializeToString
    )
    return grpc.method_handlers_generic_handler(service, {method: handler})


class _Stream:
    """One gRPC stream of the server, written by one coroutine at a time."""

    def __init__(self, context: aio.ServicerContext[pb.Packet, pb.Packet]) -> None:
        self.context = context
        self._lock = asyncio.Lock()

    async def send(self, packet: pb.Packet) -> None:
        async with self._lock:
            with contextlib.suppress(Exception):  # the stream may be gone: as ANP, a failed send is only logged
                await self.context.write(packet)


@dataclass(eq=False)
class _Backend:
    """An agent connected to the server."""

    agent_id: str
    hosts: tuple[str, ...]
    stream: _Stream
    connections: dict[int, _Stream] = field(default_factory=dict)  # connectID -> the client stream


@dataclass(eq=False)
class _Pending:
    frontend: _Stream
    backend: _Backend


class FakeProxyServer:
    """The proxy-server on https://127.0.0.1:<port> (gRPC), with mutual TLS."""

    def __init__(self) -> None:
        self.ca = make_ca("fake-proxy-server-ca")  # signs the server certificate (the client's --proxy-ca-cert)
        self.serving = issue_server_cert(self.ca, dns_names=("localhost", "proxy-server.test"))
        self.client_ca = make_ca("fake-proxy-client-ca")  # signs the gateway's and the agents' certificates
        self.port = 0
        self._server: aio.Server | None = None
        self._backends: list[_Backend] = []
        self._pending: dict[int, _Pending] = {}
        self._agents_changed = asyncio.Event()
        self.dials = 0  # DIAL_REQs received from clients
        self.established = 0  # dials an agent answered with a connection
        self.no_agent = 0  # dials answered `No agent available`
        self.close_requests = 0  # CLOSE_REQs received from clients
        self.withdrawn = 0  # DIAL_CLSs received from clients for dials still pending
        self.dial_addresses: list[str] = []

    def client_cert(self, cn: str = "gateway") -> CertKey:
        """A client certificate the server accepts."""
        return issue_client_cert(self.client_ca, cn)

    def write_client_files(self, directory: Path, client: CertKey | None = None) -> tuple[Path, Path, Path]:
        """(--proxy-ca-cert, --proxy-cert, --proxy-key) files for a client of this server."""
        directory.mkdir(parents=True, exist_ok=True)
        ca_file = directory / "proxy-ca.crt"
        ca_file.write_bytes(self.ca.cert_pem)
        cert_file, key_file = write_pair(directory, "proxy-client", client or self.client_cert())
        return ca_file, cert_file, key_file

    @property
    def open_connections(self) -> int:
        """Tunnels (established connections) open right now."""
        return sum(len(b.connections) for b in self._backends)

    @property
    def agents(self) -> list[str]:
        """The ids of the agents connected now."""
        return [b.agent_id for b in self._backends]

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a random port the first time, the same one after stop())."""
        server = aio.server()
        server.add_generic_rpc_handlers(
            (_codec_handler("ProxyService", "Proxy", self._proxy), _codec_handler("AgentService", "Connect", self._connect))
        )
        credentials = grpc.ssl_server_credentials(
            [(self.serving.key_pem, self.serving.cert_pem)], root_certificates=self.client_ca.cert_pem, require_client_auth=True
        )
        self.port = server.add_secure_port(f"127.0.0.1:{self.port}", credentials)
        await server.start()
        self._server = server

    async def stop(self) -> None:
        """Stop at once: every stream (clients' and agents') is cut."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace=None)
        self._backends.clear()
        self._pending.clear()

    async def __aenter__(self) -> FakeProxyServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for_agents(self, count: int, timeout: float = 5.0) -> None:
        """Until `count` agents are connected."""
        async with asyncio.timeout(timeout):
            while len(self._backends) != count:
                self._agents_changed.clear()
                await self._agents_changed.wait()

    # --- clients (the gateway) --------------------------------------------------------------------

    def _backend_for(self, address: str) -> _Backend | None:
        host = address.rsplit(":", 1)[0] if ":" in address else address  # destHost: the port is stripped
        host = host.strip("[]")
        for backend in self._backends:
            if host in backend.hosts:
                return backend
        return None

    async def _proxy(self, requests: AsyncIterator[pb.Packet], context: aio.ServicerContext[pb.Packet, pb.Packet]) -> None:
        frontend = _Stream(context)
        backend: _Backend | None = None
        dialled: list[int] = []
        try:
            async for packet in requests:
                if packet.type == pb.DIAL_REQ:
                    self.dials += 1
                    self.dial_addresses.append(packet.dialRequest.address)
                    backend = self._backend_for(packet.dialRequest.address)
                    if backend is None:
                        self.no_agent += 1
                        answer = pb.DialResponse(random=packet.dialRequest.random, error=NO_AGENT)
                        await frontend.send(pb.Packet(type=pb.DIAL_RSP, dialResponse=answer))
                        break  # as ANP: serve no more of this stream, keep it until the client ends it
                    self._pending[packet.dialRequest.random] = _Pending(frontend, backend)
                    dialled.append(packet.dialRequest.random)
                    await backend.stream.send(packet)
                elif packet.type == pb.DIAL_CLS:
                    if self._pending.pop(packet.closeDial.random, None) is not None:
                        self.withdrawn += 1
                elif packet.type == pb.DATA and backend is not None:
                    await backend.stream.send(packet)
                elif packet.type == pb.CLOSE_REQ:
                    self.close_requests += 1
                    if backend is not None:
                        await backend.stream.send(packet)
                    break  # ANP stops serving the stream after a CLOSE_REQ
            async for _ in requests:  # until the client ends the stream
                pass
        finally:
            for random in dialled:
                pending = self._pending.pop(random, None)
                if pending is not None:
                    await pending.backend.stream.send(pb.Packet(type=pb.DIAL_CLS, closeDial=pb.CloseDial(random=random)))
            for b in self._backends:
                for connect_id, stream in list(b.connections.items()):
                    if stream is frontend:  # the client went away: close its connection at the agent
                        del b.connections[connect_id]
                        await b.stream.send(pb.Packet(type=pb.CLOSE_REQ, closeRequest=pb.CloseRequest(connectID=connect_id)))

    # --- agents -----------------------------------------------------------------------------------

    async def _connect(self, requests: AsyncIterator[pb.Packet], context: aio.ServicerContext[pb.Packet, pb.Packet]) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() or ()}
        agent_id = metadata.get("agentid")
        if not isinstance(agent_id, str):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected one agent ID in the context")
            return
        identifiers = parse_qs(str(metadata.get("agentidentifiers", "")))
        await context.send_initial_metadata((("serverid", "fake-proxy-server"), ("servercount", "1")))
        backend = _Backend(agent_id, tuple(identifiers.get("host", ())), _Stream(context))
        self._backends.append(backend)
        self._agents_changed.set()
        try:
            async for packet in requests:
                await self._from_agent(backend, packet)
        finally:
            if backend in self._backends:
                self._backends.remove(backend)
                self._agents_changed.set()
            for connect_id, frontend in list(backend.connections.items()):
                await frontend.send(pb.Packet(type=pb.CLOSE_RSP, closeResponse=pb.CloseResponse(connectID=connect_id)))
            backend.connections.clear()

    async def _from_agent(self, backend: _Backend, packet: pb.Packet) -> None:
        if packet.type == pb.DIAL_RSP:
            pending = self._pending.pop(packet.dialResponse.random, None)
            if pending is None:  # withdrawn: the agent must close what it opened
                if packet.dialResponse.connectID:
                    close = pb.CloseRequest(connectID=packet.dialResponse.connectID)
                    await backend.stream.send(pb.Packet(type=pb.CLOSE_REQ, closeRequest=close))
                return
            if not packet.dialResponse.error:
                self.established += 1
                backend.connections[packet.dialResponse.connectID] = pending.frontend
            await pending.frontend.send(packet)
        elif packet.type == pb.DATA:
            frontend = backend.connections.get(packet.data.connectID)
            if frontend is not None:
                await frontend.send(packet)
        elif packet.type == pb.CLOSE_RSP:
            frontend = backend.connections.pop(packet.closeResponse.connectID, None)
            if frontend is not None:
                await frontend.send(packet)


class FakeAgent:
    """A cluster-proxy agent for the clusters `hosts`, dialling `routes` ("name:port" -> (host, port))."""

    def __init__(
        self, server: FakeProxyServer, agent_id: str, hosts: tuple[str, ...], routes: Mapping[str, tuple[str, int]]
    ) -> None:
        self.server = server
        self.agent_id = agent_id
        self.hosts = hosts
        self.routes = dict(routes)
        self._ids = itertools.count(1)
        self._remotes: dict[int, asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._channel: aio.Channel | None = None
        self._call: Any = None
        self._runner: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self.answering = True  # False: dials are received and never answered (a stuck agent)

    async def connect(self) -> None:
        """Connect to the server and serve its dials until disconnected."""
        cert = self.server.client_cert(f"agent-{self.agent_id}")
        credentials = grpc.ssl_channel_credentials(self.server.ca.cert_pem, cert.key_pem, cert.cert_pem)
        self._channel = aio.secure_channel(
            f"127.0.0.1:{self.server.port}", credentials, options=(("grpc.ssl_target_name_override", "localhost"),)
        )
        connect = self._channel.stream_stream(
            "/AgentService/Connect", request_serializer=pb.Packet.SerializeToString, response_deserializer=pb.Packet.FromString
        )
        identifiers = "&".join(f"host={h}" for h in self.hosts)
        self._call = connect(None, metadata=(("agentid", self.agent_id), ("agentidentifiers", identifiers)))
        await self._call.initial_metadata()  # the server's serverID and serverCount
        self._runner = asyncio.create_task(self._serve())

    async def disconnect(self) -> None:
        """Go away as a crashed agent does: the stream is cut and its connections to the member closed."""
        if self._call is not None:
            self._call.cancel()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
                await self._runner
        for task in list(self._tasks):
            task.cancel()
        for writer in self._remotes.values():
            writer.close()
        self._remotes.clear()
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    async def __aenter__(self) -> FakeAgent:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def _send(self, packet: pb.Packet) -> None:
        async with self._send_lock:
            with contextlib.suppress(Exception):
                await self._call.write(packet)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self) -> None:
        with contextlib.suppress(grpc.RpcError, asyncio.CancelledError):
            async for packet in self._call:
                if packet.type == pb.DIAL_REQ and self.answering:
                    self._spawn(self._dial(packet.dialRequest))
                elif packet.type == pb.DATA:
                    writer = self._remotes.get(packet.data.connectID)
                    if writer is not None:
                        writer.write(packet.data.data)
                elif packet.type == pb.CLOSE_REQ:
                    writer = self._remotes.pop(packet.closeRequest.connectID, None)
                    if writer is not None:
                        writer.close()
                    close = pb.CloseResponse(connectID=packet.closeRequest.connectID)
                    if writer is None:
                        close.error = "Unknown connectID"
                    await self._send(pb.Packet(type=pb.CLOSE_RSP, closeResponse=close))

    async def _dial(self, request: pb.DialRequest) -> None:
        answer = pb.DialResponse(random=request.random)
        host, port = self.routes.get(request.address, (request.address.rsplit(":", 1)[0], 0))
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, TimeoutError) as exc:
            answer.error = f"dial tcp {request.address}: {exc.strerror or 'i/o timeout'}"
            await self._send(pb.Packet(type=pb.DIAL_RSP, dialResponse=answer))
            return
        connect_id = next(self._ids)
        answer.connectID = connect_id
        self._remotes[connect_id] = writer
        await self._send(pb.Packet(type=pb.DIAL_RSP, dialResponse=answer))
        self._spawn(self._pump(connect_id, reader, writer))

    async def _pump(self, connect_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The member's bytes as DATA; its end of the connection as CLOSE_RSP (as the real agent's cleanup)."""
        try:
            while chunk := await reader.read(_CHUNK):
                await self._send(pb.Packet(type=pb.DATA, data=pb.Data(connectID=connect_id, data=chunk)))
        except OSError:
            pass
        if self._remotes.pop(connect_id, None) is not None:
            writer.close()
            await self._send(pb.Packet(type=pb.CLOSE_RSP, closeResponse=pb.CloseResponse(connectID=connect_id)))
