"""A Python client for member clusters behind the gateway (the hub).

Importing this package is cheap: it needs neither the server side nor a Kubernetes client package;
the functions import `kubernetes` (official) or `kubernetes_asyncio` when called.

- `member_configuration(hub, cluster)` / `member_configuration_asyncio(hub, cluster)`: a Configuration that
  reaches `cluster` through the hub's proxy subresource with the hub's credentials (tokens that refresh included).
- `list_/get_/watch_cluster_gateways`, `..._virtual_clusters` (and `..._asyncio`): typed views of the hub's clusters.
- `fan_out(hub, call, clusters=... | label_selector=...)`: one call on many members, every cluster's outcome kept.
"""

from __future__ import annotations

from .configuration import member_configuration, member_configuration_asyncio
from .fan_out import ClusterOutcome, ClusterTimeout, FanOutError, FanOutResult, describe_error, fan_out, fan_out_calls
from .hub import (
    WatchError,
    get_cluster_gateway,
    get_virtual_cluster,
    list_cluster_gateways,
    list_virtual_clusters,
    watch_cluster_gateways,
    watch_virtual_clusters,
)
from .hub_asyncio import (
    get_cluster_gateway_asyncio,
    get_virtual_cluster_asyncio,
    list_cluster_gateways_asyncio,
    list_virtual_clusters_asyncio,
    watch_cluster_gateways_asyncio,
    watch_virtual_clusters_asyncio,
)
from .objects import ClusterGateway, ClusterList, VirtualCluster, WatchEvent
from .paths import InvalidClusterName, check_cluster_name, member_proxy_path, member_proxy_url

__all__ = [
    "ClusterGateway",
    "ClusterList",
    "ClusterOutcome",
    "ClusterTimeout",
    "FanOutError",
    "FanOutResult",
    "InvalidClusterName",
    "VirtualCluster",
    "WatchError",
    "WatchEvent",
    "check_cluster_name",
    "describe_error",
    "fan_out",
    "fan_out_calls",
    "get_cluster_gateway",
    "get_cluster_gateway_asyncio",
    "get_virtual_cluster",
    "get_virtual_cluster_asyncio",
    "list_cluster_gateways",
    "list_cluster_gateways_asyncio",
    "list_virtual_clusters",
    "list_virtual_clusters_asyncio",
    "member_configuration",
    "member_configuration_asyncio",
    "member_proxy_path",
    "member_proxy_url",
    "watch_cluster_gateways",
    "watch_cluster_gateways_asyncio",
    "watch_virtual_clusters",
    "watch_virtual_clusters_asyncio",
]
