"""The per-connection HTTP protocol: aiohttp's, plus a header-read deadline and Status parse errors.

aiohttp's server has an idle keep-alive timeout but no bound on how long a client may take to
send a request's headers, and it answers parser errors with plain text quoting the request.
This module is the ONLY place in the serving layer that relies on aiohttp internals for that
(checked against aiohttp 3.14; see `CHECKED_AIOHTTP_VERSIONS`):

* `RequestHandler(manager, loop=..., **kwargs)`: the protocol class `web.Server` instantiates
  per connection. We instantiate our subclass ourselves (see `listener.py`) with the same
  manager (`runner.server`), so aiohttp's request loop, keep-alive, takeover and shutdown
  are unchanged. Keyword arguments are the ones its docstring lists.
* `RequestHandler.handle_error(request, status, exc, message)`: called to build the answer
  to a parser failure (status 400, `exc` an `HttpProcessingError`) or to an exception that
  escaped every middleware (500, 504). Overridden to return a Status object.
* `RequestHandler.force_close()`: ends the connection and aiohttp's request loop now;
  `RequestHandler.close()`: ends it once the current answer is written (idle: now).
* `connection_made` / `data_received` / `connection_lost` / `pause_writing` / `resume_writing`:
  asyncio's Protocol API, extended (always calling aiohttp's) to run the header deadline and the fast lane.
* The fast lane (serving/fast_lane.py) answers some requests itself between aiohttp's: it hands aiohttp
  only whole requests, learns that aiohttp answered one by wrapping `_handle_request(request, start_time,
  request_handler)`, and keeps aiohttp's idle timer (`_keepalive_handle`, `_next_keepalive_close_time`,
  `_keepalive_timeout`, `_process_keepalive()`) from closing a connection while its own request runs.

The deadline starts when a connection is made (after the TLS handshake, which the listener
bounds separately) and again on the first byte received while no request is being handled;
it stops when a request's handler starts (`request_started`, called by the serving
middleware). A handler that runs for hours (watch, exec tunnel) is never affected. Idle time
between requests is aiohttp's own `keepalive_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from ..base.status import status_response
from ..observability.access_log import REJECTED_KEY, SERVER_HEADER, audit_id, count_body_bytes
from .fast_lane import FastHandler, FastLane, HeadLimits
from .protocol_errors import handler_error_status, parse_error_status

log = logging.getLogger(__name__)

# aiohttp versions whose internals (listed in the module docstring) were read and tested.
CHECKED_AIOHTTP_VERSIONS = ("3.14",)


class GatewayRequestHandler(RequestHandler):
    """aiohttp's HTTP/1.1 protocol with a header-read deadline and Status answers to parse errors."""

    __slots__ = ("_active", "_draining", "_event_loop", "_header_timeout", "_header_timer", "_lane", "_pending_bytes")

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        header_timeout: float,
        fast_handler: FastHandler | None = None,
        **kwargs: Any,
    ) -> None:
        """`header_timeout` seconds (0: none) for each request's headers; `fast_handler` serves the requests
        it accepts on the fast lane (None: aiohttp serves all); the rest is RequestHandler's."""
        super().__init__(manager, loop=loop, **kwargs)
        self._event_loop = loop
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._active = 0  # requests of this connection whose handler runs
        self._pending_bytes = False  # bytes of a next request arrived while a handler ran
        self._draining = False
        self._lane: FastLane | None = None
        if fast_handler is not None:
            limits = HeadLimits(kwargs["max_line_size"], kwargs["max_field_size"], kwargs["max_headers"])
            self._lane = FastLane(self, fast_handler, limits)

    # -- asyncio Protocol API --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """A new connection must send its first request's headers within the deadline."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """The first byte of a request starts its deadline."""
        if data:
            if self._active:
                self._pending_bytes = True
            elif self._header_timer is None:
                self._arm()
        if self._lane is None:
            super().data_received(data)
        elif not (self._force_close or self._close):
            self._lane.data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Stop the deadline and the fast lane's request with the connection."""
        self._disarm()
        if self._lane is not None:
            self._lane.connection_lost()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The client reads slowly: the fast lane's relay pauses too."""
        super().pause_writing()
        if self._lane is not None:
            self._lane.pause_writing()

    def resume_writing(self) -> None:
        """The client caught up."""
        super().resume_writing()
        if self._lane is not None:
            self._lane.resume_writing()

    # -- the fast lane's host (serving/fast_lane.py) --

    def to_aiohttp(self, data: bytes) -> None:
        """aiohttp parses and serves `data` (whole requests, from the fast lane)."""
        super().data_received(data)

    def fast_request_started(self) -> None:
        """The lane answers a request: no header deadline, and aiohttp's idle timer must not close the connection."""
        self.request_started()
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None

    def fast_request_finished(self, keep_alive: bool) -> None:
        """The lane's request was answered: idle from now (aiohttp's timer), or the connection ends."""
        if not keep_alive:
            self.force_close()  # the answer is written: closing the transport flushes it first
        elif self._keepalive_timeout > 0 and self._keepalive_handle is None:
            close_time = self._event_loop.time() + self._keepalive_timeout
            self._next_keepalive_close_time = close_time
            self._keepalive_handle = self._event_loop.call_at(close_time, self._process_keepalive)
        self.request_finished()

    def head_pending(self) -> None:
        """A partial head waits in the lane (it came with an earlier request): the header deadline runs now."""
        if not self._active:
            self._arm()

    def _process_keepalive(self) -> None:
        if self._lane is not None and self._lane.busy:
            self._keepalive_handle = None  # re-armed when the lane's request ends
            return
        super()._process_keepalive()

    async def _handle_request(
        self, request: BaseRequest, start_time: float | None, request_handler: Any
    ) -> tuple[StreamResponse, bool]:
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            if self._lane is not None:
                self._lane.aiohttp_answered()

    # -- called by the serving middleware --

    def request_started(self) -> None:
        """A request's headers were parsed and its handler runs: no deadline while it does."""
        self._active += 1
        self._pending_bytes = False
        self._disarm()

    def request_finished(self) -> None:
        """The handler returned; bytes of a pipelined next request start that request's deadline."""
        self._active -= 1
        if not self._active and self._draining:
            self.close()
        elif not self._active and self._pending_bytes:
            self._pending_bytes = False
            self._arm()

    def drain(self) -> None:
        """Shutdown: close this connection as soon as no request is being handled (at once if idle).

        aiohttp's `close()` then lets the current answer be written and ends the connection.
        """
        self._draining = True
        if not self._active:
            self.close()

    # -- aiohttp's error hook --

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """A Status object (never the parser's text, which quotes the request), and the connection closes."""
        if request.writer.output_size > 0:
            # Part of a response is out: nothing else can be said on this connection.
            raise ConnectionError("a response was already being sent")
        if isinstance(exc, HttpProcessingError):
            error = parse_error_status(exc, max_field_size=self.max_field_size, max_headers=self.max_headers)
            request[REJECTED_KEY] = True
            log.debug("rejected an unparsable request from %s: %d %s", request.remote, error.code, error.reason)
        else:
            error = handler_error_status(status)
            if isinstance(exc, ConnectionError):  # the client left mid-request: nothing went wrong here
                log.debug("client %s left: %r", request.remote, exc)
            else:
                log.error("unhandled error serving a request from %s", request.remote, exc_info=exc)
        count_body_bytes(request)
        response = status_response(error)
        response.headers["Connection"] = "close"
        response.headers["Audit-Id"] = audit_id(request)
        response.headers["Server"] = SERVER_HEADER
        response.force_close()
        return response

    # -- the deadline --

    def _arm(self) -> None:
        if self._header_timeout > 0 and self._header_timer is None and self.transport is not None:
            self._header_timer = self._event_loop.call_later(self._header_timeout, self._header_timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._active or self.transport is None:
            return
        log.debug("closing a connection from %s: no complete request headers within %gs", self.peername, self._header_timeout)
        self.force_close()


def request_started(request: web.BaseRequest) -> GatewayRequestHandler | None:
    """Tell the request's connection its handler runs; the protocol to pass to `request_finished`."""
    protocol = request.protocol
    if isinstance(protocol, GatewayRequestHandler):
        protocol.request_started()
        return protocol
    return None  # served by a plain aiohttp server (tests that build the app alone)
