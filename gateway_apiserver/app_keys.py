"""The application keys the layers share: the stores a request reads, and the authorizer. Set once, by the server."""

from __future__ import annotations

from aiohttp import web

from .registry.cache import ClusterRegistry
from .registry.virtual_clusters import VirtualClusterRegistry
from .security.authorization import Authorizer

REGISTRY = web.AppKey("registry", ClusterRegistry)
VIRTUAL_CLUSTER_REGISTRY = web.AppKey("virtual_cluster_registry", VirtualClusterRegistry)
# The authorizer of the security middleware, for handlers that authorize more than their own path (the fan-out).
AUTHORIZER = web.AppKey("authorizer", Authorizer)
