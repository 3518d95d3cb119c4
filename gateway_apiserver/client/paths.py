"""The proxy URL of a member cluster on the hub, from a checked cluster name (pure; imports nothing of the server)."""

from __future__ import annotations

from ..base.api_group import API_PREFIX
from ..base.validation import dns1123_subdomain_errors


class InvalidClusterName(ValueError):
    """A cluster name that is not a ClusterGateway name: it could bend or escape the proxy path."""


def check_cluster_name(cluster: str) -> str:
    """`cluster` unchanged when it is a valid object name (a lowercase RFC 1123 subdomain); InvalidClusterName otherwise."""
    if not isinstance(cluster, str) or not cluster:
        raise InvalidClusterName("cluster name must be a non-empty string")
    errors = dns1123_subdomain_errors(cluster)
    if errors:
        raise InvalidClusterName(f"invalid cluster name {cluster!r}: {'; '.join(errors)}")
    return cluster


def member_proxy_path(cluster: str) -> str:
    """`/apis/cluster.core.oam.dev/v1alpha1/clustergateways/<cluster>/proxy` for a checked `cluster`."""
    return f"{API_PREFIX}/clustergateways/{check_cluster_name(cluster)}/proxy"


def member_proxy_url(hub_host: str, cluster: str) -> str:
    """The hub's server URL (any path prefix kept) followed by the cluster's proxy path."""
    return hub_host.rstrip("/") + member_proxy_path(cluster)
