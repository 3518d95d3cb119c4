"""Tunnels to member clusters through the proxy-server: one Proxy stream per TCP connection.

`ProxyServerTunnels.dial(cluster)` opens a stream on the shared channel, sends DIAL_REQ (protocol
"tcp", address "<cluster>:443", a random id), waits for the DIAL_RSP with that id (bounded by the
connect timeout; on giving up it sends DIAL_CLS), and returns one end of a socket pair: the bytes
written to it go out as DATA packets tagged with the connectID, DATA packets come back into it.
Closing that socket sends CLOSE_REQ (and waits briefly for the CLOSE_RSP); a CLOSE_RSP from the
server (the member or the agent went away) or a broken stream closes it, so whoever holds it
sees the connection end. One tunnel's failure never touches another's.

A socket pair lets every asyncio-level consumer (aiohttp's pooled connections, the upgrade
tunnels, TLS on either event loop) use the tunnel as an ordinary connected socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from typing import Any

import grpc
from grpc.aio import EOF  # type: ignore[attr-defined]  # missing from grpc-stubs

from . import konnectivity_pb2 as pb
from .channel import ChannelUnavailable, KonnectivitySettings, ProxyServerChannel
from .errors import channel_failure, dial_refused, unreachable

log = logging.getLogger(__name__)

PROXY_METHOD = "/ProxyService/Proxy"
MEMBER_PORT = 443  # the agent's ExternalName Service named after the cluster forwards this to kubernetes.default
CLOSE_TIMEOUT = 10.0  # how long a CLOSE_REQ waits for its CLOSE_RSP (as konnectivity-client)
_CHUNK = 64 * 1024


def _packet(**fields: Any) -> pb.Packet:
    return pb.Packet(**fields)


class ProxyServerTunnels:
    """Dials clusters through the proxy-server over one shared channel; tracks the open tunnels."""

    def __init__(self, settings: KonnectivitySettings, connect_timeout: float) -> None:
        self.settings = settings
        self.connect_timeout = connect_timeout
        self.channel = ProxyServerChannel(settings)
        self._tunnels: set[asyncio.Task[None]] = set()

    @property
    def open(self) -> int:
        """Tunnels open now."""
        return len(self._tunnels)

    async def dial(self, cluster: str) -> socket.socket:
        """A connected socket to `cluster`'s API server through its agent; TunnelError names the cause."""
        server = self.settings.address
        try:
            channel = self.channel.get()
        except ChannelUnavailable as exc:
            raise unreachable(cluster, exc.cause) from None
        proxy = channel.stream_stream(
            PROXY_METHOD, request_serializer=pb.Packet.SerializeToString, response_deserializer=pb.Packet.FromString
        )
        call: Any = proxy(None)
        random = secrets.randbits(63)
        request = pb.DialRequest(protocol="tcp", address=f"{cluster}:{MEMBER_PORT}", random=random)
        answered = False
        try:
            async with asyncio.timeout(self.connect_timeout):
                await call.write(_packet(type=pb.DIAL_REQ, dialRequest=request))
            # Waited for without cancelling the read on timeout: grpc.aio cancels the whole call with it.
            waiting = asyncio.ensure_future(_dial_answer(call, random))
            try:
                done, _ = await asyncio.wait((waiting,), timeout=self.connect_timeout)
            except asyncio.CancelledError:
                waiting.cancel()
                raise
            if not done:
                await _withdraw(call, random, waiting)
                raise TimeoutError
            answer = waiting.result()
            answered = True
        except TimeoutError:
            call.cancel()
            raise unreachable(
                cluster, f"dialing it through the Konnectivity proxy-server {server} timed out after {self.connect_timeout:g}s"
            ) from None
        except grpc.RpcError as exc:
            call.cancel()
            cause = channel_failure(server, exc)
            log.info("dial of cluster %s through %s failed: %s %s", cluster, server, exc.code(), exc.details())
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                self.channel.failed(channel, cause)
            raise unreachable(cluster, cause) from None
        finally:
            if not answered and not call.done():
                call.cancel()  # cancelled (the client left) or failed: the stream goes too
        self.channel.succeeded()
        if answer is None:
            call.cancel()
            raise unreachable(cluster, f"the Konnectivity proxy-server {server} closed the dial")
        if answer.error:
            call.cancel()
            raise unreachable(cluster, dial_refused(server, answer.error))
        ours, theirs = socket.socketpair()
        for sock in (ours, theirs):
            sock.setblocking(False)
        task = asyncio.get_running_loop().create_task(_carry(call, theirs, answer.connectID, cluster))
        self._tunnels.add(task)
        task.add_done_callback(self._tunnels.discard)
        return ours

    async def close(self, grace: float = 1.0) -> None:
        """Let tunnels whose sockets were closed send their CLOSE_REQ (for `grace` seconds), then close the channel."""
        if self._tunnels:
            await asyncio.wait(list(self._tunnels), timeout=grace)
        for task in list(self._tunnels):
            task.cancel()
        await asyncio.gather(*self._tunnels, return_exceptions=True)
        await self.channel.close()


async def _dial_answer(call: Any, random: int) -> pb.DialResponse | None:
    """The DIAL_RSP for `random`; None when the server withdrew the dial (DIAL_CLS) or ended the stream."""
    while True:
        packet = await call.read()
        if packet is EOF:
            return None
        if packet.type == pb.DIAL_RSP and packet.dialResponse.random == random:
            answer: pb.DialResponse = packet.dialResponse
            return answer
        if packet.type == pb.DIAL_CLS and packet.closeDial.random == random:
            return None


async def _withdraw(call: Any, random: int, waiting: asyncio.Future[Any]) -> None:
    """DIAL_CLS for a dial we gave up on; the stream ends once the server saw it (best effort, 1 s)."""
    with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError, TimeoutError):
        async with asyncio.timeout(1.0):
            await call.write(_packet(type=pb.DIAL_CLS, closeDial=pb.CloseDial(random=random)))
            await call.done_writing()
            await asyncio.wait((waiting,))  # the server ends the stream once we stopped writing
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    call.cancel()


async def _carry(call: Any, sock: socket.socket, connect_id: int, cluster: str) -> None:
    """Carry bytes between `sock` and the stream until either side ends; then close both properly."""
    loop = asyncio.get_running_loop()
    closed_by_server = asyncio.Event()

    async def inbound() -> None:  # the member's bytes, into the socket
        try:
            while True:
                packet = await call.read()
                if packet is EOF:
                    return
                if packet.type == pb.DATA and packet.data.connectID == connect_id:
                    if packet.data.data:
                        await loop.sock_sendall(sock, packet.data.data)
                elif packet.type == pb.CLOSE_RSP and packet.closeResponse.connectID == connect_id:
                    closed_by_server.set()
                    return
        except (grpc.RpcError, OSError) as exc:
            log.info("tunnel to cluster %s ended: %s", cluster, type(exc).__name__)

    async def outbound() -> None:  # the socket's bytes, out as DATA
        with contextlib.suppress(OSError):
            while data := await loop.sock_recv(sock, _CHUNK):
                await call.write(_packet(type=pb.DATA, data=pb.Data(connectID=connect_id, data=data)))

    reading, writing = asyncio.ensure_future(inbound()), asyncio.ensure_future(outbound())
    try:
        await asyncio.wait((reading, writing), return_when=asyncio.FIRST_COMPLETED)
        if writing.done() and not reading.done() and not writing.cancelled():
            # The socket's holder closed it (the pool dropped the connection): CLOSE_REQ, then the CLOSE_RSP.
            with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError):
                await call.write(_packet(type=pb.CLOSE_REQ, closeRequest=pb.CloseRequest(connectID=connect_id)))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await reading
                await call.done_writing()
    finally:
        for task in (reading, writing):
            task.cancel()
        await asyncio.gather(reading, writing, return_exceptions=True)
        sock.close()  # the holder sees the connection end (EOF)
        call.cancel()
