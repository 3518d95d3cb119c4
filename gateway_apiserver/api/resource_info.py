"""The facts about the one resource we serve, shared by discovery, OpenAPI and the handlers.

Everything here is a constant: the group, version, resource names and verbs must agree
byte for byte between discovery, the OpenAPI documents and the routes, so they live in
one place.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "cluster.core.oam.dev"
VERSION = "v1alpha1"
GROUP_VERSION = f"{GROUP}/{VERSION}"

RESOURCE = "clustergateways"
SINGULAR = "clustergateway"
KIND = "ClusterGateway"
LIST_KIND = "ClusterGatewayList"
SHORT_NAMES: tuple[str, ...] = ("cg",)
# Kubernetes lists verbs sorted; clients compare sets, but keep the canonical order anyway.
VERBS: tuple[str, ...] = ("get", "list", "watch")
NAMESPACED = False

# URL prefix of the group version, e.g. for route tables: /apis/cluster.core.oam.dev/v1alpha1
API_PREFIX = f"/apis/{GROUP_VERSION}"
RESOURCE_PATH = f"{API_PREFIX}/{RESOURCE}"


@dataclass(frozen=True, slots=True)
class Subresource:
    """A subresource of clustergateways, as discovery advertises it."""

    name: str
    kind: str
    verbs: tuple[str, ...]

    @property
    def resource(self) -> str:
        """The discovery name, e.g. `clustergateways/proxy`."""
        return f"{RESOURCE}/{self.name}"


# A connect subresource like pods/proxy: the kind is the options type, not an object we return.
PROXY = Subresource("proxy", "ClusterGatewayProxyOptions", ("create", "delete", "get", "patch", "update"))
HEALTH = Subresource("health", KIND, ("get", "patch", "update"))
# Sorted by name, the order the kube-apiserver registers (and so lists) subresources in.
SUBRESOURCES: tuple[Subresource, ...] = (HEALTH, PROXY)


def gvk(kind: str = KIND) -> dict[str, str]:
    """The `{group, version, kind}` dict used by discovery and `x-kubernetes-group-version-kind`."""
    return {"group": GROUP, "version": VERSION, "kind": kind}
