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
* `connection_made` / `data_received` / `connection_lost`: asyncio's Protocol API, extended
  (always calling aiohttp's) to run the header deadline.

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

from ..base.status import status_response
from ..observability.access_log import REJECTED_KEY, SERVER_HEADER, audit_id, count_body_bytes
from .protocol_errors import handler_error_status, parse_error_status

log = logging.getLogger(__name__)

# aiohttp versions whose internals (listed in the module docstring) were read and tested.
CHECKED_AIOHTTP_VERSIONS = ("3.14",)


class GatewayRequestHandler(RequestHandler):
    """aiohttp's HTTP/1.1 protocol with a header-read deadline and Status answers to parse errors."""

    __slots__ = ("_active", "_draining", "_event_loop", "_header_timeout", "_header_timer", "_pending_bytes")

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, header_timeout: float, **kwargs: Any) -> None:
        """`header_timeout` seconds (0: none) for each request's headers; the rest is RequestHandler's."""
        super().__init__(manager, loop=loop, **kwargs)
        self._event_loop = loop
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._active = 0  # requests of this connection whose handler runs
        self._pending_bytes = False  # bytes of a next request arrived while a handler ran
        self._draining = False

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
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Stop the deadline with the connection."""
        self._disarm()
        super().connection_lost(exc)

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
