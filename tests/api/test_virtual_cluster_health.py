"""A VirtualCluster's status is its cluster's observed health, and a change of it is a MODIFIED event for watchers.

A Secret-backed VirtualCluster shows its ClusterGateway's healthy, healthyReason and lastProbeTime; an OCM
ManagedCluster without a Secret shows its ManagedClusterConditionAvailable condition. Watched here with
kubernetes-asyncio, as KubeVela's Go client would watch them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config, watch

from tests.fakes.gateway import ManualSecretSource, get_json, running_gateway
from tests.fakes.hosting import hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_rbac import with_ocm_component
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.proxying import eventually, token_secret

pytestmark = pytest.mark.timeout(60)
GROUP, VERSION = "cluster.core.oam.dev", "v1alpha1"
VC = f"/apis/{GROUP}/{VERSION}/virtualclusters"
CG = f"/apis/{GROUP}/{VERSION}/clustergateways"
AVAILABLE = "ManagedClusterConditionAvailable"

Event = tuple[str, bool | None, str | None]  # type, status.healthy, status.healthyReason


@asynccontextmanager
async def api_client(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        yield api


@asynccontextmanager
async def watching(api: client.ApiClient, name: str) -> AsyncIterator[list[Event]]:
    """A watch of virtualclusters from the current list's resourceVersion: the events of `name`, as they arrive."""
    custom = client.CustomObjectsApi(api)
    listed = await custom.list_cluster_custom_object(GROUP, VERSION, "virtualclusters")
    events: list[Event] = []

    async def run() -> None:
        stream = watch.Watch().stream(
            custom.list_cluster_custom_object,
            GROUP,
            VERSION,
            "virtualclusters",
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=50,
        )
        async for event in stream:
            obj = event["object"]
            if obj["metadata"]["name"] == name:
                status = obj.get("status") or {}
                events.append((event["type"], status.get("healthy"), status.get("healthyReason")))

    task = asyncio.create_task(run())
    try:
        yield events
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def shown(lookup: Callable[[str], Any], name: str) -> dict[str, Any] | None:
    """The status a VirtualCluster shows now (None without one)."""
    vc = lookup(name)
    return None if vc is None else vc.manifest.get("status")


async def test_a_secrets_virtualcluster_follows_its_clustergateways_probed_health(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    # A timeout far above a loaded machine's worst answer time: only the hung member may time out.
    probing = {"health_probe_interval": 0.2, "health_probe_timeout": 2.0}
    async with running_gateway(tmp_path, ManualSecretSource([token_secret("m1", member)]), **probing) as gw:
        lookup = gw.server.virtual_clusters.lookup
        await eventually(lambda: (shown(lookup, "m1") or {}).get("healthy") is True, timeout=10)
        async with api_client(gw.kubeconfig) as api, watching(api, "m1") as events:
            member.hang()
            await eventually(lambda: (shown(lookup, "m1") or {}).get("healthy") is False, timeout=10)
            member.recover()
            await eventually(lambda: len(events) >= 2, timeout=10)
        vc, cg = await get_json(gw, f"{VC}/m1"), await get_json(gw, f"{CG}/m1")
    assert events == [("MODIFIED", False, "ConnectionTimeout"), ("MODIFIED", True, None)]
    # The ClusterGateway's health fields, as it shows them (its kubernetesVersion is not repeated).
    assert vc["status"] == {"healthy": True, "lastProbeTime": cg["status"]["lastProbeTime"]}
    assert cg["status"] == {**vc["status"], "kubernetesVersion": "v1.32.0-fake-member"}


def availability(status: str, reason: str) -> dict[str, Any]:
    """A ManagedCluster status holding only its ManagedClusterConditionAvailable condition."""
    condition = {"type": AVAILABLE, "status": status, "reason": reason, "message": f"the cluster is {reason}"}
    return {"conditions": [{**condition, "lastTransitionTime": "2026-12-03T10:00:00Z"}]}


async def test_a_managed_clusters_virtualcluster_follows_its_available_condition(
    kube_apiserver: FakeKubeAPIServer, tmp_path: Path
) -> None:
    kube_apiserver.rbac = with_ocm_component()
    kube_apiserver.policy = [PolicyRule(groups=("system:masters",))]
    kube_apiserver.install_managed_cluster_crd()
    url = "https://mc1.invalid:6443"
    kube_apiserver.create_managed_cluster("mc1", url=url, status=availability("True", "ManagedClusterAvailable"))
    async with hosting_gateway(tmp_path, kube_apiserver) as gw:
        lookup = gw.server.virtual_clusters.lookup
        await eventually(lambda: shown(lookup, "mc1") == {"healthy": True}, timeout=10)
        kubeconfig = gw.write_kubeconfig(tmp_path / "admin.kubeconfig", token=kube_apiserver.token)
        async with api_client(kubeconfig) as api, watching(api, "mc1") as events:
            kube_apiserver.update_managed_cluster(
                "mc1", url=url, status=availability("Unknown", "ManagedClusterLeaseUpdateStopped")
            )
            await eventually(lambda: len(events) >= 1, timeout=10)
            kube_apiserver.update_managed_cluster("mc1", url=url, status=availability("False", ""))
            await eventually(lambda: len(events) >= 2, timeout=10)
            kube_apiserver.update_managed_cluster("mc1", url=url)  # the hub has not set the condition (yet)
            await eventually(lambda: len(events) >= 3, timeout=10)
        body = await get_json_as(gw, f"{VC}/mc1", kube_apiserver.token)
    assert events == [
        ("MODIFIED", False, "ManagedClusterLeaseUpdateStopped"),
        ("MODIFIED", False, f"{AVAILABLE} is False"),  # no reason given: the condition's status says it
        ("MODIFIED", None, None),
    ]
    assert "status" not in body  # nothing known of its health


async def get_json_as(gw: Any, path: str, token: str) -> Any:
    async with gw.session() as session, session.get(path, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        return await resp.json()
