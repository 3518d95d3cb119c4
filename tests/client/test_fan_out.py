"""fan_out: one call on many members through the hub, concurrently and bounded, every cluster's outcome reported.

The fleet: m1 and m2 answer; `down` has nothing listening; `forbidden` is refused by the hub's RBAC;
`slow` accepts and never answers. All but m2 are labelled env=prod.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import kubernetes_asyncio
import pytest

from gateway_apiserver.client import ClusterTimeout, FanOutError, InvalidClusterName, fan_out, fan_out_calls
from tests.fakes.hosting import hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.member_apiserver import FakeMemberAPIServer

from .conftest import Hub, add_member, client_policy


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def fleet(tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]) -> AsyncIterator[Hub]:
    kube_apiserver.policy = client_policy(proxy_names=("m1", "m2", "down", "slow"))
    m1, m2 = members["m1"], members["m2"]
    async with FakeMemberAPIServer() as slow:
        add_member(kube_apiserver, "m1", m1.url, token=m1.token, ca_pem=m1.ca_pem, env="prod")
        add_member(kube_apiserver, "m2", m2.url, token=m2.token, ca_pem=m2.ca_pem, env="dev")
        add_member(kube_apiserver, "down", f"https://127.0.0.1:{_free_port()}", token="t", ca_pem=m1.ca_pem, env="prod")
        add_member(kube_apiserver, "forbidden", m1.url, token=m1.token, ca_pem=m1.ca_pem, env="prod")
        add_member(kube_apiserver, "slow", slow.url, token=slow.token, ca_pem=slow.ca_pem, env="prod")
        slow.hang()
        try:
            async with hosting_gateway(tmp_path, kube_apiserver) as gateway:
                yield Hub(gateway, {**members, "slow": slow}, tmp_path)
        finally:
            slow.recover()


async def hub_configuration(hub: Hub) -> kubernetes_asyncio.client.Configuration:
    configuration = kubernetes_asyncio.client.Configuration()
    await kubernetes_asyncio.config.load_kube_config(config_file=str(hub.token_kubeconfig()), client_configuration=configuration)
    return configuration


async def configmap_names(api: kubernetes_asyncio.client.ApiClient) -> list[str]:
    answer = await kubernetes_asyncio.client.CoreV1Api(api).list_namespaced_config_map("default")
    return [str(cm.metadata.name) for cm in answer.items]


async def test_a_label_selector_reaches_every_matching_cluster_and_reports_each_failure(fleet: Hub) -> None:
    started = time.monotonic()
    result = await fan_out(await hub_configuration(fleet), configmap_names, label_selector="env=prod", timeout=1.5)
    took = time.monotonic() - started

    assert [o.cluster for o in result.outcomes] == ["down", "forbidden", "m1", "slow"]  # the hub's order; m2 is env=dev
    assert result.values == {"m1": ["m1-a", "m1-b"]}
    assert not result.complete
    messages = {o.cluster: o.error_message for o in result.outcomes if not o.ok}
    assert messages["forbidden"] == (
        '403: clustergateways.cluster.core.oam.dev "forbidden" is forbidden: User "alice" cannot get resource '
        '"clustergateways/proxy" in API group "cluster.core.oam.dev" at the cluster scope'
    )
    down = base64.b64decode(fleet.gateway.api.store.get("secrets", "vela-system", "down")["data"]["endpoint"]).decode()
    assert messages["down"] == f'503: cluster "down" unreachable: connecting to {down[8:]} failed: connection refused'
    assert messages["slow"] == "cluster 'slow' did not answer within 1.5 s"
    assert isinstance(result.errors["slow"], ClusterTimeout)
    # The slow cluster held only its own slot: the others finished long before its timeout.
    fast = [o.seconds for o in result.outcomes if o.cluster != "slow"]
    assert max(fast) < 1.0, fast
    assert 1.5 <= took < 5


async def test_clusters_by_name_are_called_once_each_and_a_bad_name_is_that_clusters_error(fleet: Hub) -> None:
    result = await fan_out(await hub_configuration(fleet), configmap_names, clusters=["m2", "m1", "m2", "../m1"])

    assert [o.cluster for o in result.outcomes] == ["m2", "m1", "../m1"]
    assert result.values == {"m2": ["m2-a", "m2-b"], "m1": ["m1-a", "m1-b"]}
    assert isinstance(result.errors["../m1"], InvalidClusterName)
    assert len(fleet.members["m2"].requests_to("/api/v1/namespaces/default/configmaps")) == 1
    with pytest.raises(FanOutError) as failed:
        result.raise_for_errors()
    assert str(failed.value).startswith("../m1: invalid cluster name '../m1': a lowercase RFC 1123 subdomain")


async def test_a_hub_that_cannot_list_clusters_raises_instead_of_answering_for_no_cluster(fleet: Hub) -> None:
    configuration = await hub_configuration(fleet)
    fleet.gateway.api.users.pop("alice-token")  # alice's token no longer authenticates at the hub
    fleet.gateway.api.users["other-token"] = {"username": "other", "uid": "o", "groups": []}
    configuration.api_key["BearerToken"] = "Bearer other-token"  # a user who may not list ClusterGateways

    with pytest.raises(kubernetes_asyncio.client.ApiException) as refused:
        await fan_out(configuration, configmap_names, label_selector="env=prod")
    assert refused.value.status == 403


async def test_clusters_and_a_selector_together_are_refused() -> None:
    configuration = kubernetes_asyncio.client.Configuration(host="https://hub.invalid")
    with pytest.raises(ValueError, match="give clusters or label_selector, not both"):
        await fan_out(configuration, configmap_names, clusters=["m1"], label_selector="env=prod")


# --- the bound and the timeout, with plain coroutines ---------------------------------------------------


async def test_no_more_calls_run_at_once_than_the_bound() -> None:
    running, most = 0, 0

    async def call(cluster: str) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1
        return cluster.upper()

    result = await fan_out_calls([f"c{i}" for i in range(12)], call, concurrency=3)

    assert most == 3
    assert result.values == {f"c{i}": f"C{i}" for i in range(12)}


async def test_the_timeout_counts_from_each_calls_start_not_from_its_wait_for_a_slot() -> None:
    async def call(cluster: str) -> str:
        await asyncio.sleep(0.2)
        return cluster

    result = await fan_out_calls(["a", "b", "c"], call, concurrency=1, timeout=0.5)  # 0.6 s in all, 0.2 s each

    assert result.complete and list(result.values) == ["a", "b", "c"]


async def test_an_exception_is_that_clusters_outcome_and_cancellation_still_propagates() -> None:
    async def call(cluster: str) -> int:
        if cluster == "bad":
            raise RuntimeError("member said no")
        await asyncio.sleep(10 if cluster == "hang" else 0)
        return 1

    result = await fan_out_calls(["ok", "bad"], call)
    assert (result.values, result.outcomes[1].error_message) == ({"ok": 1}, "member said no")

    task = asyncio.create_task(fan_out_calls(["hang"], call))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    ("concurrency", "timeout", "message"),
    [(0, 1.0, "concurrency must be at least 1, not 0"), (1, 0.0, "timeout must be a positive number of seconds, not 0.0")],
)
async def test_a_bound_or_timeout_that_could_never_work_is_refused(concurrency: int, timeout: float, message: str) -> None:
    async def call(cluster: str) -> None:
        return None

    with pytest.raises(ValueError) as refused:
        await fan_out_calls(["a"], call, concurrency=concurrency, timeout=timeout)
    assert str(refused.value) == message
