"""aiohttp and upgrade connections to ClusterProxy clusters, each on its own tunnel.

`KonnectivityConnector` is aiohttp's pooling connector with one change: a new connection is a
tunnel dialled through the proxy-server (never a DNS lookup or a TCP connect to the cluster's
name), wrapped in the member's TLS. Keep-alive then reuses the connection, and so its tunnel;
when the pool closes a connection, its tunnel sends CLOSE_REQ.

The member is verified against the Secret's CA with the server name `kubernetes.default.svc`,
which every kube-apiserver certificate carries (the tunnel's address is the cluster's name, which
the member's certificate does not), or with the Secret's `tls-server-name`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from ...registry.model import ClusterGateway
from .tunnel import MEMBER_PORT

MEMBER_SERVER_NAME = "kubernetes.default.svc"  # in every kube-apiserver serving certificate

Dial = Callable[[], Awaitable[socket.socket]]


def through_tunnel(cluster: ClusterGateway) -> ClusterGateway:
    """`cluster` as the proxy reaches it through a tunnel: https://<name> (the tunnel's address), verified
    as `kubernetes.default.svc` unless the Secret names another server name."""
    return dataclasses.replace(
        cluster,
        address=f"https://{cluster.name}:{MEMBER_PORT}",
        tls_server_name=cluster.tls_server_name or MEMBER_SERVER_NAME,
    )


class _TunnelledNames(AbstractResolver):
    """Resolves nothing: the cluster's name is only the tunnel's address, never looked up."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [{"hostname": host, "host": host, "port": port, "family": family, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        """Nothing to close."""


class KonnectivityConnector(aiohttp.TCPConnector):
    """A pooling connector whose connections each ride a tunnel from `dial`."""

    def __init__(self, dial: Dial, **kwargs: Any) -> None:
        super().__init__(resolver=_TunnelledNames(), **kwargs)
        self._dial = dial

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: Any,
        req: Any,
        timeout: aiohttp.ClientTimeout,
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, Any]:
        try:
            sock = await self._dial()  # bounded by the connect timeout itself
        except OSError as exc:  # TunnelError: its message is the Status the client gets
            raise aiohttp.ClientConnectorError(req.connection_key, exc) from exc
        try:
            async with asyncio.timeout(timeout.sock_connect):
                transport, protocol = await self._loop.create_connection(*args, sock=sock, **kwargs)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise aiohttp.ClientConnectorCertificateError(req.connection_key, exc) from exc
        except ssl.SSLError as exc:
            sock.close()
            raise aiohttp.ClientConnectorSSLError(req.connection_key, exc) from exc
        except OSError as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise
            raise client_error(req.connection_key, exc) from exc
        except BaseException:
            sock.close()
            raise
        return transport, protocol


def upgrade_dialer(
    dial: Dial, server_name: str, ssl_context: ssl.SSLContext | bool
) -> Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
    """How an upgrade (exec, attach, port-forward) reaches the member: its own tunnel, then TLS."""
    context = ssl_context if isinstance(ssl_context, ssl.SSLContext) else None

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = await dial()
        try:
            return await asyncio.open_connection(
                sock=sock, ssl=context, server_hostname=server_name if context is not None else None
            )
        except BaseException:
            sock.close()
            raise

    return connect
