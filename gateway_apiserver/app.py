"""The aiohttp application: the one place that wires every API concern's routes together,
behind the Status-error and security middlewares."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from .api.discovery import add_discovery_routes
from .api.errors import status_errors
from .api.health import HEALTH_WRITER, add_health_routes
from .api.openapi import add_openapi_routes
from .api.printers import ClusterGatewayPrinter, VirtualClusterPrinter
from .api.probes import READY_CHECKS, add_probe_routes, registry_synced
from .api.resource import ReadOnlyResource
from .api.resource_info import CLUSTER_GATEWAYS, VIRTUAL_CLUSTERS, served_resources
from .api.watch import WATCH_SETTINGS, WatchSettings
from .app_keys import REGISTRY, VIRTUAL_CLUSTER_REGISTRY
from .base.status import no_such_cluster
from .fanout.handler import add_fanout_routes
from .observability.access_log import add_audit_id, log_abandoned, request_timer
from .observability.logs import request_context
from .observability.metrics import add_metrics_routes
from .proxy.handler import add_proxy_routes
from .registry.cache import ClusterRegistry
from .registry.health import SecretHealthWriter
from .registry.managed_clusters import ManagedClusterCache
from .registry.virtual_clusters import VirtualClusterRegistry

CLUSTER_GATEWAY_RESOURCE = ReadOnlyResource(CLUSTER_GATEWAYS, REGISTRY, ClusterGatewayPrinter())
VIRTUAL_CLUSTER_RESOURCE = ReadOnlyResource(VIRTUAL_CLUSTERS, VIRTUAL_CLUSTER_REGISTRY, VirtualClusterPrinter())


def build_app(
    registry: ClusterRegistry,
    watch_settings: WatchSettings | None = None,
    security: Sequence[Middleware] = (),
    serving: Sequence[Middleware] = (),
    *,
    virtual_clusters: VirtualClusterRegistry | None = None,
    health_writer: SecretHealthWriter | None = None,
) -> web.Application:
    """Assemble the API server application around the registries.

    `security` (authentication and authorization) runs inside the Status-error middleware,
    so its 401 and 403 are Status objects too, and before every handler. `serving` (request
    tracking for timeouts and shutdown) runs outermost, then the access log of abandoned requests;
    only the request context that log lines read is set before them.
    Without `health_writer` (standalone mode: no Secret to store it on) health is read-only.
    Without `virtual_clusters`, one is built over `registry` with no ManagedClusters; it is
    started with the application.
    """
    # Request bodies are never needed by the read-only API; the proxy streams its own.
    middlewares = [request_context, *serving, log_abandoned, request_timer, status_errors, *security]
    app = web.Application(middlewares=middlewares, client_max_size=1024 * 1024)
    if virtual_clusters is None:
        no_managed_clusters = ManagedClusterCache()
        no_managed_clusters.mark_unavailable()
        virtual_clusters = VirtualClusterRegistry(registry, no_managed_clusters)
    app[REGISTRY] = registry
    app[VIRTUAL_CLUSTER_REGISTRY] = virtual_clusters
    app[WATCH_SETTINGS] = watch_settings or WatchSettings()
    app[READY_CHECKS] = {"cluster-registry-synced": registry_synced(registry)}
    if health_writer is not None:
        app[HEALTH_WRITER] = health_writer
    app.on_response_prepare.append(add_audit_id)
    app.cleanup_ctx.append(_run_virtual_clusters)
    resources = served_resources(health_writable=health_writer is not None)
    add_probe_routes(app)
    add_metrics_routes(app)  # before the proxy routes, which it instruments
    add_discovery_routes(app, resources)
    add_openapi_routes(app, resources)
    # First: the router tries the routes of one path prefix in registration order, and the
    # proxy is the hot path; the fan-out is its name `-` (never a cluster's), so it goes just before.
    add_fanout_routes(app)
    add_proxy_routes(app)
    # The reference words a missing cluster's health as its proxy does: KubeVela matches on it.
    CLUSTER_GATEWAY_RESOURCE.add_routes(app, readable_subresources={"health": no_such_cluster})
    add_health_routes(app, CLUSTER_GATEWAYS.path + "/{name}")
    VIRTUAL_CLUSTER_RESOURCE.add_routes(app)
    return app


async def _run_virtual_clusters(app: web.Application) -> AsyncIterator[None]:
    """Build the VirtualClusters once their sources have synced, for the application's lifetime."""
    task = asyncio.create_task(app[VIRTUAL_CLUSTER_REGISTRY].start(), name="virtual-clusters")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
