"""The facts about each resource we serve, shared by discovery, OpenAPI, tables and the handlers.

Names and verbs must agree byte for byte between discovery, the OpenAPI documents and the
routes, so each resource is described once here, as a `ResourceInfo`, and every other
module reads it from there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..base.api_group import API_PREFIX, GROUP, GROUP_VERSION, VERSION

__all__ = ["API_PREFIX", "GROUP", "GROUP_VERSION", "VERSION"]  # and the names below
READ_VERBS: tuple[str, ...] = ("get", "list", "watch")  # sorted, as Kubernetes lists verbs


def gvk(kind: str) -> dict[str, str]:
    """The `{group, version, kind}` dict used by discovery and `x-kubernetes-group-version-kind`."""
    return {"group": GROUP, "version": VERSION, "kind": kind}


@dataclass(frozen=True, slots=True)
class Subresource:
    """A subresource, as discovery advertises it."""

    name: str
    kind: str
    verbs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """One read-only resource of our group version: names, kinds, verbs and subresources."""

    plural: str
    singular: str
    kind: str
    short_names: tuple[str, ...]
    description: str  # one sentence for OpenAPI operations, e.g. "the member clusters the gateway proxies to"
    subresources: tuple[Subresource, ...] = ()  # sorted by name, the order the kube-apiserver lists them in
    verbs: tuple[str, ...] = READ_VERBS
    namespaced: bool = False

    @property
    def list_kind(self) -> str:
        """The kind of a list, e.g. `ClusterGatewayList`."""
        return self.kind + "List"

    @property
    def path(self) -> str:
        """The collection's URL path."""
        return f"{API_PREFIX}/{self.plural}"

    @property
    def group_resource(self) -> str:
        """`<plural>.<group>`, as Status messages name the resource."""
        return f"{self.plural}.{GROUP}"

    def subresource(self, name: str) -> Subresource | None:
        """The subresource called `name`, if this resource has it."""
        return next((sub for sub in self.subresources if sub.name == name), None)


# A connect subresource like pods/proxy: the kind is the options type, not an object we return.
PROXY = Subresource("proxy", "ClusterGatewayProxyOptions", ("create", "delete", "get", "patch", "update"))
HEALTH = Subresource("health", "ClusterGateway", ("get", "patch", "update"))
HEALTH_READ_ONLY = Subresource("health", "ClusterGateway", ("get",))

CLUSTER_GATEWAYS = ResourceInfo(
    plural="clustergateways",
    singular="clustergateway",
    kind="ClusterGateway",
    short_names=("cg",),
    description="the member clusters the gateway proxies to",
    subresources=(HEALTH, PROXY),
)
VIRTUAL_CLUSTERS = ResourceInfo(
    plural="virtualclusters",
    singular="virtualcluster",
    kind="VirtualCluster",
    short_names=("vc", "vcluster", "vclusters", "virtual-cluster", "virtual-clusters"),
    description="every cluster a KubeVela user can target: local, the cluster Secrets and OCM ManagedClusters",
)


def served_resources(*, health_writable: bool) -> tuple[ResourceInfo, ...]:
    """The resources of one server, sorted by name. Without a hosting cluster there is no Secret to
    write health on, so the health subresource is read-only there and says so in discovery."""
    gateways = CLUSTER_GATEWAYS
    if not health_writable:
        gateways = dataclasses.replace(gateways, subresources=(HEALTH_READ_ONLY, PROXY))
    return (gateways, VIRTUAL_CLUSTERS)
