"""List, get and watch ClusterGateways and VirtualClusters with the official `kubernetes` package.

Each function takes a `kubernetes.client.ApiClient` of the hub (the cluster that serves the
`cluster.core.oam.dev` API) and returns typed views; errors are the package's own ApiException.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .objects import (
    CLUSTER_GATEWAYS,
    VIRTUAL_CLUSTERS,
    ClusterGateway,
    ClusterList,
    EventType,
    VirtualCluster,
    WatchEvent,
    cluster_gateway,
    cluster_list,
    list_arguments,
    virtual_cluster,
)

if TYPE_CHECKING:
    import kubernetes.client

T = TypeVar("T")


class WatchError(RuntimeError):
    """The hub ended a watch with an ERROR event; the message is the Status's."""


def list_cluster_gateways(api: kubernetes.client.ApiClient, *, label_selector: str = "") -> ClusterList[ClusterGateway]:
    """The ClusterGateways matching `label_selector` (all when empty), by name, and the list's resourceVersion."""
    return cluster_list(_list(api, CLUSTER_GATEWAYS, label_selector), cluster_gateway)


def get_cluster_gateway(api: kubernetes.client.ApiClient, name: str) -> ClusterGateway:
    """One ClusterGateway; ApiException 404 when the hub has no such cluster."""
    return cluster_gateway(_get(api, CLUSTER_GATEWAYS, name))


def watch_cluster_gateways(
    api: kubernetes.client.ApiClient, *, label_selector: str = "", resource_version: str = "", timeout_seconds: int | None = None
) -> Generator[WatchEvent[ClusterGateway], None, None]:
    """Changes to ClusterGateways from `resource_version` (the current list as ADDED events when empty)."""
    return _watch(api, CLUSTER_GATEWAYS, cluster_gateway, label_selector, resource_version, timeout_seconds)


def list_virtual_clusters(api: kubernetes.client.ApiClient, *, label_selector: str = "") -> ClusterList[VirtualCluster]:
    """The VirtualClusters matching `label_selector` (all when empty), by name, and the list's resourceVersion."""
    return cluster_list(_list(api, VIRTUAL_CLUSTERS, label_selector), virtual_cluster)


def get_virtual_cluster(api: kubernetes.client.ApiClient, name: str) -> VirtualCluster:
    """One VirtualCluster; ApiException 404 when the hub has no such cluster."""
    return virtual_cluster(_get(api, VIRTUAL_CLUSTERS, name))


def watch_virtual_clusters(
    api: kubernetes.client.ApiClient, *, label_selector: str = "", resource_version: str = "", timeout_seconds: int | None = None
) -> Generator[WatchEvent[VirtualCluster], None, None]:
    """Changes to VirtualClusters from `resource_version` (the current list as ADDED events when empty)."""
    return _watch(api, VIRTUAL_CLUSTERS, virtual_cluster, label_selector, resource_version, timeout_seconds)


def _custom(api: Any) -> Any:
    import kubernetes.client  # lazily: importing gateway_apiserver.client never needs the package

    return kubernetes.client.CustomObjectsApi(api)


def _list(api: Any, plural: str, label_selector: str) -> Mapping[str, Any]:
    answer = _custom(api).list_cluster_custom_object(*list_arguments(plural), label_selector=label_selector)
    return cast(Mapping[str, Any], answer)


def _get(api: Any, plural: str, name: str) -> Mapping[str, Any]:
    return cast(Mapping[str, Any], _custom(api).get_cluster_custom_object(*list_arguments(plural), name))


def _watch(
    api: Any,
    plural: str,
    convert: Callable[[Mapping[str, Any]], T],
    label_selector: str,
    resource_version: str,
    timeout_seconds: int | None,
) -> Generator[WatchEvent[T], None, None]:
    import kubernetes.watch

    watch_class: Any = kubernetes.watch.Watch  # the package's watch is unannotated
    watch = watch_class()
    options: dict[str, Any] = {"label_selector": label_selector, "allow_watch_bookmarks": True}
    if resource_version:
        options["resource_version"] = resource_version
    if timeout_seconds is not None:
        options["timeout_seconds"] = timeout_seconds
    try:
        for event in watch.stream(_custom(api).list_cluster_custom_object, *list_arguments(plural), **options):
            yield typed_event(event, convert)
    finally:
        watch.stop()


def typed_event(event: Mapping[str, Any], convert: Callable[[Mapping[str, Any]], T]) -> WatchEvent[T]:
    """A client package's watch event as a WatchEvent; WatchError for an ERROR event."""
    kind, obj = str(event.get("type", "")), event.get("raw_object") or event.get("object") or {}
    if kind == "ERROR":
        raise WatchError(str(obj.get("message") or "the watch ended with an error"))
    rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
    return WatchEvent(type=cast(EventType, kind), object=None if kind == "BOOKMARK" else convert(obj), resource_version=rv)
