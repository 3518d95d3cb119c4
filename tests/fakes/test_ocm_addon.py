"""The fake hosting kube-apiserver serves the OCM add-on kinds as a hub does: namespaced and cluster-scoped
custom resources, status subresources, resourceVersion conflicts, watches and deletion with finalizers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.ocm_addon import install_addon_manager_kinds, managed_cluster_addon

ADDONS = ("addon.open-cluster-management.io", "v1alpha1")
MSAS = ("authentication.open-cluster-management.io", "v1beta1", "managedserviceaccounts")


@pytest.fixture
def hub_api(kube_apiserver: FakeKubeAPIServer) -> FakeKubeAPIServer:
    install_addon_manager_kinds(kube_apiserver)
    return kube_apiserver


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body or b"{}")
    return body


async def test_a_managed_cluster_addon_lives_in_its_cluster_namespace(
    hub_api: FakeKubeAPIServer, hosting_admin_client: Any
) -> None:
    custom = CustomObjectsApi(hosting_admin_client)
    created = await custom.create_namespaced_custom_object(
        *ADDONS, "cluster1", "managedclusteraddons", managed_cluster_addon("cluster1")
    )
    assert created["kind"] == "ManagedClusterAddOn"
    assert created["metadata"]["namespace"] == "cluster1"
    assert created["metadata"]["generation"] == 1
    listed = await custom.list_cluster_custom_object(*ADDONS, "managedclusteraddons")
    assert [i["metadata"]["namespace"] for i in listed["items"]] == ["cluster1"]
    with pytest.raises(ApiException) as caught:
        await custom.get_namespaced_custom_object(*ADDONS, "cluster2", "managedclusteraddons", "cluster-gateway")
    assert caught.value.status == 404
    assert status_of(caught.value)["message"] == 'managedclusteraddons "cluster-gateway" not found'


async def test_status_is_written_only_through_the_status_subresource(
    hub_api: FakeKubeAPIServer, hosting_admin_client: Any
) -> None:
    custom = CustomObjectsApi(hosting_admin_client)
    addon = await custom.create_namespaced_custom_object(*ADDONS, "c1", "managedclusteraddons", managed_cluster_addon("c1"))
    condition = {"type": "Available", "status": "True", "reason": "SuccessfullyProbedHealthz", "message": "Returned OK"}
    ignored = await custom.replace_namespaced_custom_object(
        *ADDONS, "c1", "managedclusteraddons", "cluster-gateway", {**addon, "status": {"conditions": [condition]}}
    )
    assert "status" not in ignored
    written = await custom.replace_namespaced_custom_object_status(
        *ADDONS,
        "c1",
        "managedclusteraddons",
        "cluster-gateway",
        {**ignored, "spec": {"changed": True}, "status": {"conditions": [condition]}},
    )
    assert written["status"] == {"conditions": [condition]}
    assert written["spec"] == addon["spec"]  # a status write leaves the spec alone
    assert written["metadata"]["generation"] == 1


async def test_a_stale_resource_version_is_a_conflict(hub_api: FakeKubeAPIServer, hosting_admin_client: Any) -> None:
    custom = CustomObjectsApi(hosting_admin_client)
    addon = await custom.create_namespaced_custom_object(*ADDONS, "c1", "managedclusteraddons", managed_cluster_addon("c1"))
    await custom.replace_namespaced_custom_object(
        *ADDONS, "c1", "managedclusteraddons", "cluster-gateway", {**addon, "spec": {"a": 1}}
    )
    with pytest.raises(ApiException) as caught:
        await custom.replace_namespaced_custom_object_status(
            *ADDONS, "c1", "managedclusteraddons", "cluster-gateway", {**addon, "status": {"conditions": []}}
        )
    assert caught.value.status == 409
    assert status_of(caught.value)["reason"] == "Conflict"
    assert status_of(caught.value)["message"] == (
        'Operation cannot be fulfilled on managedclusteraddons "cluster-gateway": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


async def test_an_object_with_finalizers_stays_until_they_are_removed(
    hub_api: FakeKubeAPIServer, hosting_admin_client: Any
) -> None:
    custom = CustomObjectsApi(hosting_admin_client)
    body = {"metadata": {"name": "gw", "namespace": "c1", "finalizers": ["example.com/cleanup"]}, "spec": {}}
    await custom.create_namespaced_custom_object(*MSAS[:2], "c1", MSAS[2], body)
    answered = await custom.delete_namespaced_custom_object(*MSAS[:2], "c1", MSAS[2], "gw")
    assert answered["kind"] == "ManagedServiceAccount"
    assert answered["metadata"]["deletionTimestamp"]
    marked = await custom.get_namespaced_custom_object(*MSAS[:2], "c1", MSAS[2], "gw")
    assert marked["metadata"]["deletionTimestamp"] == answered["metadata"]["deletionTimestamp"]
    marked["metadata"]["finalizers"] = []
    await custom.replace_namespaced_custom_object(*MSAS[:2], "c1", MSAS[2], "gw", marked)
    with pytest.raises(ApiException) as caught:
        await custom.get_namespaced_custom_object(*MSAS[:2], "c1", MSAS[2], "gw")
    assert caught.value.status == 404


async def test_a_watch_sees_the_deletion_mark_then_the_deletion(hub_api: FakeKubeAPIServer, hosting_admin_client: Any) -> None:
    custom = CustomObjectsApi(hosting_admin_client)
    body = {"metadata": {"name": "gw", "namespace": "c1", "finalizers": ["example.com/cleanup"]}, "spec": {}}
    created = await custom.create_namespaced_custom_object(*MSAS[:2], "c1", MSAS[2], body)
    resp = await custom.list_cluster_custom_object(
        *MSAS[:2], MSAS[2], watch=True, resource_version=created["metadata"]["resourceVersion"], _preload_content=False
    )
    await custom.delete_namespaced_custom_object(*MSAS[:2], "c1", MSAS[2], "gw")
    hub_api.store.merge_patch(MSAS[2], "c1", "gw", {"metadata": {"finalizers": None}})
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while len(events) < 2:
            line = await resp.content.readline()
            events.append(json.loads(line))
    resp.release()
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert events[0]["object"]["metadata"]["deletionTimestamp"]


async def test_a_kind_without_a_status_subresource_has_no_status_path(
    hub_api: FakeKubeAPIServer, hosting_admin_client: Any
) -> None:
    hub_api.create_secret("ns", "s")
    with pytest.raises(ApiException) as caught:
        await hosting_admin_client.call_api(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/x/status",
            "GET",
            auth_settings=["BearerToken"],
            response_types_map={},
        )
    assert caught.value.status == 404
