"""--ocm-integration end to end: ManagedClusters in the hosting cluster give clusters their endpoint and CA.

A hosting-mode gateway in front of the fake hosting kube-apiserver (which serves ManagedClusters
as the OCM CRD does, once installed) and fake member clusters: each member holds a ConfigMap
`whoami` naming it, so a proxied read shows which member the gateway reached.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.gateway import ManualSecretSource, running_gateway
from tests.fakes.hosting import CLUSTERGATEWAYS, SECRET_NAMESPACE, HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_rbac import with_ocm_component
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.ocm import MANAGED_CLUSTERS_PATH
from tests.fakes.secrets import CREDENTIAL_LABEL

pytestmark = pytest.mark.timeout(30)
TOKEN = "member-token"  # every member accepts it: the credential stays in the Secret wherever the endpoint moves
WHOAMI = "api/v1/namespaces/default/configmaps/whoami"
FAST = {"managed_cluster_discovery_interval": 0.2, "managed_cluster_refresh_interval": 0.2}


@pytest.fixture
async def members() -> AsyncIterator[dict[str, FakeMemberAPIServer]]:
    """Three member clusters, `a`, `b` and `c`, each with its own serving CA."""
    async with AsyncExitStack() as stack:
        found: dict[str, FakeMemberAPIServer] = {}
        for name in ("a", "b", "c"):
            member = await stack.enter_async_context(FakeMemberAPIServer(token=TOKEN))
            member.store.create("configmaps", "default", {"metadata": {"name": "whoami"}, "data": {"member": name}})
            found[name] = member
        yield found


def admin(gw: HostingGateway) -> aiohttp.ClientSession:
    """A caller the hosting cluster's policy allows everything."""
    return gw.session(headers={"Authorization": f"Bearer {gw.api.token}"})


def allow_admin(api: FakeKubeAPIServer) -> None:
    api.policy = [PolicyRule(groups=("system:masters",))]


def ocm_hub(api: FakeKubeAPIServer) -> None:
    """The hosting cluster as an OCM hub: the admin allowed, the gateway granted deploy/components/ocm's
    RBAC, and the ManagedCluster CRD installed."""
    allow_admin(api)
    api.rbac = with_ocm_component()
    api.install_managed_cluster_crd()


async def reached(gw: HostingGateway, cluster: str = "c1") -> tuple[int, str]:
    """Which member a proxied read of cluster `cluster` reached: (status, member name or the Status message)."""
    async with admin(gw) as s, s.get(f"{CLUSTERGATEWAYS}/{cluster}/proxy/{WHOAMI}") as resp:
        body = await resp.json()
        return resp.status, body["data"]["member"] if resp.status == 200 else body["message"]


async def gateway_object(gw: HostingGateway, cluster: str = "c1") -> tuple[int, dict[str, Any]]:
    async with admin(gw) as s, s.get(f"{CLUSTERGATEWAYS}/{cluster}") as resp:
        return resp.status, await resp.json()


async def listed(gw: HostingGateway) -> list[str]:
    async with admin(gw) as s, s.get(CLUSTERGATEWAYS) as resp:
        return [item["metadata"]["name"] for item in (await resp.json())["items"]]


async def eventually(check: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 5.0) -> None:
    """Wait until `check()` returns `expected` (polled every 50 ms); fail with the last value otherwise."""
    got = None
    for _ in range(int(timeout / 0.05)):
        if (got := await check()) == expected:
            return
        await asyncio.sleep(0.05)
    assert got == expected


def address(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["access"]["endpoint"]["const"]["address"])


async def test_a_managed_cluster_added_changed_and_deleted_moves_the_endpoint_and_the_proxy_follows(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]
) -> None:
    a, b, c = members["a"], members["b"], members["c"]
    ocm_hub(kube_apiserver)
    add_cluster(kube_apiserver, "c1", a.url, token=TOKEN, ca_pem=a.ca_pem)
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True) as gw:
        assert await reached(gw) == (200, "a")  # no ManagedCluster: the Secret alone
        async with admin(gw) as s, s.get(CLUSTERGATEWAYS) as resp:
            since = (await resp.json())["metadata"]["resourceVersion"]
        async with admin(gw) as s, s.get(f"{CLUSTERGATEWAYS}?watch=1&resourceVersion={since}") as watch:

            async def next_event() -> dict[str, Any]:
                event: dict[str, Any] = json.loads(await asyncio.wait_for(watch.content.readline(), 5))
                return event

            kube_apiserver.create_managed_cluster("c1", url=b.url, ca_pem=b.ca_pem)
            added = await next_event()
            assert (added["type"], address(added["object"])) == ("MODIFIED", b.url)
            assert await reached(gw) == (200, "b")

            kube_apiserver.update_managed_cluster("c1", url=c.url, ca_pem=c.ca_pem)
            changed = await next_event()
            assert (changed["type"], address(changed["object"])) == ("MODIFIED", c.url)
            assert await reached(gw) == (200, "c")

            kube_apiserver.update_managed_cluster("c1", url=c.url, ca_pem=c.ca_pem, status={"version": {"kubernetes": "v1.32"}})
            kube_apiserver.delete_managed_cluster("c1")
            deleted = await next_event()  # the status-only change was no change to the cluster
            assert (deleted["type"], address(deleted["object"])) == ("MODIFIED", a.url)
            assert await reached(gw) == (200, "a")
            versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in (added, changed, deleted)]
            assert int(since) < versions[0] < versions[1] < versions[2]  # a client resumes from any of them
        _, obj = await gateway_object(gw)
        assert obj["spec"]["access"]["credential"] == {"type": "ServiceAccountToken"}  # the token is never served


async def test_a_managed_cluster_without_a_ca_bundle_is_verified_against_the_system_roots(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]
) -> None:
    """A private-CA member behind a ManagedCluster with no caBundle is refused, never reached unverified."""
    a = members["a"]
    ocm_hub(kube_apiserver)
    kube_apiserver.create_managed_cluster("c1", url=a.url)
    add_cluster(kube_apiserver, "c1", "https://unused.invalid", token=TOKEN)
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True) as gw:
        status, message = await reached(gw)
    assert status == 502
    assert "the member's certificate is not trusted" in message, message


async def test_a_secret_without_endpoint_is_served_once_the_crd_installed_after_start_up_gives_one(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]
) -> None:
    b = members["b"]
    allow_admin(kube_apiserver)
    kube_apiserver.rbac = with_ocm_component()
    kube_apiserver.create_secret(SECRET_NAMESPACE, "c1", labels={CREDENTIAL_LABEL: "ServiceAccountToken"}, data={"token": TOKEN})
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True, **FAST) as gw:
        status, body = await gateway_object(gw)
        assert (status, body["message"]) == (
            404,
            f'clustergateways.cluster.core.oam.dev "c1" not found: Secret {SECRET_NAMESPACE}/c1 cannot be converted: '
            "missing data['endpoint'] (the member cluster's API server URL)",
        )
        kube_apiserver.install_managed_cluster_crd()
        kube_apiserver.create_managed_cluster("c1", url=b.url, ca_pem=b.ca_pem)
        await eventually(lambda: reached(gw), (200, "b"))
        status, body = await gateway_object(gw)
        assert (status, address(body)) == (200, b.url)
        assert await listed(gw) == ["c1"]


async def test_a_managed_cluster_without_client_config_is_a_404_naming_it_and_is_left_out_of_lists(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]
) -> None:
    a = members["a"]
    ocm_hub(kube_apiserver)
    add_cluster(kube_apiserver, "c1", a.url, token=TOKEN, ca_pem=a.ca_pem)
    add_cluster(kube_apiserver, "c2", a.url, token=TOKEN, ca_pem=a.ca_pem)
    kube_apiserver.create_managed_cluster("c1")  # accepted, but no managedClusterClientConfigs yet
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True) as gw:
        status, body = await gateway_object(gw)
        assert (status, body) == (
            404,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f'clustergateways.cluster.core.oam.dev "c1" not found: Secret {SECRET_NAMESPACE}/c1 cannot be '
                "converted: ManagedCluster 'c1' has no spec.managedClusterClientConfigs, so it names no endpoint for the cluster",
                "reason": "NotFound",
                "details": {"name": "c1", "group": "cluster.core.oam.dev", "kind": "clustergateways"},
                "code": 404,
            },
        )
        assert await listed(gw) == ["c2"]


async def test_without_ocm_integration_a_managed_cluster_changes_no_endpoint(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]
) -> None:
    a, b = members["a"], members["b"]
    ocm_hub(kube_apiserver)
    add_cluster(kube_apiserver, "c1", a.url, token=TOKEN, ca_pem=a.ca_pem)
    kube_apiserver.create_managed_cluster("c1", url=b.url, ca_pem=b.ca_pem)
    async with hosting_gateway(tmp_path, kube_apiserver) as gw:
        await asyncio.wait_for(gw.server.managed_clusters.synced.wait(), 5)
        mc = gw.server.managed_clusters.get("c1")  # read all the same (VirtualCluster uses them)
        assert mc is not None and mc.client_config is not None and mc.client_config.url == b.url
        assert await reached(gw) == (200, "a")
        _, obj = await gateway_object(gw)
        assert address(obj) == a.url


async def test_the_crd_deleted_and_installed_again_while_running(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]
) -> None:
    a, b = members["a"], members["b"]
    ocm_hub(kube_apiserver)
    add_cluster(kube_apiserver, "c1", a.url, token=TOKEN, ca_pem=a.ca_pem)
    kube_apiserver.create_managed_cluster("c1", url=b.url, ca_pem=b.ca_pem)
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True, **FAST) as gw:
        assert await reached(gw) == (200, "b")
        kube_apiserver.uninstall_managed_cluster_crd()
        await eventually(lambda: reached(gw), (200, "a"))
        await eventually(lambda: asyncio.sleep(0, gw.server.managed_clusters.available), False)
        kube_apiserver.install_managed_cluster_crd()
        kube_apiserver.create_managed_cluster("c1", url=b.url, ca_pem=b.ca_pem)
        await eventually(lambda: reached(gw), (200, "b"))


async def test_base_rbac_refusing_managedclusters_is_warned_once_and_the_gateway_still_serves(
    tmp_path: Path,
    kube_apiserver: FakeKubeAPIServer,
    members: dict[str, FakeMemberAPIServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = members["a"], members["b"]
    kube_apiserver.refusals_expected = True  # deploy/rbac.yaml alone grants nothing on managedclusters
    allow_admin(kube_apiserver)
    kube_apiserver.install_managed_cluster_crd()
    add_cluster(kube_apiserver, "c1", a.url, token=TOKEN, ca_pem=a.ca_pem)
    kube_apiserver.create_managed_cluster("c1", url=b.url, ca_pem=b.ca_pem)
    caplog.set_level(logging.WARNING, logger="gateway_apiserver")
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True, managed_cluster_discovery_interval=0.1) as gw:
        assert await listed(gw) == ["c1"]
        assert await reached(gw) == (200, "a")  # as without ManagedClusters
        await eventually(lambda: asyncio.sleep(0, len(kube_apiserver.forbidden) >= 3), True)  # retried, with backoff
    gateway = kube_apiserver.gateway_user.name
    assert set(kube_apiserver.forbidden) == {
        f'managedclusters.cluster.open-cluster-management.io is forbidden: User "{gateway}" cannot list resource '
        '"managedclusters" in API group "cluster.open-cluster-management.io" at the cluster scope'
    }
    warnings = [r.getMessage() for r in caplog.records if "managedclusters" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "the hosting cluster refuses managedclusters.cluster.open-cluster-management.io to this gateway (HTTP 403 Forbidden: "
    )
    assert warnings[0].endswith(
        "OCM ManagedClusters are ignored until its RBAC grants get/list/watch on managedclusters "
        "(apply the OCM component, deploy/components/ocm)"
    )


async def test_with_the_cache_gate_off_managed_clusters_are_listed_again_without_a_watch(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]
) -> None:
    a, b = members["a"], members["b"]
    ocm_hub(kube_apiserver)
    add_cluster(kube_apiserver, "c1", a.url, token=TOKEN, ca_pem=a.ca_pem)
    gates = {"HealthinessCheck": False, "SecretCache": True, "ClientIdentityPenetration": False, "OCMClusterCache": False}
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True, feature_gates=gates, **FAST) as gw:
        assert await reached(gw) == (200, "a")
        kube_apiserver.create_managed_cluster("c1", url=b.url, ca_pem=b.ca_pem)
        await eventually(lambda: reached(gw), (200, "b"), timeout=3)
        kube_apiserver.delete_managed_cluster("c1")
        await eventually(lambda: reached(gw), (200, "a"), timeout=3)
    to_managed_clusters = [r for r in kube_apiserver.requests if r.startswith(f"GET {MANAGED_CLUSTERS_PATH}")]
    assert len(to_managed_clusters) >= 3  # listed again and again ...
    assert not [r for r in to_managed_clusters if "watch=" in r]  # ... and never watched


async def test_readiness_waits_for_the_first_managed_cluster_list_only_so_long(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]
) -> None:
    a = members["a"]
    ocm_hub(kube_apiserver)
    add_cluster(kube_apiserver, "c1", a.url, token=TOKEN, ca_pem=a.ca_pem)
    kube_apiserver.inject_failure(500, count=1_000, when=lambda request: request.path == MANAGED_CLUSTERS_PATH)
    started = asyncio.get_running_loop().time()
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True, managed_cluster_sync_timeout=1.0) as gw:
        assert asyncio.get_running_loop().time() - started >= 1.0  # unready meanwhile
        assert not gw.server.managed_clusters.synced.is_set()  # ManagedClusters still fail to list
        assert await reached(gw) == (200, "a")


async def test_standalone_mode_has_no_managed_clusters(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, ManualSecretSource()) as gw:
        managed = gw.server.managed_clusters
        assert managed.synced.is_set() and managed.available is False and managed.items() == []
        async with gw.session() as s, s.get("/readyz?verbose") as resp:
            assert resp.status == 200 and "managed-clusters" not in await resp.text()
