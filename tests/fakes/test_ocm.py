"""The fake hosting kube-apiserver serves OCM ManagedClusters as a CRD does, checked through real clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tests.fakes.kube_apiserver import FakeKubeAPIServer, kubectl_json
from tests.fakes.kube_store import RESOURCE_NOT_FOUND
from tests.fakes.ocm import GROUP, MANAGED_CLUSTERS_PATH, VERSION, client_config
from tests.fakes.pki import client_ssl_context
from tests.fakes.test_kube_apiserver import forbidden, read_events

pytestmark = pytest.mark.timeout(20)
NOT_FOUND = RESOURCE_NOT_FOUND


@pytest.fixture
def custom(hosting_admin_client: Any) -> Any:
    """A kubernetes-asyncio CustomObjectsApi as the hosting cluster's admin."""
    return client.CustomObjectsApi(hosting_admin_client)


@pytest.fixture
async def admin(kube_apiserver: FakeKubeAPIServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A raw HTTPS session as the hosting cluster's admin."""
    connector = aiohttp.TCPConnector(ssl=client_ssl_context(kube_apiserver.ca_pem))
    headers = {"Authorization": f"Bearer {kube_apiserver.token}"}
    async with aiohttp.ClientSession(connector=connector, base_url=kube_apiserver.url, headers=headers) as session:
        yield session


async def get_json(session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with session.get(path) as resp:
        return resp.status, await resp.json()


def group_names(group_list: dict[str, Any]) -> list[str]:
    return [g["name"] for g in group_list["groups"]]


async def test_without_the_crd_the_api_is_absent_from_discovery_and_its_paths(
    kube_apiserver: FakeKubeAPIServer, admin: aiohttp.ClientSession
) -> None:
    assert GROUP not in group_names((await get_json(admin, "/apis"))[1])
    assert await get_json(admin, f"/apis/{GROUP}/{VERSION}") == (404, NOT_FOUND)
    assert await get_json(admin, MANAGED_CLUSTERS_PATH) == (404, NOT_FOUND)
    assert await get_json(admin, f"{MANAGED_CLUSTERS_PATH}?watch=1") == (404, NOT_FOUND)


async def test_installed_it_is_discovered_and_served_cluster_scoped(
    kube_apiserver: FakeKubeAPIServer, admin: aiohttp.ClientSession, custom: Any
) -> None:
    kube_apiserver.install_managed_cluster_crd()
    _, groups = await get_json(admin, "/apis")
    [ocm] = [g for g in groups["groups"] if g["name"] == GROUP]
    assert ocm["preferredVersion"] == {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}
    _, resources = await get_json(admin, f"/apis/{GROUP}/{VERSION}")
    [resource] = resources["resources"]
    assert (resource["name"], resource["kind"], resource["namespaced"]) == ("managedclusters", "ManagedCluster", False)
    assert {"get", "list", "watch"} <= set(resource["verbs"])

    kube_apiserver.create_managed_cluster("east", url="https://east.invalid:6443", ca_pem=b"PEM", labels={"env": "prod"})
    kube_apiserver.create_managed_cluster("west", labels={"env": "dev"}, accepted=False)
    listed = await custom.list_cluster_custom_object(GROUP, VERSION, "managedclusters", label_selector="env=prod")
    assert listed["kind"] == "ManagedClusterList" and listed["apiVersion"] == f"{GROUP}/{VERSION}"
    [east] = listed["items"]
    assert "namespace" not in east["metadata"]
    assert east["spec"] == {
        "hubAcceptsClient": True,
        "managedClusterClientConfigs": [client_config("https://east.invalid:6443", b"PEM")],
    }
    west = await custom.get_cluster_custom_object(GROUP, VERSION, "managedclusters", "west")
    assert (west["kind"], west["spec"]) == ("ManagedCluster", {"hubAcceptsClient": False})
    # A cluster-scoped resource has no namespaced path, and the core group does not serve it.
    assert await get_json(admin, f"/apis/{GROUP}/{VERSION}/namespaces/default/managedclusters") == (404, NOT_FOUND)
    assert await get_json(admin, "/api/v1/managedclusters") == (404, NOT_FOUND)


async def test_watch_events_bookmarks_and_410_after_compaction(kube_apiserver: FakeKubeAPIServer, custom: Any) -> None:
    kube_apiserver.install_managed_cluster_crd()
    kube_apiserver.create_managed_cluster("east", url="https://east.invalid")
    since = kube_apiserver.resource_version
    resp = await custom.list_cluster_custom_object(
        GROUP,
        VERSION,
        "managedclusters",
        watch=True,
        resource_version=str(since),
        allow_watch_bookmarks=True,
        _preload_content=False,
    )
    kube_apiserver.update_managed_cluster("east", url="https://moved.invalid")
    kube_apiserver.delete_managed_cluster("east")
    modified, deleted = await read_events(resp, 2)
    assert modified["type"] == "MODIFIED" and modified["object"]["kind"] == "ManagedCluster"
    assert modified["object"]["spec"]["managedClusterClientConfigs"] == [{"url": "https://moved.invalid"}]
    assert deleted["type"] == "DELETED" and deleted["object"]["metadata"]["resourceVersion"] == str(
        kube_apiserver.resource_version
    )
    (bookmark,) = await read_events(resp, 1)
    assert bookmark["type"] == "BOOKMARK" and bookmark["object"]["apiVersion"] == f"{GROUP}/{VERSION}"
    resp.close()
    kube_apiserver.compact()
    resp = await custom.list_cluster_custom_object(
        GROUP, VERSION, "managedclusters", watch=True, resource_version=str(since), _preload_content=False
    )
    [error] = await read_events(resp, 1)
    assert (error["type"], error["object"]["code"], error["object"]["reason"]) == ("ERROR", 410, "Expired")
    resp.close()


async def test_uninstalling_deletes_the_objects_then_ends_watches_and_the_api(
    kube_apiserver: FakeKubeAPIServer, admin: aiohttp.ClientSession, custom: Any
) -> None:
    kube_apiserver.install_managed_cluster_crd()
    kube_apiserver.create_managed_cluster("east", url="https://east.invalid")
    resp = await custom.list_cluster_custom_object(GROUP, VERSION, "managedclusters", watch=True, _preload_content=False)
    [added] = await read_events(resp, 1)
    assert added["type"] == "ADDED"
    kube_apiserver.uninstall_managed_cluster_crd()
    [deleted] = await read_events(resp, 1)
    assert (deleted["type"], deleted["object"]["metadata"]["name"]) == ("DELETED", "east")
    async with asyncio.timeout(3):
        assert await resp.content.read() == b""  # then the stream ends
    resp.close()
    assert GROUP not in group_names((await get_json(admin, "/apis"))[1])
    assert await get_json(admin, MANAGED_CLUSTERS_PATH) == (404, NOT_FOUND)
    with pytest.raises(ApiException) as err:
        await custom.get_cluster_custom_object(GROUP, VERSION, "managedclusters", "east")
    assert err.value.status == 404


async def test_base_rbac_refuses_the_gateway_managedclusters(kube_apiserver: FakeKubeAPIServer) -> None:
    kube_apiserver.refusals_expected = True
    kube_apiserver.install_managed_cluster_crd()
    connector = aiohttp.TCPConnector(ssl=client_ssl_context(kube_apiserver.ca_pem))
    headers = {"Authorization": f"Bearer {kube_apiserver.gateway_token}"}
    async with aiohttp.ClientSession(connector=connector, base_url=kube_apiserver.url, headers=headers) as gateway:
        status, discovery = await get_json(gateway, f"/apis/{GROUP}/{VERSION}")
        assert status == 200 and discovery["resources"][0]["name"] == "managedclusters"  # discovery is public
        denied = (
            f'User "{kube_apiserver.gateway_user.name}" cannot list resource "managedclusters" '
            f'in API group "{GROUP}" at the cluster scope'
        )
        assert await get_json(gateway, MANAGED_CLUSTERS_PATH) == (
            403,
            forbidden(f"managedclusters.{GROUP} is forbidden: {denied}", group=GROUP, kind="managedclusters"),
        )


async def test_kubectl_gets_managedclusters_through_discovery(kube_apiserver: FakeKubeAPIServer, tmp_path: Path) -> None:
    kube_apiserver.install_managed_cluster_crd()
    kube_apiserver.create_managed_cluster("east", url="https://east.invalid")
    kubeconfig = kube_apiserver.write_kubeconfig(tmp_path / "kubeconfig", token=kube_apiserver.token)
    listed = await kubectl_json(kubeconfig, "get", "managedclusters")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["east"]
