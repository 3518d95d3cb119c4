"""The aiohttp application: routes of every API concern, behind the Status-error and security middlewares."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from .api.discovery import add_discovery_routes
from .api.errors import status_errors
from .api.openapi import add_openapi_routes
from .api.probes import READY_CHECKS, add_probe_routes, registry_synced
from .api.resource import REGISTRY, WATCH_SETTINGS, add_resource_routes
from .api.watch import WatchSettings
from .observability.access_log import add_audit_id, log_abandoned, request_timer
from .registry.cache import ClusterRegistry


def build_app(
    registry: ClusterRegistry,
    watch_settings: WatchSettings | None = None,
    security: Sequence[Middleware] = (),
    serving: Sequence[Middleware] = (),
) -> web.Application:
    """Assemble the API server application around a registry.

    `security` (authentication and authorization) runs inside the Status-error middleware,
    so its 401 and 403 are Status objects too, and before every handler. `serving` (request
    tracking for timeouts and shutdown) runs outermost, then the access log of abandoned requests.
    """
    # Request bodies are never needed by the read-only API; the proxy streams its own.
    middlewares = [*serving, log_abandoned, request_timer, status_errors, *security]
    app = web.Application(middlewares=middlewares, client_max_size=1024 * 1024)
    app[REGISTRY] = registry
    app[WATCH_SETTINGS] = watch_settings or WatchSettings()
    app[READY_CHECKS] = {"cluster-registry-synced": registry_synced(registry)}
    app.on_response_prepare.append(add_audit_id)
    add_probe_routes(app)
    add_discovery_routes(app)
    add_openapi_routes(app)
    add_resource_routes(app)
    return app
