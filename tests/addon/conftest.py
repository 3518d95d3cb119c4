"""An OCM hub for the add-on manager: the fake hosting kube-apiserver serving the OCM add-on kinds and
the workload kinds, authorizing the manager with exactly deploy/addon-manager/rbac.yaml."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio.client import ApiClient, Configuration

from gateway_apiserver.addon.kube import Kube
from gateway_apiserver.registry.informer import load_hosting_config
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_rbac import deploy_documents, deploy_rbac, service_account_user
from tests.fakes.ocm_addon import install_addon_manager_kinds

MANAGER_RBAC = Path(__file__).resolve().parents[2] / "deploy" / "addon-manager" / "rbac.yaml"


def manager_documents() -> list[dict[str, object]]:
    """The manifests of deploy/addon-manager/rbac.yaml."""
    return [d for d in yaml.safe_load_all(MANAGER_RBAC.read_text()) if d]


@dataclass
class Hub:
    """The hub's API server, the manager's kubeconfig (its ServiceAccount token) and the manager's user name."""

    api: FakeKubeAPIServer
    kubeconfig: Path
    manager_user: str
    gateway_user: str = ""  # set by apply_installed_rbac

    def apply_installed_rbac(self) -> str:
        """Authorize from now on by the RBAC the manager installed too (as a hub does); a token of the
        gateway's ServiceAccount `cluster-gateway`, which the manager created."""
        kinds = {
            "roles": "Role",
            "rolebindings": "RoleBinding",
            "clusterroles": "ClusterRole",
            "clusterrolebindings": "ClusterRoleBinding",
        }
        installed = [
            {"kind": kind, **obj} for resource, kind in kinds.items() for obj in self.api.store.objects[resource].values()
        ]
        self.api.rbac = deploy_rbac([*deploy_documents(), *manager_documents(), *installed])
        [account] = [
            obj for obj in self.api.store.objects["serviceaccounts"].values() if obj["metadata"]["name"] == "cluster-gateway"
        ]
        user = service_account_user(account["metadata"]["namespace"], "cluster-gateway")
        token = secrets.token_urlsafe(24)
        self.api.users[token] = {"username": user.name, "uid": "gateway-uid", "groups": list(user.groups)}
        self.gateway_user = user.name
        return token

    async def config(self) -> Configuration:
        """A kubernetes-asyncio configuration acting as the manager."""
        return await load_hosting_config(str(self.kubeconfig))


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A started hub; a request of the manager that its RBAC refuses fails the test at teardown."""
    [account] = [d for d in manager_documents() if d.get("kind") == "ServiceAccount"]
    meta = account["metadata"]
    assert isinstance(meta, dict)
    user = service_account_user(meta["namespace"], meta["name"])
    api = FakeKubeAPIServer(bookmark_interval=0.2, rbac=deploy_rbac([*deploy_documents(), *manager_documents()]))
    token = secrets.token_urlsafe(24)
    api.users[token] = {"username": user.name, "uid": "manager-uid", "groups": list(user.groups)}
    install_addon_manager_kinds(api)
    await api.start()
    hub = Hub(api, api.write_kubeconfig(tmp_path / "manager.kubeconfig", token=token), user.name)
    try:
        yield hub
    finally:
        await api.stop()
    refused = [m for m in api.forbidden if f'User "{user.name}"' in m or (hub.gateway_user and f'User "{hub.gateway_user}"' in m)]
    assert not refused, f"the hub refused the add-on manager or the gateway it installed: {refused}"


@pytest.fixture
async def manager_kube(hub: Hub) -> AsyncIterator[Kube]:
    """The manager's client of the hub."""
    async with ApiClient(await hub.config()) as api_client:
        yield Kube(api_client)
