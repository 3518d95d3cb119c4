"""The reference's round-trip e2e suite (e2e/roundtrip/clustergateway.go, "Basic RoundTrip Test"),
restated against our hosting-mode gateway with the real kubectl: discovery, GET and LIST of
ClusterGateways, reading and writing health, and probing a member's /healthz through the proxy.
The e2e environment's cluster is named `loopback`, as the reference's setup names it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.compat.conftest import ADMIN, ProbedMember, raw_get, run_kubectl
from tests.fakes.hosting import CLUSTERGATEWAYS, HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer

pytestmark = pytest.mark.timeout(60)

CLUSTER = "loopback"


@pytest.fixture
async def hub_gateway(tmp_path: Path, hub: FakeKubeAPIServer, probed_member: ProbedMember) -> AsyncIterator[HostingGateway]:
    """The gateway in hosting mode with one cluster, `loopback`, the probed member."""
    add_cluster(hub, CLUSTER, probed_member.url, token=probed_member.token, ca_pem=probed_member.ca_pem)
    async with hosting_gateway(tmp_path, hub) as gw:
        yield gw


async def test_cluster_gateway_in_the_api_discovery(hub_gateway: HostingGateway, tmp_path: Path) -> None:
    """reference: e2e/roundtrip/clustergateway.go, It("ClusterGateway in the API discovery").

    cluster.core.oam.dev/v1alpha1 lists a resource of kind ClusterGateway."""
    code, out, err = await run_kubectl(hub_gateway, tmp_path, "get", "--raw", "/apis/cluster.core.oam.dev/v1alpha1")
    assert (code, err) == (0, "")
    resources = json.loads(out)["resources"]
    assert [r["name"] for r in resources if r["kind"] == "ClusterGateway"] == ["clustergateways", "clustergateways/health"]


async def test_cluster_gateway_can_be_read_via_get(hub_gateway: HostingGateway, tmp_path: Path) -> None:
    """reference: e2e/roundtrip/clustergateway.go, It("ClusterGateway can be read via GET")."""
    code, out, err = await run_kubectl(hub_gateway, tmp_path, "get", "clustergateway", CLUSTER, "-o", "json")
    assert (code, err) == (0, "")
    body = json.loads(out)
    assert (body["kind"], body["metadata"]["name"]) == ("ClusterGateway", CLUSTER)


async def test_cluster_gateway_can_be_read_via_list(hub_gateway: HostingGateway, tmp_path: Path) -> None:
    """reference: e2e/roundtrip/clustergateway.go, It("ClusterGateway can be read via LIST")."""
    code, out, err = await run_kubectl(hub_gateway, tmp_path, "get", "clustergateways", "-o", "json")
    assert (code, err) == (0, "")
    assert [item["metadata"]["name"] for item in json.loads(out)["items"]] == [CLUSTER]


async def test_cluster_gateway_healthiness_can_be_manipulated(hub_gateway: HostingGateway) -> None:
    """reference: e2e/roundtrip/clustergateway.go, It("ClusterGateway healthiness can be manipulated").

    As the reference's Go client does it: GET the `health` subresource (not healthy yet), set
    `status.healthy` and `status.healthyReason: ConnectionTimeout` on that object and PUT it back;
    the answer is the updated ClusterGateway."""
    health = f"{CLUSTERGATEWAYS}/{CLUSTER}/health"
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with hub_gateway.session() as client:
        async with client.get(health, headers=headers) as resp:
            assert resp.status == 200
            gateway: dict[str, Any] = await resp.json()
        assert gateway["status"] == {"healthy": False}
        gateway["status"] = {"healthy": True, "healthyReason": "ConnectionTimeout"}
        async with client.put(health, json=gateway, headers=headers) as resp:
            assert resp.status == 200
            updated = await resp.json()
    assert (updated["kind"], updated["metadata"]["name"]) == ("ClusterGateway", CLUSTER)
    assert updated["status"] == {"healthy": True, "healthyReason": "ConnectionTimeout"}


async def test_probing_cluster_health_raw(hub_gateway: HostingGateway, probed_member: ProbedMember, tmp_path: Path) -> None:
    """reference: e2e/roundtrip/clustergateway.go, It("Probing cluster health (raw)").

    GET `clustergateways/loopback/proxy/healthz` answers the member's `ok`."""
    code, out, err = await run_kubectl(hub_gateway, tmp_path, "get", "--raw", f"{CLUSTERGATEWAYS}/{CLUSTER}/proxy/healthz")
    assert (code, out, err) == (0, "ok", "")
    assert probed_member.requests[-1].raw_path == "/healthz"


async def test_probing_cluster_health_context(hub_gateway: HostingGateway, probed_member: ProbedMember) -> None:
    """reference: e2e/roundtrip/clustergateway.go, It("Probing cluster health (context)").

    The reference's client-side round-tripper sends every request of a client to the proxy URL of
    the cluster named in its context; the same, as users write it: a client whose server is the
    cluster's proxy URL, here with the `kubernetes` Python client. `/healthz` through it answers the
    member's `ok` (and not the gateway's own /healthz, which answers `ok` too)."""
    prefix = f"{CLUSTERGATEWAYS}/{CLUSTER}/proxy"
    assert await raw_get(hub_gateway, "/healthz", path_prefix=prefix) == (200, "ok")
    assert probed_member.requests[-1].raw_path == "/healthz"
