"""The floor of Python itself: a reverse proxy on raw asyncio protocols and httptools (llhttp), no framework.

No authentication, header rules, audit IDs, timeouts, flow control or error mapping: the member's token
is added, the request forwarded on a pooled keep-alive connection and the answer's bytes relayed
as they arrive. It shows how cheap a Python hop can be on this machine; the gateway's fast path is
measured against it.

Run: python benchmarks/raw_proxy.py MEMBER_JSON PORT CERT KEY   (serves /p/<path> until killed)
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httptools


class Upstream(asyncio.Protocol):
    """One keep-alive connection to the member; relays each answer to the client that asked."""

    def __init__(self, pool: list[Upstream]) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: Downstream | None = None
        self.headers: list[bytes] = []
        self.chunked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool:
            self.pool.remove(self)
        if self.client is not None:
            self.client.transport.abort()  # a body cut short must not look complete

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower in (b"connection", b"keep-alive"):
            return
        if lower == b"transfer-encoding":
            self.chunked = True
        self.headers.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        head = b"HTTP/1.1 %d OK\r\n" % status + b"".join(self.headers) + b"\r\n"
        self.headers = []
        if self.client is not None:
            self.client.transport.write(head)

    def on_body(self, body: bytes) -> None:
        if self.client is None:
            return
        if self.chunked:
            self.client.transport.write(b"%x\r\n" % len(body) + body + b"\r\n")
        else:
            self.client.transport.write(body)

    def on_message_complete(self) -> None:
        if self.client is None:
            return
        if self.chunked:
            self.client.transport.write(b"0\r\n\r\n")
        self.chunked = False
        client, self.client = self.client, None
        self.pool.append(self)
        client.done()


class Downstream(asyncio.Protocol):
    """One client connection: parse a request, forward it, relay the answer."""

    def __init__(self, proxy: RawProxy) -> None:
        self.proxy = proxy
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.url = b""
        self.headers: list[bytes] = []
        self.body: list[bytes] = []
        self.upstream: Upstream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.client is self and upstream.transport is not None:
            upstream.client = None
            upstream.transport.abort()  # the client left mid-answer (a watch): its member connection goes too

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower in (b"content-type", b"content-length", b"accept"):
            self.headers.append(name + b": " + value + b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url, self.url = self.url, b""
        headers, self.headers = self.headers, []
        body, self.body = b"".join(self.body), []
        head = (
            b"%s %s HTTP/1.1\r\nHost: %s\r\n%s" % (self.parser.get_method(), url[2:], self.proxy.host, self.proxy.auth)
            + b"".join(headers)
            + b"\r\n"
        )
        asyncio.get_running_loop().create_task(self.proxy.send(self, head + body))

    def done(self) -> None:
        self.upstream = None


class RawProxy:
    def __init__(self, member: dict[str, str]) -> None:
        target = urlsplit(member["url"])
        self.address = (target.hostname, target.port or 443)
        self.host = target.netloc.encode()
        self.auth = b"Authorization: Bearer " + member["token"].encode() + b"\r\n"
        self.tls = ssl.create_default_context(cadata=member["ca"])
        self.pool: list[Upstream] = []

    async def send(self, client: Downstream, request: bytes) -> None:
        if self.pool:
            upstream = self.pool.pop()
        else:
            loop = asyncio.get_running_loop()
            _, upstream = await loop.create_connection(lambda: Upstream(self.pool), *self.address, ssl=self.tls)
        upstream.client = client
        client.upstream = upstream
        assert upstream.transport is not None
        upstream.transport.write(request)


async def serve(member: dict[str, str], port: int, cert: Path, key: Path) -> None:
    proxy = RawProxy(member)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: Downstream(proxy), "127.0.0.1", port, ssl=tls, backlog=1024)
    await asyncio.Event().wait()


def main() -> None:
    args = (json.loads(Path(sys.argv[1]).read_text()), int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(*args))


if __name__ == "__main__":
    main()
