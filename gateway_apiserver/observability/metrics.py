"""/metrics in the Prometheus text format: cluster-gateway's `ocm_proxy_*` series and our own.

Every application has its own registry (app[METRICS]), so two gateways in one process never share
counts. `/metrics` is an ordinary non-resource path: the security middleware authorizes `get` on it
by SubjectAccessReview, unless --authorization-always-allow-paths lists it. No label is a path, a user
or an object name; `cluster` is only ever a cluster the gateway serves. The reference's `resource` label
is the resource segment of the inner path as the client wrote it, so made-up resource names add series,
as they do in the reference.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import prometheus_client
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiDict
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ..app_keys import REGISTRY, VIRTUAL_CLUSTER_REGISTRY
from ..base.query import query_bool
from ..base.status import StatusError
from ..security.request_info import RequestInfoError, request_info
from . import worker_snapshots
from .access_log import ATTRIBUTES_KEY
from .cache_counts import CacheCounts
from .cluster_metrics import ClusterStateCollector

# As the reference: a Counter's exposition is `<name>_total` only, no `<name>_created` beside it.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# prometheus_client's multiprocess mode, read when it is imported: each --workers process writes its values there.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what the kube-apiserver and the reference answer
# The reference's buckets, seconds (cluster-gateway pkg/metrics).
PROXY_DURATION_BUCKETS = (0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
# nginx's word for a client that left before any answer: the reference has no code to record then.
CLIENT_CLOSED_REQUEST = 499
_NO_QUERY: MultiDict[str] = MultiDict()
_METHOD_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}

PREPARED_RESPONSE = web.RequestKey("metrics_prepared_response", web.StreamResponse)


class TunnelBytes:
    """An upgrade tunnel's bytes, added to its cluster's byte counters as the tunnel's pumps report them
    (proxy/upgrade.py's TunnelMeter: every MiB each way and at the end, never per chunk)."""

    __slots__ = ("_to_client", "_to_member", "to_client")

    def __init__(self, to_member: Counter, to_client: Counter) -> None:
        self._to_member = to_member
        self._to_client = to_client
        self.to_client = 0  # reported so far: the response's own byte count includes these

    def add(self, to_member: int, to_client: int) -> None:
        """Count bytes the tunnel carried since the last report."""
        if to_member:
            self._to_member.inc(to_member)
        if to_client:
            self._to_client.inc(to_client)
            self.to_client += to_client


TUNNEL_BYTES = web.RequestKey("metrics_tunnel_bytes", TunnelBytes)  # set for upgrade requests to a served cluster


class _CacheCollector(Collector):
    """`gateway_apiserver_auth_cache_{hits,misses}_total{cache}` from the caches' own counts."""

    def __init__(self) -> None:
        self.caches: dict[str, CacheCounts] = {}

    def collect(self) -> Iterable[Metric]:
        hits = CounterMetricFamily(
            "gateway_apiserver_auth_cache_hits", "Answers served from an authentication or authorization cache", labels=["cache"]
        )
        misses = CounterMetricFamily(
            "gateway_apiserver_auth_cache_misses",
            "Answers an authentication or authorization cache did not hold",
            labels=["cache"],
        )
        for name, counts in sorted(self.caches.items()):
            hits.add_metric([name], counts.hits)
            misses.add_metric([name], counts.misses)
        return [hits, misses]


class GatewayMetrics:
    """The series one gateway exposes, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # --workers N: every worker's values, summed, whichever worker a scrape reaches.
        self.multiprocess_dir = os.environ.get(MULTIPROCESS_DIR_ENV) or None
        r = self.registry
        # The reference's three series: same names, labels, buckets (its HELP carries the [ALPHA] stability mark).
        self.by_resource = Counter(
            "ocm_proxy_proxied_resource_requests_by_resource_total",
            "[ALPHA] Number of requests proxied requests",
            ["resource", "verb", "code"],
            registry=r,
        )
        self.by_cluster = Counter(
            "ocm_proxy_proxied_requests_by_cluster_total",
            "[ALPHA] Number of requests proxied requests",
            ["cluster", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "ocm_proxy_proxied_request_duration_seconds",
            "[ALPHA] Cluster proxy request time cost",
            ["resource", "verb", "cluster", "code"],
            buckets=PROXY_DURATION_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "gateway_apiserver_proxy_requests_in_flight",
            "Proxied requests in progress, watches and tunnels included",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.open_watches = Gauge(
            "gateway_apiserver_proxy_open_watches",
            "Proxied watch requests in progress, by cluster",
            ["cluster"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.open_tunnels = Gauge(
            "gateway_apiserver_proxy_open_tunnels",
            "Proxied upgrade requests (exec, attach, port-forward) in progress, by cluster",
            ["cluster"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.bytes_in = Counter(
            "gateway_apiserver_proxy_request_body_bytes_total",
            "Bytes read from clients and forwarded to members (request bodies, and exec/attach/port-forward tunnels), by cluster",
            ["cluster"],
            registry=r,
        )
        self.bytes_out = Counter(
            "gateway_apiserver_proxy_response_bytes_total",
            "Response bytes written to clients (head and body as sent, and tunnel bytes) for proxied requests, by cluster",
            ["cluster"],
            registry=r,
        )
        self.probe_duration = Histogram(
            "gateway_apiserver_health_probe_duration_seconds",
            "Time a health probe of a member took (readyz or healthz, and version), by its verdict",
            ["result"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self._children: dict[tuple[str, str, str, int], _Children] = {}
        self._caches = _CacheCollector()
        r.register(self._caches)
        # Read at scrape time by the worker a scrape reaches, not from prometheus_client's multiprocess files
        # (a collector may add the other workers' snapshots itself: observability/worker_snapshots.py).
        self._state: list[Collector] = []

    def add_state_collector(self, collector: Collector) -> None:
        """Expose `collector`'s series (read at scrape time, such as each cluster's health)."""
        self.registry.register(collector)
        self._state.append(collector)

    def observe_probe(self, seconds: float, healthy: bool) -> None:
        """One health probe's duration and verdict."""
        self.probe_duration.labels("healthy" if healthy else "unhealthy").observe(seconds)

    def count_cache(self, name: str, counts: CacheCounts) -> None:
        """Expose `counts` as the hits and misses of cache `name`."""
        self._caches.caches[name] = counts

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format 0.0.4 (every name and label here is a classic one).

        With --workers N, the sum over all workers' files instead; the cache counts, one worker's own, are left out.
        """
        if self.multiprocess_dir is None:
            return prometheus_client.generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        for collector in self._state:
            merged.register(collector)
        return prometheus_client.generate_latest(merged)

    def start_proxied(
        self, cluster: str, method: str, inner_path: str, verb: str, *, watching: bool, tunnel: bool
    ) -> ProxiedRequest:
        """Count a proxied request as in flight (and as an open watch or tunnel); `end()` counts its outcome.

        `inner_path` is the path after /proxy without its leading slash; `verb` the authorized verb ("" to read it
        from the method)."""
        resource, watch_path = _inner_resource(method, inner_path)
        gauge: Gauge | None = self.open_tunnels if tunnel else self.open_watches if watching or watch_path else None
        self.in_flight.inc()
        if gauge is not None:
            gauge.labels(cluster).inc()
        return ProxiedRequest(self, cluster, resource, verb or _METHOD_VERBS.get(method, ""), gauge)

    def instrument_proxy(self, handler: Handler, cluster_of: Callable[[web.Request], str | None]) -> Handler:
        """`handler` (the proxy) counted in every series; `cluster_of` names a served cluster, else None (not counted)."""

        async def instrumented(request: web.Request) -> web.StreamResponse:
            cluster = cluster_of(request)
            if cluster is None:  # no such cluster: the reference counts nothing, and names stay bounded
                return await handler(request)
            attrs = request.get(ATTRIBUTES_KEY)
            upgrade = "Upgrade" in request.headers
            watching = query_bool(request.query.get("watch"))
            counted = self.start_proxied(
                cluster,
                request.method,
                request.match_info.get("path", ""),
                attrs.verb if attrs is not None else "",
                watching=watching,
                tunnel=upgrade,
            )
            tunnel: TunnelBytes | None = None
            if upgrade:
                tunnel = request[TUNNEL_BYTES] = TunnelBytes(self.bytes_in.labels(cluster), self.bytes_out.labels(cluster))
            code = CLIENT_CLOSED_REQUEST
            try:
                response = await handler(request)
                code = response.status
                return response
            except web.HTTPException as exc:
                code = exc.status
                raise
            except StatusError as exc:
                code = exc.code
                raise
            except BaseException:
                prepared = request.get(PREPARED_RESPONSE)
                # A stream the client ended (a watch) keeps the answer it had; nothing prepared: 499.
                code = prepared.status if prepared is not None else CLIENT_CLOSED_REQUEST
                raise
            finally:
                prepared = request.get(PREPARED_RESPONSE)
                # A tunnel's bytes to the client went through this response too, and were counted as they passed.
                sent = _bytes_sent(prepared) - (tunnel.to_client if tunnel is not None else 0) if prepared is not None else 0
                counted.end(code, request.content.total_bytes if request.body_exists else 0, sent)

        return instrumented

    def _counted(self, resource: str, verb: str, cluster: str, code: int) -> _Children:
        """The labelled series of one outcome, looked up once (prometheus_client's labels() is the costly part)."""
        key = (resource, verb, cluster, code)
        children = self._children.get(key)
        if children is None:
            text = str(code)
            children = self._children[key] = _Children(
                self.by_resource.labels(resource, verb, text),
                self.by_cluster.labels(cluster, text),
                self.duration.labels(resource, verb, cluster, text),
                self.bytes_in.labels(cluster),
                self.bytes_out.labels(cluster),
            )
        return children


class ProxiedRequest:
    """One proxied request being counted (GatewayMetrics.start_proxied)."""

    __slots__ = ("_cluster", "_gauge", "_metrics", "_resource", "_started", "_verb")

    def __init__(self, metrics: GatewayMetrics, cluster: str, resource: str, verb: str, gauge: Gauge | None) -> None:
        self._metrics = metrics
        self._cluster = cluster
        self._resource = resource
        self._verb = verb
        self._gauge = gauge
        self._started = time.perf_counter()

    def end(self, code: int, bytes_in: int, bytes_out: int) -> None:
        """Its outcome: the answer's code (499 when the client left first) and the bytes each way."""
        metrics = self._metrics
        metrics.in_flight.dec()
        if self._gauge is not None:
            self._gauge.labels(self._cluster).dec()
        counted = metrics._counted(self._resource, self._verb, self._cluster, code)
        counted.by_resource.inc()
        counted.by_cluster.inc()
        counted.duration.observe(time.perf_counter() - self._started)
        if bytes_in:
            counted.bytes_in.inc(bytes_in)
        if bytes_out > 0:
            counted.bytes_out.inc(bytes_out)


class _Children(NamedTuple):
    by_resource: Counter
    by_cluster: Counter
    duration: Histogram
    bytes_in: Counter
    bytes_out: Counter


def _bytes_sent(response: web.StreamResponse) -> int:
    # aiohttp's body_length is set only by write_eof: a watch the client ends would count nothing.
    writer = getattr(response, "_payload_writer", None)
    return int(getattr(writer, "output_size", response.body_length))


@functools.lru_cache(maxsize=1024)  # at most a few MB even for 8 KiB paths
def _inner_resource(method: str, inner_path: str) -> tuple[str, bool]:
    """The reference's `resource` label, read from the inner path without its query (as the reference reads it),
    and whether the path is a watch (`/api/v1/watch/...`). Cached: clients repeat their paths."""
    try:
        info = request_info(method, "/" + inner_path, _NO_QUERY)
    except RequestInfoError:
        return "", False
    return info.resource, info.verb == "watch"


METRICS = web.AppKey("metrics", GatewayMetrics)


async def serve_metrics(request: web.Request) -> web.Response:
    """GET /metrics: the application's series in the Prometheus text format."""
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _remember_prepared(request: web.BaseRequest, response: web.StreamResponse) -> None:
    request[PREPARED_RESPONSE] = response


def add_metrics_routes(app: web.Application) -> GatewayMetrics:
    """Give `app` its own metrics (app[METRICS]) and serve them at GET /metrics. Call before add_proxy_routes."""
    metrics = GatewayMetrics()
    app[METRICS] = metrics
    if REGISTRY in app:
        virtual_clusters = app.get(VIRTUAL_CLUSTER_REGISTRY)
        managed_clusters = virtual_clusters.managed_clusters if virtual_clusters is not None else None
        metrics.add_state_collector(ClusterStateCollector(app[REGISTRY], managed_clusters))
    app.on_response_prepare.append(_remember_prepared)
    app.router.add_get(METRICS_PATH, serve_metrics)
    return metrics


def instrument(app: web.Application, handler: Handler, cluster_of: Callable[[web.Request], str | None]) -> Handler:
    """`handler` counted in app[METRICS] when the application has metrics, else unchanged."""
    metrics = app.get(METRICS)
    return handler if metrics is None else metrics.instrument_proxy(handler, cluster_of)


class WorkersMetricsDirectory:
    """For --workers N, made in the parent before it starts them: a fresh directory the workers share their values
    in (prometheus_client's multiprocess mode, named by PROMETHEUS_MULTIPROC_DIR, which spawned workers inherit
    before they import prometheus_client). Fresh at each start, as that mode requires: stale files would add old counts.
    """

    def __init__(self) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="gateway-apiserver-metrics-")
        self.path = self._directory.name
        os.environ[MULTIPROCESS_DIR_ENV] = self.path

    def worker_exited(self, pid: int | None) -> None:
        """Drop a dead worker's in-progress gauges and snapshots (its counters stay: what it counted happened)."""
        if pid is not None:
            multiprocess.mark_process_dead(pid, self.path)  # type: ignore[no-untyped-call]
            worker_snapshots.forget(self.path, pid)

    def close(self) -> None:
        """Remove the directory, once the workers have stopped."""
        os.environ.pop(MULTIPROCESS_DIR_ENV, None)
        self._directory.cleanup()
