"""A keep-alive pool of HTTP/1.1 connections to one member address, for the proxy's fast path.

Idle connections are reused last-in first-out (the warmest first) and closed after `idle_timeout`
seconds unused, by one timer for the whole pool. There is no cap on connections: a watch holds
one for as long as it lasts, and a request never queues behind another (as aiohttp's limit=0).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from ..upstream_errors import DialFailed
from .connection import UpstreamConnection, UpstreamExchange


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections to one member address with one TLS context."""

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        *,
        server_hostname: str | None,
        connect_timeout: float,
        idle_timeout: float,
    ) -> None:
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self._server_hostname = server_hostname if ssl_context is not None else None
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._idle: list[UpstreamConnection] = []  # oldest first; taken from the end
        self._active: set[UpstreamConnection] = set()  # carrying an exchange
        self._sweep: asyncio.TimerHandle | None = None
        self.closed = False

    @property
    def idle(self) -> int:
        """Open connections waiting in the pool."""
        return len(self._idle)

    @property
    def active(self) -> int:
        """Connections carrying an exchange now (a held watch counts until it ends)."""
        return len(self._active)

    async def send(self, head: bytes, body: bytes = b"", *, idempotent: bool) -> UpstreamExchange:
        """Send one request (`head`: request line, headers and blank line; `body`: the whole body) and return
        once the answer's head has arrived.

        Raises DialFailed when no connection could be made; asyncio.IncompleteReadError (the member closed
        the connection), ConnectionResetError or InvalidAnswer when it failed before answering. A reused
        connection that the member had closed while idle is retried once on a new one when `idempotent`.
        Not for HEAD requests (the answer's body length would be misread) nor upgrades.
        """
        if self.closed:
            raise RuntimeError("the upstream pool is closed")
        if head.startswith(b"HEAD "):
            raise ValueError("HEAD requests are not for the raw pool: their answers' lengths describe no body")
        data = head + body if body else head
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.usable():
                continue
            exchange = connection.start(data)
            self._active.add(connection)
            try:
                await _head_of(exchange)
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
                if not idempotent or exchange.answered:
                    raise
                break  # it was closed while idle: once more, on a new connection
            return exchange
        connection = await self._dial()
        exchange = connection.start(data)
        self._active.add(connection)
        await _head_of(exchange)
        return exchange

    async def _dial(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        tls = self.ssl_context
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(self),
                    self.host,
                    self.port,
                    ssl=tls,
                    server_hostname=self._server_hostname,
                    ssl_handshake_timeout=self._connect_timeout if tls is not None else None,
                )
        except OSError as exc:  # refused, DNS (gaierror), TLS (SSLError), timeouts: all OSErrors
            raise DialFailed(exc) from None
        return connection

    def close(self) -> None:
        """Close the idle connections now; active ones close when their exchange ends."""
        self.closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    def abort(self) -> None:
        """Close every connection now: idle ones, and active ones, whose exchanges fail with ConnectionAbortedError."""
        self.close()
        for connection in list(self._active):
            connection.abort()

    # --- ConnectionOwner -----------------------------------------------------------------------

    def exchange_ended(self, connection: UpstreamConnection, reusable: bool) -> None:
        """Back to the pool if `reusable` and the pool is open; closed otherwise."""
        self._active.discard(connection)
        if not reusable or self.closed:
            connection.close()
            return
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        self._idle.append(connection)
        if self._sweep is None:
            self._sweep = loop.call_at(connection.idle_since + self._idle_timeout, self._close_expired)

    def idle_connection_lost(self, connection: UpstreamConnection) -> None:
        """An idle connection closed (the member closed it, or the pool did): it leaves the pool."""
        with contextlib.suppress(ValueError):
            self._idle.remove(connection)

    def _close_expired(self) -> None:
        self._sweep = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() - self._idle_timeout
        idle = self._idle
        expired = 0
        while expired < len(idle) and idle[expired].idle_since <= deadline:
            expired += 1
        stale, idle[:expired] = idle[:expired], []
        for connection in stale:
            connection.close()
        if idle:
            self._sweep = loop.call_at(idle[0].idle_since + self._idle_timeout, self._close_expired)


async def _head_of(exchange: UpstreamExchange) -> None:
    """Wait for the answer's head; a cancelled wait (the client left) abandons the exchange."""
    try:
        await exchange._head
    except asyncio.CancelledError:
        exchange.close()
        raise
