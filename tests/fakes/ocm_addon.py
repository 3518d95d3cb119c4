"""What an OCM hub serves to the add-on manager, in the fake hosting kube-apiserver.

The workload kinds the manager installs (Namespaces, ServiceAccounts, Services, Deployments,
RBAC, the APIService) and the OCM kinds it reads and writes (ManagedClusterAddOn,
ClusterManagementAddOn, ManagedServiceAccount, ClusterGatewayConfiguration), with the scope,
group, version and status subresource each has on a hub. `install_addon_manager_kinds` serves
them all; the OCM ones are CRD-style (absent from discovery before), as on a hub whose add-on
CRDs are installed.
"""

from __future__ import annotations

from typing import Any

from .kube_store import KindInfo, Obj
from .ocm import MANAGED_CLUSTERS

_CRD = ("metadata", "status")  # a CRD with a status subresource: generation counts spec changes only

NAMESPACES = KindInfo("namespaces", "Namespace", namespaced=False)
SERVICE_ACCOUNTS = KindInfo("serviceaccounts", "ServiceAccount")
SERVICES = KindInfo("services", "Service")
DEPLOYMENTS = KindInfo("deployments", "Deployment", group="apps", generation_ignores=_CRD, status_subresource=True)
ROLES = KindInfo("roles", "Role", group="rbac.authorization.k8s.io")
ROLE_BINDINGS = KindInfo("rolebindings", "RoleBinding", group="rbac.authorization.k8s.io")
CLUSTER_ROLES = KindInfo("clusterroles", "ClusterRole", group="rbac.authorization.k8s.io", namespaced=False)
CLUSTER_ROLE_BINDINGS = KindInfo("clusterrolebindings", "ClusterRoleBinding", group="rbac.authorization.k8s.io", namespaced=False)
API_SERVICES = KindInfo("apiservices", "APIService", group="apiregistration.k8s.io", namespaced=False, status_subresource=True)

ADDON_GROUP = "addon.open-cluster-management.io"
MANAGED_CLUSTER_ADDONS = KindInfo(
    "managedclusteraddons",
    "ManagedClusterAddOn",
    group=ADDON_GROUP,
    version="v1alpha1",
    generation_ignores=_CRD,
    status_subresource=True,
)
CLUSTER_MANAGEMENT_ADDONS = KindInfo(
    "clustermanagementaddons",
    "ClusterManagementAddOn",
    group=ADDON_GROUP,
    version="v1alpha1",
    namespaced=False,
    generation_ignores=_CRD,
    status_subresource=True,
)
MANAGED_SERVICE_ACCOUNTS = KindInfo(
    "managedserviceaccounts",
    "ManagedServiceAccount",
    group="authentication.open-cluster-management.io",
    version="v1beta1",
    generation_ignores=_CRD,
    status_subresource=True,
)
CLUSTER_GATEWAY_CONFIGURATIONS = KindInfo(
    "clustergatewayconfigurations",
    "ClusterGatewayConfiguration",
    group="proxy.open-cluster-management.io",
    version="v1alpha1",
    namespaced=False,
    generation_ignores=_CRD,
    status_subresource=True,
)

WORKLOAD_KINDS = (
    NAMESPACES,
    SERVICE_ACCOUNTS,
    SERVICES,
    DEPLOYMENTS,
    ROLES,
    ROLE_BINDINGS,
    CLUSTER_ROLES,
    CLUSTER_ROLE_BINDINGS,
    API_SERVICES,
)
OCM_ADDON_KINDS = (
    MANAGED_CLUSTERS,
    MANAGED_CLUSTER_ADDONS,
    CLUSTER_MANAGEMENT_ADDONS,
    MANAGED_SERVICE_ACCOUNTS,
    CLUSTER_GATEWAY_CONFIGURATIONS,
)


def install_addon_manager_kinds(api: Any) -> None:
    """Serve every kind the add-on manager touches from `api` (a FakeKubeAPIServer)."""
    for info in (*WORKLOAD_KINDS, *OCM_ADDON_KINDS):
        api.install_crd(info)


def cluster_gateway_configuration(
    name: str = "cluster-gateway",
    *,
    image: str = "ghcr.io/gateway-apiserver/gateway-apiserver:0.1.0",
    install_namespace: str = "open-cluster-management-cluster-gateway",
    secret_namespace: str = "open-cluster-management-credentials",
    managed_service_account: str | None = "cluster-gateway",
    egress: Obj | None = None,
) -> Obj:
    """A ClusterGatewayConfiguration body (reference schema); ManagedServiceAccount secret management by default."""
    management: Obj = (
        {"type": "ManagedServiceAccount", "managedServiceAccount": {"name": managed_service_account}}
        if managed_service_account
        else {"type": "Manual"}
    )
    spec: Obj = {
        "image": image,
        "installNamespace": install_namespace,
        "secretNamespace": secret_namespace,
        "secretManagement": management,
        "egress": egress or {"type": "Direct"},
    }
    return {"metadata": {"name": name}, "spec": spec}


def cluster_proxy_egress(host: str = "proxy-entrypoint.open-cluster-management-cluster-proxy", port: int = 8090) -> Obj:
    """The `spec.egress` of a ClusterProxy configuration, with the reference's default credential Secret names."""
    credentials = {
        "namespace": "open-cluster-management-cluster-proxy",
        "proxyClientSecretName": "proxy-client",
        "proxyClientCASecretName": "proxy-server-ca",
    }
    return {
        "type": "ClusterProxy",
        "clusterProxy": {"proxyServerHost": host, "proxyServerPort": port, "credentials": credentials},
    }


def managed_cluster_addon(cluster: str, name: str = "cluster-gateway") -> Obj:
    """A ManagedClusterAddOn enabling add-on `name` on `cluster` (it lives in the cluster's namespace)."""
    return {"metadata": {"name": name, "namespace": cluster}, "spec": {"installNamespace": "open-cluster-management-agent-addon"}}
