"""An OCM hub for the add-on manager: the fake hosting kube-apiserver serving the OCM add-on kinds and
the workload kinds, authorizing the manager with exactly deploy/addon-manager/rbac.yaml."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yaml
from kubernetes_asyncio.client import ApiClient, Configuration

from gateway_apiserver.addon.kube import Kube
from gateway_apiserver.config import Config
from gateway_apiserver.registry.informer import load_hosting_config
from gateway_apiserver.server import GatewayServer
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_rbac import deploy_documents, deploy_rbac, service_account_user
from tests.fakes.ocm_addon import install_addon_manager_kinds
from tests.fakes.pki import make_ca

MANAGER_RBAC = Path(__file__).resolve().parents[2] / "deploy" / "addon-manager" / "rbac.yaml"
INSTALL_NS = "open-cluster-management-cluster-gateway"  # the default configuration's namespaces
SECRET_NS = "open-cluster-management-credentials"
SERVICE_NAME = f"cluster-gateway.{INSTALL_NS}.svc"  # the name the aggregator verifies


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


def mounted(hub: Hub, directory: Path) -> bool:
    """Copy the serving Secret into files, as the kubelet refreshes a Secret volume; whether it changed them."""
    secret = hub.api.store.objects["secrets"].get((INSTALL_NS, "cluster-gateway-tls-cert"))
    if secret is None:
        return False
    cert, key = (base64.b64decode(secret["data"][k]) for k in ("tls.crt", "tls.key"))
    if (directory / "tls.crt").exists() and (directory / "tls.crt").read_bytes() == cert:
        return False
    for name, content in (("tls.key", key), ("tls.crt", cert)):
        (directory / f".{name}").write_bytes(content)
        (directory / f".{name}").replace(directory / name)
    return True


@contextlib.asynccontextmanager
async def serving_gateway(hub: Hub, tmp_path: Path, mounts: Path) -> AsyncIterator[GatewayServer]:
    """A hosting-mode gateway serving the mounted certificate files, reloading them every 50 ms."""
    hub.api.set_authentication_configmap(client_ca_pem=make_ca("client-ca").cert_pem)
    config = Config(
        secure_port=0,
        bind_address="127.0.0.1",
        cert_dir=tmp_path / "certs",
        secret_namespace=SECRET_NS,
        kubeconfig=hub.api.write_kubeconfig(tmp_path / "gateway.kubeconfig", token=hub.apply_installed_rbac()),
        ocm_integration=True,
        tls_cert_file=mounts / "tls.crt",
        tls_private_key_file=mounts / "tls.key",
        tls_reload_interval=0.05,
        health_probe_interval=0.0,
    )
    server = GatewayServer(config)
    await server.start()
    try:
        context = ssl.create_default_context(cadata=ca_bundle(hub).decode())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            async with asyncio.timeout(10):
                while True:  # ready once its Secrets and trust are loaded
                    async with session.get(f"https://127.0.0.1:{server.port}/readyz", server_hostname=SERVICE_NAME) as resp:
                        if resp.status == 200:
                            break
                    await asyncio.sleep(0.05)
        yield server
    finally:
        await server.stop()


def ca_bundle(hub: Hub) -> bytes:
    return base64.b64decode(hub.api.store.get("apiservices", "", "v1alpha1.cluster.core.oam.dev")["spec"]["caBundle"])
