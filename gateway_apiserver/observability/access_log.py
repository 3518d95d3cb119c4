"""One structured access-log line per request, however it ended, and the Audit-ID every response carries.

Fields: user, verb, method, path (no query string: it may carry anything), cluster, status
(as sent; 0 when nothing was), bytes (body bytes written, before chunked framing), ended,
duration and audit ID. Never headers or bodies, so never a credential. A text line's message
is the fields as compact JSON; a JSON line (`--log-format json`) has them as its own keys.

`ended` says how the exchange ended: `complete`; `client-disconnect` (the client left first);
`timeout` (a time limit cut the response); `upstream-disconnect` (the member broke off a
proxied response); `shutdown` (the server ended it while shutting down). aiohttp writes the
line of a request whose handler returned (`AccessLogger`); `log_abandoned` writes it for one
whose handler was cancelled or failed on a lost connection, which aiohttp never logs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import secrets
import time as clock
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from ..security.authorization import RequestAttributes
from ..security.identity import authenticated_name
from .records import structured

ACCESS_LOGGER = "gateway_apiserver.access"
AUDIT_ID_KEY = web.RequestKey("audit_id", str)
ATTRIBUTES_KEY = web.RequestKey("attributes", RequestAttributes)
STARTED_KEY = web.RequestKey("started", float)
_AUDIT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

COMPLETE = "complete"
CLIENT_DISCONNECT = "client-disconnect"
TIMEOUT = "timeout"
UPSTREAM_DISCONNECT = "upstream-disconnect"
SHUTDOWN = "shutdown"


class BodyBytes:
    """Body bytes handed to the connection for one response (aiohttp's writer reports each chunk)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def add(self, size: int, output_size: int) -> None:
        """The writer's `on_body_write` callback."""
        self.count += size


ENDED_KEY = web.RequestKey("access_ended", str)
REJECTED_KEY = web.RequestKey("access_rejected", bool)  # the HTTP parser refused it: no method or path
_BODY_KEY = web.RequestKey("access_body_bytes", BodyBytes)
_RESPONSE_KEY = web.RequestKey("access_response", web.StreamResponse)
_LOGGED_KEY = web.RequestKey("access_logged", bool)


# Generated IDs: a random 80-bit prefix per process and a counter, in the UUID shape kube
# uses: unique without a getrandom() call per request (they are identifiers, not secrets).
def _id_prefix() -> str:
    h = secrets.token_hex(10)
    variant = f"{8 | int(h[15], 16) & 3:x}"  # RFC 4122 variant bits
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{variant}{h[16:19]}-"


_ID_PREFIX = _id_prefix()
_ID_COUNTER = itertools.count(secrets.randbelow(1 << 32))


def new_audit_id() -> str:
    """A fresh audit ID (36 characters, like a UUID)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"


def mark_ended(request: web.BaseRequest, how: str) -> None:
    """Record why a response stops short (TIMEOUT, UPSTREAM_DISCONNECT, SHUTDOWN) for its log line."""
    request[ENDED_KEY] = how


def count_body_bytes(request: web.BaseRequest) -> BodyBytes:
    """Count the body bytes written for `request` from now on (idempotent)."""
    counter = request.get(_BODY_KEY)
    if not isinstance(counter, BodyBytes):
        counter = BodyBytes()
        request[_BODY_KEY] = counter
        request.writer.on_body_write = counter.add
    return counter


@web.middleware
async def request_timer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stamp the start of a request: uvloop's loop.time(), which aiohttp's duration uses, ticks in whole ms."""
    request[STARTED_KEY] = clock.perf_counter()
    return await handler(request)


@web.middleware
async def log_abandoned(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Write the line of a request aiohttp will not log: its handler was cancelled or lost the client."""
    count_body_bytes(request)
    try:
        return await handler(request)
    except (asyncio.CancelledError, ConnectionError):
        if not request.get(_LOGGED_KEY):
            response = sent_response(request)
            status = response.status if response is not None else 0
            _write(logging.getLogger(ACCESS_LOGGER), request, status, request.get(ENDED_KEY) or CLIENT_DISCONNECT, None)
        raise


def audit_id(request: web.BaseRequest) -> str:
    """The request's Audit-ID: the client's if well-formed, else a new UUID (kept for the whole request)."""
    existing = request.get(AUDIT_ID_KEY)
    if isinstance(existing, str):
        return existing
    value = request[AUDIT_ID_KEY] = audit_id_for(request.headers.get("Audit-ID", ""))
    return value


def audit_id_for(given: str) -> str:
    """The Audit-ID of a request whose Audit-ID header is `given` (empty when absent): it if well-formed, else a new one."""
    return given if given and _AUDIT_ID.match(given) else new_audit_id()


# Our name without a version: aiohttp's default header names Python's and its own versions.
SERVER_HEADER = "gateway-apiserver"


async def add_audit_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: return the Audit-ID on every response, streams included (and note what was sent)."""
    response.headers["Audit-Id"] = audit_id(request)
    response.headers["Server"] = SERVER_HEADER
    if _RESPONSE_KEY not in request:  # the first head prepared is the one the client got
        request[_RESPONSE_KEY] = response


def sent_response(request: web.BaseRequest) -> web.StreamResponse | None:
    """The response prepared (its head sent) for `request`, if any."""
    response = request.get(_RESPONSE_KEY)
    return response if isinstance(response, web.StreamResponse) else None


def _client_gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class AccessLogger(AbstractAccessLogger):
    """aiohttp access logger writing one JSON object per request whose handler returned."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write the line for a finished request (aiohttp calls this after writing, or failing to write, the response)."""
        if request.get(_LOGGED_KEY):
            return
        # What went out first wins: a stream that broke is followed by an error response nobody sent.
        sent = sent_response(request) or response
        ended = request.get(ENDED_KEY)
        if ended is None:
            # A tunnel (101) ends by closing the connection; anything else closed under us lost its client.
            ended = CLIENT_DISCONNECT if sent.status != 101 and _client_gone(request) else COMPLETE
        _write(self.logger, request, sent.status, ended, time)

    @property
    def enabled(self) -> bool:
        """Skip building the record when INFO is off."""
        return self.logger.isEnabledFor(logging.INFO)


def _write(logger: logging.Logger, request: web.BaseRequest, status: int, ended: str, loop_time: float | None) -> None:
    request[_LOGGED_KEY] = True
    if not logger.isEnabledFor(logging.INFO):
        return
    counter = request.get(_BODY_KEY)
    rejected = bool(request.get(REJECTED_KEY))
    attrs = request.get(ATTRIBUTES_KEY)
    verb = "" if rejected else request.method.lower()
    if isinstance(attrs, RequestAttributes):
        verb = attrs.verb
    write_access_line(
        logger,
        user=authenticated_name(request),  # "" when authentication refused the caller (401) or never ran
        verb=verb,
        method="" if rejected else request.method,
        path="" if rejected else request.path,
        cluster=request_cluster(request),
        status=status,
        body_bytes=counter.count if isinstance(counter, BodyBytes) else 0,
        ended=ended,
        seconds=_duration(request, loop_time),
        audit=audit_id(request),
        remote=request.remote,
    )


def write_access_line(
    logger: logging.Logger,
    *,
    user: str,
    verb: str,
    method: str,
    path: str,
    cluster: str,
    status: int,
    body_bytes: int,
    ended: str,
    seconds: float,
    audit: str,
    remote: str | None,
) -> None:
    """One request's access line (the fields of the module docstring), at INFO."""
    record: dict[str, Any] = {
        "user": user,
        "verb": verb,
        "method": method,
        "path": path,
        "cluster": cluster,
        "status": status,
        "bytes": body_bytes,
        "ended": ended,
        "durationMs": round(seconds * 1000, 2),
        "auditID": audit,
        "remote": remote,
    }
    # Text lines show the compact JSON; JSON lines carry the fields as keys of their own.
    logger.info(json.dumps(record, separators=(",", ":")), extra=structured("request", record))


def request_cluster(request: web.BaseRequest) -> str:
    """The ClusterGateway `request` addresses (itself or under it, e.g. its proxy), once authorization named it; else ""."""
    attrs = request.get(ATTRIBUTES_KEY)
    if isinstance(attrs, RequestAttributes) and attrs.resource == "clustergateways":
        return attrs.name
    return ""


def _duration(request: web.BaseRequest, loop_time: float | None) -> float:
    started = request.get(STARTED_KEY)
    if isinstance(started, float):
        return clock.perf_counter() - started
    return loop_time or 0.0
