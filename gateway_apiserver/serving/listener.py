"""The listening socket: TLS with a bounded handshake, and our protocol on every connection."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .aiohttp_protocol import GatewayRequestHandler
from .fast_lane import FastHandler

# Header limits, named here so error messages can state them. The aggregator sends one
# X-Remote-Group line per group, so aiohttp's default of 128 fields would refuse a user in
# many groups; 1024 short fields still fit the kube-apiserver's 1 MiB MaxHeaderBytes.
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 1024
_NEVER = 10 * 365 * 86400.0  # aiohttp's keep-alive timer has no "off"; ten years is off


@dataclass(frozen=True, slots=True)
class ConnectionTimeouts:
    """Seconds; 0 means no limit (as in Go's http.Server)."""

    read_header: float = 32.0  # TLS handshake, and each request's headers (Go: ReadHeaderTimeout)
    idle: float = 90.0  # a keep-alive connection between requests (Go: IdleTimeout)


async def listen(
    runner: web.AppRunner,
    sock: socket.socket,
    ssl_context: ssl.SSLContext,
    timeouts: ConnectionTimeouts,
    *,
    access_log_class: type[AbstractAccessLogger],
    access_log: logging.Logger,
    fast_handler: FastHandler | None = None,
) -> asyncio.Server:
    """Serve `runner`'s application on the bound `sock`; close the returned server to stop accepting.

    Call after `runner.setup()`. Connections are tracked by the runner, so `runner.cleanup()`
    still drains and closes them. `fast_handler` serves the requests it accepts on each connection's
    fast lane (serving/fast_lane.py).
    """
    manager = runner.server
    if manager is None:
        raise RuntimeError("listen() needs a runner that was set up")
    loop = asyncio.get_running_loop()

    def protocol() -> GatewayRequestHandler:
        return GatewayRequestHandler(
            manager,
            loop=loop,
            header_timeout=timeouts.read_header,
            fast_handler=fast_handler,
            keepalive_timeout=timeouts.idle or _NEVER,
            access_log_class=access_log_class,
            access_log=access_log,
            max_line_size=MAX_LINE_SIZE,
            max_field_size=MAX_FIELD_SIZE,
            max_headers=MAX_HEADERS,
        )

    return await loop.create_server(
        protocol,
        sock=sock,
        ssl=ssl_context,
        backlog=1024,
        # A client that stalls the handshake holds a socket and a TLS object: bound it like the headers.
        ssl_handshake_timeout=timeouts.read_header or None,
        # Closing a connection waits this long at most for the client's close_notify.
        ssl_shutdown_timeout=5.0,
    )
