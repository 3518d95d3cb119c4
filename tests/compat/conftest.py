"""Fixtures for the restated reference cases: a member cluster, proxy configuration files and ManagedClusters.

Each case talks to our real server over TLS: standalone (`tests/fakes/proxying.py`) when only the
Secret format and the proxy matter, hosting mode (`tests/fakes/hosting.py`) when the hosting
cluster's API is part of the case (health writes, ManagedClusters).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from aiohttp import web

from tests.fakes.hosting import HostingGateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer, Handler
from tests.fakes.member_endpoints import json_response

ADMIN = "admin-token"  # the hosting cluster's admin, in system:masters: every SubjectAccessReview allows it
PROXY_CONFIG_HEADER = "apiVersion: cluster.core.oam.dev/v1alpha1\nkind: ClusterGatewayProxyConfiguration\n"


class ProbedMember(FakeMemberAPIServer):
    """A member that also answers what the reference's e2e suites ask of a real cluster: `/healthz`
    (the body `ok`, as a kube-apiserver answers it) and the Namespaces `default` and `kube-system`."""

    NAMESPACES = ("default", "kube-system")

    def _routes(self) -> list[tuple[str, str, Handler]]:
        return [
            *super()._routes(),
            ("GET", "/healthz", self._healthz),
            ("GET", "/api/v1/namespaces", self._namespaces),
            ("GET", "/api/v1/namespaces/{name}", self._namespace),
        ]

    @staticmethod
    def _namespace_object(name: str) -> dict[str, Any]:
        return {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name}, "status": {"phase": "Active"}}

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def _namespaces(self, request: web.Request) -> web.StreamResponse:
        items = [self._namespace_object(name) for name in self.NAMESPACES][: int(request.query.get("limit") or 500)]
        return json_response({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})

    async def _namespace(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self.NAMESPACES:
            raise web.HTTPNotFound()
        return json_response(self._namespace_object(name))


@pytest.fixture
async def probed_member() -> AsyncIterator[ProbedMember]:
    """A member cluster that answers /healthz and Namespaces too."""
    server = ProbedMember()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def hub(kube_apiserver: FakeKubeAPIServer) -> FakeKubeAPIServer:
    """The hosting cluster, where the caller with token ADMIN may do anything through the gateway."""
    kube_apiserver.users[ADMIN] = {"username": "admin", "uid": "a-1", "groups": ["system:masters"]}
    kube_apiserver.policy = [PolicyRule(groups=("system:masters",))]
    return kube_apiserver


async def run_kubectl(gw: HostingGateway, tmp_path: Path, *args: str, path_prefix: str = "") -> tuple[int, str, str]:
    """Run the real kubectl as the hosting cluster's admin against the gateway (its server URL plus
    `path_prefix`): its exit code, stdout and stderr."""
    kubeconfig = gw.write_kubeconfig(tmp_path / "kubeconfig", token=ADMIN, path_prefix=path_prefix)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--request-timeout=20s", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        async with asyncio.timeout(40):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def kubernetes_client(gw: HostingGateway, path_prefix: str = "") -> kubernetes.client.ApiClient:
    """The `kubernetes` Python client as the hosting cluster's admin, its host the gateway plus `path_prefix`."""
    config = kubernetes.client.Configuration()
    config.host = gw.url + path_prefix
    config.ssl_ca_cert = str(gw.ca_file)
    config.api_key = {"authorization": f"Bearer {ADMIN}"}
    return kubernetes.client.ApiClient(config)


async def raw_get(gw: HostingGateway, path: str, *, path_prefix: str = "") -> tuple[int, str]:
    """GET `path` (under the client's host) with the `kubernetes` client, as client-go's `AbsPath(...).DoRaw()`:
    the status and the body as text."""

    def call() -> tuple[int, str]:
        with kubernetes_client(gw, path_prefix) as api:
            request = api.param_serialize(method="GET", resource_path=path, auth_settings=["BearerToken"])
            response = api.call_api(*request)
            return response.status, response.read().decode()

    return await asyncio.to_thread(call)


@pytest.fixture
def ocm_hub(hub: FakeKubeAPIServer) -> FakeKubeAPIServer:
    """The hosting cluster as an OCM hub: the ManagedCluster CRD installed, and the gateway granted
    deploy/'s OCM component (read ManagedClusters). Both come from helper "ocm" (issue 13 item 3)."""
    from tests.fakes.kube_rbac import with_ocm_component

    hub.rbac = with_ocm_component()
    hub.install_managed_cluster_crd()
    return hub


def proxy_rules(*rules: str) -> str:
    """A ClusterGatewayProxyConfiguration document holding the given one-line YAML rules."""
    return PROXY_CONFIG_HEADER + "spec:\n  clientIdentityExchanger:\n    rules:\n" + "".join(f"    - {r}\n" for r in rules)


def write_proxy_config(tmp_path: Path, *rules: str) -> Path:
    """The `--cluster-gateway-proxy-config` file holding `rules`."""
    path = tmp_path / "proxy-config.yaml"
    path.write_text(proxy_rules(*rules))
    return path


def add_managed_cluster(
    api: FakeKubeAPIServer,
    name: str,
    *,
    url: str | None = None,
    ca_pem: bytes | None = None,
    labels: Mapping[str, str] | None = None,
    accepted: bool = True,
) -> dict[str, Any]:
    """Create an OCM ManagedCluster (`cluster.open-cluster-management.io/v1`, cluster-scoped) in the
    hosting cluster through the fake's generic store, as `kubectl apply` of one would.

    With no `url` it has no `spec.managedClusterClientConfigs` (the reference calls that invalid).
    The fake serves the kind once its CRD is installed (the `ocm_hub` fixture).
    """
    spec: dict[str, Any] = {"hubAcceptsClient": accepted}
    if url is not None:
        config: dict[str, Any] = {"url": url}
        if ca_pem is not None:
            config["caBundle"] = base64.b64encode(ca_pem).decode()
        spec["managedClusterClientConfigs"] = [config]
    body = {
        "apiVersion": "cluster.open-cluster-management.io/v1",
        "kind": "ManagedCluster",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": spec,
    }
    return api.store.create("managedclusters", "", body)
