"""Taking a client connection away from aiohttp after answering `101 Switching Protocols`.

aiohttp has no raw upgrade passthrough: it only knows how to become a WebSocket endpoint
itself (`WebSocketResponse`), re-framing every message. A byte-for-byte tunnel (SPDY/3.1 for
older kubectl, WebSocket `v5.channel.k8s.io` where the member must see the client's own
frames) needs the raw connection. This module is the ONLY place that relies on aiohttp
internals for that; everything else (`upgrade.py`) is plain asyncio.

Internals used, and why (checked against aiohttp 3.14; see `CHECKED_AIOHTTP_VERSIONS`):

* `request.protocol` (a `web_protocol.RequestHandler`): the per-connection protocol object.
  Public attribute, but its type and methods below are not documented API.
* `RequestHandler.set_parser(parser)`: after it, `RequestHandler.data_received` hands every
  byte read from the client to `parser.feed_data(data) -> (eof, tail)` instead of the HTTP
  parser, and `connection_lost` calls `parser.feed_eof()`. This is the hook aiohttp's own
  WebSocketResponse uses. It also feeds the bytes aiohttp buffered behind the upgrade request
  (`_message_tail`, set only for `Upgrade: websocket`, which aiohttp parses as an upgrade).
  A SPDY upgrade arrives as a plain request: bytes the client sends before our 101 are
  dropped by aiohttp's HTTP parser (C and pure Python alike). Harmless: SPDY clients
  (client-go's spdy round tripper) read the 101 before sending a frame.
* `RequestHandler._payload_parser` (read only): tells whether the connection was already
  taken over, so a second takeover fails cleanly instead of tripping an assert.
* `RequestHandler.force_close()`: ends the connection and makes aiohttp's request loop exit
  without keep-alive or lingering reads once the handler returns.
* Writing raw bytes with `StreamResponse.write()` after preparing a 1xx response: aiohttp
  neither chunks nor length-limits a 1xx body (`must_be_empty_body` disables chunking and the
  writer's length is None), so bytes go to the transport as they are, with aiohttp's drain.

Flow control on the client -> member direction pauses the asyncio transport directly
(`transport.pause_reading()`), which is public asyncio API; aiohttp does not touch reading
state of a connection whose payload parser is set.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

# aiohttp versions whose internals (listed in the module docstring) were read and tested.
CHECKED_AIOHTTP_VERSIONS = ("3.14",)

_HIGH_WATER = 256 * 1024  # pause reading the client above this many buffered bytes
_LOW_WATER = 64 * 1024  # resume below this


class TakeoverUnsupported(RuntimeError):
    """The running aiohttp lacks an internal the takeover needs."""


def check_supported() -> None:
    """Raise `TakeoverUnsupported` unless this aiohttp has every internal used here.

    Cheap; call it before dialling the member so an incompatible aiohttp fails early and
    clearly instead of after the member has already switched protocols.
    """
    methods = ("set_parser", "force_close", "data_received")
    missing = [name for name in methods if not callable(getattr(RequestHandler, name, None))]
    if "_payload_parser" not in getattr(RequestHandler, "__slots__", ()):
        missing.append("_payload_parser")
    if missing:
        raise TakeoverUnsupported(f"aiohttp {aiohttp.__version__} lacks RequestHandler.{', '.join(missing)}")


class RawConnection:
    """The raw byte stream of a client connection taken over from aiohttp.

    `read()` returns client bytes (b"" at EOF); `write()` sends bytes to the client with
    backpressure; `close()` ends the connection. Return `response` from the handler.
    """

    def __init__(self, protocol: RequestHandler, transport: asyncio.Transport, response: web.StreamResponse) -> None:
        self._protocol = protocol
        self._transport = transport
        self.response = response
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    # -- the parser interface aiohttp calls (see set_parser in the module docstring) --

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        """Called by aiohttp with bytes read from the client; never signals EOF itself."""
        if data and not self._eof:
            self._chunks.append(bytes(data))
            self._buffered += len(data)
            if self._buffered > _HIGH_WATER and not self._paused:
                self._set_reading(False)
            self._wake()
        return False, b""

    def feed_eof(self) -> None:
        """Called by aiohttp when the client connection is lost."""
        self._eof = True
        self._wake()

    # -- our side --

    @property
    def at_eof(self) -> bool:
        """True once the client is gone and every buffered byte was read."""
        return self._eof and not self._chunks

    async def read(self) -> bytes:
        """The next bytes from the client, or b"" once it closed the connection."""
        while not self._chunks:
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._paused and self._buffered < _LOW_WATER:
            self._set_reading(True)
        return data

    async def write(self, data: bytes) -> None:
        """Send raw bytes to the client; waits while the client's socket buffer is full.

        Raises ConnectionResetError once the client is gone.
        """
        await self.response.write(data)

    def close(self) -> None:
        """Close the client connection (flushing what was written) and wake any reader."""
        self._eof = True
        self._wake()
        self._protocol.force_close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _set_reading(self, on: bool) -> None:
        self._paused = not on
        if self._transport.is_closing():
            return
        try:
            if on:
                self._transport.resume_reading()
            else:
                self._transport.pause_reading()
        except (AttributeError, NotImplementedError, RuntimeError):
            pass  # a transport without flow control: nothing to pause


async def accept_upgrade(request: web.BaseRequest, reason: str, headers: Mapping[str, str]) -> RawConnection:
    """Answer `request` with `101 <reason>` and `headers`, and take the connection over.

    The takeover is installed before the 101 is written, so no client byte can reach
    aiohttp's HTTP parser once the client may send tunnel data. On failure the connection
    is closed and the exception re-raised.
    """
    check_supported()
    protocol = request.protocol
    transport = request.transport
    if not isinstance(protocol, RequestHandler) or transport is None:
        raise ConnectionResetError("client connection is gone")
    if protocol._payload_parser is not None:
        raise RuntimeError("connection already taken over")
    response = web.StreamResponse(status=101, reason=reason, headers=headers)
    conn = RawConnection(protocol, transport, response)
    # Typed for WebSocketReader, duck-typed in fact: feed_data() -> (eof, tail), feed_eof().
    protocol.set_parser(conn)  # type: ignore[arg-type]
    try:
        await response.prepare(request)
    except BaseException:
        conn.close()
        raise
    return conn
