"""The reference's benchmark e2e suite (e2e/benchmark/configmap.go), restated as bounded checks: the
same three loops through the proxy with the `kubernetes` Python client (its host the cluster's proxy
URL), each iteration within the reference's bound of 15 s. The reference repeats them 100 and 1000
times against a real cluster; fewer here keeps the test within seconds on a shared machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import kubernetes
import pytest

from tests.compat.conftest import ProbedMember, kubernetes_client
from tests.fakes.hosting import CLUSTERGATEWAYS, HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer

pytestmark = pytest.mark.timeout(60)

BOUND = 15.0  # seconds per iteration, the reference's
PROXY = f"{CLUSTERGATEWAYS}/loopback/proxy"


@pytest.fixture
async def hub_gateway(tmp_path: Path, hub: FakeKubeAPIServer, probed_member: ProbedMember) -> AsyncIterator[HostingGateway]:
    """The gateway in hosting mode with one cluster, `loopback`, the probed member."""
    add_cluster(hub, "loopback", probed_member.url, token=probed_member.token, ca_pem=probed_member.ca_pem)
    async with hosting_gateway(tmp_path, hub) as gw:
        yield gw


async def timed(iterations: int, step: Callable[[kubernetes.client.CoreV1Api], None], gw: HostingGateway) -> list[float]:
    """Run `step` `iterations` times through the proxy (one client, as the reference's); each one's duration."""

    def run() -> list[float]:
        with kubernetes_client(gw, PROXY) as api:
            core = kubernetes.client.CoreV1Api(api)
            durations = []
            for _ in range(iterations):
                start = time.monotonic()
                step(core)
                durations.append(time.monotonic() - start)
            return durations

    return await asyncio.to_thread(run)


async def test_create_update_delete_a_configmap(hub_gateway: HostingGateway, probed_member: ProbedMember) -> None:
    """reference: e2e/benchmark/configmap.go, Measure("it should do something hard efficiently").

    Create a ConfigMap (version 1), update it to version 2, delete it: 10 times."""

    def create_update_delete(core: kubernetes.client.CoreV1Api) -> None:
        body = kubernetes.client.V1ConfigMap(
            metadata=kubernetes.client.V1ObjectMeta(name="cluster-gateway-e2e"), data={"version": "1"}
        )
        created = core.create_namespaced_config_map("default", body)
        created.data = {"version": "2"}
        assert core.replace_namespaced_config_map("cluster-gateway-e2e", "default", created).data == {"version": "2"}
        core.delete_namespaced_config_map("cluster-gateway-e2e", "default")

    durations = await timed(10, create_update_delete, hub_gateway)
    assert max(durations) < BOUND
    methods = [r.method for r in probed_member.requests if "/configmaps" in r.raw_path]
    assert methods == ["POST", "PUT", "DELETE"] * 10


async def test_get_namespace_kube_system_from_managed_cluster(hub_gateway: HostingGateway, probed_member: ProbedMember) -> None:
    """reference: e2e/benchmark/configmap.go, Measure("get namespace kube-system from managed cluster")."""

    def get_kube_system(core: kubernetes.client.CoreV1Api) -> None:
        metadata = core.read_namespace("kube-system").metadata
        assert metadata is not None and metadata.name == "kube-system"

    durations = await timed(50, get_kube_system, hub_gateway)
    assert max(durations) < BOUND
    assert len(probed_member.requests) == 50


async def test_list_namespace_from_managed_cluster(hub_gateway: HostingGateway, probed_member: ProbedMember) -> None:
    """reference: e2e/benchmark/configmap.go, Measure("list namespace from managed cluster").

    LIST with `limit=100`; the limit reaches the member."""

    def list_namespaces(core: kubernetes.client.CoreV1Api) -> None:
        names = [ns.metadata.name if ns.metadata else None for ns in core.list_namespace(limit=100).items]
        assert names == ["default", "kube-system"]

    durations = await timed(50, list_namespaces, hub_gateway)
    assert max(durations) < BOUND
    assert {r.query_string for r in probed_member.requests} == {"limit=100"}
