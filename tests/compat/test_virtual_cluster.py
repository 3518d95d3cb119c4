"""The reference's VirtualCluster case (pkg/apis/cluster/v1alpha1/virtualcluster_test.go, "Test Cluster API"),
one step per test, restated against our hosting-mode gateway: the `virtualclusters` resource
(`cluster.core.oam.dev/v1alpha1`, cluster-scoped, read-only) built from a synthetic `local`
cluster, the cluster Secrets and the OCM ManagedClusters without a Secret of their name.

The reference answers an unusable Secret or ManagedCluster with a 500 carrying a plain error; we
answer 404 naming the problem, as for ClusterGateway (README, Compared with cluster-gateway: "An
unknown cluster is 404 ... a broken Secret is 404 with the reason").

All pending: the resource is being built (issue 13 item 1), and the fake hosting apiserver's
ManagedClusters with it (item 3).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.compat.conftest import ADMIN, add_managed_cluster
from tests.fakes.hosting import SECRET_NAMESPACE, HostingGateway, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.pki import make_ca
from tests.fakes.secrets import CREDENTIAL_LABEL, ENDPOINT_LABEL

pytestmark = pytest.mark.timeout(30)

GROUP_VERSION = "/apis/cluster.core.oam.dev/v1alpha1"
VIRTUALCLUSTERS = f"{GROUP_VERSION}/virtualclusters"
CONTROL_PLANE = "cluster.core.oam.dev/control-plane"
ALIAS = "cluster.core.oam.dev/cluster-alias"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def add_secrets(api: FakeKubeAPIServer) -> None:
    """The reference's cluster Secrets. `test-cluster` holds real credential data here (the reference's
    has none; we do not assert what its missing data would show), `cluster-invalid` has no credential
    type, and `ocm-cluster` has a type but no endpoint."""
    ca = make_ca("test-cluster-ca")
    api.create_secret(
        SECRET_NAMESPACE,
        "test-cluster",
        labels={CREDENTIAL_LABEL: "X509Certificate", ENDPOINT_LABEL: "Const", "key": "value"},
        annotations={ALIAS: "test-cluster-alias"},
        data={
            "endpoint": "https://test-cluster.invalid:6443",
            "ca.crt": ca.cert_pem,
            "tls.crt": ca.cert_pem,
            "tls.key": ca.key_pem,
        },
    )
    api.create_secret(SECRET_NAMESPACE, "cluster-invalid", data={"endpoint": "127.0.0.1:6443"})
    api.create_secret(SECRET_NAMESPACE, "ocm-cluster", labels={CREDENTIAL_LABEL: "X509Certificate"})


def add_managed_clusters(api: FakeKubeAPIServer) -> None:
    """The reference's ManagedClusters: one without client config, one whose Secret is unusable,
    and one that clashes with the usable Secret `test-cluster` (the Secret wins)."""
    add_managed_cluster(api, "ocm-bad-cluster")
    add_managed_cluster(api, "ocm-cluster", url="https://ocm-cluster.invalid", labels={"key": "value"}, accepted=False)
    add_managed_cluster(api, "test-cluster", url="https://test-cluster-dup.invalid", labels={"key": "value-dup"})


@pytest.fixture
async def secrets_only(tmp_path: Path, hub: FakeKubeAPIServer) -> AsyncIterator[HostingGateway]:
    """The gateway over the reference's Secrets, on a hosting cluster without the ManagedCluster API."""
    add_secrets(hub)
    async with hosting_gateway(tmp_path, hub) as gw:
        yield gw


@pytest.fixture
async def with_managed_clusters(tmp_path: Path, ocm_hub: FakeKubeAPIServer) -> AsyncIterator[HostingGateway]:
    """The gateway over the reference's Secrets and ManagedClusters (without --ocm-integration:
    VirtualCluster reads ManagedClusters whenever the hub serves them)."""
    add_secrets(ocm_hub)
    add_managed_clusters(ocm_hub)
    async with hosting_gateway(tmp_path, ocm_hub) as gw:
        yield gw


async def get(gw: HostingGateway, path: str, **headers: str) -> tuple[int, Any]:
    async with gw.session() as client, client.get(path, headers={"Authorization": f"Bearer {ADMIN}", **headers}) as resp:
        return resp.status, await resp.json()


async def names(gw: HostingGateway, query: str = "") -> list[str]:
    status, body = await get(gw, VIRTUALCLUSTERS + query)
    assert (status, body["kind"]) == (200, "VirtualClusterList")
    return [item["metadata"]["name"] for item in body["items"]]


def not_found(name: str, suffix: str = "") -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'virtualclusters.cluster.core.oam.dev "{name}" not found{suffix}',
        "reason": "NotFound",
        "details": {"name": name, "group": "cluster.core.oam.dev", "kind": "virtualclusters"},
        "code": 404,
    }


async def test_meta_info(secrets_only: HostingGateway) -> None:
    """reference: virtualcluster_test.go, "Test Cluster API" / By("Test meta info").

    What the reference's Go methods declare shows in discovery: cluster-scoped, kind VirtualCluster,
    resource `virtualclusters` in cluster.core.oam.dev/v1alpha1, singular `virtualcluster`, and the
    short names vc, vcluster, vclusters, virtual-cluster and virtual-clusters."""
    status, body = await get(secrets_only, GROUP_VERSION)
    assert status == 200
    [entry] = [r for r in body["resources"] if r["name"] == "virtualclusters"]
    assert (entry["kind"], entry["singularName"], entry["namespaced"]) == ("VirtualCluster", "virtualcluster", False)
    assert sorted(entry["shortNames"]) == ["vc", "vcluster", "vclusters", "virtual-cluster", "virtual-clusters"]
    assert sorted(entry["verbs"]) == ["get", "list", "watch"]


async def test_get_cluster_from_cluster_secret(secrets_only: HostingGateway) -> None:
    """reference: virtualcluster_test.go, "Test Cluster API" / By("Test get cluster from cluster secret").

    The alias comes from the cluster-alias annotation, the credential type from its label, and the
    Secret's own labels are kept (those prefixed cluster.core.oam.dev dropped, control-plane false)."""
    status, body = await get(secrets_only, f"{VIRTUALCLUSTERS}/test-cluster")
    assert (status, body["kind"], body["apiVersion"]) == (200, "VirtualCluster", "cluster.core.oam.dev/v1alpha1")
    assert (body["spec"]["alias"], body["spec"]["credential-type"], body["spec"]["accepted"]) == (
        "test-cluster-alias",
        "X509Certificate",
        True,
    )
    assert body["metadata"]["labels"] == {"key": "value", CONTROL_PLANE: "false"}


async def test_get_invalid_cluster_secret(secrets_only: HostingGateway) -> None:
    """reference: virtualcluster_test.go, "Test Cluster API" / By("Test get cluster from cluster secret"), `cluster-invalid`.

    A Secret without a credential type is not a cluster. The reference reads it anyway and answers
    "not a valid cluster secret" (a 500). Deliberate difference: the gateway watches only Secrets that
    carry the credential-type label (it never reads the namespace's other Secrets), so to it this one
    does not exist, and the answer is the kube-apiserver's plain 404."""
    status, body = await get(secrets_only, f"{VIRTUALCLUSTERS}/cluster-invalid")
    assert (status, body["reason"], body["code"]) == (404, "NotFound", 404)
    assert body["message"] == 'virtualclusters.cluster.core.oam.dev "cluster-invalid" not found'


async def test_get_cluster_from_ocm_managed_cluster(with_managed_clusters: HostingGateway) -> None:
    """reference: virtualcluster_test.go, "Test Cluster API" / By("Test get cluster from OCM managed cluster").

    A ManagedCluster without client config is not a usable cluster (404 naming it here; the
    reference's error says "managed cluster has no client config"). `ocm-cluster`, whose Secret is
    unusable, comes from its ManagedCluster: credential type ManagedCluster, accepted as the hub says."""
    status, body = await get(with_managed_clusters, f"{VIRTUALCLUSTERS}/ocm-bad-cluster")
    assert (status, body["reason"]) == (404, "NotFound")
    assert body["message"].startswith('virtualclusters.cluster.core.oam.dev "ocm-bad-cluster" not found')
    status, body = await get(with_managed_clusters, f"{VIRTUALCLUSTERS}/ocm-cluster")
    assert status == 200
    assert body["spec"]["credential-type"] == "ManagedCluster"
    assert "accepted" not in body["spec"]  # false, and omitted when false, as the reference's omitempty field
    assert body["metadata"]["labels"] == {"key": "value", CONTROL_PLANE: "false"}


async def test_get_local_cluster(secrets_only: HostingGateway) -> None:
    """reference: virtualcluster_test.go, "Test Cluster API" / By("Test get local cluster").

    `local` is the hub itself: credential type Internal, endpoint `-`, accepted, control plane."""
    status, body = await get(secrets_only, f"{VIRTUALCLUSTERS}/local")
    assert status == 200
    assert body["spec"] == {"accepted": True, "endpoint": "-", "credential-type": "Internal"}
    assert body["metadata"]["labels"] == {CONTROL_PLANE: "true"}


async def test_get_cluster_not_exist(secrets_only: HostingGateway) -> None:
    """reference: virtualcluster_test.go, "Test Cluster API" / `Get("cluster-not-exist")` is NotFound."""
    assert await get(secrets_only, f"{VIRTUALCLUSTERS}/cluster-not-exist") == (404, not_found("cluster-not-exist"))


async def test_list_clusters(with_managed_clusters: HostingGateway) -> None:
    """reference: virtualcluster_test.go, "Test Cluster API" / By("Test list clusters").

    `local` first, then the usable clusters: `ocm-cluster` from its ManagedCluster, `test-cluster`
    from its Secret (once, though a ManagedCluster has that name too). The reference sorts newest
    first; here the newest is also the first by name, so both orders give this list."""
    assert await names(with_managed_clusters) == ["local", "ocm-cluster", "test-cluster"]
    _, body = await get(with_managed_clusters, f"{VIRTUALCLUSTERS}/test-cluster")
    assert body["spec"]["credential-type"] == "X509Certificate"  # the Secret wins the clash


async def test_list_clusters_with_labels(with_managed_clusters: HostingGateway) -> None:
    """reference: virtualcluster_test.go, "Test Cluster API" / By("Test list clusters with labels")."""
    assert await names(with_managed_clusters, "?labelSelector=key%3Dvalue") == ["ocm-cluster", "test-cluster"]


async def test_list_clusters_that_are_not_control_plane(with_managed_clusters: HostingGateway) -> None:
    """reference: virtualcluster_test.go, "Test Cluster API" / By("Test list clusters that are not control plane")."""
    query = f"?labelSelector={CONTROL_PLANE.replace('/', '%2F')}%3Dfalse"
    assert await names(with_managed_clusters, query) == ["ocm-cluster", "test-cluster"]


async def test_list_clusters_that_is_control_plane(secrets_only: HostingGateway) -> None:
    """reference: virtualcluster_test.go, "Test Cluster API" / By("Test list clusters that is control plane")."""
    query = f"?labelSelector={CONTROL_PLANE.replace('/', '%2F')}%3Dtrue"
    assert await names(secrets_only, query) == ["local"]


async def test_print_table(secrets_only: HostingGateway) -> None:
    """reference: virtualcluster_test.go, "Test Cluster API" / By("Test print table").

    One cluster and the list both print as a Table, with the reference's columns and types (the
    labels and creation time at priority 10, as issue 13 asks)."""
    expected = [
        ("Name", "string", 0),
        ("Alias", "string", 0),
        ("Credential_Type", "string", 0),
        ("Endpoint", "string", 0),
        ("Accepted", "boolean", 0),
        ("Labels", "string", 10),
        ("Creation_Timestamp", "dateTime", 10),
    ]
    for path, rows in ((f"{VIRTUALCLUSTERS}/local", 1), (VIRTUALCLUSTERS, 2)):
        status, table = await get(secrets_only, path, Accept=TABLE_ACCEPT)
        assert (status, table["kind"]) == (200, "Table")
        assert [(c["name"], c["type"], c.get("priority", 0)) for c in table["columnDefinitions"]] == expected
        assert len(table["rows"]) == rows
