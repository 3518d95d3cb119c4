"""--hide-dangling-cluster-gateways end to end: a cluster Secret without its ManagedCluster is not served.

cluster-gateway's README says `--ocm-integration` can filter out "dangling" ClusterGateways that have
no ManagedCluster; its code has no such filter, so ours is a flag of its own, off by default. A
hosting-mode gateway watches Secrets and ManagedClusters of the fake hosting kube-apiserver; hidden
clusters are left out of lists and watches, and GET and the proxy answer 404 saying why.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.hosting import CLUSTERGATEWAYS, HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.test_ocm_integration import TOKEN, admin, listed, ocm_hub, reached

pytestmark = pytest.mark.timeout(30)
WHY = 'there is no ManagedCluster "c1", and --hide-dangling-cluster-gateways hides a cluster without one'


@pytest.fixture
async def members() -> AsyncIterator[dict[str, FakeMemberAPIServer]]:
    """Two member clusters, `a` and `b`, each holding a ConfigMap `whoami` naming it."""
    async with AsyncExitStack() as stack:
        found: dict[str, FakeMemberAPIServer] = {}
        for name in ("a", "b"):
            member = await stack.enter_async_context(FakeMemberAPIServer(token=TOKEN))
            member.store.create("configmaps", "default", {"metadata": {"name": "whoami"}, "data": {"member": name}})
            found[name] = member
        yield found


def hub_with_c1_dangling(api: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]) -> None:
    """Secrets c1 (member a) and c2 (member b); only c2 has a ManagedCluster."""
    a, b = members["a"], members["b"]
    ocm_hub(api)
    add_cluster(api, "c1", a.url, token=TOKEN, ca_pem=a.ca_pem)
    add_cluster(api, "c2", b.url, token=TOKEN, ca_pem=b.ca_pem)
    api.create_managed_cluster("c2", url=b.url, ca_pem=b.ca_pem)


async def kubectl(gw: HostingGateway, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    kubeconfig = gw.write_kubeconfig(tmp_path / "admin.kubeconfig", token=gw.api.token)
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={tmp_path / 'kubectl-cache'}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    return proc.returncode or 0, out.decode(), err.decode()


def not_found(message: str, kind: str = "clustergateways") -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "NotFound",
        "details": {"name": "c1", "group": "cluster.core.oam.dev", "kind": kind},
        "code": 404,
    }


async def test_a_cluster_without_its_managed_cluster_is_not_listed_got_health_checked_or_proxied(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]
) -> None:
    hub_with_c1_dangling(kube_apiserver, members)
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True, hide_dangling_cluster_gateways=True) as gw:
        code, out, err = await kubectl(gw, tmp_path, "get", "clustergateways", "-o", "name")
        assert (code, out, err) == (0, "clustergateway.cluster.core.oam.dev/c2\n", "")
        code, out, err = await kubectl(gw, tmp_path, "get", "clustergateways", "c1")
        assert (code, out) == (1, "")
        assert err == f'Error from server (NotFound): clustergateways.cluster.core.oam.dev "c1" not found: {WHY}\n'
        async with admin(gw) as s, s.get(f"{CLUSTERGATEWAYS}/c1/proxy/api/v1/namespaces/default/configmaps/whoami") as resp:
            assert (resp.status, await resp.json()) == (
                404,
                not_found(f'no such cluster c1: clustergateways.cluster.core.oam.dev "c1" not found: {WHY}'),
            )
        async with admin(gw) as s, s.get(f"{CLUSTERGATEWAYS}/c1/health") as resp:
            assert (resp.status, await resp.json()) == (
                404,
                not_found(f'no such cluster c1: clustergateways.cluster.core.oam.dev "c1" not found: {WHY}'),
            )
        async with admin(gw) as s, s.get("/apis/cluster.core.oam.dev/v1alpha1/virtualclusters/c1") as resp:
            assert (resp.status, await resp.json()) == (
                404,
                not_found(f'virtualclusters.cluster.core.oam.dev "c1" not found: {WHY}', kind="virtualclusters"),
            )
        assert await reached(gw, "c2") == (200, "b")
    assert members["a"].requests_to("/api/v1/namespaces/default/configmaps/whoami") == []


async def test_watchers_see_deleted_when_the_managed_cluster_goes_and_added_when_it_comes_back(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]
) -> None:
    a = members["a"]
    hub_with_c1_dangling(kube_apiserver, members)
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True, hide_dangling_cluster_gateways=True) as gw:
        async with admin(gw) as s, s.get(CLUSTERGATEWAYS) as resp:
            since = (await resp.json())["metadata"]["resourceVersion"]
        async with admin(gw) as s, s.get(f"{CLUSTERGATEWAYS}?watch=1&resourceVersion={since}") as watch:

            async def next_event() -> tuple[str, str]:
                event = json.loads(await asyncio.wait_for(watch.content.readline(), 5))
                return event["type"], event["object"]["metadata"]["name"]

            kube_apiserver.create_managed_cluster("c1", url=a.url, ca_pem=a.ca_pem)
            assert await next_event() == ("ADDED", "c1")
            assert await listed(gw) == ["c1", "c2"]
            assert await reached(gw, "c1") == (200, "a")

            kube_apiserver.delete_managed_cluster("c1")
            assert await next_event() == ("DELETED", "c1")
            assert await listed(gw) == ["c2"]
            status, message = await reached(gw, "c1")
            assert (status, message) == (404, f'no such cluster c1: clustergateways.cluster.core.oam.dev "c1" not found: {WHY}')

            kube_apiserver.create_managed_cluster("c1", url=a.url, ca_pem=a.ca_pem)
            assert await next_event() == ("ADDED", "c1")


async def test_off_by_default_a_cluster_without_its_managed_cluster_is_served_from_its_secret(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]
) -> None:
    hub_with_c1_dangling(kube_apiserver, members)
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True) as gw:
        assert await listed(gw) == ["c1", "c2"]
        assert await reached(gw, "c1") == (200, "a")
