"""Under ManagedServiceAccount management the manager feeds the gateway one Secret per cluster that enables the add-on."""

from __future__ import annotations

import base64
from typing import Any

from gateway_apiserver.addon.kube import Kube
from gateway_apiserver.addon.manager import AddonManager, ManagerSettings
from tests.addon.conftest import SECRET_NS, Hub
from tests.addon.test_install import condition, running, stored
from tests.fakes.ocm import MANAGED_CLUSTERS
from tests.fakes.ocm_addon import (
    CLUSTER_GATEWAY_CONFIGURATIONS,
    MANAGED_CLUSTER_ADDONS,
    MANAGED_SERVICE_ACCOUNTS,
    cluster_gateway_configuration,
    cluster_proxy_egress,
    managed_cluster_addon,
)
from tests.fakes.proxying import eventually

MSA = "cluster-gateway"  # spec.secretManagement.managedServiceAccount.name


def join(hub: Hub, cluster: str) -> None:
    """A ManagedCluster accepted on the hub, with the add-on enabled."""
    hub.api.create_managed_cluster(cluster, url=f"https://{cluster}.nonexistent.invalid")
    hub.api.store.create(MANAGED_CLUSTER_ADDONS.resource, cluster, managed_cluster_addon(cluster))


def issue_token(hub: Hub, cluster: str, token: str) -> None:
    """What OCM's managed-serviceaccount agent does: write (or rewrite) the token Secret of the ManagedServiceAccount."""
    data = {"ca.crt": b"member CA of " + cluster.encode(), "token": token.encode()}
    if (cluster, MSA) in hub.api.store.objects["secrets"]:
        hub.api.update_secret(cluster, MSA, data=data)
    else:
        hub.api.create_secret(
            cluster, MSA, data=data, labels={"authentication.open-cluster-management.io/is-managed-serviceaccount": "true"}
        )
    msa = hub.api.store.get(MANAGED_SERVICE_ACCOUNTS.resource, cluster, MSA)
    status = {"tokenSecretRef": {"name": MSA, "lastRefreshTimestamp": token}}
    hub.api.store.update(MANAGED_SERVICE_ACCOUNTS.resource, cluster, MSA, {**msa, "status": status}, subresource="status")


def cluster_secret(hub: Hub, cluster: str) -> dict[str, Any] | None:
    return stored(hub, "secrets", SECRET_NS, cluster)


def decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
    assert secret is not None
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


async def test_a_cluster_joining_rotating_its_token_and_leaving(hub: Hub, manager_kube: Kube) -> None:
    hub.api.store.create(CLUSTER_GATEWAY_CONFIGURATIONS.resource, "", cluster_gateway_configuration())
    async with running(hub, manager_kube, resync=30.0):  # the watches, not the resync, drive it
        join(hub, "cluster1")
        await eventually(lambda: ("cluster1", MSA) in hub.api.store.objects[MANAGED_SERVICE_ACCOUNTS.resource])
        msa = hub.api.store.get(MANAGED_SERVICE_ACCOUNTS.resource, "cluster1", MSA)
        assert msa["spec"] == {"rotation": {"enabled": True}}
        assert cluster_secret(hub, "cluster1") is None  # no token yet: no Secret

        issue_token(hub, "cluster1", "token-1")
        await eventually(lambda: cluster_secret(hub, "cluster1") is not None)
        secret = cluster_secret(hub, "cluster1")
        assert secret is not None
        assert secret["metadata"]["labels"] == {
            "app.kubernetes.io/managed-by": "cluster-gateway-addon-manager",
            "cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken",
            "cluster.core.oam.dev/cluster-endpoint-type": "Const",
        }
        assert decoded(secret) == {"ca.crt": b"member CA of cluster1", "token": b"token-1"}  # no endpoint

        issue_token(hub, "cluster1", "token-2")
        await eventually(lambda: decoded(cluster_secret(hub, "cluster1"))["token"] == b"token-2")

        hub.api.store.delete(MANAGED_CLUSTER_ADDONS.resource, "cluster1", "cluster-gateway")
        hub.api.delete_managed_cluster("cluster1")
        await eventually(lambda: cluster_secret(hub, "cluster1") is None)
        await eventually(lambda: ("cluster1", MSA) not in hub.api.store.objects[MANAGED_SERVICE_ACCOUNTS.resource])


async def test_disabling_the_addon_removes_only_that_clusters_secret(hub: Hub, manager_kube: Kube) -> None:
    hub.api.store.create(CLUSTER_GATEWAY_CONFIGURATIONS.resource, "", cluster_gateway_configuration())
    manager = AddonManager(manager_kube, None, ManagerSettings())
    for cluster in ("cluster1", "cluster2"):
        join(hub, cluster)
    await manager.reconcile()
    for cluster in ("cluster1", "cluster2"):
        issue_token(hub, cluster, f"token-of-{cluster}")
    hub.api.create_secret(
        SECRET_NS, "hand-written", labels={"cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken"}
    )
    await manager.reconcile()
    assert cluster_secret(hub, "cluster1") is not None and cluster_secret(hub, "cluster2") is not None

    hub.api.store.delete(MANAGED_CLUSTER_ADDONS.resource, "cluster2", "cluster-gateway")
    await manager.reconcile()
    assert cluster_secret(hub, "cluster2") is None
    assert decoded(cluster_secret(hub, "cluster1"))["token"] == b"token-of-cluster1"
    assert cluster_secret(hub, "hand-written") is not None  # not the manager's: never touched


async def test_cluster_proxy_egress_marks_the_cluster_secrets(hub: Hub, manager_kube: Kube) -> None:
    proxy_ns = "open-cluster-management-cluster-proxy"
    hub.api.create_secret(proxy_ns, "proxy-server-ca", data={"ca.crt": b"proxy CA"})
    hub.api.create_secret(proxy_ns, "proxy-client", data={"tls.crt": b"c", "tls.key": b"k"})
    body = cluster_gateway_configuration(egress=cluster_proxy_egress())
    hub.api.store.create(CLUSTER_GATEWAY_CONFIGURATIONS.resource, "", body)
    join(hub, "cluster1")
    manager = AddonManager(manager_kube, None, ManagerSettings())
    await manager.reconcile()
    issue_token(hub, "cluster1", "t")
    await manager.reconcile()
    secret = cluster_secret(hub, "cluster1")
    assert secret is not None
    assert secret["metadata"]["labels"]["cluster.core.oam.dev/cluster-endpoint-type"] == "ClusterProxy"


async def test_manual_secret_management_creates_no_managed_service_accounts(hub: Hub, manager_kube: Kube) -> None:
    body = cluster_gateway_configuration(managed_service_account=None)
    hub.api.store.create(CLUSTER_GATEWAY_CONFIGURATIONS.resource, "", body)
    join(hub, "cluster1")
    await AddonManager(manager_kube, None, ManagerSettings()).reconcile()
    assert hub.api.store.objects[MANAGED_SERVICE_ACCOUNTS.resource] == {}
    assert hub.api.store.objects[MANAGED_CLUSTERS.resource]


async def test_without_ocm_addon_apis_the_installation_is_still_reported(hub: Hub, manager_kube: Kube) -> None:
    hub.api.store.create(CLUSTER_GATEWAY_CONFIGURATIONS.resource, "", cluster_gateway_configuration())
    hub.api.uninstall_crd(MANAGED_CLUSTER_ADDONS.resource)
    await AddonManager(manager_kube, None, ManagerSettings()).reconcile()
    config = stored(hub, CLUSTER_GATEWAY_CONFIGURATIONS.resource, "", "cluster-gateway")
    assert condition(config, "ClusterGatewayDeployed")["status"] == "True"
    assert condition(config, "ClusterSecretsSynced") == {
        "type": "ClusterSecretsSynced",
        "status": "False",
        "reason": "SyncFailed",
        "message": "reading the clusters that enable the add-on failed: 404 the server could not find the requested resource",
    }
