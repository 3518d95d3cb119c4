"""virtualclusters: local, the cluster Secrets and OCM ManagedClusters in one read-only resource.

Served by the same generic machinery as clustergateways, so these tests check what is
specific to VirtualCluster (its sources, shape, columns) and that every read path of the
machinery reaches it: get, list, selectors, pagination, watch, Table, metadata, kubectl.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.gateway import ManualSecretSource, RunningGateway, get_json, run_kubectl, running_gateway, start_kubectl
from tests.fakes.secrets import cluster_secret

BASE = "/apis/cluster.core.oam.dev/v1alpha1/virtualclusters"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
CONTROL_PLANE = "cluster.core.oam.dev/control-plane"
ALIAS = "cluster.core.oam.dev/cluster-alias"

SECRETS = [
    cluster_secret("beta", 2, labels={"env": "prod"}, annotations={ALIAS: "Beta (prod)"}, endpoint="https://10.0.0.2:6443"),
    cluster_secret("alpha", 1, labels={"env": "dev"}, credential_type="Dynamic"),
    cluster_secret("delta", 5, labels={"cluster.core.oam.dev/cluster-endpoint-type": "ClusterProxy"}, endpoint=None),
    cluster_secret("broken", 4, credential_type="Kerberos"),
]


def managed_cluster(name: str, rv: int, *, url: str | None = "https://10.9.0.1:6443", accepts: bool = True) -> dict[str, Any]:
    """An OCM ManagedCluster in its JSON shape."""
    configs = [{"url": url, "caBundle": base64.b64encode(b"unused").decode()}] if url else []
    return {
        "apiVersion": "cluster.open-cluster-management.io/v1",
        "kind": "ManagedCluster",
        "metadata": {
            "name": name,
            "resourceVersion": str(rv),
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": {"region": "eu", "cluster.core.oam.dev/some-internal": "x"},
            "annotations": {ALIAS: f"{name} alias"},
        },
        "spec": {"hubAcceptsClient": accepts, "managedClusterClientConfigs": configs},
    }


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ManualSecretSource(SECRETS, "10")) as gw:
        # What a hub with OCM would deliver; the source itself is tested with the fake hosting cluster.
        gw.server.managed_clusters.replace(
            [managed_cluster("ocm-east", 11), managed_cluster("beta", 12), managed_cluster("no-config", 13, url=None)], "13"
        )
        yield gw


async def test_the_list_has_local_the_valid_secrets_and_the_managed_clusters_no_secret_names(gateway: RunningGateway) -> None:
    body = await get_json(gateway, BASE)
    assert (body["kind"], body["apiVersion"]) == ("VirtualClusterList", "cluster.core.oam.dev/v1alpha1")
    by_name = {item["metadata"]["name"]: item for item in body["items"]}
    # Sorted by name like every Kubernetes list; `broken` (no valid Secret) and `no-config` are not clusters.
    assert list(by_name) == ["alpha", "beta", "delta", "local", "ocm-east"]
    rv = int(body["metadata"]["resourceVersion"])
    assert all(int(item["metadata"]["resourceVersion"]) <= rv for item in body["items"])
    local = by_name["local"]
    assert local == {
        "apiVersion": "cluster.core.oam.dev/v1alpha1",
        "kind": "VirtualCluster",
        "metadata": {
            "name": "local",
            "resourceVersion": local["metadata"]["resourceVersion"],
            "creationTimestamp": None,
            "labels": {CONTROL_PLANE: "true"},
        },
        "spec": {"accepted": True, "endpoint": "-", "credential-type": "Internal"},
    }


async def test_a_secret_cluster_shows_its_alias_its_own_labels_and_the_url_the_proxy_uses(gateway: RunningGateway) -> None:
    beta = await get_json(gateway, f"{BASE}/beta")
    assert beta["spec"] == {
        "alias": "Beta (prod)",
        "accepted": True,
        "endpoint": "https://10.0.0.2:6443",
        "credential-type": "ServiceAccountToken",
    }
    # The Secret wins the name clash with the ManagedCluster `beta`; reserved labels are hidden.
    assert beta["metadata"]["labels"] == {"env": "prod", CONTROL_PLANE: "false"}
    assert beta["metadata"]["creationTimestamp"] == SECRETS[0]["metadata"]["creationTimestamp"]
    delta = await get_json(gateway, f"{BASE}/delta")
    assert delta["spec"]["endpoint"] == "ClusterProxy"  # no URL: reached through OCM's cluster-proxy


async def test_a_managed_cluster_without_a_secret_is_listed_as_ocm_reports_it(gateway: RunningGateway) -> None:
    east = await get_json(gateway, f"{BASE}/ocm-east")
    assert east["metadata"]["labels"] == {"region": "eu", CONTROL_PLANE: "false"}
    assert east["metadata"]["creationTimestamp"] == "2026-01-02T03:04:05Z"
    assert east["spec"] == {"alias": "ocm-east alias", "accepted": True, "endpoint": "-", "credential-type": "ManagedCluster"}
    gateway.server.managed_clusters.apply("MODIFIED", managed_cluster("ocm-east", 20, accepts=False))
    east = await get_json(gateway, f"{BASE}/ocm-east")
    assert "accepted" not in east["spec"]  # omitted when false, as the reference's omitempty does


async def test_get_of_something_that_is_not_a_cluster_says_why(gateway: RunningGateway) -> None:
    body = await get_json(gateway, f"{BASE}/broken", 404)
    assert (body["kind"], body["reason"], body["details"]) == (
        "Status",
        "NotFound",
        {"name": "broken", "group": "cluster.core.oam.dev", "kind": "virtualclusters"},
    )
    assert body["message"].startswith('virtualclusters.cluster.core.oam.dev "broken" not found: Secret vela-system/broken')
    assert "unknown credential type 'Kerberos'" in body["message"]
    body = await get_json(gateway, f"{BASE}/no-config", 404)
    assert body["message"] == (
        'virtualclusters.cluster.core.oam.dev "no-config" not found: '
        "ManagedCluster no-config: the ManagedCluster has no spec.managedClusterClientConfigs"
    )
    body = await get_json(gateway, f"{BASE}/nothing", 404)
    assert body["message"] == 'virtualclusters.cluster.core.oam.dev "nothing" not found'


async def test_selectors_and_pagination_work_as_for_every_list(gateway: RunningGateway) -> None:
    remote = await get_json(gateway, f"{BASE}?labelSelector={CONTROL_PLANE}%3Dfalse")
    assert [i["metadata"]["name"] for i in remote["items"]] == ["alpha", "beta", "delta", "ocm-east"]
    control_plane = await get_json(gateway, f"{BASE}?labelSelector={CONTROL_PLANE}")
    assert [i["metadata"]["name"] for i in control_plane["items"]] == ["alpha", "beta", "delta", "local", "ocm-east"]
    one = await get_json(gateway, f"{BASE}?fieldSelector=metadata.name%3Dlocal")
    assert [i["metadata"]["name"] for i in one["items"]] == ["local"]
    names: list[str] = []
    page = await get_json(gateway, f"{BASE}?limit=2")
    assert page["metadata"]["remainingItemCount"] == 3
    while True:
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
        page = await get_json(gateway, f"{BASE}?limit=2&continue={token}")
    assert names == ["alpha", "beta", "delta", "local", "ocm-east"]


async def test_writes_are_refused_with_a_status(gateway: RunningGateway) -> None:
    async with gateway.session() as s, s.delete(f"{BASE}/alpha") as resp:
        body = await resp.json()
    assert (resp.status, resp.headers["Allow"], body["reason"]) == (405, "GET, HEAD", "MethodNotAllowed")
    assert body["message"].startswith('DELETE is not supported on virtualclusters.cluster.core.oam.dev "alpha": ')


async def test_table_has_the_reference_columns_with_labels_and_creation_time_in_wide_output(gateway: RunningGateway) -> None:
    table = await get_json(gateway, f"{BASE}?labelSelector=env", Accept=TABLE_ACCEPT)
    columns = [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]]
    assert columns == [
        ("Name", "string", 0),
        ("Alias", "string", 0),
        ("Credential_Type", "string", 0),
        ("Endpoint", "string", 0),
        ("Accepted", "boolean", 0),
        ("Labels", "string", 10),
        ("Creation_Timestamp", "dateTime", 10),
    ]
    assert [row["cells"] for row in table["rows"]] == [
        ["alpha", "", "Dynamic", "https://127.0.0.1:6443", True, f"{CONTROL_PLANE}=false,env=dev", "2026-11-01T10:00:00Z"],
        [
            "beta",
            "Beta (prod)",
            "ServiceAccountToken",
            "https://10.0.0.2:6443",
            True,
            f"{CONTROL_PLANE}=false,env=prod",
            "2026-11-01T10:00:00Z",
        ],
    ]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


async def test_partial_object_metadata_list(gateway: RunningGateway) -> None:
    accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    body = await get_json(gateway, f"{BASE}?fieldSelector=metadata.name%3Docm-east", Accept=accept)
    assert body["kind"] == "PartialObjectMetadataList"
    assert [item["metadata"]["labels"] for item in body["items"]] == [{"region": "eu", CONTROL_PLANE: "false"}]


async def read_event(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    line = await asyncio.wait_for(resp.content.readline(), 10)
    event: dict[str, Any] = json.loads(line)
    return event


async def test_a_watch_sees_changes_from_both_sources_in_resource_version_order(gateway: RunningGateway) -> None:
    listed = await get_json(gateway, BASE)
    rv = listed["metadata"]["resourceVersion"]
    async with gateway.session() as s, s.get(BASE, params={"watch": "1", "resourceVersion": rv}) as resp:
        gateway.registry.apply("ADDED", cluster_secret("gamma", 30, labels={"env": "qa"}))
        gateway.server.managed_clusters.apply("ADDED", managed_cluster("ocm-west", 25))  # an older RV from the other stream
        gateway.server.managed_clusters.apply("DELETED", managed_cluster("ocm-east", 31))
        gateway.registry.apply("DELETED", cluster_secret("beta", 32))  # the ManagedCluster `beta` shows through
        events = [await read_event(resp) for _ in range(4)]
    seen = [(e["type"], e["object"]["metadata"]["name"], e["object"]["spec"]["credential-type"]) for e in events]
    assert seen == [
        ("ADDED", "gamma", "ServiceAccountToken"),
        ("ADDED", "ocm-west", "ManagedCluster"),
        ("DELETED", "ocm-east", "ManagedCluster"),
        ("MODIFIED", "beta", "ManagedCluster"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(set(versions)) and versions[0] > int(rv)
    # A watch resumed from the second event's RV replays exactly what followed it.
    params = {"watch": "1", "resourceVersion": str(versions[1])}
    async with gateway.session() as s, s.get(BASE, params=params) as resp:
        replay = [await read_event(resp) for _ in range(2)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in replay] == [("DELETED", "ocm-east"), ("MODIFIED", "beta")]


async def test_kubectl_gets_vc_by_short_name_in_wide_output_and_explains_the_spec_and_status(gateway: RunningGateway) -> None:
    code, out, err = await run_kubectl(gateway, "get", "vc")
    assert code == 0, err
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["NAME", "ALIAS", "CREDENTIAL_TYPE", "ENDPOINT", "ACCEPTED"]
    assert [line[0] for line in lines[1:]] == ["alpha", "beta", "delta", "local", "ocm-east"]
    assert lines[4] == ["local", "Internal", "-", "true"]  # the empty ALIAS cell collapses in split()
    code, out, err = await run_kubectl(gateway, "get", "virtual-clusters", "-o", "wide", "-l", "env=dev")
    assert code == 0, err
    assert out.split("\n")[0].split() == [
        "NAME",
        "ALIAS",
        "CREDENTIAL_TYPE",
        "ENDPOINT",
        "ACCEPTED",
        "LABELS",
        "CREATION_TIMESTAMP",
    ]
    assert f"{CONTROL_PLANE}=false,env=dev" in out.split("\n")[1]
    code, out, err = await run_kubectl(gateway, "explain", "virtualcluster.spec")
    assert code == 0, err
    assert "KIND:       VirtualCluster" in out or "KIND:     VirtualCluster" in out
    for field in ("accepted", "alias", "credential-type", "endpoint"):
        assert f"\n  {field}\t" in out, out
    code, out, err = await run_kubectl(gateway, "explain", "virtualcluster.status")
    assert code == 0, err
    for field in ("healthy", "healthyReason", "lastProbeTime"):
        assert f"\n  {field}\t" in out, out


async def test_kubectl_watches_vc(gateway: RunningGateway) -> None:
    proc = await start_kubectl(gateway, "get", "vcluster", "-w", "--request-timeout=20s")
    assert proc.stdout is not None
    try:
        header = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split()
        assert header[0] == "NAME"
        initial = [(await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split()[0] for _ in range(5)]
        assert initial == ["alpha", "beta", "delta", "local", "ocm-east"]
        gateway.registry.apply("ADDED", cluster_secret("gamma", 40))
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split()
        assert line == ["gamma", "ServiceAccountToken", "https://127.0.0.1:6443", "true"]
    finally:
        proc.kill()
        await proc.wait()


async def test_without_the_control_plane_there_is_no_local(tmp_path: Path) -> None:
    source = ManualSecretSource(SECRETS, "10")
    async with running_gateway(tmp_path, source, virtual_cluster_with_control_plane=False) as gw:
        body = await get_json(gw, BASE)
        assert [i["metadata"]["name"] for i in body["items"]] == ["alpha", "beta", "delta"]
        await get_json(gw, f"{BASE}/local", 404)


async def test_standalone_discovery_and_openapi_advertise_health_as_read_only(gateway: RunningGateway) -> None:
    resources = await get_json(gateway, "/apis/cluster.core.oam.dev/v1alpha1")
    health = next(r for r in resources["resources"] if r["name"] == "clustergateways/health")
    assert health["verbs"] == ["get"]
    document = await get_json(gateway, "/openapi/v2")
    assert list(document["paths"]["/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{name}/health"]) == [
        "get",
        "parameters",
    ]
    assert "/apis/cluster.core.oam.dev/v1alpha1/virtualclusters/{name}" in document["paths"]
