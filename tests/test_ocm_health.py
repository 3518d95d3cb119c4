"""--ocm-integration end to end: the ManagedCluster's Available condition is merged into ClusterGateway health.

A hosting-mode gateway in front of the fake hosting kube-apiserver serving ManagedClusters, and a fake
member. OCM's hub turns `ManagedClusterConditionAvailable` to Unknown when the klusterlet's lease stops;
clustergateway watchers see that as MODIFIED with the condition's reason, kubectl's HEALTHY follows, and
HealthinessCheck fails requests fast naming it. The gateway's own newer probe has the last word.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.hosting import CLUSTERGATEWAYS, HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.test_ocm_integration import TOKEN, admin, eventually, ocm_hub

pytestmark = pytest.mark.timeout(30)
LEASE_STOPPED = "ManagedClusterLeaseUpdateStopped"
GATES = {"HealthinessCheck": True, "SecretCache": True, "ClientIdentityPenetration": False, "OCMClusterCache": True}


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    async with FakeMemberAPIServer(token=TOKEN) as server:
        yield server


def available(status: str, reason: str, since: datetime) -> dict[str, Any]:
    """A ManagedCluster status with the hub's Available condition."""
    condition = {
        "type": "ManagedClusterConditionAvailable",
        "status": status,
        "reason": reason,
        "message": "set by the test",
        "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return {"conditions": [condition]}


async def kubectl_healthy(gw: HostingGateway, tmp_path: Path) -> str:
    """The HEALTHY cell of `kubectl get cg c1`."""
    kubeconfig = gw.write_kubeconfig(tmp_path / "admin.kubeconfig", token=gw.api.token)
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={tmp_path / 'kubectl-cache'}",
        "get",
        "cg",
        "c1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    header, row = out.decode().splitlines()
    return row[header.index("HEALTHY") :].split()[0]


async def healthy(session: aiohttp.ClientSession) -> Any:
    async with session.get(f"{CLUSTERGATEWAYS}/c1") as resp:
        return (await resp.json())["status"].get("healthy")


async def watch_from_now(session: aiohttp.ClientSession) -> aiohttp.ClientResponse:
    async with session.get(CLUSTERGATEWAYS) as resp:
        since = (await resp.json())["metadata"]["resourceVersion"]
    return await session.get(f"{CLUSTERGATEWAYS}?watch=1&resourceVersion={since}")


async def next_event(watch: aiohttp.ClientResponse, timeout: float = 5) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await asyncio.wait_for(watch.content.readline(), timeout))
    return event


async def test_a_managed_cluster_turning_unavailable_is_modified_with_its_reason_and_kubectl_shows_it(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, member: FakeMemberAPIServer
) -> None:
    ocm_hub(kube_apiserver)
    add_cluster(kube_apiserver, "c1", member.url, token=TOKEN, ca_pem=member.ca_pem)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    fields = {"url": member.url, "ca_pem": member.ca_pem}
    kube_apiserver.create_managed_cluster("c1", **fields, status=available("True", "ManagedClusterAvailable", an_hour_ago))
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True, feature_gates=GATES) as gw:
        assert await kubectl_healthy(gw, tmp_path) == "true"
        async with admin(gw) as s:
            watch = await watch_from_now(s)
            try:
                lost = datetime.now(UTC)
                kube_apiserver.update_managed_cluster("c1", **fields, status=available("Unknown", LEASE_STOPPED, lost))
                event = await next_event(watch)
            finally:
                watch.close()
            assert (event["type"], event["object"]["status"]) == ("MODIFIED", {"healthy": False, "healthyReason": LEASE_STOPPED})
            assert await kubectl_healthy(gw, tmp_path) == "false"
            # HealthinessCheck: the condition is as good a reason to fail fast as a probe, and the message says whose.
            async with s.get(f"{CLUSTERGATEWAYS}/c1/proxy/api/v1/namespaces") as resp:
                assert resp.status == 503
                body = await resp.json()
            assert body["message"].startswith(
                f'cluster "c1" is unhealthy ({LEASE_STOPPED}; reported by its ManagedCluster\'s '
                f"ManagedClusterConditionAvailable condition at {lost.strftime('%Y-%m-%dT%H:%M:%SZ')}): "
                "the HealthinessCheck feature gate refuses requests to it"
            ), body
            assert (body["kind"], body["code"], body["reason"]) == ("Status", 503, "ServiceUnavailable")
            assert member.requests_to("/api/v1/namespaces") == []

            kube_apiserver.update_managed_cluster("c1", **fields, status=available("True", "ManagedClusterAvailable", lost))
            await eventually(lambda: healthy(s), True)
        assert await kubectl_healthy(gw, tmp_path) == "true"


async def test_the_gateways_own_newer_probe_wins_and_stays_without_flapping(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, member: FakeMemberAPIServer
) -> None:
    """The member answers the gateway while OCM says it is unavailable: the condition shows until the next
    probe, then the probe, and nothing more while neither changes its mind."""
    ocm_hub(kube_apiserver)
    add_cluster(kube_apiserver, "c1", member.url, token=TOKEN, ca_pem=member.ca_pem)
    fields = {"url": member.url, "ca_pem": member.ca_pem}
    kube_apiserver.create_managed_cluster("c1", **fields)
    probing = {"health_probe_interval": 0.2, "health_probe_timeout": 2.0}
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True, **probing) as gw, admin(gw) as s:
        await eventually(lambda: healthy(s), True)  # the first probe's verdict
        watch = await watch_from_now(s)
        try:
            # Stamped an hour ahead (a hub clock ahead): it counts from when the gateway saw it, after
            # the last probe, so it shows; a same-second stamp could predate that probe and never show.
            ahead = datetime.now(UTC) + timedelta(hours=1)
            reason = "ManagedClusterKubeAPIServerUnavailable"
            kube_apiserver.update_managed_cluster("c1", **fields, status=available("False", reason, ahead))
            unavailable, probed = await next_event(watch), await next_event(watch)
            with pytest.raises(TimeoutError):  # five more probe rounds, all finding the member healthy
                await next_event(watch, timeout=1.0)
        finally:
            watch.close()
    assert (unavailable["type"], unavailable["object"]["status"]["healthy"]) == ("MODIFIED", False)
    assert unavailable["object"]["status"]["healthyReason"] == reason
    assert (probed["type"], probed["object"]["status"]["healthy"]) == ("MODIFIED", True)
    assert "healthyReason" not in probed["object"]["status"]
    assert probed["object"]["status"]["lastProbeTime"] >= unavailable["object"]["status"]["lastProbeTime"]
