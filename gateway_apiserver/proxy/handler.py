"""The `clustergateways/{name}/proxy/{path}` handler: a streaming reverse proxy to the member.

Bodies stream both ways (never buffered whole), each chunk the member sends is written to
the client at once (watch events), and a client that leaves closes the upstream request at
once (the server runs with handler_cancellation=True). Errors before the member answers are
Status objects; the member's own answers, errors included, pass through unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections.abc import Awaitable, Iterable, Mapping
from typing import NamedTuple, Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ..app_keys import REGISTRY
from ..base.api_group import API_PREFIX
from ..base.status import StatusError, no_such_cluster
from ..observability.access_log import TIMEOUT, UPSTREAM_DISCONNECT, audit_id, mark_ended
from ..observability.metrics import METRICS, TUNNEL_BYTES, instrument
from ..registry.model import ClusterGateway
from ..security.identity import USER_KEY, UserInfo
from .connection_metrics import UpstreamConnectionsCollector
from .credential_metrics import ExecCredentialExpiryCollector
from .credentials import CredentialError, ResolvedCredential
from .fail_fast import FailFast, Trial
from .headers import HeaderValues, is_upgrade, request_headers, response_headers, set_headers
from .paths import is_long_running, proxy_target, remainder_of, request_timeout
from .transport import ClusterTransport, ProxySettings, TransportPool
from .upgrade import handle_upgrade
from .upstream_errors import UPSTREAM_ERRORS, describe_failure

log = logging.getLogger(__name__)

PROXY_PATH = f"{API_PREFIX}/clustergateways/{{name}}/proxy"
_PREFIX_SEGMENTS = PROXY_PATH.count("/")  # apis, group, version, clustergateways, {name}, proxy
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


ImpersonationResult = Mapping[str, HeaderValues] | Iterable[tuple[str, str]]


class ImpersonationHook(Protocol):
    """Adds the impersonation headers for a request of `user` (None before authentication) to a cluster
    (Impersonate-User, -Group, -Extra-*).

    Return a mapping of header name to a value or a sequence of values (repeated headers),
    or (name, value) pairs, or an awaitable of either. `requested` tells whether the query asked
    for `impersonate=true` (already stripped from the forwarded query).
    Raise a StatusError to refuse the request (e.g. a bad rule).
    """

    def __call__(
        self, user: UserInfo | None, cluster: ClusterGateway, requested: bool
    ) -> ImpersonationResult | Awaitable[ImpersonationResult]:
        """The headers to add."""


def no_impersonation(user: UserInfo | None, cluster: ClusterGateway, requested: bool) -> ImpersonationResult:
    """The default hook: requests reach the member as the gateway's own identity."""
    return {}


PROXY_SETTINGS = web.AppKey("proxy_settings", ProxySettings)
TRANSPORT_POOL = web.AppKey("proxy_transport_pool", TransportPool)
IMPERSONATION = web.AppKey("proxy_impersonation", ImpersonationHook)
FAIL_FAST = web.AppKey("proxy_fail_fast", FailFast)  # set under the HealthinessCheck feature gate
FAIL_FAST_TRIAL = web.RequestKey("proxy_fail_fast_trial", Trial)


def _cluster(request: web.Request) -> ClusterGateway:
    """The cluster named in the path, or a 404 whose message starts with "no such cluster" (see no_such_cluster)."""
    name = request.match_info["name"]
    try:
        return request.app[REGISTRY].get(name)
    except StatusError as exc:
        raise no_such_cluster(name, exc) from None


async def proxy(request: web.Request) -> web.StreamResponse:
    """Forward one request to the member cluster named in the path (503 at once when fail-fast refuses it)."""
    cluster = _cluster(request)
    fail_fast = request.app.get(FAIL_FAST)
    trial = fail_fast.admit(cluster.name) if fail_fast is not None else None
    if trial is not None:
        request[FAIL_FAST_TRIAL] = trial  # settled when its answer starts (_settle_trial)
    return await _proxy(request, cluster)


async def _settle_trial(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """A fail-fast trial's outcome, as soon as its answer starts: a watch or a tunnel need not end first."""
    if not isinstance(request, web.Request):
        return
    trial = request.pop(FAIL_FAST_TRIAL, None)
    if trial is not None:
        request.app[FAIL_FAST].settle(trial, answered=response.status < 500)


class UpstreamCall(NamedTuple):
    """One request to a member, ready to send: URL, headers (credential and impersonation set), TLS."""

    transport: ClusterTransport
    url: URL
    headers: CIMultiDict[str]
    ssl_context: ssl.SSLContext | bool
    credential: ResolvedCredential


class Caller(NamedTuple):
    """Who asks, and from where: what a member request is prepared from besides its cluster and path."""

    headers: CIMultiDictProxy[str] | CIMultiDict[str]
    client_ip: str | None
    audit_id: str
    user: UserInfo | None
    scheme: str = "https"


async def prepare_call(
    request: web.Request, cluster: ClusterGateway, remainder: str, raw_query: str, *, upgrade: bool = False
) -> UpstreamCall:
    """The member request for `request` proxied to `cluster` at `remainder` (the path after /proxy): see
    prepare_member_call. The server-side fan-out calls it once per member."""
    caller = Caller(request.headers, request.remote, audit_id(request), request.get(USER_KEY), request.scheme)
    return await prepare_member_call(request.app, cluster, remainder, raw_query, caller, upgrade=upgrade)


async def prepare_member_call(
    app: web.Application, cluster: ClusterGateway, remainder: str, raw_query: str, caller: Caller, *, upgrade: bool = False
) -> UpstreamCall:
    """The member request of `caller` proxied to `cluster` at `remainder` (the path after /proxy).

    Everything a proxied request goes through before it is sent: the transport (503 for a
    ClusterProxy endpoint without --proxy-host), the path check (400), the credential (503 when unusable), the
    forwarded headers and the impersonation hook. The aiohttp path and the fast lane (fast_path.py) share it.
    """
    pool = app[TRANSPORT_POOL]
    settings = pool.settings
    transport = pool.get(cluster)  # 503 for a ClusterProxy endpoint without --proxy-host
    target = proxy_target(transport.base_url, remainder, raw_query)  # 400 on traversal
    try:
        credential, ssl_context = await transport.authenticate()
    except CredentialError as exc:
        raise StatusError(503, f'cluster "{cluster.name}" has no usable credential: {exc}') from None
    headers = request_headers(
        caller.headers,
        client_ip=caller.client_ip,
        scheme=caller.scheme,
        audit_id=caller.audit_id,
        identity_headers=settings.identity_headers,
        identity_prefixes=settings.identity_prefixes,
        keep_upgrade=upgrade,
    )
    set_headers(headers, credential.headers())
    hook = app.get(IMPERSONATION, no_impersonation)
    extra = hook(caller.user, cluster, target.impersonate_requested)
    if inspect.isawaitable(extra):
        extra = await extra
    set_headers(headers, extra)
    return UpstreamCall(transport, target.url, headers, ssl_context, credential)


async def _proxy(request: web.Request, cluster: ClusterGateway) -> web.StreamResponse:
    remainder = remainder_of(request.rel_url.raw_path, _PREFIX_SEGMENTS)
    upgrade = is_upgrade(request.headers)
    call = await prepare_call(request, cluster, remainder, request.rel_url.raw_query_string, upgrade=upgrade)
    transport, settings = call.transport, request.app[TRANSPORT_POOL].settings
    with transport.track():
        if upgrade:
            response = await _upgrade(request, transport, call.url, call.ssl_context, call.headers, settings)
            if response.status == 401:
                transport.credentials.invalidate(call.credential)
            return response
        query = dict(request.query)
        timeout = None if is_long_running(remainder, query) else request_timeout(query, settings.request_timeout)
        return await _forward(request, call, timeout)


async def _upgrade(
    request: web.Request,
    transport: ClusterTransport,
    url: URL,
    ssl_context: ssl.SSLContext | bool,
    headers: CIMultiDict[str],
    settings: ProxySettings,
) -> web.StreamResponse:
    transport.tunnels += 1  # its member connection, from the dial until it closes (upstream_connections)
    try:
        response: web.StreamResponse = await handle_upgrade(
            request,
            url,
            ssl_context,
            headers,
            connect_timeout=settings.connect_timeout,
            # The member's answer to the upgrade is an ordinary exchange; only the tunnel after a 101 is long-running.
            response_timeout=settings.request_timeout,
            dial=transport.upgrade_dialer(url, ssl_context),
            hop=transport.hop(url),
            meter=request.get(TUNNEL_BYTES),
        )
    finally:
        transport.tunnels -= 1
    return response


async def _send(
    method: str,
    transport: ClusterTransport,
    url: URL,
    headers: CIMultiDict[str],
    data: object,
    ssl_context: ssl.SSLContext | bool,
) -> aiohttp.ClientResponse:
    """One request to the member; its failures as Status errors naming the hop."""
    try:
        return await transport.session.request(
            method,
            url,
            headers=headers,
            data=data,
            ssl=ssl_context,
            allow_redirects=False,
            proxy=transport.proxy,
            proxy_headers=transport.proxy_headers,
        )
    except UPSTREAM_ERRORS as exc:
        # TimeoutError is an OSError: a connect timeout lands here, an overall one in the caller.
        raise describe_failure(transport.hop(url), exc) from None


async def fresh_credential(
    transport: ClusterTransport, stale: ResolvedCredential, headers: CIMultiDict[str]
) -> ssl.SSLContext | bool | None:
    """After a member's 401: a fresh credential set in `headers`, and the TLS to send with; None when there is
    none (a Secret's own, or a failing plugin), so a retry would only repeat the 401."""
    try:
        fresh, ssl_context = await transport.authenticate()
    except CredentialError:
        return None  # the member's 401 stands; the plugin's failure is answered on the next request
    if fresh is stale or (fresh.headers() == stale.headers() and fresh.client_cert_pem == stale.client_cert_pem):
        return None  # the same credential again: a retry would only repeat the 401
    headers.popall("Authorization", None)
    set_headers(headers, fresh.headers())
    return ssl_context


async def _retry_with_fresh_credential(
    method: str, transport: ClusterTransport, url: URL, headers: CIMultiDict[str], stale: ResolvedCredential
) -> aiohttp.ClientResponse | None:
    """The member's answer with a fresh credential; None when there is none."""
    ssl_context = await fresh_credential(transport, stale, headers)
    if ssl_context is None:
        return None
    return await _send(method, transport, url, headers, None, ssl_context)


def _abort(request: web.Request) -> None:
    """Cut the client connection, so a truncated body never looks complete (no final chunk)."""
    if request.transport is not None:
        request.transport.abort()


async def open_upstream(method: str, call: UpstreamCall, data: object = None) -> aiohttp.ClientResponse:
    """Send `call`; on a 401 drop the credential (as client-go) and, with no body to replay, retry once
    with a fresh one. Failures before an answer are Status errors naming the hop."""
    transport = call.transport
    upstream = await _send(method, transport, call.url, call.headers, data, call.ssl_context)
    if upstream.status == 401:
        transport.credentials.invalidate(call.credential)
        if data is None:
            retried = await _retry_with_fresh_credential(method, transport, call.url, call.headers, call.credential)
            if retried is not None:
                upstream.release()
                upstream = retried
    return upstream


async def _forward(request: web.Request, call: UpstreamCall, timeout: float | None) -> web.StreamResponse:
    transport, headers = call.transport, call.headers
    data = request.content if request.body_exists else None
    if data is not None and request.content_length is not None:
        headers["Content-Length"] = str(request.content_length)  # a fixed-length body stays fixed-length
    response: web.StreamResponse | None = None
    upstream: aiohttp.ClientResponse | None = None
    complete = False
    try:
        async with asyncio.timeout(timeout):
            upstream = await open_upstream(request.method, call, data)
            response = web.StreamResponse(
                status=upstream.status, reason=upstream.reason, headers=response_headers(upstream.headers)
            )
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            # iter_any yields whatever arrived: each watch event is written (and flushed) at once.
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            complete = True
            return response
    except TimeoutError:
        if response is None:
            raise StatusError(504, f'cluster "{transport.name}" did not answer within {timeout:g}s', reason="Timeout") from None
        log.warning("proxy to cluster %s timed out after %ss mid-response; cutting the client", transport.name, timeout)
        mark_ended(request, TIMEOUT)
        _abort(request)
        return response
    except (aiohttp.ClientError, ConnectionError) as exc:
        if response is None:
            raise
        # Mid-body: the member broke off (cut the client too) or the client left (nothing to say).
        log.info("proxy stream to cluster %s ended early: %s", transport.name, type(exc).__name__)
        if request.transport is not None and not request.transport.is_closing():
            mark_ended(request, UPSTREAM_DISCONNECT)  # the client is still there: the member broke off
        _abort(request)
        return response
    finally:
        if upstream is not None:
            if complete:
                upstream.release()  # keep-alive: the connection goes back to the pool
            else:
                upstream.close()  # cancelled or broken: close the member connection now


def _served_cluster(request: web.Request) -> str | None:
    """The cluster named in the path if the gateway serves it (metrics label only clusters that exist)."""
    name = request.match_info["name"]
    return name if request.app[REGISTRY].lookup(name) is not None else None


def add_proxy_routes(app: web.Application) -> None:
    """Register the proxy routes, the transport pool (app[TRANSPORT_POOL]) and its lifecycle.

    Settings come from app[PROXY_SETTINGS] when set before startup; the impersonation hook
    from app[IMPERSONATION] (default: none). The pool follows the registry's changes and is
    closed on cleanup.
    """
    pool = TransportPool()
    app[TRANSPORT_POOL] = pool
    if METRICS in app:
        app[METRICS].add_state_collector(ExecCredentialExpiryCollector(pool))
        connections = UpstreamConnectionsCollector(pool, app[METRICS].multiprocess_dir)
        app[METRICS].add_state_collector(connections)
        app.cleanup_ctx.append(connections.publishing)  # under --workers: shares this worker's counts

    async def start(app: web.Application) -> None:
        if PROXY_SETTINGS in app:
            pool.settings = app[PROXY_SETTINGS]
        app[REGISTRY].add_listener(pool.on_change)

    async def stop(app: web.Application) -> None:
        await pool.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.on_response_prepare.append(_settle_trial)
    handler = instrument(app, proxy, _served_cluster)  # the ocm_proxy_* series, when app[METRICS] is set
    for method in METHODS:
        app.router.add_route(method, PROXY_PATH, handler)
        # [\s\S], not '.': a decoded %0A must reach the path check (400), not miss the route (404).
        app.router.add_route(method, PROXY_PATH + r"/{path:[\s\S]*}", handler)
