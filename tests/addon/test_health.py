"""Each ManagedClusterAddOn's `Available` condition follows the health the gateway reports for its ClusterGateway."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import ApiClient, Configuration

from gateway_apiserver.addon.health import available_condition, with_condition
from gateway_apiserver.addon.kube import Kube
from gateway_apiserver.addon.manager import AddonManager, ManagerSettings
from tests.addon.conftest import SECRET_NS, SERVICE_NAME, Hub, ca_bundle, mounted, serving_gateway
from tests.addon.test_clusters import issue_token, join
from tests.addon.test_install import condition, stored
from tests.fakes.kube_store import PolicyRule
from tests.fakes.ocm_addon import CLUSTER_GATEWAY_CONFIGURATIONS, MANAGED_CLUSTER_ADDONS, cluster_gateway_configuration

HEALTHY = "status.cluster.core.oam.dev/healthy"
REASON = "status.cluster.core.oam.dev/healthy-reason"


def test_the_condition_mirrors_the_cluster_gateway_status() -> None:
    assert available_condition({"status": {"healthy": True}}) == {
        "type": "Available",
        "status": "True",
        "reason": "SuccessfullyProbedHealthz",
        "message": "Returned OK",
    }
    assert available_condition({"status": {"healthy": False, "healthyReason": "MemberUnreachable"}}) == {
        "type": "Available",
        "status": "False",
        "reason": "FailedProbingHealthz",
        "message": "MemberUnreachable",
    }
    assert available_condition(None, "reading the ClusterGateway failed: 503 unavailable")["message"] == (
        "reading the ClusterGateway failed: 503 unavailable"
    )


def test_the_transition_time_moves_only_when_the_status_changes() -> None:
    t1, t2 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 2, tzinfo=dt.UTC)
    first = with_condition([], available_condition(None, "down"), t1)
    assert first is not None and first[0]["lastTransitionTime"] == "2027-01-01T00:00:00Z"
    assert with_condition(first, available_condition(None, "down"), t2) is None
    same_status = with_condition(first, available_condition(None, "still down"), t2)
    assert same_status is not None and same_status[0]["lastTransitionTime"] == "2027-01-01T00:00:00Z"
    up = with_condition(first, available_condition({"status": {"healthy": True}}), t2)
    assert up is not None and up[0]["lastTransitionTime"] == "2027-01-02T00:00:00Z"


async def converge(manager: AddonManager, done: Callable[[], bool]) -> None:
    """Run passes until `done()` (the gateway's informer sees a Secret change a moment after the hub stores it)."""
    for _ in range(100):
        await manager.reconcile()
        if done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not converge in 5 s")


def available(hub: Hub, cluster: str) -> dict[str, Any]:
    return condition(stored(hub, MANAGED_CLUSTER_ADDONS.resource, cluster, "cluster-gateway"), "Available")


async def test_the_addon_condition_follows_the_gateway_health(hub: Hub, manager_kube: Kube, tmp_path: Path) -> None:
    hub.api.store.create(CLUSTER_GATEWAY_CONFIGURATIONS.resource, "", cluster_gateway_configuration())
    join(hub, "cluster1")
    await AddonManager(manager_kube, None, ManagerSettings()).reconcile()
    issue_token(hub, "cluster1", "token-1")
    await AddonManager(manager_kube, None, ManagerSettings()).reconcile()
    mounts = tmp_path / "tls"
    mounts.mkdir()
    mounted(hub, mounts)
    # The gateway authorizes the manager's reads of ClusterGateways (as the aggregator's callers: a SubjectAccessReview).
    rule = PolicyRule(
        users=(hub.manager_user,), verbs=("get",), api_groups=("cluster.core.oam.dev",), resources=("clustergateways",)
    )
    hub.api.policy.append(rule)
    async with serving_gateway(hub, tmp_path, mounts) as gateway:
        base = await hub.config()
        config = Configuration(host=f"https://127.0.0.1:{gateway.port}", api_key=base.api_key, api_key_prefix=base.api_key_prefix)
        (tmp_path / "bundle.crt").write_bytes(ca_bundle(hub))
        config.ssl_ca_cert = str(tmp_path / "bundle.crt")
        config.tls_server_name = SERVICE_NAME
        async with ApiClient(config) as gateway_client:
            manager = AddonManager(manager_kube, Kube(gateway_client), ManagerSettings())
            await manager.reconcile()
            assert available(hub, "cluster1") == {
                "type": "Available",
                "status": "False",
                "reason": "FailedProbingHealthz",
                "message": "the gateway reports the cluster unhealthy",
            }  # never probed, never told: the gateway does not call it healthy

            hub.api.store.merge_patch("secrets", SECRET_NS, "cluster1", {"metadata": {"annotations": {HEALTHY: "true"}}})
            await converge(manager, lambda: available(hub, "cluster1")["status"] == "True")
            assert available(hub, "cluster1") == {
                "type": "Available",
                "status": "True",
                "reason": "SuccessfullyProbedHealthz",
                "message": "Returned OK",
            }

            unhealthy = {HEALTHY: "false", REASON: "MemberUnreachable"}
            hub.api.store.merge_patch("secrets", SECRET_NS, "cluster1", {"metadata": {"annotations": unhealthy}})
            await converge(manager, lambda: available(hub, "cluster1")["status"] == "False")
            assert available(hub, "cluster1") == {
                "type": "Available",
                "status": "False",
                "reason": "FailedProbingHealthz",
                "message": "MemberUnreachable",
            }
