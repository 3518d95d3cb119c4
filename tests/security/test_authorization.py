"""Authorization: attributes as the kube-apiserver derives them, its 403 wording, and the decision cache."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_apiserver.api.status import StatusError
from gateway_apiserver.security.authorization import (
    SubjectAccessReviewer,
    always_allowed,
    forbidden,
    request_attributes,
    review_spec,
)
from gateway_apiserver.security.identity import UserInfo

ALICE = UserInfo("alice", uid="u-1", groups=("devs", "system:authenticated"), extra={"scopes": ("a", "b")})
CG = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"


def attrs(method: str, path: str, **query: str) -> tuple[str, str, str, str, bool]:
    a = request_attributes(method, path, query, ALICE)
    return a.verb, a.resource, a.subresource, a.name, a.resource_request


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", CG, {}, ("list", "clustergateways", "", "", True)),
        ("GET", CG, {"watch": "true"}, ("watch", "clustergateways", "", "", True)),
        ("GET", "/apis/cluster.core.oam.dev/v1alpha1/watch/clustergateways", {}, ("watch", "clustergateways", "", "", True)),
        ("GET", f"{CG}/c1", {}, ("get", "clustergateways", "", "c1", True)),
        ("GET", f"{CG}/c1", {"watch": "1"}, ("watch", "clustergateways", "", "c1", True)),
        ("HEAD", f"{CG}/c1", {}, ("get", "clustergateways", "", "c1", True)),
        ("POST", CG, {}, ("create", "clustergateways", "", "", True)),
        ("PUT", f"{CG}/c1", {}, ("update", "clustergateways", "", "c1", True)),
        ("PATCH", f"{CG}/c1", {}, ("patch", "clustergateways", "", "c1", True)),
        ("DELETE", f"{CG}/c1", {}, ("delete", "clustergateways", "", "c1", True)),
        ("DELETE", CG, {}, ("deletecollection", "clustergateways", "", "", True)),
        ("GET", f"{CG}/c1/health", {}, ("get", "clustergateways", "health", "c1", True)),
        ("PATCH", f"{CG}/c1/health", {}, ("patch", "clustergateways", "health", "c1", True)),
        # proxy: the verb follows the HTTP method, whatever the inner request is
        ("GET", f"{CG}/c1/proxy/api/v1/pods", {"watch": "true"}, ("get", "clustergateways", "proxy", "c1", True)),
        ("POST", f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps", {}, ("create", "clustergateways", "proxy", "c1", True)),
        ("PUT", f"{CG}/c1/proxy/x", {}, ("update", "clustergateways", "proxy", "c1", True)),
        ("PATCH", f"{CG}/c1/proxy/x", {}, ("patch", "clustergateways", "proxy", "c1", True)),
        ("DELETE", f"{CG}/c1/proxy/x", {}, ("delete", "clustergateways", "proxy", "c1", True)),
        ("GET", "/metrics", {}, ("get", "", "", "", False)),
        ("POST", "/something", {}, ("post", "", "", "", False)),
    ],
)
def test_attributes_follow_kube_request_info(method: str, path: str, query: dict[str, str], expected: tuple[Any, ...]) -> None:
    assert attrs(method, path, **query) == expected


def test_group_version_and_namespace() -> None:
    a = request_attributes("GET", "/api/v1/namespaces/default/configmaps/x", {}, ALICE)
    assert (a.api_group, a.api_version, a.namespace, a.resource, a.name, a.verb) == (
        "",
        "v1",
        "default",
        "configmaps",
        "x",
        "get",
    )
    a = request_attributes("GET", "/api/v1/namespaces/default", {}, ALICE)
    assert (a.namespace, a.resource, a.name) == ("", "namespaces", "default")
    a = request_attributes("GET", f"{CG}/c1", {}, ALICE)
    assert (a.api_group, a.api_version) == ("cluster.core.oam.dev", "v1alpha1")


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/livez",
        "/readyz",
        "/readyz/ping",
        "/version",
        "/api",
        "/apis",
        "/apis/",
        "/apis/cluster.core.oam.dev",
        "/apis/cluster.core.oam.dev/v1alpha1",
        "/openapi/v2",
        "/openapi/v3",
        "/openapi/v3/apis/cluster.core.oam.dev/v1alpha1",
    ],
)
def test_always_allowed_paths(path: str) -> None:
    assert always_allowed(path)


@pytest.mark.parametrize("path", [CG, f"{CG}/c1", f"{CG}/c1/proxy/", "/metrics", "/readyzz", "/apis/x/v1/things"])
def test_everything_else_needs_authorization(path: str) -> None:
    assert not always_allowed(path)


def test_forbidden_messages_match_the_kube_apiserver() -> None:
    proxy = request_attributes("GET", f"{CG}/c1/proxy/api/v1/pods", {}, ALICE)
    error = forbidden(proxy)
    assert (error.code, error.reason) == (403, "Forbidden")
    assert error.message == (
        'clustergateways.cluster.core.oam.dev "c1" is forbidden: User "alice" cannot get resource '
        '"clustergateways/proxy" in API group "cluster.core.oam.dev" at the cluster scope'
    )
    assert error.details == {"group": "cluster.core.oam.dev", "kind": "clustergateways", "name": "c1"}
    listing = forbidden(request_attributes("GET", CG, {}, ALICE), "no RBAC policy matched")
    assert listing.message == (
        'clustergateways.cluster.core.oam.dev is forbidden: User "alice" cannot list resource "clustergateways" '
        'in API group "cluster.core.oam.dev" at the cluster scope: no RBAC policy matched'
    )
    namespaced = forbidden(request_attributes("GET", "/api/v1/namespaces/default/pods", {}, ALICE))
    assert (
        namespaced.message
        == 'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default"'
    )
    assert (
        forbidden(request_attributes("GET", "/metrics", {}, ALICE)).message
        == 'forbidden: User "alice" cannot get path "/metrics"'
    )


def test_review_spec_carries_the_whole_identity() -> None:
    spec = review_spec(request_attributes("PATCH", f"{CG}/c1/proxy/x", {}, ALICE))
    assert spec == {
        "user": "alice",
        "uid": "u-1",
        "groups": ["devs", "system:authenticated"],
        "extra": {"scopes": ["a", "b"]},
        "resourceAttributes": {
            "verb": "patch",
            "group": "cluster.core.oam.dev",
            "version": "v1alpha1",
            "resource": "clustergateways",
            "subresource": "proxy",
            "name": "c1",
        },
    }
    assert review_spec(request_attributes("GET", "/metrics", {}, ALICE))["nonResourceAttributes"] == {
        "path": "/metrics",
        "verb": "get",
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_decisions_are_cached_for_their_ttl() -> None:
    answers = iter([True, False, True])
    sent: list[dict[str, Any]] = []

    async def post(body: dict[str, Any]) -> dict[str, Any]:
        sent.append(body)
        return {"status": {"allowed": next(answers), "reason": "policy"}}

    clock = Clock()
    reviewer = SubjectAccessReviewer(post, allow_ttl=10, deny_ttl=5, clock=clock)
    get_c1 = request_attributes("GET", f"{CG}/c1", {}, ALICE)
    assert (await reviewer.authorize(get_c1)).allowed
    assert (await reviewer.authorize(get_c1)).allowed
    assert len(sent) == 1
    clock.now += 10.5
    denied = await reviewer.authorize(get_c1)
    assert (denied.allowed, denied.reason) == (False, "policy")
    clock.now += 4
    assert not (await reviewer.authorize(get_c1)).allowed
    assert len(sent) == 2
    clock.now += 2
    assert (await reviewer.authorize(get_c1)).allowed
    assert len(sent) == 3
    assert sent[0]["kind"] == "SubjectAccessReview" and sent[0]["apiVersion"] == "authorization.k8s.io/v1"


async def test_a_failed_review_is_an_error_not_an_allow() -> None:
    async def post(body: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionRefusedError("hosting cluster down")

    reviewer = SubjectAccessReviewer(post)
    with pytest.raises(StatusError) as err:
        await reviewer.authorize(request_attributes("GET", CG, {}, ALICE))
    assert err.value.code == 500
    assert "could not be made" in err.value.message


async def test_denied_wins_over_allowed() -> None:
    async def post(body: dict[str, Any]) -> dict[str, Any]:
        return {"status": {"allowed": True, "denied": True}}

    assert not (await SubjectAccessReviewer(post).authorize(request_attributes("GET", CG, {}, ALICE))).allowed
