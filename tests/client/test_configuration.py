"""member_configuration: the real `kubernetes` and `kubernetes_asyncio` packages reach a member through the hub,
as the hub's user (token, client certificate, exec plugin), and keep a refreshing token fresh."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_asyncio
import pytest

from gateway_apiserver.client import InvalidClusterName, list_cluster_gateways, member_configuration, member_configuration_asyncio

from .conftest import Hub

PROXY = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{}/proxy"


def sync_hub(kubeconfig: Path) -> kubernetes.client.Configuration:
    """The hub's Configuration as the official package loads it (the refresh hook included)."""
    hub = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=hub)
    return hub


def sync_configmaps(configuration: kubernetes.client.Configuration, times: int = 1) -> list[list[str]]:
    """The ConfigMap names in `default`, listed `times` times with one ApiClient (runs in a thread)."""
    with kubernetes.client.ApiClient(configuration) as api:
        core = kubernetes.client.CoreV1Api(api)
        return [[_name(cm) for cm in core.list_namespaced_config_map("default").items] for _ in range(times)]


async def async_hub(kubeconfig: Path) -> tuple[kubernetes_asyncio.client.Configuration, Any]:
    """The hub's Configuration as kubernetes_asyncio loads it, and the loader (for refresh_token)."""
    hub = kubernetes_asyncio.client.Configuration()
    loader = await kubernetes_asyncio.config.load_kube_config(config_file=str(kubeconfig), client_configuration=hub)
    return hub, loader


async def async_configmaps(configuration: kubernetes_asyncio.client.Configuration, times: int = 1) -> list[list[str]]:
    async with kubernetes_asyncio.client.ApiClient(configuration) as api:
        core = kubernetes_asyncio.client.CoreV1Api(api)
        return [[_name(cm) for cm in (await core.list_namespaced_config_map("default")).items] for _ in range(times)]


def _name(obj: Any) -> str:
    return str(obj.metadata.name)


USERS: dict[str, Callable[[Hub], tuple[Path, str]]] = {
    "token": lambda hub: (hub.token_kubeconfig(), "alice"),
    "client-certificate": lambda hub: (hub.certificate_kubeconfig(), "carol"),
}


# --- the bug this package exists for ----------------------------------------------------------------


async def test_appending_the_proxy_path_to_host_sends_requests_to_the_hub_for_token_users(hub: Hub) -> None:
    """The recipe the README used to show: `load_kube_config`'s refresh hook puts the hub's server back into
    `host` before each request of a token user, so the request is the hub's own /api/v1/... A real hub
    answers with its own ConfigMaps (the wrong cluster) or 404; this one is refused by the hub's RBAC."""
    configuration = sync_hub(hub.token_kubeconfig())
    configuration.host += PROXY.format("m1")

    with pytest.raises(kubernetes.client.ApiException) as refused:
        await asyncio.to_thread(sync_configmaps, configuration)

    status = json.loads(refused.value.body or "")
    assert (refused.value.status, status["reason"]) == (403, "Forbidden")
    assert status["message"] == (
        'configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" in the namespace "default"'
    )
    assert hub.proxy_reviews() == []  # never reached the proxy subresource
    assert not hub.members["m1"].requests_to("/api/v1/namespaces/default/configmaps")


# --- every kind of hub user, both packages -------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(USERS))
async def test_official_package_reaches_the_member_as_the_hub_user(hub: Hub, kind: str) -> None:
    kubeconfig, user = USERS[kind](hub)
    configuration = member_configuration(sync_hub(kubeconfig), "m1")

    listed = await asyncio.to_thread(sync_configmaps, configuration, 2)

    assert listed == [["m1-a", "m1-b"]] * 2  # twice: the refresh hook runs before every request
    assert configuration.host == hub.gateway.url + PROXY.format("m1")
    assert hub.proxy_reviews() == [(user, "m1")]  # the hub authorized the hub user (then cached the answer)
    assert len(hub.members["m1"].requests_to("/api/v1/namespaces/default/configmaps")) == 2


@pytest.mark.parametrize("kind", sorted(USERS))
async def test_asyncio_package_reaches_the_member_as_the_hub_user(hub: Hub, kind: str) -> None:
    kubeconfig, user = USERS[kind](hub)
    hub_configuration, _ = await async_hub(kubeconfig)

    listed = await async_configmaps(member_configuration_asyncio(hub_configuration, "m2"), 2)

    assert listed == [["m2-a", "m2-b"]] * 2
    assert hub.proxy_reviews() == [(user, "m2")]


async def test_the_hub_configuration_is_left_as_it_was(hub: Hub) -> None:
    hub_configuration = sync_hub(hub.token_kubeconfig())
    m1, m2 = member_configuration(hub_configuration, "m1"), member_configuration(hub_configuration, "m2")

    assert (await asyncio.to_thread(sync_configmaps, m1), await asyncio.to_thread(sync_configmaps, m2)) == (
        [["m1-a", "m1-b"]],
        [["m2-a", "m2-b"]],
    )
    assert hub_configuration.host == hub.gateway.url
    with kubernetes.client.ApiClient(hub_configuration) as api:  # the hub itself still answers as the hub
        assert (await asyncio.to_thread(list_cluster_gateways, api)).names() == ["m1", "m2"]


# --- tokens that refresh ----------------------------------------------------------------------------------


async def test_official_package_runs_an_expiring_exec_plugin_again_and_the_member_gets_the_new_token(hub: Hub) -> None:
    plugin = hub.exec_user()
    configuration = member_configuration(sync_hub(hub.kubeconfig("exec", plugin.user())), "m1")
    assert plugin.runs == 1  # load_kube_config ran it

    listed = await asyncio.to_thread(sync_configmaps, configuration, 3)

    assert listed == [["m1-a", "m1-b"]] * 3
    # The token expires within the package's five-minute margin, so every request ran the plugin again,
    # and each request reached the member as the user of the newest token.
    assert plugin.runs == 4
    assert hub.proxy_reviews() == [(plugin.user_name(run), "m1") for run in (2, 3, 4)]


async def test_asyncio_refresh_token_loop_on_the_hub_refreshes_every_member_configuration(hub: Hub) -> None:
    plugin = hub.exec_user()
    hub_configuration, loader = await async_hub(hub.kubeconfig("exec", plugin.user()))
    member = member_configuration_asyncio(hub_configuration, "m1")
    assert await async_configmaps(member) == [["m1-a", "m1-b"]]

    first_token = hub_configuration.api_key["BearerToken"]
    refresher = asyncio.create_task(kubernetes_asyncio.config.refresh_token(loader, hub_configuration, interval=0.05))
    try:
        for _ in range(200):  # the loop runs the plugin (its token expires within the package's margin) and stores the token
            if hub_configuration.api_key["BearerToken"] != first_token:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("kubernetes_asyncio's refresh_token loop never stored a new token in the hub Configuration")
        refreshed_user = plugin.user_name(int(hub_configuration.api_key["BearerToken"].rsplit("-", 1)[1]))
        refresher.cancel()
        assert await async_configmaps(member) == [["m1-a", "m1-b"]]
    finally:
        refresher.cancel()

    assert hub.proxy_reviews() == [(plugin.user_name(1), "m1"), (refreshed_user, "m1")]


async def test_an_asynchronous_hub_hook_is_awaited_and_its_token_used(hub: Hub) -> None:
    hub_configuration, _ = await async_hub(hub.token_kubeconfig())
    calls: list[str] = []

    async def rotate(configuration: kubernetes_asyncio.client.Configuration) -> None:
        calls.append(str(configuration.host))
        configuration.api_key["BearerToken"] = "Bearer carl-token"

    hub.gateway.api.users["carl-token"] = {"username": "carl", "uid": "uid-carl", "groups": ["clients"]}
    hub_configuration.refresh_api_key_hook = rotate

    assert await async_configmaps(member_configuration_asyncio(hub_configuration, "m1")) == [["m1-a", "m1-b"]]
    assert calls == [hub.gateway.url]  # the hub's hook ran on the hub's Configuration
    assert hub.proxy_reviews() == [("carl", "m1")]


# --- the cluster name ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "..", "m1/../../api/v1", "m1/proxy", "M1", "m1?x=1", "%2e%2e", "m1#", "a" * 254, "m1\n"])
def test_a_name_that_could_bend_the_path_is_refused_before_anything_is_copied(name: str) -> None:
    hub = kubernetes.client.Configuration(host="https://hub.invalid")
    with pytest.raises(InvalidClusterName) as refused:
        member_configuration(hub, name)
    assert str(refused.value).startswith("invalid cluster name" if name else "cluster name must be a non-empty string")
    with pytest.raises(InvalidClusterName):
        member_configuration_asyncio(kubernetes_asyncio.client.Configuration(host="https://hub.invalid"), name)


def test_a_hub_path_prefix_is_kept() -> None:
    hub = kubernetes.client.Configuration(host="https://rancher.invalid/k8s/clusters/c-abc/")
    assert member_configuration(hub, "m1").host == "https://rancher.invalid/k8s/clusters/c-abc" + PROXY.format("m1")


async def test_an_unknown_cluster_is_the_hubs_404_status(hub: Hub) -> None:
    configuration = member_configuration(sync_hub(hub.token_kubeconfig()), "nope")

    with pytest.raises(kubernetes.client.ApiException) as refused:
        await asyncio.to_thread(sync_configmaps, configuration)

    status = json.loads(refused.value.body or "")
    assert (refused.value.status, status["kind"], status["reason"], status["code"]) == (404, "Status", "NotFound", 404)
    assert status["message"].startswith("no such cluster nope: ")
