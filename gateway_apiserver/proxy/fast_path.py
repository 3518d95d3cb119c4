"""The proxy on the fast lane: plain `clustergateways/{name}/proxy/...` requests, without aiohttp's request objects.

What the aiohttp path does in its middlewares and handler, in one place and in the same order, with the same
functions wherever they are not tied to aiohttp: the Audit-ID, authentication, the request attributes and
authorization (with --authorize-proxy-subpath), the cluster lookup, fail-fast, the member request
(`prepare_member_call`: path check, credential, forwarded headers, impersonation), the request timeout,
the 401 retry with a fresh credential, the answer's headers, the `ocm_proxy_*` series, shutdown tracking,
the log context and the access line. The member is reached through the transport's raw HTTP/1.1 pool
(proxy/http1/); the body streams from the member to the client as it arrives, each chunk written at once,
and the member is not read while the client is slow.

Only requests the aiohttp path would serve identically come here (`accepts`): a served cluster reached
directly (no proxy-url proxy, no ClusterProxy tunnel). Everything else stays on aiohttp.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web
from multidict import CIMultiDict, MultiDict, MultiDictProxy
from yarl import URL

from ..app_keys import REGISTRY
from ..base.api_group import API_PREFIX
from ..base.query import query_bool
from ..base.status import StatusError, internal_error, no_such_cluster
from ..observability.access_log import (
    CLIENT_DISCONNECT,
    COMPLETE,
    SHUTDOWN,
    TIMEOUT,
    UPSTREAM_DISCONNECT,
    audit_id_for,
    write_access_line,
)
from ..observability.logs import enter_request, leave_request
from ..observability.metrics import CLIENT_CLOSED_REQUEST, METRICS, ProxiedRequest
from ..registry.model import ClusterGateway
from ..security.authorization import Authorizer, attributes_of
from ..security.middleware import RequestAuthenticator, authorize, proxied_path
from ..security.request_info import RequestInfo, request_info
from ..security.tls import transport_peer_certificate
from ..serving.fast_request import DATE, FastRequest
from .fail_fast import FailFast, Trial
from .handler import FAIL_FAST, TRANSPORT_POOL, Caller, UpstreamCall, fresh_credential, prepare_member_call
from .headers import HOP_BY_HOP
from .http1 import UpstreamExchange, UpstreamPool
from .paths import is_long_running, remainder_of, request_timeout
from .transport import ClusterTransport
from .upstream_errors import UPSTREAM_ERRORS, InvalidAnswer, describe_failure

log = logging.getLogger(__name__)

_PREFIX = f"{API_PREFIX}/clustergateways/"
_PREFIX_SEGMENTS = _PREFIX.count("/") + 1  # apis, group, version, clustergateways, {name}, proxy
_NO_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})  # aiohttp's client sends Content-Length: 0 for these without a body
_DROPPED = frozenset(name.encode() for name in HOP_BY_HOP) | {b"content-length", b"audit-id"}


class RequestTracker(Protocol):
    """What graceful shutdown needs to know of the lane's requests (serving/shutdown.py's InFlight)."""

    draining: bool

    def track(self, task: asyncio.Task[Any], request: FastRequest) -> None:
        """`task` serves `request` from now on."""

    def untrack(self, task: asyncio.Task[Any]) -> None:
        """The request of `task` ended."""


class FastProxy:
    """The fast lane's handler (serving/fast_lane.py FastHandler) for proxied requests."""

    def __init__(
        self,
        app: web.Application,
        authenticator: RequestAuthenticator,
        authorizer: Authorizer,
        *,
        authorize_proxy_subpath: bool,
        in_flight: RequestTracker | None,
        access_log: logging.Logger,
    ) -> None:
        self._app = app
        self._authenticator = authenticator
        self._authorizer = authorizer
        self._subpath = authorize_proxy_subpath
        self._in_flight = in_flight
        self._access_log = access_log

    def accepts(self, method: str, target: str) -> bool:
        """A proxied request to a served cluster that is reached directly; named without escapes (aiohttp decodes them)."""
        name = _cluster_name(target)
        if name is None:
            return False
        cluster = self._app[REGISTRY].lookup(name)
        if cluster is None:
            return False  # aiohttp answers the 404 (or the 429 before the first list)
        try:
            transport = self._app[TRANSPORT_POOL].get(cluster)
        except StatusError:
            return False  # a ClusterProxy cluster without --proxy-host: aiohttp answers the 503
        return transport.direct

    async def serve(self, request: FastRequest) -> None:
        """Answer `request` completely, as the aiohttp path would."""
        task = asyncio.current_task()
        assert task is not None
        if self._in_flight is not None:
            self._in_flight.track(task, request)
        token = enter_request(request)
        if self._in_flight is not None and self._in_flight.draining:
            request.keep_alive = False  # shutting down: this connection ends with this answer
        request.audit_id = audit_id_for(request.headers.get("Audit-ID", ""))
        try:
            await self._answer(request)
        except asyncio.CancelledError:
            if request.ended == SHUTDOWN:
                request.end_stream()
            elif request.ended is None:
                request.ended = CLIENT_DISCONNECT
            raise
        except Exception:
            # As the status-errors middleware: a generic Status for the client, the details in our log.
            log.exception("internal error serving %s %s", request.method, request.path)
            if request.head_sent:
                request.abort()
            else:
                request.write_status(internal_error())
        finally:
            self._log(request)
            if self._in_flight is not None:
                self._in_flight.untrack(task)
            leave_request(token)

    async def _answer(self, request: FastRequest) -> None:
        try:
            cluster = await self._admit(request)
        except StatusError as exc:
            request.write_status(exc)
            return
        metrics = self._app.get(METRICS)
        counted: ProxiedRequest | None = None
        if metrics is not None:
            inner = (proxied_path(request.path) or "/")[1:]  # as the aiohttp route's {path}: no leading slash
            watching = query_bool(request.query.get("watch"))
            counted = metrics.start_proxied(
                cluster.name,
                request.method,
                inner,
                request.attributes.verb,
                watching=watching,
                tunnel=False,
            )
        settle = _Settle(self._app.get(FAIL_FAST), cluster.name)
        try:
            await self._proxy(request, cluster, settle)
        except StatusError as exc:
            if not request.head_sent:
                request.write_status(exc)
                settle(request.status_sent)
        finally:
            if counted is not None:
                code = request.status_sent or CLIENT_CLOSED_REQUEST
                counted.end(code, len(request.body), request.output_size)

    async def _admit(self, request: FastRequest) -> ClusterGateway:
        """Authentication, authorization and the cluster: the security middleware's and the handler's checks."""
        request.user = await self._authenticator.authenticate(
            headers=request.headers, peer_certificate=transport_peer_certificate(request.transport)
        )
        name = _cluster_name(request.target) or ""  # accepts() took only targets that name one
        request.attributes = attrs = attributes_of(proxy_request_info(request.method, name), request.path, request.user)
        await authorize(self._authorizer, attrs, request.method, request.query, authorize_proxy_subpath=self._subpath)
        try:
            return self._app[REGISTRY].get(name)
        except StatusError as exc:
            raise no_such_cluster(name, exc) from None

    async def _proxy(self, request: FastRequest, cluster: ClusterGateway, settle: _Settle) -> None:
        settle.admit()  # a 503 StatusError when fail-fast refuses the cluster
        remainder = remainder_of(request.raw_path, _PREFIX_SEGMENTS)
        caller = Caller(request.headers, request.remote, request.audit_id, request.user)
        call = await prepare_member_call(self._app, cluster, remainder, request.raw_query_string, caller)
        pool = call.transport.http1_pool(call.ssl_context)
        if pool is None:  # its Secret changed to need a proxy while the request was read
            raise StatusError(
                503, f'cluster "{cluster.name}" changed while the request was read; retry', headers={"Retry-After": "1"}
            )
        query = dict(request.query)
        timeout = (
            None
            if is_long_running(remainder, query)
            else request_timeout(query, self._app[TRANSPORT_POOL].settings.request_timeout)
        )
        exchange: UpstreamExchange | None = None
        complete = False
        with call.transport.track():
            try:
                with _Deadline(timeout):
                    await request.body_ready
                    exchange = await self._open(request, call, pool)
                    settle(exchange.status)  # as soon as the answer starts: a watch need not end first
                    headers = _answer_headers(exchange)
                    request.write_head(exchange.status, exchange.reason, headers, exchange.content_length, hold=True)
                    relayed = exchange.relay(_relay_to(request, exchange))  # what came with the head: sent with it
                    request.flush()
                    await relayed
                    request.write_eof()
                    complete = True
            except TimeoutError:
                if not request.head_sent:
                    raise StatusError(
                        504, f'cluster "{cluster.name}" did not answer within {timeout:g}s', reason="Timeout"
                    ) from None
                log.warning("proxy to cluster %s timed out after %ss mid-response; cutting the client", cluster.name, timeout)
                request.ended = TIMEOUT
                request.abort()
            except (OSError, asyncio.IncompleteReadError, InvalidAnswer) as exc:
                if not request.head_sent:
                    raise
                # Mid-body: the member broke off (cut the client too) or the client left (nothing to say).
                log.info("proxy stream to cluster %s ended early: %s", cluster.name, type(exc).__name__)
                if not request.client_gone():
                    request.ended = UPSTREAM_DISCONNECT
                request.abort()
            finally:
                if exchange is not None and not complete:
                    exchange.close()  # cancelled or broken: the member connection closes now

    async def _open(self, request: FastRequest, call: UpstreamCall, pool: UpstreamPool) -> UpstreamExchange:
        """The member's answer head; on a 401, the credential dropped and, without a body, one retry with a fresh one."""
        exchange = await _send(pool, call, request.method, call.headers, request.body)
        if exchange.status == 401:
            call.transport.credentials.invalidate(call.credential)
            if not request.body:
                ssl_context = await fresh_credential(call.transport, call.credential, call.headers)
                fresh_pool = call.transport.http1_pool(ssl_context) if ssl_context is not None else None
                if fresh_pool is not None:
                    exchange.close()
                    exchange = await _send(fresh_pool, call, request.method, call.headers, b"")
        return exchange

    def _log(self, request: FastRequest) -> None:
        logger = self._access_log
        if not logger.isEnabledFor(logging.INFO):
            return
        ended = request.ended or (CLIENT_DISCONNECT if request.client_gone() and not request.head_sent else COMPLETE)
        attrs = request.attributes
        write_access_line(
            logger,
            user=request.user.name if request.user is not None else "",
            verb=attrs.verb if attrs is not None else request.method.lower(),
            method=request.method,
            path=request.path,
            cluster=attrs.name if attrs is not None and attrs.resource == "clustergateways" else "",
            status=request.status_sent,
            body_bytes=request.bytes_sent,
            ended=ended,
            seconds=time.perf_counter() - request.started,
            audit=request.audit_id,
            remote=request.remote,
        )


async def _send(pool: UpstreamPool, call: UpstreamCall, method: str, headers: CIMultiDict[str], body: bytes) -> UpstreamExchange:
    """One request to the member; its failures before an answer as Status errors naming the hop."""
    transport: ClusterTransport = call.transport
    try:
        head = member_request_head(method, call.url, headers, body)
    except ValueError:
        log.error("a header for cluster %s holds a line break; refusing to send it", transport.name)
        raise internal_error() from None
    try:
        return await pool.send(head, body, idempotent=method in _IDEMPOTENT)
    except UPSTREAM_ERRORS as exc:  # DialFailed included: describe_failure words it as a failure to connect
        raise describe_failure(transport.hop(call.url), exc) from None


def _cluster_name(target: str) -> str | None:
    """The cluster a `clustergateways/<name>/proxy[/...]` target names literally (no escapes: aiohttp decodes
    them, and its answer must stay the one); None for any other target."""
    if not target.startswith(_PREFIX):
        return None
    name, slash, rest = target[len(_PREFIX) :].partition("/")
    if not slash or not name or "%" in name or not (rest == "proxy" or rest.startswith(("proxy/", "proxy?"))):
        return None
    return name


@functools.lru_cache(maxsize=4096)
def proxy_request_info(method: str, name: str) -> RequestInfo:
    """What `method` on `clustergateways/<name>/proxy/...` asks for: the same whatever follows /proxy and
    whatever the query (a named object's subresource is never a list or a watch). Cached: names are few."""
    return request_info(method, f"{_PREFIX}{name}/proxy", _NO_QUERY)


def member_request_head(method: str, url: URL, headers: CIMultiDict[str], body: bytes) -> bytes:
    """The request line and headers for the member, as aiohttp's client writes them (Host from the URL,
    Content-Length for a body and for POST, PUT and PATCH). A value with a line break raises ValueError."""
    port = url.port
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"https": 443, "http": 80}.get(url.scheme):
        host = f"{host}:{port}"
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        line = f"{name}: {value}"
        if "\n" in line or "\r" in line or "\0" in line:
            raise ValueError("line break in a header")
        lines.append(line)
    if body or method in _WITH_BODY:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")  # the bytes the client sent, as received


def _answer_headers(exchange: UpstreamExchange) -> list[bytes]:
    """The member's headers minus hop-by-hop ones, those its Connection header names, Content-Length and
    Audit-Id (the gateway answers its own); a Content-Type and a Date added as aiohttp adds them."""
    named: set[bytes] = set()
    for name, value in exchange.headers:
        if name.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    lines: list[bytes] = []
    has_type = has_date = False
    for name, value in exchange.headers:
        lower = name.lower()
        if lower in _DROPPED or lower in named:
            continue
        has_type = has_type or lower == b"content-type"
        has_date = has_date or lower == b"date"
        lines.append(name + b": " + value)
    if not has_type and exchange.content_length != 0 and exchange.status not in (204, 304):
        lines.append(b"Content-Type: application/octet-stream")
    if not has_date:
        lines.append(b"Date: " + DATE.value())
    return lines


class _Deadline:
    """asyncio.timeout's contract (TimeoutError out of the block once `timeout` seconds pass; None: never),
    without its state machine: one timer per request, set once. A cancellation from elsewhere stays one."""

    __slots__ = ("_cancelling", "_handle", "_task", "expired")

    def __init__(self, timeout: float | None) -> None:
        self.expired = False
        self._handle: asyncio.TimerHandle | None = None
        if timeout is not None:
            task = asyncio.current_task()
            assert task is not None
            self._task, self._cancelling = task, task.cancelling()
            self._handle = asyncio.get_running_loop().call_later(timeout, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def __enter__(self) -> _Deadline:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
        # As asyncio.timeout: only our own cancellation becomes a TimeoutError, not one the caller also asked for.
        if self.expired and kind is asyncio.CancelledError and self._task.uncancel() <= self._cancelling:
            raise TimeoutError from exc


class _Settle:
    """A fail-fast trial (HealthinessCheck), settled once, by the first answer's code."""

    __slots__ = ("_cluster", "_fail_fast", "_trial")

    def __init__(self, fail_fast: FailFast | None, cluster: str) -> None:
        self._fail_fast = fail_fast
        self._cluster = cluster
        self._trial: Trial | None = None

    def admit(self) -> None:
        """Raise fail-fast's 503 when the cluster is unhealthy; note a trial request."""
        if self._fail_fast is not None:
            self._trial = self._fail_fast.admit(self._cluster)

    def __call__(self, status: int) -> None:
        if self._trial is not None and self._fail_fast is not None:
            self._fail_fast.settle(self._trial, answered=status < 500)
            self._trial = None


def _relay_to(request: FastRequest, exchange: UpstreamExchange) -> Callable[[bytes], None]:
    """The sink of the member's body: each chunk to the client at once; the member paused while the client is slow."""

    def sink(chunk: bytes) -> None:
        request.write_body(chunk)
        if request.paused and not request.resume_waiters:
            exchange.pause_reading()
            request.resume_waiters.append(exchange.resume_reading)

    return sink
