"""The aiohttp application: routes of every API concern, behind the Status-error middleware."""

from __future__ import annotations

from aiohttp import web

from .api.discovery import add_discovery_routes
from .api.errors import status_errors
from .api.openapi import add_openapi_routes
from .api.probes import READY_CHECKS, add_probe_routes, registry_synced
from .api.resource import REGISTRY, WATCH_SETTINGS, add_resource_routes
from .api.watch import WatchSettings
from .registry.cache import ClusterRegistry


def build_app(registry: ClusterRegistry, watch_settings: WatchSettings | None = None) -> web.Application:
    """Assemble the API server application around a registry."""
    # Request bodies are never needed by the read-only API; the proxy streams its own.
    app = web.Application(middlewares=[status_errors], client_max_size=1024 * 1024)
    app[REGISTRY] = registry
    app[WATCH_SETTINGS] = watch_settings or WatchSettings()
    app[READY_CHECKS] = {"cluster-registry-synced": registry_synced(registry)}
    add_probe_routes(app)
    add_discovery_routes(app)
    add_openapi_routes(app)
    add_resource_routes(app)
    return app
