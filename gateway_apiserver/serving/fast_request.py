"""One request on the fast lane (serving/fast_lane.py): its parsed head, its body, and the writer of its answer.

The answer goes straight to the connection's transport as bytes: a head with the same headers aiohttp
would add (Date, Server, Content-Type for a body, Content-Length or chunked framing, Connection: close
when the connection ends), then body chunks framed as announced. Nothing is buffered beyond the
transport's own buffer; `paused` tells a relay to stop reading its source while the client is slow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from multidict import CIMultiDictProxy, MultiDictProxy
from yarl import URL

from ..base.status import StatusError, status_body

# Status codes whose answers never have a body (RFC 9110 §6.4.1).
_EMPTY_BODY = frozenset({204, 304})
_REASON_PHRASES: dict[int, bytes] = {}


def _reason(status: int) -> bytes:
    phrase = _REASON_PHRASES.get(status)
    if phrase is None:
        try:
            phrase = HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b"Unknown"
        _REASON_PHRASES[status] = phrase
    return phrase


class _DateHeader:
    """The Date header, formatted once per second (as aiohttp and Go cache it)."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def value(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, formatdate(now, usegmt=True).encode()
        return self._value


DATE = _DateHeader()
SERVER = b"gateway-apiserver"


class FastRequest:
    """A request the fast lane serves: what the pipeline reads, and how it answers.

    `body` is the whole request body (the lane admits only Content-Length bodies it can hold);
    `body_ready` resolves once it has arrived.
    """

    __slots__ = (
        "_chunked",
        "_held_head",
        "_url",
        "attributes",
        "audit_id",
        "body",
        "body_ready",
        "bytes_sent",
        "ended",
        "head_sent",
        "headers",
        "keep_alive",
        "method",
        "output_size",
        "paused",
        "remote",
        "resume_waiters",
        "started",
        "status_sent",
        "target",
        "transport",
        "user",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: CIMultiDictProxy[str],
        keep_alive: bool,
        transport: asyncio.Transport,
        remote: str | None,
    ) -> None:
        self.method = method
        self.target = target  # as received: raw path and query
        self.headers = headers
        self.keep_alive = keep_alive
        self.remote = remote
        self.transport = transport
        self._url: URL | None = None
        self._chunked = False
        self._held_head = b""  # a head written with hold=True: it goes out with the first body bytes (one TLS record)
        self.body = b""
        self.body_ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.started = time.perf_counter()
        self.audit_id = ""
        self.user: Any = None  # UserInfo once authenticated
        self.attributes: Any = None  # RequestAttributes once derived
        self.ended: str | None = None  # why the answer stopped short (access_log's TIMEOUT, SHUTDOWN, ...)
        self.head_sent = False
        self.status_sent = 0
        self.bytes_sent = 0  # body bytes, before chunked framing (the access log's `bytes`)
        self.output_size = 0  # every byte written: head, framing and body (the metrics' response bytes)
        self.paused = False  # the client's transport is above its high-water mark
        self.resume_waiters: list[Callable[[], None]] = []

    # -- what the pipeline reads --

    @property
    def url(self) -> URL:
        """The target as a URL (decoded path and query on demand, the raw forms kept)."""
        if self._url is None:
            self._url = URL.build(path=self.target.partition("?")[0], query_string=self.target.partition("?")[2], encoded=True)
        return self._url

    @property
    def path(self) -> str:
        """The decoded path, as aiohttp's `request.path`."""
        return self.url.path

    @property
    def raw_path(self) -> str:
        """The path as sent."""
        return self.target.partition("?")[0]

    @property
    def raw_query_string(self) -> str:
        """The query string as sent."""
        return self.target.partition("?")[2]

    @property
    def query(self) -> MultiDictProxy[str]:
        """The decoded query parameters."""
        return self.url.query

    def log_fields(self) -> dict[str, str]:
        """auditID, cluster and user as known now (observability/logs.py names them on every line)."""
        attrs = self.attributes
        cluster = attrs.name if attrs is not None and attrs.resource == "clustergateways" else ""
        return {"auditID": self.audit_id, "cluster": cluster, "user": self.user.name if self.user is not None else ""}

    def client_gone(self) -> bool:
        """The client's connection is closing or closed."""
        return self.transport.is_closing()

    # -- the answer --

    def write_head(
        self, status: int, reason: str | bytes, headers: Iterable[bytes], content_length: int | None, *, hold: bool = False
    ) -> None:
        """Send the status line and headers (each `headers` item a complete `Name: value` line without CRLF).

        Adds Audit-Id, Server, Date (unless given), and Content-Length or chunked framing; `Connection: close`
        when this answer ends the connection. With `hold`, the head waits for the first body bytes (or `flush`),
        so a small answer leaves in one write.
        """
        phrase = reason.encode("latin-1") if isinstance(reason, str) else reason
        lines = [b"HTTP/1.1 %d %s" % (status, phrase or _reason(status)), *headers]
        lines.append(b"Audit-Id: " + self.audit_id.encode())
        lines.append(b"Server: " + SERVER)
        if status not in _EMPTY_BODY and status >= 200:
            if content_length is None:
                self._chunked = True
                lines.append(b"Transfer-Encoding: chunked")
            else:
                lines.append(b"Content-Length: %d" % content_length)
        if not self.keep_alive:
            lines.append(b"Connection: close")
        lines.append(b"\r\n")
        data = b"\r\n".join(lines)
        self.output_size += len(data)
        self.head_sent = True
        self.status_sent = status
        if hold:
            self._held_head = data
        else:
            self.transport.write(data)

    def flush(self) -> None:
        """Send a held head now (a stream's head must not wait for its first event)."""
        if self._held_head:
            head, self._held_head = self._held_head, b""
            self.transport.write(head)

    def write_body(self, chunk: bytes) -> None:
        """One piece of the body, framed as the head announced; sent at once (watch events are not held back)."""
        if not chunk:
            return
        self.bytes_sent += len(chunk)
        if self._chunked:
            chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
        self.output_size += len(chunk)
        if self._held_head:
            chunk, self._held_head = self._held_head + chunk, b""
        self.transport.write(chunk)

    def write_eof(self) -> None:
        """The end of the body (the final chunk of a chunked one)."""
        last = b""
        if self._chunked:
            self.output_size += 5
            last = b"0\r\n\r\n"
            self._chunked = False
        if self._held_head or last:
            data, self._held_head = self._held_head + last, b""
            self.transport.write(data)

    def end_stream(self) -> None:
        """Shutdown ends this answer: a chunked body gets its final chunk (a clean end), a fixed-length one is cut."""
        if not self.head_sent or self.transport.is_closing():
            return
        self.flush()
        if self._chunked:
            self.write_eof()
        else:
            self.abort()

    def write_status(self, error: StatusError) -> None:
        """The whole answer for `error`: a Status object, as the aiohttp path's status_response."""
        body = status_body(error)
        extra = [f"{name}: {value}".encode("latin-1") for name, value in error.headers.items()]
        self.write_head(error.code, b"", [b"Content-Type: application/json", *extra], len(body), hold=True)
        self.write_body(body)

    def abort(self) -> None:
        """Cut the connection: a body cut short must never look complete."""
        self._held_head = b""
        self.transport.abort()
