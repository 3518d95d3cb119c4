"""Forward proxies a cluster Secret's `proxy-url` can name: HTTP CONNECT and SOCKS5, on 127.0.0.1.

Each records what it was asked (the CONNECT head, or the SOCKS5 destination) and tunnels bytes
to the destination, or refuses the way a real proxy does: an HTTP status answered to CONNECT
(407 when credentials are missing or wrong, 502 when the destination cannot be reached), or a
SOCKS5 reply code (RFC 1928 §6, e.g. 5 = connection refused).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

_REASONS = {407: "Proxy Authentication Required", 403: "Forbidden", 502: "Bad Gateway", 503: "Service Unavailable"}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _tunnel(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, host: str, port: int, reply: bytes) -> None:
    up_r, up_w = await asyncio.open_connection(host, port)
    client_w.write(reply)
    await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))


@asynccontextmanager
async def http_connect_proxy(log: list[str], *, refuse_with: int | None = None) -> AsyncIterator[int]:
    """An HTTP proxy that tunnels CONNECT requests (or answers each with `refuse_with`); yields its port."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = (await r.readuntil(b"\r\n\r\n")).decode()
        log.append(head)
        if refuse_with is not None:
            reason = _REASONS.get(refuse_with, "Refused")
            extra = 'Proxy-Authenticate: Basic realm="proxy"\r\n' if refuse_with == 407 else ""
            w.write(f"HTTP/1.1 {refuse_with} {reason}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await w.drain()
            w.close()
            return
        host, _, port = head.split(" ")[1].rpartition(":")
        await _tunnel(r, w, host, int(port), b"HTTP/1.1 200 Connection established\r\n\r\n")

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@asynccontextmanager
async def socks5_proxy(log: list[str], *, reply: int = 0, reject_login: bool = False) -> AsyncIterator[int]:
    """A SOCKS5 proxy that tunnels CONNECT (or answers reply code `reply`); yields its port.

    Without authentication, or with `reject_login` one that asks for a user and password
    (RFC 1929) and refuses every pair (and every client that offers none).
    """

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        _, count = await r.readexactly(2)
        methods = await r.readexactly(count)
        if reject_login:
            if 2 not in methods:
                w.write(b"\x05\xff")  # no acceptable method
            else:
                w.write(b"\x05\x02")  # username/password
                _, user_len = await r.readexactly(2)
                await r.readexactly(user_len)
                await r.readexactly((await r.readexactly(1))[0])
                w.write(b"\x01\x01")  # authentication failed
            await w.drain()
            w.close()
            return
        w.write(b"\x05\x00")  # no authentication
        _, _, _, atyp = await r.readexactly(4)
        if atyp == 3:
            host = (await r.readexactly((await r.readexactly(1))[0])).decode()
        else:
            host = ".".join(str(b) for b in await r.readexactly(4))
        (port,) = struct.unpack("!H", await r.readexactly(2))
        log.append(f"{host}:{port}")
        if reply:
            w.write(bytes([5, reply, 0, 1, 0, 0, 0, 0, 0, 0]))
            await w.drain()
            w.close()
            return
        await _tunnel(r, w, host, port, b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
