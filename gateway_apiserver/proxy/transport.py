"""Long-lived, pooled connections to member clusters: one aiohttp session per cluster.

The reference builds a transport (and so a TCP+TLS handshake) per request. Here each
cluster keeps one `ClientSession` with a keep-alive connector, rebuilt only when the
cluster's connection facts (endpoint, CA, proxy, credential) change in its Secret; the old
one is retired gracefully: closed when its last in-flight request ends (or after a grace).
Beside the session, a cluster reached directly (no proxy-url, no Konnectivity tunnel) lends the
fast path raw HTTP/1.1 pools (proxy/http1), one per TLS context, closed with the transport.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import python_socks
from aiohttp_socks import ProxyConnector
from python_socks import ProxyType
from python_socks.async_.asyncio.v2 import Proxy
from yarl import URL

from ..base.status import StatusError
from ..registry.cache import ChangeEvent
from ..registry.model import ClusterGateway, EndpointType
from .credentials import CredentialProvider, ResolvedCredential, credential_provider, load_client_certificate
from .http1 import UpstreamPool
from .konnectivity.channel import KonnectivitySettings
from .konnectivity.connector import KonnectivityConnector, through_tunnel, upgrade_dialer
from .konnectivity.tunnel import ProxyServerTunnels
from .upstream_errors import Hop, ProxyFailure

log = logging.getLogger(__name__)

Dialer = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

MAX_HTTP1_POOLS = 2  # per transport: the current client certificate's and the previous one's

# aiohttp adds these unless told not to; a proxy forwards the client's own or none.
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """Tunables of the proxy. Timeouts are in seconds."""

    connect_timeout: float = 10.0  # TCP + TLS (+ proxy) connect to a member
    request_timeout: float = 60.0  # whole exchange of a non-streaming call (the kube-apiserver's default)
    exec_timeout: float = 30.0  # one exec credential plugin run
    exec_failure_backoff: float = 5.0  # a failed plugin is not re-run for this long
    idle_timeout: float = 90.0  # idle keep-alive connections are closed after this (Go's IdleConnTimeout)
    retire_grace: float = 60.0  # in-flight requests on a replaced transport get this long before it closes
    identity_headers: tuple[str, ...] = ()  # configured requestheader names to strip, besides X-Remote-*
    identity_prefixes: tuple[str, ...] = ()  # configured requestheader extra prefixes to strip
    konnectivity: KonnectivitySettings | None = None  # the proxy-server ClusterProxy clusters are reached through


def connection_facts(cluster: ClusterGateway) -> tuple[Any, ...]:
    """What a transport is built from: a change of any of these (and only these) rebuilds it."""
    return (
        cluster.endpoint_type,
        cluster.address,
        cluster.ca_bundle,
        cluster.insecure,
        cluster.proxy_url,
        cluster.tls_server_name,
        cluster.credential,
    )


class _ServerNameContext(ssl.SSLContext):
    """A client context that sends SNI for, and checks the certificate against, a fixed name
    (kubeconfig's tls-server-name) whatever host it dials: every TLS path (the session, upgrade
    tunnels, HTTP CONNECT and SOCKS proxies) wraps its connection through `wrap_bio`."""

    server_name: str

    def wrap_bio(
        self, incoming: Any, outgoing: Any, server_side: bool = False, server_hostname: Any = None, session: Any = None
    ) -> Any:
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)


def server_ssl_context(cluster: ClusterGateway) -> ssl.SSLContext:
    """Verification of the member: its CA bundle; none at all when insecure (a Secret without a CA); the
    system roots otherwise (a ManagedCluster without a caBundle, under --ocm-integration)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cluster.tls_server_name:
        ctx = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.server_name = cluster.tls_server_name
    if cluster.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cluster.ca_bundle:
        ctx.load_verify_locations(cadata=cluster.ca_bundle.decode("ascii", errors="replace"))
    else:
        ctx.load_default_certs()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])  # aiohttp speaks HTTP/1.1 only
    return ctx


def _split_proxy(proxy_url: str) -> tuple[URL, dict[str, str]]:
    """The proxy URL without userinfo, and a Proxy-Authorization header for it if it had one."""
    url = URL(proxy_url)
    headers: dict[str, str] = {}
    if url.user is not None:
        raw = f"{url.user}:{url.password or ''}".encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(raw).decode()
    return url.with_user(None).with_password(None), headers


class ClusterTransport:
    """The session, TLS configuration and credential of one cluster."""

    def __init__(self, cluster: ClusterGateway, settings: ProxySettings, tunnels: ProxyServerTunnels | None = None) -> None:
        self.facts = connection_facts(cluster)
        self._tunnels = tunnels if cluster.endpoint_type is EndpointType.CLUSTER_PROXY else None
        if cluster.endpoint_type is EndpointType.CLUSTER_PROXY and tunnels is not None:
            cluster = through_tunnel(cluster)  # https://<name>, verified as kubernetes.default.svc
        elif cluster.endpoint_type is not EndpointType.CONST or not cluster.address:
            raise ValueError("ClusterTransport needs a Const endpoint, or a ClusterProxy one and the proxy-server's tunnels")
        self.name = cluster.name
        self.base_url = URL(cluster.address or "")
        self.is_tls = self.base_url.scheme == "https"
        self._base_ssl = server_ssl_context(cluster) if self.is_tls else None
        self._cluster = cluster
        self._connect_timeout = settings.connect_timeout
        self._ssl_for: tuple[ResolvedCredential, ssl.SSLContext] | None = None
        self.credentials: CredentialProvider = credential_provider(
            cluster, exec_timeout=settings.exec_timeout, exec_failure_backoff=settings.exec_failure_backoff
        )
        self.proxy: URL | None = None
        self.proxy_headers: dict[str, str] | None = None
        connector_args: dict[str, Any] = {
            "limit": 0,  # watches hold connections for long; aiohttp's default cap of 100 would queue requests
            "limit_per_host": 0,
            "keepalive_timeout": settings.idle_timeout,
            "ttl_dns_cache": 10,
        }
        connector: aiohttp.TCPConnector
        if self._tunnels is not None:
            connector = KonnectivityConnector(self._dial, **connector_args)
        elif cluster.proxy_url and URL(cluster.proxy_url).scheme in ("socks5", "socks5h"):
            proxy = URL(cluster.proxy_url)
            # Remote DNS (rdns) for both schemes, as Go's SOCKS5 dialer sends host names.
            connector = ProxyConnector(
                proxy_type=ProxyType.SOCKS5,
                host=proxy.host or "",
                port=proxy.port or 1080,
                username=proxy.user,
                password=proxy.password,
                rdns=True,
                **connector_args,
            )
        else:
            connector = aiohttp.TCPConnector(**connector_args)
            if cluster.proxy_url:
                self.proxy, self.proxy_headers = _split_proxy(cluster.proxy_url)
        self.session = aiohttp.ClientSession(
            connector=connector,
            # No total timeout: a watch lives as long as the client wants. Connect is bounded.
            # Through a tunnel, the dial and the member's TLS are each bounded by the connect timeout (the dial's
            # own timeout names the proxy-server), so the whole connect may take both.
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=settings.connect_timeout * (2 if self._tunnels is not None else 1),
                sock_connect=settings.connect_timeout,
            ),
            auto_decompress=False,  # Content-Encoding passes through, so must the bytes
            cookie_jar=aiohttp.DummyCookieJar(),  # a member's cookies must never reach another caller
            skip_auto_headers=SKIP_AUTO_HEADERS,
            trust_env=False,
            max_field_size=64 * 1024,
            max_line_size=64 * 1024,
        )
        # The fast path's raw HTTP/1.1 pools, one per TLS context (a client certificate has its own), newest last;
        # none for a cluster behind its proxy-url proxy or a Konnectivity tunnel (those keep the session).
        self.direct = self._tunnels is None and not cluster.proxy_url
        self._http1_pools: dict[ssl.SSLContext | bool, UpstreamPool] = {}
        self._idle_timeout = settings.idle_timeout
        self._active = 0
        self.tunnels = 0  # upgrade tunnels (exec, attach, port-forward) open now: each holds its own member connection
        self._idle = asyncio.Event()
        self._idle.set()
        self.retired = False

    async def authenticate(self) -> tuple[ResolvedCredential, ssl.SSLContext | bool]:
        """The current credential and the SSL context carrying its client certificate (False for http)."""
        cred = await self.credentials.get()
        if self._base_ssl is None:
            return cred, False
        if cred.client_cert_pem is None or cred.client_key_pem is None:
            return cred, self._base_ssl
        cached = self._ssl_for
        if cached is not None and cached[0] is cred:
            return cred, cached[1]
        # A new client certificate (an exec plugin's rotation): a new context, so new connections.
        ctx = server_ssl_context(self._cluster)
        load_client_certificate(ctx, cred.client_cert_pem, cred.client_key_pem)
        self._ssl_for = (cred, ctx)
        return cred, ctx

    def http1_pool(self, ssl_context: ssl.SSLContext | bool) -> UpstreamPool | None:
        """The fast path's pool for requests authenticated with `ssl_context` (as `authenticate` returned it,
        False for http); None when the cluster is reached through a proxy or a tunnel (use the session).

        A new context (a rotated client certificate) gets a new pool; the previous one stays for requests
        that authenticated before the rotation, its connections closing after the idle timeout; older ones close.
        """
        pool = self._http1_pools.get(ssl_context)
        if pool is not None or not self.direct:
            return pool
        if self.retired:
            return None  # closing: a late request is served by the session, which closes with it
        tls = ssl_context if isinstance(ssl_context, ssl.SSLContext) else None
        pool = UpstreamPool(
            self.base_url.host or "",
            self.base_url.port or (443 if self.is_tls else 80),
            tls,
            server_hostname=None,  # the URL's host, or tls-server-name through _ServerNameContext
            connect_timeout=self._connect_timeout,
            idle_timeout=self._idle_timeout,
        )
        self._http1_pools[ssl_context] = pool
        while len(self._http1_pools) > MAX_HTTP1_POOLS:
            oldest = next(iter(self._http1_pools))
            self._http1_pools.pop(oldest).close()  # its in-flight exchanges finish
        return pool

    def http1_pools(self) -> list[UpstreamPool]:
        """The fast path's pools open now (for the connection metrics)."""
        return list(self._http1_pools.values())

    def hop(self, url: URL) -> Hop:
        """Where a request to `url` goes (member and proxy), to describe a failure to reach it."""
        return Hop(self.name, url, self._cluster.proxy_url, self._connect_timeout, self._cluster.tls_server_name)

    def upgrade_dialer(self, url: URL, ssl_context: ssl.SSLContext | bool) -> Dialer | None:
        """How an upgrade tunnel (which bypasses the session) reaches `url` through the cluster's
        proxy-url (HTTP CONNECT or SOCKS5), or its own Konnectivity tunnel; None when the cluster has no proxy (dial directly)."""
        if self._tunnels is not None:
            return upgrade_dialer(self._dial, self._cluster.tls_server_name or "", ssl_context)
        if not self._cluster.proxy_url:
            return None
        proxy = URL(self._cluster.proxy_url)
        socks = proxy.scheme in ("socks5", "socks5h")
        args: dict[str, Any] = {
            "proxy_type": ProxyType.SOCKS5 if socks else ProxyType.HTTP,
            "host": proxy.host or "",
            "port": proxy.port or (1080 if socks else 80),
            "username": proxy.user,
            "password": proxy.password,
            "rdns": True,
            "proxy_ssl": ssl.create_default_context() if proxy.scheme == "https" else None,
        }
        dest_ssl = ssl_context if isinstance(ssl_context, ssl.SSLContext) else None
        timeout = self._connect_timeout

        async def dial() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            try:
                stream = await Proxy(**args).connect(url.host or "", url.port or 443, dest_ssl=dest_ssl, timeout=timeout)
            except (python_socks.ProxyError, python_socks.ProxyConnectionError, python_socks.ProxyTimeoutError) as exc:
                raise ProxyFailure(exc) from None  # blamed on the proxy, not the member
            return stream.reader, stream.writer

        return dial

    async def _dial(self) -> socket.socket:
        assert self._tunnels is not None
        return await self._tunnels.dial(self.name)

    def track(self) -> _InFlight:
        """Count one in-flight request (`with transport.track():`), so a retired transport closes only once idle."""
        return _InFlight(self)

    def _begin(self) -> None:
        self._active += 1
        self._idle.clear()

    def _end(self) -> None:
        self._active -= 1
        if self._active == 0:
            self._idle.set()

    @property
    def active(self) -> int:
        """Requests in flight."""
        return self._active

    async def close_when_idle(self, grace: float) -> None:
        """Close once no request is in flight, or after `grace` seconds at the latest."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        await self.close()

    async def close(self) -> None:
        """Close the session and the fast path's pools (and their connections) and stop any credential work."""
        self.retired = True
        pools, self._http1_pools = list(self._http1_pools.values()), {}
        for pool in pools:
            pool.abort()
        await self.credentials.close()
        await self.session.close()


class _InFlight:
    """A plain context manager (not a generator one: this is on every request's path)."""

    __slots__ = ("_transport",)

    def __init__(self, transport: ClusterTransport) -> None:
        self._transport = transport

    def __enter__(self) -> None:
        self._transport._begin()

    def __exit__(self, *exc: object) -> None:
        self._transport._end()


class TransportPool:
    """Every cluster's transport, keyed by name; follows the registry's changes."""

    def __init__(self, settings: ProxySettings | None = None) -> None:
        self.settings = settings or ProxySettings()
        self._transports: dict[str, ClusterTransport] = {}
        self._retiring: dict[asyncio.Task[None], ClusterTransport] = {}
        self._closed = False
        self._tunnels: ProxyServerTunnels | None = None  # built when a ClusterProxy cluster is first used
        self.built = 0  # transports created, for tests and metrics

    def transports(self) -> list[ClusterTransport]:
        """The current transport of every cluster used so far, by name."""
        return [self._transports[name] for name in sorted(self._transports)]

    def open_transports(self) -> list[ClusterTransport]:
        """Every transport that may still hold connections: the current ones and those retiring."""
        return [*self._transports.values(), *self._retiring.values()]

    def get(self, cluster: ClusterGateway) -> ClusterTransport:
        """The transport for `cluster`, built on first use or when its connection facts changed.

        A ClusterProxy (Konnectivity) endpoint answers 503 when the gateway has no proxy-server (--proxy-host).
        """
        if self._closed:
            raise StatusError(503, "the gateway is shutting down")
        tunnels = self._cluster_proxy_tunnels(cluster) if cluster.endpoint_type is EndpointType.CLUSTER_PROXY else None
        current = self._transports.get(cluster.name)
        if current is not None and current.facts == connection_facts(cluster):
            return current
        if current is not None:
            self._retire(current)
        transport = ClusterTransport(cluster, self.settings, tunnels)
        self._transports[cluster.name] = transport
        self.built += 1
        return transport

    def _cluster_proxy_tunnels(self, cluster: ClusterGateway) -> ProxyServerTunnels:
        if self.settings.konnectivity is None:
            raise StatusError(
                503,
                f'cluster "{cluster.name}" is reached through OCM cluster-proxy (endpoint type ClusterProxy), '
                "but this gateway was started without a Konnectivity proxy-server (--proxy-host)",
            )
        if self._tunnels is None:
            self._tunnels = ProxyServerTunnels(self.settings.konnectivity, self.settings.connect_timeout)
        return self._tunnels

    def on_change(self, event: ChangeEvent[ClusterGateway]) -> None:
        """Registry listener: retire a cluster's transport when it is deleted or its facts change."""
        cluster = event.object or event.previous
        if cluster is None or event.type == "BOOKMARK":
            return
        current = self._transports.get(cluster.name)
        if current is None:
            return
        if event.type == "DELETED" or event.object is None or current.facts != connection_facts(event.object):
            self._retire(current)

    def _retire(self, transport: ClusterTransport) -> None:
        if self._transports.get(transport.name) is transport:
            del self._transports[transport.name]
        if transport.retired:
            return
        transport.retired = True
        log.info("cluster %s changed: retiring its connections (%d requests in flight)", transport.name, transport.active)
        try:
            task = asyncio.get_running_loop().create_task(transport.close_when_idle(self.settings.retire_grace))
        except RuntimeError:  # no loop: nothing can be in flight either
            return
        self._retiring[task] = transport
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    def __len__(self) -> int:
        return len(self._transports)

    async def close(self) -> None:
        """Close every transport now (shutdown): the server has already stopped its handlers."""
        self._closed = True
        transports = [*self._transports.values(), *self._retiring.values()]
        self._transports = {}
        tasks = list(self._retiring)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)
        if self._tunnels is not None:  # after the sessions: their tunnels send CLOSE_REQ first
            await self._tunnels.close()
