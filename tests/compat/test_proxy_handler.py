"""The reference's proxy handler cases (pkg/apis/cluster/v1alpha1/clustergateway_proxy_test.go),
restated against our running gateway: a request to `clustergateways/NAME/proxy/PATH` reaches the
member at PATH (after the endpoint's own path) with the query it should carry, and its answer comes
back unchanged; which identity the member sees is decided by the cluster's rules before the global ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway_apiserver.config import Config
from gateway_apiserver.registry.model import ANNOTATION_PROXY_CONFIGURATION
from gateway_apiserver.security.identity import UserInfo
from tests.compat.conftest import proxy_rules, write_proxy_config
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.member_rbac import Identity
from tests.fakes.proxying import gateway, identity_gateway, proxied, status_of, token_secret

pytestmark = pytest.mark.timeout(30)


async def echo(member: FakeMemberAPIServer, tmp_path: Path, secret: dict[str, Any], path_and_query: str) -> tuple[int, Any]:
    """GET `path_and_query` through cluster `myName`'s proxy: (status, the member's echo of the request)."""
    async with gateway(tmp_path, secret) as gw, gw.session() as client, client.get(proxied("myName", path_and_query)) as resp:
        return resp.status, await resp.json()


async def test_normal_proxy_should_work(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_proxy_test.go, TestProxyHandler/"normal proxy should work".

    A ServiceAccountToken cluster whose endpoint has no CA (so TLS is not verified): the member
    gets the path after `/proxy` and no query, and the caller gets the member's answer and status."""
    secret = token_secret("myName", member, ca_pem=None)
    status, seen = await echo(member, tmp_path, secret, "/echo/foo")
    assert status == 200
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/echo/foo", "")
    assert ["Authorization", f"Bearer {member.token}"] in seen["headers"]


async def test_not_found(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_proxy_test.go, TestProxyHandler/"not found".

    The reference's error starts with "no such cluster" (KubeVela retries a fresh cluster on those
    words). We answer 404 NotFound where the reference answers 500 (README, Compared with
    cluster-gateway: "An unknown cluster is 404"), and the message starts with the same words."""
    async with gateway(tmp_path, token_secret("other", member)) as gw:
        status, body = await status_of(gw, proxied("myName", "/echo/foo"))
    assert (status, body) == (
        404,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'no such cluster myName: clustergateways.cluster.core.oam.dev "myName" not found',
            "reason": "NotFound",
            "details": {"name": "myName", "group": "cluster.core.oam.dev", "kind": "clustergateways"},
            "code": 404,
        },
    )
    assert member.requests == []


async def test_normal_proxy_with_sub_path_in_endpoint_should_work(tmp_path: Path) -> None:
    """reference: clustergateway_proxy_test.go, TestProxyHandler/"normal proxy with sub-path in endpoint should work".

    An endpoint `https://host:port/extra`: the member gets `/extra` joined with the proxied path."""
    async with FakeMemberAPIServer(prefix="/extra") as member:
        secret = token_secret("myName", member, ca_pem=None, endpoint=member.url)
        status, seen = await echo(member, tmp_path, secret, "/echo/foo")
    assert member.url.endswith("/extra")
    assert status == 200
    assert (seen["path"], seen["query"]) == ("/extra/echo/foo", "")


async def test_normal_proxy_with_query_in_endpoint_should_work(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_proxy_test.go, TestProxyHandler/"normal proxy with query in endpoint should work".

    `__dryRun` (how the reference's clients smuggle `dryRun` past its framework) reaches the member
    as `dryRun`; the other parameters pass unchanged, in order."""
    secret = token_secret("myName", member, ca_pem=None)
    status, seen = await echo(member, tmp_path, secret, "/echo/foo?__dryRun=All&fieldValidation=Strict")
    assert status == 200
    assert (seen["path"], seen["query"]) == ("/echo/foo", "dryRun=All&fieldValidation=Strict")


async def test_get_impersonation_config(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_proxy_test.go, TestGetImpersonationConfig.

    A global rule maps user `test` to `global`; the cluster's annotation maps group `group` to
    `local`. The cluster's rule is tried first; with no match the caller is impersonated as itself
    (ClientIdentityPenetration on). The member, as a kube-apiserver does, adds `system:authenticated`
    to every impersonated identity."""
    global_rules = write_proxy_config(
        tmp_path, "{name: name-matcher, type: StaticMappingIdentityExchanger, source: {user: test}, target: {user: global}}"
    )
    cluster_rules = proxy_rules(
        "{name: group-matcher, type: StaticMappingIdentityExchanger, source: {group: group}, target: {user: local}}"
    )
    secret = token_secret("myName", member, annotations={ANNOTATION_PROXY_CONFIGURATION: cluster_rules})
    users = {
        "test-in-group": UserInfo("test", groups=("group",)),
        "test-in-group-test": UserInfo("test", groups=("group-test",)),
        "tester": UserInfo("tester", groups=("group-test",)),
    }
    gates = {**Config().feature_gates, "ClientIdentityPenetration": True}
    seen: dict[str, Identity | None] = {}
    async with identity_gateway(
        tmp_path, secret, users=users, feature_gates=gates, cluster_gateway_proxy_config=global_rules
    ) as gw:
        for token in users:
            status, _ = await status_of(gw, proxied("myName", "/echo/x"), headers={"Authorization": f"Bearer {token}"})
            assert status == 200
            seen[token] = member.requests[-1].acting_as
    assert seen == {
        "test-in-group": Identity("local", ("system:authenticated",)),
        "test-in-group-test": Identity("global", ("system:authenticated",)),
        "tester": Identity("tester", ("group-test", "system:authenticated")),
    }
