"""The application keys the layers share: the stores a request reads. Set once, by the server."""

from __future__ import annotations

from aiohttp import web

from .registry.cache import ClusterRegistry
from .registry.virtual_clusters import VirtualClusterRegistry

REGISTRY = web.AppKey("registry", ClusterRegistry)
VIRTUAL_CLUSTER_REGISTRY = web.AppKey("virtual_cluster_registry", VirtualClusterRegistry)
