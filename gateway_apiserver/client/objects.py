"""Typed views of the ClusterGateway and VirtualCluster objects the hub serves (pure conversions)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from ..base.api_group import GROUP, VERSION

CLUSTER_GATEWAYS = "clustergateways"
VIRTUAL_CLUSTERS = "virtualclusters"

T = TypeVar("T")
EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


@dataclass(frozen=True)
class ClusterGateway:
    """One member cluster as the hub serves it (`kubectl get clustergateway NAME -o yaml`)."""

    name: str
    resource_version: str
    labels: Mapping[str, str]
    provider: str
    endpoint_type: str  # Const or ClusterProxy
    endpoint: str  # the member's URL for a Const endpoint, "" for ClusterProxy
    credential_type: str  # ServiceAccountToken, X509Certificate, Dynamic, ServiceAccountTokenSecret...
    healthy: bool
    healthy_reason: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class VirtualCluster:
    """One cluster as `kubectl get virtualclusters` shows it (cluster Secrets, OCM ManagedClusters and `local`)."""

    name: str
    resource_version: str
    labels: Mapping[str, str]
    alias: str
    accepted: bool
    endpoint: str
    credential_type: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class WatchEvent(Generic[T]):
    """One watch event; `object` is None for a BOOKMARK (`resource_version` is then where to resume)."""

    type: EventType
    object: T | None
    resource_version: str


@dataclass(frozen=True)
class ClusterList(Generic[T]):
    """A list answer: the items, and the resourceVersion to start a watch from."""

    items: tuple[T, ...]
    resource_version: str

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> T:
        return self.items[index]

    def names(self) -> list[str]:
        """The items' names, in order."""
        return [str(getattr(item, "name", "")) for item in self.items]


def cluster_list(answer: Mapping[str, Any], convert: Callable[[Mapping[str, Any]], T]) -> ClusterList[T]:
    """The typed view of a List answer."""
    rv = str((answer.get("metadata") or {}).get("resourceVersion", ""))
    return ClusterList(tuple(convert(item) for item in answer.get("items") or ()), rv)


def cluster_gateway(obj: Mapping[str, Any]) -> ClusterGateway:
    """The typed view of a ClusterGateway object."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    access = spec.get("access") or {}
    endpoint = access.get("endpoint") or {}
    return ClusterGateway(
        name=str(meta.get("name", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        labels=dict(meta.get("labels") or {}),
        provider=str(spec.get("provider") or ""),
        endpoint_type=str(endpoint.get("type") or ""),
        endpoint=str((endpoint.get("const") or {}).get("address") or ""),
        credential_type=str((access.get("credential") or {}).get("type") or ""),
        healthy=bool(status.get("healthy", False)),
        healthy_reason=str(status.get("healthyReason") or ""),
        raw=obj,
    )


def virtual_cluster(obj: Mapping[str, Any]) -> VirtualCluster:
    """The typed view of a VirtualCluster object."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    return VirtualCluster(
        name=str(meta.get("name", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        labels=dict(meta.get("labels") or {}),
        alias=str(spec.get("alias") or ""),
        accepted=bool(spec.get("accepted", False)),
        endpoint=str(spec.get("endpoint") or ""),
        credential_type=str(spec.get("credential-type") or ""),
        raw=obj,
    )


def list_arguments(plural: str) -> tuple[str, str, str]:
    """The (group, version, plural) CustomObjectsApi takes for one of our resources."""
    return GROUP, VERSION, plural
