"""virtualclusters in hosting mode: fed by the real Secret informer, authorized by SubjectAccessReview."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.hosting import SECRET_NAMESPACE, HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule

BASE = "/apis/cluster.core.oam.dev/v1alpha1/virtualclusters"
GATEWAYS_ONLY = "gateways-only-token"
VC_READER = "vc-reader-token"


@pytest.fixture
async def hosted(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> AsyncIterator[HostingGateway]:
    add_cluster(kube_apiserver, "east", "https://east.example:6443", token="token-of-east")
    kube_apiserver.users[GATEWAYS_ONLY] = {"username": "gateways-only", "uid": "g-1", "groups": []}
    kube_apiserver.users[VC_READER] = {"username": "vc-reader", "uid": "v-1", "groups": []}
    group = ("cluster.core.oam.dev",)
    kube_apiserver.policy = [
        PolicyRule(users=("gateways-only",), verbs=("get", "list", "watch"), api_groups=group, resources=("clustergateways",)),
        PolicyRule(users=("vc-reader",), verbs=("get", "list", "watch"), api_groups=group, resources=("virtualclusters",)),
    ]
    async with hosting_gateway(tmp_path, kube_apiserver) as gw:
        await asyncio.wait_for(gw.server.virtual_clusters.synced.wait(), 10)
        yield gw


async def get(gw: HostingGateway, path: str, token: str, **params: str) -> tuple[int, Any]:
    async with gw.session() as s, s.get(path, params=params, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_virtualclusters_are_authorized_as_their_own_resource(hosted: HostingGateway) -> None:
    status, body = await get(hosted, BASE, GATEWAYS_ONLY)
    assert (status, body["kind"], body["reason"]) == (403, "Status", "Forbidden")
    assert body["message"] == (
        'virtualclusters.cluster.core.oam.dev is forbidden: User "gateways-only" cannot list resource "virtualclusters" '
        'in API group "cluster.core.oam.dev" at the cluster scope'
    )
    status, body = await get(hosted, BASE, VC_READER)
    assert status == 200, body
    assert [(i["metadata"]["name"], i["spec"]["credential-type"]) for i in body["items"]] == [
        ("east", "ServiceAccountToken"),
        ("local", "Internal"),
    ]
    assert body["items"][0]["spec"]["endpoint"] == "https://east.example:6443"


async def test_a_secret_created_in_the_hosting_cluster_reaches_a_virtualcluster_watch(hosted: HostingGateway) -> None:
    status, listed = await get(hosted, BASE, VC_READER)
    assert status == 200, listed
    headers = {"Authorization": f"Bearer {VC_READER}"}
    params = {"watch": "1", "resourceVersion": listed["metadata"]["resourceVersion"]}
    async with hosted.session() as s, s.get(BASE, params=params, headers=headers) as resp:
        assert resp.status == 200
        add_cluster(hosted.api, "west", "https://west.example:6443", token="token-of-west")
        hosted.api.delete_secret(SECRET_NAMESPACE, "east")
        events = [json.loads(await asyncio.wait_for(resp.content.readline(), 10)) for _ in range(2)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "west"), ("DELETED", "east")]
