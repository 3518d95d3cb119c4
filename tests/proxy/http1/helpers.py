"""Building pools and requests for the HTTP/1.1 client's tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from gateway_apiserver.proxy.http1 import UpstreamExchange, UpstreamPool
from tests.fakes.pki import client_ssl_context


@contextlib.contextmanager
def pool_to(
    port: int, ca_pem: bytes | None, *, host: str = "127.0.0.1", connect_timeout: float = 5.0, idle_timeout: float = 90.0
) -> Iterator[UpstreamPool]:
    """A pool to host:port trusting `ca_pem` (plain HTTP when None), closed afterwards."""
    tls = client_ssl_context(ca_pem) if ca_pem is not None else None
    pool = UpstreamPool(host, port, tls, server_hostname=None, connect_timeout=connect_timeout, idle_timeout=idle_timeout)
    try:
        yield pool
    finally:
        pool.close()


def request(method: str, path: str, *, port: int, token: str | None = None, body: bytes = b"", extra: str = "") -> bytes:
    """A request head as the fast path builds it."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def body_of(exchange: UpstreamExchange) -> bytes:
    """The whole body, relayed to a list."""
    chunks: list[bytes] = []
    await exchange.relay(chunks.append)
    return b"".join(chunks)


async def fetch(pool: UpstreamPool, head: bytes, body: bytes = b"", *, idempotent: bool = True) -> tuple[int, bytes]:
    """(status, body) of one exchange."""
    exchange = await pool.send(head, body, idempotent=idempotent)
    return exchange.status, await body_of(exchange)
