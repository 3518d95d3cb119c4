"""List, get and watch ClusterGateways and VirtualClusters with `kubernetes_asyncio`.

Each function takes a `kubernetes_asyncio.client.ApiClient` of the hub and returns typed views;
errors are the package's own ApiException.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .hub import typed_event
from .objects import (
    CLUSTER_GATEWAYS,
    VIRTUAL_CLUSTERS,
    ClusterGateway,
    ClusterList,
    VirtualCluster,
    WatchEvent,
    cluster_gateway,
    cluster_list,
    list_arguments,
    virtual_cluster,
)

if TYPE_CHECKING:
    import kubernetes_asyncio.client

T = TypeVar("T")


async def list_cluster_gateways_asyncio(
    api: kubernetes_asyncio.client.ApiClient, *, label_selector: str = ""
) -> ClusterList[ClusterGateway]:
    """The ClusterGateways matching `label_selector` (all when empty), by name, and the list's resourceVersion."""
    return cluster_list(await _list(api, CLUSTER_GATEWAYS, label_selector), cluster_gateway)


async def get_cluster_gateway_asyncio(api: kubernetes_asyncio.client.ApiClient, name: str) -> ClusterGateway:
    """One ClusterGateway; ApiException 404 when the hub has no such cluster."""
    return cluster_gateway(await _get(api, CLUSTER_GATEWAYS, name))


def watch_cluster_gateways_asyncio(
    api: kubernetes_asyncio.client.ApiClient,
    *,
    label_selector: str = "",
    resource_version: str = "",
    timeout_seconds: int | None = None,
) -> AsyncGenerator[WatchEvent[ClusterGateway], None]:
    """Changes to ClusterGateways from `resource_version` (the current list as ADDED events when empty)."""
    return _watch(api, CLUSTER_GATEWAYS, cluster_gateway, label_selector, resource_version, timeout_seconds)


async def list_virtual_clusters_asyncio(
    api: kubernetes_asyncio.client.ApiClient, *, label_selector: str = ""
) -> ClusterList[VirtualCluster]:
    """The VirtualClusters matching `label_selector` (all when empty), by name, and the list's resourceVersion."""
    return cluster_list(await _list(api, VIRTUAL_CLUSTERS, label_selector), virtual_cluster)


async def get_virtual_cluster_asyncio(api: kubernetes_asyncio.client.ApiClient, name: str) -> VirtualCluster:
    """One VirtualCluster; ApiException 404 when the hub has no such cluster."""
    return virtual_cluster(await _get(api, VIRTUAL_CLUSTERS, name))


def watch_virtual_clusters_asyncio(
    api: kubernetes_asyncio.client.ApiClient,
    *,
    label_selector: str = "",
    resource_version: str = "",
    timeout_seconds: int | None = None,
) -> AsyncGenerator[WatchEvent[VirtualCluster], None]:
    """Changes to VirtualClusters from `resource_version` (the current list as ADDED events when empty)."""
    return _watch(api, VIRTUAL_CLUSTERS, virtual_cluster, label_selector, resource_version, timeout_seconds)


def _custom(api: Any) -> Any:
    import kubernetes_asyncio.client  # lazily, as in hub.py

    return kubernetes_asyncio.client.CustomObjectsApi(api)


async def _list(api: Any, plural: str, label_selector: str) -> Mapping[str, Any]:
    answer = await _custom(api).list_cluster_custom_object(*list_arguments(plural), label_selector=label_selector)
    return cast(Mapping[str, Any], answer)


async def _get(api: Any, plural: str, name: str) -> Mapping[str, Any]:
    return cast(Mapping[str, Any], await _custom(api).get_cluster_custom_object(*list_arguments(plural), name))


async def _watch(
    api: Any,
    plural: str,
    convert: Callable[[Mapping[str, Any]], T],
    label_selector: str,
    resource_version: str,
    timeout_seconds: int | None,
) -> AsyncGenerator[WatchEvent[T], None]:
    import kubernetes_asyncio.watch

    options: dict[str, Any] = {"label_selector": label_selector, "allow_watch_bookmarks": True}
    if resource_version:
        options["resource_version"] = resource_version
    if timeout_seconds is not None:
        options["timeout_seconds"] = timeout_seconds
    async with kubernetes_asyncio.watch.Watch() as watch:
        async for event in watch.stream(_custom(api).list_cluster_custom_object, *list_arguments(plural), **options):
            yield typed_event(event, convert)
