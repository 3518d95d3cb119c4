"""The process's log output: one line per record on standard error, as text (the default) or JSON.

Every line has a time, a level, the logger's name and a message. A line written while a request
is being handled also names the request: its audit ID (the Audit-Id returned to the client),
the cluster it addresses (`""` when none, or not known yet) and the authenticated user (`""`
before authentication and when it refused the caller; `system:anonymous` for an anonymous caller):
the same user the request's access-log line names. The request is found through a context variable
that the `request_context` middleware sets for the request's task, so every existing `log.warning(...)`
gets the fields without passing them; a task started while serving (one exec plugin run shared
by several requests, a single-flight TokenReview) is logged with the request that started it.
Records that already carry their own fields (the access log, `records.structured(...)`) keep
them: in JSON they become top-level keys. Text lines escape control characters in messages.

Text:  `2026-12-03 16:54:29,123 WARNING gateway_apiserver.proxy.handler: message auditID="…" cluster="c1" user="alice"`
JSON:  `{"time":"2026-12-03T16:54:29.123Z","level":"WARNING","logger":"…","message":"…","auditID":"…","cluster":"c1",…}`
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import IO, Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from ..security.identity import authenticated_name
from .access_log import audit_id, request_cluster
from .records import FIELDS_ATTR, record_fields, structured_message

TEXT = "text"
JSON = "json"
# The request fields, in the order lines show them (the access log uses the same names).
REQUEST_FIELDS = ("auditID", "cluster", "user")


class LoggedRequest(Protocol):
    """A request served outside aiohttp's request objects (the fast lane's) that log lines can name."""

    def log_fields(self) -> dict[str, str]:
        """auditID, cluster and user as known now."""


_current_request: contextvars.ContextVar[web.BaseRequest | LoggedRequest | None] = contextvars.ContextVar(
    "gateway_request", default=None
)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Make `request` the one that log lines written by its task (and tasks it starts) concern."""
    token = _current_request.set(request)
    try:
        return await handler(request)
    finally:
        _current_request.reset(token)


def enter_request(request: LoggedRequest) -> contextvars.Token[web.BaseRequest | LoggedRequest | None]:
    """Make `request` the one that log lines written by the current task concern (the fast lane's request_context)."""
    return _current_request.set(request)


def leave_request(token: contextvars.Token[web.BaseRequest | LoggedRequest | None]) -> None:
    """Undo `enter_request`."""
    _current_request.reset(token)


def request_fields(request: web.BaseRequest) -> dict[str, str]:
    """auditID, cluster and user of `request` as known now (`""` for what is not known yet)."""
    return {"auditID": audit_id(request), "cluster": request_cluster(request), "user": authenticated_name(request)}


class RequestFields(logging.Filter):
    """Adds the current request's fields to records written while a request is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Never drops a record; only annotates it."""
        if not hasattr(record, FIELDS_ATTR):
            request = _current_request.get()
            if isinstance(request, web.BaseRequest):
                setattr(record, FIELDS_ATTR, request_fields(request))
            elif request is not None:
                setattr(record, FIELDS_ATTR, request.log_fields())
        return True


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # all but the tab
_ESCAPES = {"\n": "\\n", "\r": "\\r"}


def _escape_controls(text: str) -> str:
    """`text` with each control character but the tab escaped (`\\n`, `\\r`, `\\u001b`)."""
    return _CONTROL.sub(lambda match: _ESCAPES.get(match.group(), f"\\u{ord(match.group()):04x}"), text)


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL>[ <pid>] <logger>: <message>`, then ` key="value"` for the request fields, if any."""

    def __init__(self, *, with_pid: bool = False) -> None:
        process = " %(process)d" if with_pid else ""  # which worker said it
        super().__init__(f"%(asctime)s %(levelname)s{process} %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line before any traceback: the request fields follow the message.

        Control characters in the message are escaped, so a value a client chose (a decoded path
        holding %0A) cannot start a line that looks like another record.
        """
        if _CONTROL.search(record.message):
            record = logging.makeLogRecord({**record.__dict__, "message": _escape_controls(record.message)})
        line = super().formatMessage(record)
        fields = record_fields(record)
        if fields and structured_message(record) is None:  # a structured record's message already holds them
            line += "".join(f" {key}={json.dumps(fields[key])}" for key in REQUEST_FIELDS if key in fields)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC, ms), level, logger, message, then the record's fields."""

    def __init__(self, *, with_pid: bool = False) -> None:
        super().__init__()
        self.with_pid = with_pid

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (a traceback is the `error` field, never extra lines)."""
        message = structured_message(record)
        line: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage() if message is None else message,
        }
        if self.with_pid:
            line["pid"] = record.process
        for key, value in record_fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["error"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, separators=(",", ":"), ensure_ascii=False, default=str)


def _rfc3339(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


def log_handler(log_format: str, stream: IO[str] | None = None, *, with_pid: bool = False) -> logging.Handler:
    """A handler writing `log_format` lines to `stream` (standard error), with the request fields."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    formatter = JsonFormatter(with_pid=with_pid) if log_format == JSON else TextFormatter(with_pid=with_pid)
    handler.setFormatter(formatter)
    handler.addFilter(RequestFields())
    return handler


def configure_logging(log_format: str, level: str, *, with_pid: bool = False) -> None:
    """Send every logger's records at `level` and above to standard error in `log_format` (once per process)."""
    logging.basicConfig(level=level.upper(), handlers=[log_handler(log_format, with_pid=with_pid)])
