"""Each member of a fan-out is authorized as its own proxied request would be: the hub's RBAC on
`clustergateways/proxy` for that cluster's name, and `--authorize-proxy-subpath` on the inner path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fanout.conftest import FANOUT, GROUP, Fleet, started_fleet

PODS = FANOUT + "/api/v1/namespaces/shop/pods?clusterSelector=env%3Dprod%2Ctier%21%3Dbroken"


async def get(fleet: Fleet, path: str) -> tuple[int, Any]:
    async with fleet.gateway.session() as session, session.get(path, headers=fleet.headers()) as resp:
        return resp.status, await resp.json()


def proxy_review(cluster: str) -> dict[str, Any]:
    """The SubjectAccessReview of alice's proxied request to `cluster` (the fan-out asks exactly this)."""
    return {
        "user": "alice",
        "groups": ["devs", "system:authenticated"],
        "uid": "a-1",
        "resourceAttributes": {
            "verb": "get",
            "group": GROUP,
            "version": "v1alpha1",
            "resource": "clustergateways",
            "subresource": "proxy",
            "name": cluster,
        },
    }


async def test_each_member_is_reviewed_as_its_own_proxied_request(fleet: Fleet) -> None:
    before = len(fleet.gateway.reviews())
    status, _ = await get(fleet, PODS)
    assert status == 200
    reviews = fleet.gateway.reviews()[before:]
    # The fan-out URL itself (by the middleware), the right to see which clusters match, then each member.
    listing = {
        "user": "alice",
        "groups": ["devs", "system:authenticated"],
        "uid": "a-1",
        "resourceAttributes": {"verb": "list", "group": GROUP, "version": "v1alpha1", "resource": "clustergateways"},
    }
    assert reviews[:2] == [proxy_review("-"), listing]
    assert sorted(reviews[2:], key=lambda r: r["resourceAttributes"]["name"]) == [proxy_review("east"), proxy_review("west")]


async def test_authorize_proxy_subpath_reviews_the_inner_path_on_the_hosting_cluster(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer
) -> None:
    async with started_fleet(tmp_path, kube_apiserver, authorize_proxy_subpath=True) as fleet:
        kube_apiserver.policy.append(PolicyRule(users=("alice",), verbs=("list",), resources=("pods",), namespaces=("shop",)))
        status, body = await get(fleet, PODS)
        assert (status, [s["status"] for s in body["clusters"]]) == (200, ["Success", "Success"])
        status, body = await get(fleet, PODS.replace("/shop/", "/elsewhere/"))
        assert (status, body) == (
            403,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": 'pods is forbidden: User "alice" cannot list resource "pods" in API group "" '
                'in the namespace "elsewhere"',
                "reason": "Forbidden",
                "code": 403,
                "details": {"group": "", "kind": "pods"},
            },
        )
