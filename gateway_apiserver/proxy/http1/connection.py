"""One keep-alive HTTP/1.1 connection to a member, and the exchange (one request and its answer) it carries.

Callback-driven: the connection is an asyncio Protocol whose bytes go straight into an llhttp parser
(httptools); the parser's callbacks fill in the answer's head, hand each body chunk to the caller's sink
as it arrives, and end the exchange. No task runs per request, and nothing awaits per chunk: an
exchange has one future for its answer's head and one for its body's end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import httptools

from ..upstream_errors import InvalidAnswer

Sink = Callable[[bytes], None]
EARLY_BODY_LIMIT = 256 * 1024  # body bytes held before relay() is called; reading pauses beyond this
_NO_BODY_STATUSES = (204, 304)


class ConnectionOwner(Protocol):
    """What a connection tells its pool."""

    def exchange_ended(self, connection: UpstreamConnection, reusable: bool) -> None:
        """The connection's exchange is over; `reusable`: it may carry another one."""

    def idle_connection_lost(self, connection: UpstreamConnection) -> None:
        """A connection carrying no exchange was closed (by the member, or by the pool)."""


class UpstreamExchange:
    """A request sent to a member and its answer, whose head has arrived; the body is relayed on demand."""

    __slots__ = (
        "_closed",
        "_connection",
        "_done",
        "_early",
        "_early_size",
        "_error",
        "_finished",
        "_head",
        "_held",
        "_paused",
        "_sink",
        "answered",
        "content_length",
        "headers",
        "reason",
        "status",
    )

    def __init__(self, connection: UpstreamConnection, loop: asyncio.AbstractEventLoop) -> None:
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[bytes, bytes]] = []  # raw, in the member's order
        self.content_length: int | None = None  # None: chunked, or delimited by the connection's close
        self.answered = False  # a byte of the answer has arrived (a failure after it is never retried)
        self._connection = connection
        self._head: asyncio.Future[None] = loop.create_future()
        self._sink: Sink | None = None
        self._early: list[bytes] = []  # chunks that arrived before relay() was called
        self._early_size = 0
        self._done: asyncio.Future[None] | None = None
        self._finished = False
        self._error: BaseException | None = None
        self._closed = False
        self._paused = False  # by the caller (pause_reading)
        self._held = False  # by the exchange itself: too many early chunks

    def relay(self, sink: Sink) -> Awaitable[None]:
        """Pass each body chunk (chunked framing decoded) to `sink`, synchronously, as it arrives (those already
        here first, within this call). The awaitable completes at the body's end; it raises
        asyncio.IncompleteReadError, ConnectionResetError or InvalidAnswer if the answer fails midway,
        ConnectionAbortedError if the exchange is closed first, or what `sink` raised (the exchange is then closed)."""
        if self._done is not None:
            raise RuntimeError("relay() was already called")
        early, self._early, self._early_size = self._early, [], 0
        done = self._head.get_loop().create_future()
        try:
            for chunk in early:
                sink(chunk)
        except Exception as exc:  # the caller's sink failed: the exchange is given up, as on_body does
            self.close()
            self._done = done
            done.set_exception(exc)
            return done
        self._done = done
        if self._error is not None:
            done.set_exception(self._error)
        elif self._finished:
            done.set_result(None)
        elif self._closed:
            done.set_exception(_abandoned())
        else:
            self._sink = sink
            if self._held:
                self._held = False
                self._connection.set_reading(not self._paused)
        return done

    def pause_reading(self) -> None:
        """Stop reading from the member (the client is slow); chunks already read are still delivered."""
        if not self._paused:
            self._paused = True
            if self._connection.exchange is self:
                self._connection.set_reading(False)

    def resume_reading(self) -> None:
        """Read from the member again."""
        if self._paused:
            self._paused = False
            if self._connection.exchange is self and not self._held:
                self._connection.set_reading(True)

    def close(self) -> None:
        """Abandon the exchange (the client left, a timeout): its connection closes and is never reused.
        A no-op once the body has ended or the exchange has failed."""
        if self._finished or self._closed or self._error is not None:
            return
        self._closed = True
        self._early = []
        self._sink = None
        connection = self._connection
        if connection.exchange is self:
            connection.abandon()
        if not self._head.done():
            self._head.cancel()
        if self._done is not None and not self._done.done():
            self._done.set_exception(_abandoned())

    # --- called by the connection ---------------------------------------------------------------

    def _deliver(self, chunk: bytes) -> None:
        sink = self._sink
        if sink is not None:
            sink(chunk)
            return
        self._early.append(chunk)
        self._early_size += len(chunk)
        if self._early_size > EARLY_BODY_LIMIT and not self._held:
            self._held = True
            self._connection.set_reading(False)

    def _finish(self) -> None:
        self._finished = True
        self._sink = None
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._finished or self._closed or self._error is not None:
            return
        self._error = error
        self._sink = None
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved here: send() raises it, or the retry replaces it
        elif self._done is not None and not self._done.done():
            self._done.set_exception(error)


def _abandoned() -> ConnectionAbortedError:
    return ConnectionAbortedError("the exchange was closed before the answer's body ended")


class UpstreamConnection(asyncio.Protocol):
    """One TLS (or plain) connection to a member, carrying one exchange at a time."""

    def __init__(self, owner: ConnectionOwner) -> None:
        self._owner = owner
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.exchange: UpstreamExchange | None = None
        self.idle_since = 0.0  # loop time it went back to the pool
        self.lost = False
        self._failure: InvalidAnswer | None = None  # why a callback stopped the parser
        self._informational = False  # the message being parsed is a 1xx answer, skipped
        self._chunked = False
        self._in_body = False
        self._reading = True

    def start(self, data: bytes) -> UpstreamExchange:
        """Send a request (head and body in one write); its exchange's head future resolves with the answer's head."""
        transport = self.transport
        assert transport is not None and self._loop is not None and self.exchange is None
        exchange = self.exchange = UpstreamExchange(self, self._loop)
        self._chunked = self._in_body = self._informational = False
        transport.write(data)
        return exchange

    def usable(self) -> bool:
        """Still open (an idle connection the member closed may not have been noticed yet)."""
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    def set_reading(self, reading: bool) -> None:
        """Pause or resume reading from the member (no-op if already so)."""
        if reading != self._reading and self.transport is not None and not self.lost:
            self._reading = reading
            if reading:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def close(self) -> None:
        """Close gracefully (an idle connection: the pool is closing, or it idled too long)."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, failing the exchange in flight (the pool is shut down under it)."""
        self._fail(ConnectionAbortedError("the gateway closed its connection to the member"))

    def abandon(self) -> None:
        """The exchange was given up: close the connection at once, never to be reused."""
        self.exchange = None
        if self.transport is not None:
            self.transport.abort()
        self._owner.exchange_ended(self, False)

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for (or after an abandoned exchange): the stream is unusable
            if not self.lost and self.transport is not None:
                self.transport.abort()
            return
        exchange.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidAnswer("the member switched protocols (101) though no upgrade was asked for"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if self._failure is not None:
                self._fail(self._failure)
            elif isinstance(exc, httptools.HttpParserCallbackError) and cause is not None:
                self._fail(cause)  # the caller's sink raised: relay() raises it
            else:
                self._fail(InvalidAnswer(f"unparsable answer: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost ends the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        exchange = self.exchange
        if exchange is None:
            self._owner.idle_connection_lost(self)
            return
        self.exchange = None
        if exc is None and self._in_body and not self._chunked and exchange.content_length is None:
            exchange._finish()  # a body delimited by the connection's close has ended
        elif isinstance(exc, OSError):
            exchange._fail(exc)
        else:
            exchange._fail(asyncio.IncompleteReadError(b"", exchange.content_length))
        self._owner.exchange_ended(self, False)

    def _fail(self, error: BaseException) -> None:
        exchange = self.exchange
        self.exchange = None
        if self.transport is not None:
            self.transport.abort()
        if exchange is not None:
            exchange._fail(error)
            self._owner.exchange_ended(self, False)

    # --- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.exchange is None:
            self._failure = InvalidAnswer("the member sent an answer nobody asked for")
            raise self._failure

    def on_status(self, status: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.reason = status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        status = self._parser.get_status_code()
        if status < 200:
            if status == 101:
                self._failure = InvalidAnswer("the member switched protocols (101) though no upgrade was asked for")
                raise self._failure
            self._informational = True  # 100 Continue, 102, 103: the real answer follows
            exchange.headers = []
            return
        exchange.status = status
        length: int | None = None
        for name, value in exchange.headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                self._chunked = True
            elif lower == b"content-length" and value.isdigit():
                length = int(value)  # llhttp has refused conflicting or malformed lengths already
        if self._chunked:
            length = None
        elif length is None and status in _NO_BODY_STATUSES:
            length = 0
        exchange.content_length = length
        self._in_body = True
        if not exchange._head.done():
            exchange._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange._deliver(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        exchange = self.exchange
        if exchange is None:
            return
        self.exchange = None
        self._in_body = False
        transport = self.transport
        reusable = (
            self._parser.should_keep_alive()
            and transport is not None
            and not transport.is_closing()
            and transport.get_write_buffer_size() == 0  # the member answered before reading all the request
        )
        if not self._reading:
            self.set_reading(True)  # an idle connection must notice the member closing it
        self._owner.exchange_ended(self, reusable)
        exchange._finish()
