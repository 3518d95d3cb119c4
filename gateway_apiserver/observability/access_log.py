"""One structured access-log line per request, and the Audit-ID every response carries.

Fields: user, verb, path (no query string: it may carry anything), cluster, status, bytes,
duration and audit ID. Never headers or bodies, so never a credential.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
import time as clock

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from ..security.authorization import RequestAttributes
from ..security.identity import request_user

AUDIT_ID_KEY = web.RequestKey("audit_id", str)
ATTRIBUTES_KEY = web.RequestKey("attributes", RequestAttributes)
STARTED_KEY = web.RequestKey("started", float)
_AUDIT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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


@web.middleware
async def request_timer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stamp the start of a request: uvloop's loop.time(), which aiohttp's duration uses, ticks in whole ms."""
    request[STARTED_KEY] = clock.perf_counter()
    return await handler(request)


def audit_id(request: web.BaseRequest) -> str:
    """The request's Audit-ID: the client's if well-formed, else a new UUID (kept for the whole request)."""
    existing = request.get(AUDIT_ID_KEY)
    if isinstance(existing, str):
        return existing
    given = request.headers.get("Audit-ID", "")
    value = given if given and _AUDIT_ID.match(given) else new_audit_id()
    request[AUDIT_ID_KEY] = value
    return value


async def add_audit_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: return the Audit-ID on every response, streams included."""
    response.headers["Audit-Id"] = audit_id(request)


class AccessLogger(AbstractAccessLogger):
    """aiohttp access logger writing one JSON object per request."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write the line for a finished request."""
        attrs = request.get(ATTRIBUTES_KEY)
        cluster = ""
        verb = request.method.lower()
        if isinstance(attrs, RequestAttributes):
            verb = attrs.verb
            if attrs.resource == "clustergateways":
                cluster = attrs.name
        record = {
            "user": request_user(request).name,  # type: ignore[arg-type]
            "verb": verb,
            "method": request.method,
            "path": request.path,
            "cluster": cluster,
            "status": response.status,
            "bytes": response.body_length,
            "durationMs": round(self._duration(request, time) * 1000, 2),
            "auditID": audit_id(request),
            "remote": request.remote,
        }
        self.logger.info(json.dumps(record, separators=(",", ":")))

    @staticmethod
    def _duration(request: web.BaseRequest, loop_time: float) -> float:
        started = request.get(STARTED_KEY)
        return clock.perf_counter() - started if isinstance(started, float) else loop_time

    @property
    def enabled(self) -> bool:
        """Skip building the record when INFO is off."""
        return self.logger.isEnabledFor(logging.INFO)
