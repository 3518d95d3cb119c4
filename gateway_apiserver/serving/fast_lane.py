"""The fast lane: plain proxied requests served without aiohttp, on the same connections aiohttp serves.

Every byte a connection receives passes through its lane first. At each request boundary the lane
reads the request's head (up to the blank line) and parses it with httptools (llhttp, the parser aiohttp's
own C parser is built on). A request its handler accepts (see `FastHandler`) is served here; any other
request's bytes go to aiohttp unchanged, which answers it exactly as before, and the next request on the
connection is decided afresh. Requests are answered strictly in order.

A request goes to aiohttp unless all of these hold, so every unusual case keeps aiohttp's behaviour:
HTTP/1.1; a method of `FAST_METHODS`; no Upgrade, Expect or Transfer-Encoding; no body, or one
Content-Length of at most `max_body` bytes; within the connection's header limits; and the handler accepts
its target. A head llhttp refuses, an upgrade, or a body of unknown length makes the connection aiohttp's
for good (it answers and closes, or tunnels), since only a known length tells where the next request starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from enum import Enum
from typing import Protocol

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from .fast_request import FastRequest

log = logging.getLogger(__name__)

FAST_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_PIPELINED = 64 * 1024  # bytes of later requests held while one is answered; beyond, stop reading
_HEAD_END = b"\r\n\r\n"


class FastHandler(Protocol):
    """What the fast lane serves requests with."""

    def accepts(self, method: str, target: str) -> bool:
        """Whether this handler serves the request (cheap: called for every request's head)."""

    def serve(self, request: FastRequest) -> Awaitable[None]:
        """Answer `request` completely (the head and the whole body, or an abort)."""


class LaneHost(Protocol):
    """What the lane needs from the connection's protocol (serving/aiohttp_protocol.py)."""

    @property
    def transport(self) -> asyncio.Transport | None:
        """The connection's transport (None once closed)."""

    def to_aiohttp(self, data: bytes) -> None:
        """Let aiohttp parse and serve `data`."""

    def fast_request_started(self) -> None:
        """A request is served on the lane: no header deadline nor idle timer while it is."""

    def fast_request_finished(self, keep_alive: bool) -> None:
        """The lane's request was answered; the connection ends unless `keep_alive`."""

    def head_pending(self) -> None:
        """Part of a request's head is waiting (it came with an earlier request): its header deadline runs."""


class HeadLimits:
    """aiohttp's limits for a request head, which the lane keeps too (beyond them aiohttp answers)."""

    __slots__ = ("max_field_size", "max_headers", "max_line_size")

    def __init__(self, max_line_size: int, max_field_size: int, max_headers: int) -> None:
        self.max_line_size = max_line_size
        self.max_field_size = max_field_size
        self.max_headers = max_headers

    @property
    def max_head(self) -> int:
        """The longest head the limits allow."""
        return self.max_line_size + self.max_headers * (self.max_field_size + 2) + 4


class _State(Enum):
    IDLE = "idle"  # at a request boundary: the next bytes start a request
    FAST = "fast"  # the lane is answering a request
    AIOHTTP = "aiohttp"  # aiohttp is answering one request of known length
    STICKY = "sticky"  # aiohttp owns the connection for good


class _Head:
    """httptools' callbacks for one request head, and what the parser knew at its end (llhttp resets it after)."""

    __slots__ = ("complete", "headers", "keep_alive", "method", "parser", "upgrade", "url", "version")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        self.keep_alive = False
        self.upgrade = False
        self.method = ""
        self.version = ""
        self.parser = httptools.HttpRequestParser(self)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.complete = True
        self.keep_alive = parser.should_keep_alive()
        self.upgrade = parser.should_upgrade()
        self.method = parser.get_method().decode("ascii", "replace")
        self.version = parser.get_http_version()


class FastLane:
    """One connection's lane: decides, per request, whether it is served here or by aiohttp."""

    def __init__(self, host: LaneHost, handler: FastHandler, limits: HeadLimits, *, max_body: int = 1024 * 1024) -> None:
        self._host = host
        self._handler = handler
        self._limits = limits
        self._max_body = max_body
        self._state = _State.IDLE
        self._buffer = bytearray()  # received bytes not handed on yet
        self._scanned = 0  # bytes of the buffer already searched for the end of a head (a head may come byte by byte)
        self._aiohttp_left = 0  # bytes of aiohttp's current request still to hand it
        self._aiohttp_answered = False
        self._request: FastRequest | None = None
        self._body_left = 0
        self._body: list[bytes] = []
        self._task: asyncio.Task[None] | None = None
        self._reading_paused = False

    @property
    def busy(self) -> bool:
        """A request is being answered on the lane."""
        return self._state is _State.FAST

    # -- bytes in --

    def data_received(self, data: bytes) -> None:
        """Route `data`: to aiohttp, to the current request's body, or to the next request's head."""
        state = self._state
        if state is _State.STICKY:
            self._host.to_aiohttp(data)
        elif state is _State.AIOHTTP:
            self._to_aiohttp_request(data)
        elif state is _State.FAST:
            self._fast_body(data)
        else:
            self._buffer += data
            self._dispatch()

    def aiohttp_answered(self) -> None:
        """aiohttp finished answering a request (its response is written)."""
        if self._state is _State.AIOHTTP:
            self._aiohttp_answered = True
            self._maybe_idle()

    def connection_lost(self) -> None:
        """The client is gone: stop the request being answered."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._buffer.clear()

    def pause_writing(self) -> None:
        """The client reads slower than we write: relays stop reading their source."""
        if self._request is not None:
            self._request.paused = True

    def resume_writing(self) -> None:
        """The client caught up."""
        request = self._request
        if request is not None and request.paused:
            request.paused = False
            waiters, request.resume_waiters = request.resume_waiters, []
            for resume in waiters:
                resume()

    # -- routing --

    def _stick(self) -> None:
        """aiohttp owns the connection from here on, with everything buffered."""
        self._state = _State.STICKY
        self._scanned = 0
        data, self._buffer = bytes(self._buffer), bytearray()
        self._resume_reading()
        if data:
            self._host.to_aiohttp(data)

    def _to_aiohttp_request(self, data: bytes | bytearray) -> None:
        take = min(len(data), self._aiohttp_left)
        if take:
            self._aiohttp_left -= take
            self._host.to_aiohttp(bytes(data[:take]))
        if take < len(data):
            self._hold(data[take:])
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self._state is _State.AIOHTTP and self._aiohttp_left == 0 and self._aiohttp_answered:
            self._state = _State.IDLE
            self._dispatch()

    def _hold(self, data: bytes | bytearray) -> None:
        """Keep bytes of a later request until the current one is answered."""
        self._buffer += data
        if len(self._buffer) > _MAX_PIPELINED and not self._reading_paused and self._host.transport is not None:
            self._reading_paused = True
            self._host.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if self._host.transport is not None:
                self._host.transport.resume_reading()

    def _dispatch(self) -> None:
        """Start the request at the front of the buffer once its head is complete."""
        while self._state is _State.IDLE and self._buffer:
            buffer = self._buffer
            if buffer[0] in (0x0D, 0x0A):
                self._stick()  # empty lines before a request: rare, and aiohttp's parser knows the rules
                return
            start = max(0, self._scanned - len(_HEAD_END) + 1)
            end = buffer.find(_HEAD_END, start)
            if end < 0:
                if len(buffer) > self._limits.max_head or buffer.find(b"\n\n", start) >= 0:
                    self._stick()  # too long, or bare-LF line ends: aiohttp answers as it does today
                else:
                    self._scanned = len(buffer)
                    self._host.head_pending()
                return
            self._resume_reading()
            self._start(end + len(_HEAD_END))

    def _start(self, head_length: int) -> None:
        self._scanned = 0  # the head leaves the buffer: what remains is searched afresh
        head = _Head()
        try:
            head.parser.feed_data(bytes(self._buffer[:head_length]))
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._stick()  # malformed, or an upgrade: aiohttp's answer, or its tunnel
            return
        if not head.complete or head.upgrade:
            self._stick()
            return
        content_length = self._content_length(head.headers)
        if content_length is None:
            self._stick()  # chunked, or an unusable Content-Length: aiohttp answers or streams it
            return
        target = head.url.decode("utf-8", "surrogateescape")  # as aiohttp's parser decodes it
        if self._fast(target, head, content_length):
            self._serve(target, head, head_length, content_length)
        else:
            self._state = _State.AIOHTTP
            self._aiohttp_answered = False
            self._aiohttp_left = head_length + content_length
            data, self._buffer = self._buffer, bytearray()
            self._to_aiohttp_request(data)

    @staticmethod
    def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
        """The body's length: 0 without one; None when chunked, repeated or not plain digits."""
        length: int | None = 0
        seen = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                return None
            if lower == b"content-length":
                if seen or not value.isdigit():
                    return None
                seen, length = True, int(value)
        return length

    def _fast(self, target: str, head: _Head, content_length: int) -> bool:
        limits = self._limits
        if head.version != "1.1" or head.method not in FAST_METHODS or content_length > self._max_body:
            return False
        if len(target) > limits.max_line_size or len(head.headers) > limits.max_headers:
            return False
        for name, value in head.headers:
            if len(name) + len(value) > limits.max_field_size or name.lower() in (b"expect", b"upgrade"):
                return False
        try:
            return self._handler.accepts(head.method, target)
        except Exception:  # a bug must not break the connection: aiohttp serves the request
            log.exception("the fast lane's handler failed to decide on %s %s", head.method, target)
            return False

    # -- the lane's own requests --

    def _serve(self, target: str, head: _Head, head_length: int, content_length: int) -> None:
        transport = self._host.transport
        assert transport is not None
        headers: CIMultiDict[str] = CIMultiDict(
            (n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")) for n, v in head.headers
        )
        peer = transport.get_extra_info("peername")
        remote = peer[0] if isinstance(peer, tuple) and peer else None
        request = FastRequest(head.method, target, CIMultiDictProxy(headers), head.keep_alive, transport, remote)
        self._request = request
        self._state = _State.FAST
        rest = self._buffer[head_length:]
        self._buffer = bytearray()
        self._body_left = content_length
        self._body = []
        self._host.fast_request_started()
        self._task = asyncio.get_running_loop().create_task(self._answer(request))
        self._fast_body(rest)

    def _fast_body(self, data: bytes | bytearray) -> None:
        request = self._request
        if self._body_left and request is not None:
            piece = data[: self._body_left]
            self._body.append(bytes(piece))
            self._body_left -= len(piece)
            data = data[len(piece) :]
        if request is not None and not self._body_left and not request.body_ready.done():
            request.body = b"".join(self._body)
            self._body = []
            request.body_ready.set_result(None)
        if data:
            self._hold(data)

    async def _answer(self, request: FastRequest) -> None:
        try:
            await self._handler.serve(request)
        except asyncio.CancelledError:
            raise
        except Exception:  # the handler answers its own errors; this is a bug, and the client must not hang
            log.exception("fast path failed serving %s %s", request.method, request.path)
            request.abort()
        finally:
            if not request.body_ready.done():
                request.body_ready.cancel()
            keep_alive = request.keep_alive and request.body_ready.done() and not request.body_ready.cancelled()
            keep_alive = keep_alive and not request.client_gone()
            self._request = None
            self._task = None
            self._state = _State.IDLE if keep_alive else _State.STICKY
            self._host.fast_request_finished(keep_alive)
            if keep_alive:
                self._dispatch()
            else:
                self._buffer.clear()  # the connection ends: a half-read body must not be taken for a request
