"""Requests in flight, and the graceful shutdown the kube-apiserver does.

On shutdown: /readyz fails at once (the `shutdown` check); after the delay the listener
closes and every keep-alive connection closes once its current request is answered; watches,
long-running proxied streams and upgrade tunnels are ended at once and cleanly (a chunked
stream gets its final chunk, a tunnel's connection is closed, not reset); other requests get
the grace period to finish, and are cut after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ..base.api_group import API_PREFIX as PREFIX
from ..base.query import query_bool
from ..observability.access_log import ENDED_KEY, SHUTDOWN, mark_ended, sent_response
from ..proxy.paths import is_long_running as is_long_running_proxy_call
from .aiohttp_protocol import GatewayRequestHandler, request_started
from .fast_request import FastRequest

log = logging.getLogger(__name__)

SHUTDOWN_CHECK = "shutdown"
_FINAL_CHUNK_TIMEOUT = 5.0  # a client that does not read cannot hold the shutdown
_AFTER_CANCEL_TIMEOUT = 5.0
_PROXY_SEGMENTS = PREFIX.count("/") + 3  # .../clustergateways/{name}/proxy


def is_long_running(path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    """Whether a request may stream for long (the kube-apiserver's long-running check, for our routes).

    Watches, upgrades (exec, attach, port-forward), and proxied watches, `follow` logs and the
    member's own long-running subresources. They are ended, not waited for, on shutdown.
    """
    connection = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
    if "upgrade" in connection and headers.get("Upgrade", "").strip():
        return True
    if query_bool(query.get("watch")):
        return True
    segments = path.split("/")
    if path.startswith(f"{PREFIX}/watch/"):
        return True
    if len(segments) > _PROXY_SEGMENTS and segments[_PROXY_SEGMENTS] == "proxy" and path.startswith(f"{PREFIX}/clustergateways/"):
        remainder = "/" + "/".join(segments[_PROXY_SEGMENTS + 1 :])
        return is_long_running_proxy_call(remainder, dict(query))
    return False


class InFlight:
    """The requests being handled, and the shutdown sequence over them.

    Install `middleware` outermost; add `ready_check` to the readiness checks.
    """

    def __init__(self) -> None:
        self._requests: dict[asyncio.Task[Any], web.Request | FastRequest] = {}
        self._changed = asyncio.Event()
        self.shutting_down = False
        self.draining = False

    def ready_check(self) -> str | None:
        """The /readyz `shutdown` check: fails from the moment shutdown starts."""
        return "process is shutting down" if self.shutting_down else None

    @property
    def count(self) -> int:
        """Requests being handled."""
        return len(self._requests)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Track the request; on a shutdown cancel, end its stream cleanly."""
        protocol = request_started(request)
        task = asyncio.current_task()
        assert task is not None
        self._requests[task] = request
        try:
            response = await handler(request)
            if self.draining and not response.prepared:
                response.force_close()  # "Connection: close": this connection ends with this answer
            return response
        except asyncio.CancelledError:
            if request.get(ENDED_KEY) == SHUTDOWN:
                await _end_stream(request)
            raise
        finally:
            self.untrack(task)
            if protocol is not None:
                protocol.request_finished()

    def track(self, task: asyncio.Task[Any], request: FastRequest) -> None:
        """Track a request the fast lane serves (it ends its own stream when cancelled with `ended` SHUTDOWN)."""
        self._requests[task] = request

    def untrack(self, task: asyncio.Task[Any]) -> None:
        """The request of `task` ended."""
        del self._requests[task]
        self._changed.set()

    async def shutdown(self, server: web.Server | None, stop_listening: Callable[[], None], delay: float, grace: float) -> None:
        """Run the sequence: unready, wait `delay`, stop accepting, end streams, give the rest `grace` seconds."""
        self.shutting_down = True
        log.info("shutting down: /readyz fails now; new connections are refused in %gs", delay)
        if delay > 0:
            await asyncio.sleep(delay)
        stop_listening()
        self.draining = True
        for protocol in list(server.connections if server is not None else ()):
            if isinstance(protocol, GatewayRequestHandler):
                protocol.drain()
        log.info("stopped accepting connections; %d request(s) in flight get up to %gs", self.count, grace)
        deadline = time.monotonic() + grace
        while True:
            self._end_long_running()
            if not self._requests:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("%d request(s) still in flight after %gs; cutting them", self.count, grace)
                self._cancel(self._requests.items())
                await self._wait_idle(_AFTER_CANCEL_TIMEOUT)
                break
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    def _end_long_running(self) -> None:
        self._cancel(
            (task, request)
            for task, request in self._requests.items()
            if _ended(request) != SHUTDOWN and is_long_running(request.path, request.query, request.headers)
        )

    @staticmethod
    def _cancel(items: Iterable[tuple[asyncio.Task[Any], web.Request | FastRequest]]) -> None:
        for task, request in list(items):
            if _ended(request) != SHUTDOWN:
                if isinstance(request, FastRequest):
                    request.ended = SHUTDOWN
                else:
                    mark_ended(request, SHUTDOWN)
                task.cancel()

    async def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._requests and time.monotonic() < deadline:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - time.monotonic()):
                    await self._changed.wait()


def _ended(request: web.Request | FastRequest) -> str | None:
    return request.ended if isinstance(request, FastRequest) else request.get(ENDED_KEY)


async def _end_stream(request: web.Request) -> None:
    """After a shutdown cancel: close the response as cleanly as its framing allows."""
    response = sent_response(request)
    if response is None or response.status == 101:
        return  # nothing sent yet (the connection just closes), or a tunnel its handler closed
    if response.headers.get("Transfer-Encoding", "").lower() == "chunked":  # set by prepare() for any chunked body
        try:
            async with asyncio.timeout(_FINAL_CHUNK_TIMEOUT):
                await response.write_eof()  # the final chunk: the client sees the stream end, not break
            return
        except (ConnectionError, TimeoutError, RuntimeError):
            pass
    if request.transport is not None:
        request.transport.abort()  # a fixed-length body cut short must not look complete
