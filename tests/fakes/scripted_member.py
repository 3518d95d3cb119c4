"""A member that answers with exactly the bytes a test scripts, over TLS on 127.0.0.1: for HTTP/1.1 framing
(chunks, early closes, resets, 1xx, malformed answers) that a well-behaved server never produces.

Each accepted connection runs the test's `script(conn)` coroutine, with the connection's ordinal
(0 for the first) so a test can script the first and later connections apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from tests.fakes.pki import CertKey, issue_server_cert, make_ca, server_ssl_context


@dataclass
class ScriptedConnection:
    """One accepted connection: read requests, write raw answer bytes, end it."""

    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: list[bytes] = field(default_factory=list)  # every request read on it, head and body

    async def read_request(self) -> bytes:
        """The next request (head, and a Content-Length body); b"" at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return b""
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        request = head + await self.reader.readexactly(length)
        self.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        """Write `data` in one write and flush it."""
        self.writer.write(data)
        await self.writer.drain()

    async def wait_closed_by_peer(self) -> None:
        """Until the client closes the connection (EOF or error)."""
        with contextlib.suppress(ConnectionError, OSError):
            while await self.reader.read(65536):
                pass

    def close(self) -> None:
        """End the connection cleanly (TLS close_notify, then FIN)."""
        self.writer.close()

    def reset(self) -> None:
        """End the connection with a TCP reset, as a crashing member or a middlebox does."""
        self.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Script = Callable[[ScriptedConnection], Awaitable[None]]


@dataclass
class ScriptedMember:
    """The listening member: its port, CA, and every connection it accepted."""

    port: int
    ca: CertKey
    connections: list[ScriptedConnection]

    @property
    def requests(self) -> list[bytes]:
        """Every request read, over all connections, in order of connection."""
        return [request for conn in self.connections for request in conn.requests]


@contextlib.asynccontextmanager
async def scripted_member(script: Script, *, tls: bool = True) -> AsyncIterator[ScriptedMember]:
    """Serve `script` per connection on 127.0.0.1 (TLS with a fresh CA, unless `tls` is False)."""
    ca = make_ca("scripted-member-ca")
    serving = issue_server_cert(ca, dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    member = ScriptedMember(0, ca, [])
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ScriptedConnection(len(member.connections), reader, writer)
        member.connections.append(conn)
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await script(conn)
        except (ConnectionError, OSError):
            pass  # the client went away while the script ran
        except asyncio.CancelledError:
            pass  # the member is stopping (asyncio logs a cancelled connection callback as an error)
        finally:
            tasks.discard(task)

    ssl_context = server_ssl_context(serving) if tls else None
    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ssl_context)
    member.port = server.sockets[0].getsockname()[1]
    try:
        yield member
    finally:
        server.close()
        for conn in member.connections:
            conn.writer.transport.abort()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
