"""`RawConnection`: one TLS connection that writes HTTP/1.1 bytes as given and reads answers as sent.

For requests no client library would write (smuggling, header injection, pipelining) and for
checking what happens to the connection afterwards. Answers are framed the way a client must
frame them: by Content-Length, by chunked encoding, or (neither) until the server closes.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDict

READ_TIMEOUT = 10.0  # seconds any one read may take before the test fails


@dataclass(frozen=True)
class RawResponse:
    """One answer as it came over the wire."""

    status_line: str  # e.g. "HTTP/1.1 200 OK"
    headers: CIMultiDict[str]
    body: bytes  # de-chunked when the answer was chunked

    @property
    def status(self) -> int:
        """The status code."""
        return int(self.status_line.split(" ", 2)[1])

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class RawConnection:
    """A client-side TLS connection to 127.0.0.1:`port` driven byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, ssl_context: ssl.SSLContext) -> RawConnection:
        """Connect and complete the TLS handshake."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl_context, limit=1 << 20)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        """Write `data` in one TLS write (pipelined requests arrive together)."""
        self.writer.write(data)
        await self.writer.drain()

    def write_eof(self) -> None:
        """Half-close: the client will send nothing more but still reads."""
        self.writer.write_eof()

    async def response(self, *, timeout: float = READ_TIMEOUT) -> RawResponse:
        """Read exactly one answer; fails if the server closes before a whole one arrived."""
        async with asyncio.timeout(timeout):
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
            headers: CIMultiDict[str] = CIMultiDict(line.split(": ", 1) for line in lines)  # type: ignore[misc]
            if "chunked" in headers.get("Transfer-Encoding", "").lower():
                body = await self._chunked_body()
            elif "Content-Length" in headers:
                body = await self.reader.readexactly(int(headers["Content-Length"]))
            else:
                body = await self.reader.read()  # delimited by the end of the connection
            return RawResponse(status_line, headers, body)

    async def _chunked_body(self) -> bytes:
        body = b""
        while size := int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16):
            body += await self.reader.readexactly(size)
            assert await self.reader.readexactly(2) == b"\r\n"
        while await self.reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
            pass
        return body

    async def rest(self, *, timeout: float = READ_TIMEOUT) -> bytes:
        """Everything the server still sends until it closes the connection (b"" if it closes at once)."""
        async with asyncio.timeout(timeout):
            try:
                return await self.reader.read()
            except ConnectionResetError:
                return b""

    async def is_open(self, *, wait: float = 0.3) -> bool:
        """Whether the server keeps the connection open for `wait` seconds without sending anything."""
        try:
            async with asyncio.timeout(wait):
                data = await self.reader.read(1)
        except TimeoutError:
            return True
        assert data == b"", f"unexpected bytes from the server: {data!r}"
        return False

    async def close(self) -> None:
        """Close our side (does not wait for the server's close_notify)."""
        self.writer.close()
