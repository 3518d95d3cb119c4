"""Typed list/get/watch of the hub's ClusterGateways and VirtualClusters with both client packages."""

from __future__ import annotations

import asyncio

import kubernetes
import kubernetes_asyncio
import pytest

from gateway_apiserver.client import (
    ClusterGateway,
    VirtualCluster,
    get_cluster_gateway,
    get_cluster_gateway_asyncio,
    get_virtual_cluster_asyncio,
    list_cluster_gateways,
    list_cluster_gateways_asyncio,
    list_virtual_clusters,
    list_virtual_clusters_asyncio,
    watch_cluster_gateways,
    watch_cluster_gateways_asyncio,
    watch_virtual_clusters_asyncio,
)

from .conftest import Hub, add_member


def sync_api(hub: Hub) -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(hub.token_kubeconfig()), client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


async def async_api(hub: Hub) -> kubernetes_asyncio.client.ApiClient:
    configuration = kubernetes_asyncio.client.Configuration()
    await kubernetes_asyncio.config.load_kube_config(config_file=str(hub.token_kubeconfig()), client_configuration=configuration)
    return kubernetes_asyncio.client.ApiClient(configuration)


async def test_official_package_lists_and_gets_typed_cluster_gateways(hub: Hub) -> None:
    with sync_api(hub) as api:
        every = await asyncio.to_thread(list_cluster_gateways, api)
        prod = await asyncio.to_thread(list_cluster_gateways, api, label_selector="env=prod")
        m2 = await asyncio.to_thread(get_cluster_gateway, api, "m2")
        with pytest.raises(kubernetes.client.ApiException) as missing:
            await asyncio.to_thread(get_cluster_gateway, api, "nope")

    assert [gw.name for gw in every] == ["m1", "m2"]
    assert [gw.name for gw in prod] == ["m1"]
    assert isinstance(m2, ClusterGateway)
    assert (m2.endpoint, m2.endpoint_type, m2.credential_type, m2.healthy) == (
        hub.members["m2"].url,
        "Const",
        "ServiceAccountToken",
        False,
    )
    assert m2.labels["env"] == "dev"
    assert m2.raw["kind"] == "ClusterGateway"
    assert missing.value.status == 404


async def test_official_package_lists_virtual_clusters_local_included(hub: Hub) -> None:
    with sync_api(hub) as api:
        clusters = await asyncio.to_thread(list_virtual_clusters, api)
    assert [vc.name for vc in clusters] == ["local", "m1", "m2"]
    assert all(isinstance(vc, VirtualCluster) for vc in clusters)
    assert (clusters[1].endpoint, clusters[1].credential_type, clusters[1].accepted) == (
        hub.members["m1"].url,
        "ServiceAccountToken",
        True,
    )


async def test_official_package_watch_starts_with_the_list_then_follows_changes(hub: Hub) -> None:
    with sync_api(hub) as api:
        events = watch_cluster_gateways(api, timeout_seconds=10)
        first = [await asyncio.to_thread(next, events) for _ in range(2)]
        add_member(hub.gateway.api, "m3", "https://m3.invalid", token="t", ca_pem=hub.members["m1"].ca_pem, env="prod")
        added = await asyncio.to_thread(next, events)
        while added.type == "BOOKMARK":
            added = await asyncio.to_thread(next, events)
        events.close()

    assert [(e.type, e.object.name if e.object else None) for e in first] == [("ADDED", "m1"), ("ADDED", "m2")]
    assert added.type == "ADDED" and added.object is not None and added.object.name == "m3"
    assert added.resource_version == added.object.resource_version


async def test_asyncio_package_lists_gets_and_watches(hub: Hub) -> None:
    async with await async_api(hub) as api:
        assert [gw.name for gw in await list_cluster_gateways_asyncio(api, label_selector="env=dev")] == ["m2"]
        assert (await get_cluster_gateway_asyncio(api, "m1")).endpoint == hub.members["m1"].url
        assert [vc.name for vc in await list_virtual_clusters_asyncio(api)] == ["local", "m1", "m2"]
        assert (await get_virtual_cluster_asyncio(api, "local")).credential_type == "Internal"
        listed = await list_cluster_gateways_asyncio(api)

        seen: list[tuple[str, str]] = []

        async def follow() -> None:
            async for event in watch_cluster_gateways_asyncio(api, resource_version=listed.resource_version, timeout_seconds=10):
                if event.object is not None:
                    seen.append((event.type, event.object.name))
                    return

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        hub.gateway.api.delete_secret("vela-system", "m2")
        await asyncio.wait_for(task, 10)
    assert seen == [("DELETED", "m2")]


async def test_asyncio_package_watches_virtual_clusters(hub: Hub) -> None:
    async with await async_api(hub) as api:
        listed = await list_virtual_clusters_asyncio(api)
        events = watch_virtual_clusters_asyncio(api, resource_version=listed.resource_version, timeout_seconds=10)
        add_member(hub.gateway.api, "m3", "https://m3.invalid", token="t", ca_pem=hub.members["m1"].ca_pem)
        async with asyncio.timeout(10):
            event = await anext(events)
            while event.object is None:  # bookmarks
                event = await anext(events)
        await events.aclose()
    assert (event.type, event.object.name, event.object.endpoint) == ("ADDED", "m3", "https://m3.invalid")
