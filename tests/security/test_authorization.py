"""Authorization: attributes as the kube-apiserver derives them, its 403 wording, and the decision cache."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import MultiDict

from gateway_apiserver.base.status import StatusError
from gateway_apiserver.security.authorization import (
    AlwaysAllow,
    Decision,
    RequestAttributes,
    SubjectAccessReviewer,
    always_allowed,
    forbidden,
    request_attributes,
    review_spec,
)
from gateway_apiserver.security.identity import UserInfo

ALICE = UserInfo("alice", uid="u-1", groups=("devs", "system:authenticated"), extra={"scopes": ("a", "b")})
CG = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"


def attrs(method: str, path: str, **query: str) -> RequestAttributes:
    return request_attributes(method, path, MultiDict(query), ALICE)


def spec_of(method: str, path: str, **query: str) -> dict[str, Any]:
    """The resource or non-resource part of the SubjectAccessReview spec the gateway sends."""
    spec = review_spec(attrs(method, path, **query))
    part: dict[str, Any] = spec.get("resourceAttributes") or spec["nonResourceAttributes"]
    return part


def cg(verb: str, name: str = "", subresource: str = "") -> dict[str, str]:
    spec = {"verb": verb, "group": "cluster.core.oam.dev", "version": "v1alpha1", "resource": "clustergateways"}
    return spec | ({"subresource": subresource} if subresource else {}) | ({"name": name} if name else {})


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", CG, {}, cg("list")),
        ("GET", CG, {"watch": "true"}, cg("watch")),
        ("GET", "/apis/cluster.core.oam.dev/v1alpha1/watch/clustergateways", {}, cg("watch")),
        # list and watch of one object by name, as `kubectl get cg c1 [-w]` asks
        ("GET", CG, {"fieldSelector": "metadata.name=c1"}, cg("list", "c1")),
        ("GET", CG, {"fieldSelector": "metadata.name=c1", "watch": "true"}, cg("watch", "c1")),
        ("GET", CG, {"fieldSelector": "metadata.name!=c1", "watch": "true"}, cg("watch")),
        ("GET", f"{CG}/c1", {}, cg("get", "c1")),
        ("GET", f"{CG}/c1", {"watch": "1"}, cg("get", "c1")),
        ("GET", "/apis/cluster.core.oam.dev/v1alpha1/watch/clustergateways/c1", {}, cg("watch", "c1")),
        ("HEAD", f"{CG}/c1", {}, cg("get", "c1")),
        ("POST", CG, {}, cg("create")),
        ("PUT", f"{CG}/c1", {}, cg("update", "c1")),
        ("PATCH", f"{CG}/c1", {}, cg("patch", "c1")),
        ("DELETE", f"{CG}/c1", {}, cg("delete", "c1")),
        ("DELETE", CG, {}, cg("deletecollection")),
        ("GET", f"{CG}/c1/health", {}, cg("get", "c1", "health")),
        ("PATCH", f"{CG}/c1/health", {}, cg("patch", "c1", "health")),
        ("PUT", f"{CG}/c1/health", {}, cg("update", "c1", "health")),
        # proxy: the verb follows the HTTP method, whatever the inner request is
        ("GET", f"{CG}/c1/proxy/api/v1/pods", {"watch": "true"}, cg("get", "c1", "proxy")),
        ("POST", f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps", {}, cg("create", "c1", "proxy")),
        ("PUT", f"{CG}/c1/proxy/x", {}, cg("update", "c1", "proxy")),
        ("PATCH", f"{CG}/c1/proxy/x", {}, cg("patch", "c1", "proxy")),
        ("DELETE", f"{CG}/c1/proxy/x", {}, cg("delete", "c1", "proxy")),
        ("GET", "/metrics", {}, {"path": "/metrics", "verb": "get"}),
        ("HEAD", "/metrics", {}, {"path": "/metrics", "verb": "head"}),
        ("POST", "/something", {}, {"path": "/something", "verb": "post"}),
        # member paths, as --authorize-proxy-subpath reviews them
        (
            "GET",
            "/api/v1/namespaces/default",
            {},
            {"verb": "get", "group": "", "version": "v1", "resource": "namespaces", "name": "default", "namespace": "default"},
        ),
        (
            "DELETE",
            "/api/v1/namespaces/foo",
            {},
            {"verb": "delete", "group": "", "version": "v1", "resource": "namespaces", "name": "foo", "namespace": "foo"},
        ),
        (
            "GET",
            "/api/v1/namespaces/foo/status",
            {},
            {
                "verb": "get",
                "group": "",
                "version": "v1",
                "resource": "namespaces",
                "subresource": "status",
                "name": "foo",
                "namespace": "foo",
            },
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps/x",
            {},
            {"verb": "get", "group": "", "version": "v1", "resource": "configmaps", "name": "x", "namespace": "default"},
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/d/deployments",
            {"fieldSelector": "metadata.name=web"},
            {"verb": "list", "group": "apps", "version": "v1", "resource": "deployments", "name": "web", "namespace": "d"},
        ),
    ],
)
def test_review_attributes_follow_kube_request_info(
    method: str, path: str, query: dict[str, str], expected: dict[str, str]
) -> None:
    assert spec_of(method, path, **query) == expected


def test_attributes_keep_the_path_and_resource_request_flag() -> None:
    proxy = attrs("GET", f"{CG}/c1/proxy/api/v1/pods")
    assert (proxy.path, proxy.resource_request, proxy.user) == (f"{CG}/c1/proxy/api/v1/pods", True, ALICE)
    metrics = attrs("GET", "/metrics")
    assert (metrics.path, metrics.resource_request, metrics.resource) == ("/metrics", False, "")


def test_a_path_with_a_verb_but_no_resource_is_a_bad_request() -> None:
    with pytest.raises(StatusError) as err:
        attrs("GET", "/apis/cluster.core.oam.dev/v1alpha1/watch")
    assert (err.value.code, err.value.reason) == (400, "BadRequest")
    assert err.value.message == (
        "unable to determine kind and namespace from url /apis/cluster.core.oam.dev/v1alpha1/watch: "
        "the path names no resource after the verb"
    )


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


@pytest.mark.parametrize(
    "path", [CG, f"{CG}/c1", f"{CG}/c1/proxy/", "/metrics", "/readyzz", "/apis/x/v1/things", "/", "/apiX", "/versionX"]
)
def test_everything_else_needs_authorization(path: str) -> None:
    assert not always_allowed(path)


def test_forbidden_messages_match_the_kube_apiserver() -> None:
    proxy = attrs("GET", f"{CG}/c1/proxy/api/v1/pods")
    error = forbidden(proxy)
    assert (error.code, error.reason) == (403, "Forbidden")
    assert error.message == (
        'clustergateways.cluster.core.oam.dev "c1" is forbidden: User "alice" cannot get resource '
        '"clustergateways/proxy" in API group "cluster.core.oam.dev" at the cluster scope'
    )
    assert error.details == {"group": "cluster.core.oam.dev", "kind": "clustergateways", "name": "c1"}
    listing = forbidden(attrs("GET", CG), "no RBAC policy matched")
    assert listing.details == {"group": "cluster.core.oam.dev", "kind": "clustergateways"}
    assert listing.message == (
        'clustergateways.cluster.core.oam.dev is forbidden: User "alice" cannot list resource "clustergateways" '
        'in API group "cluster.core.oam.dev" at the cluster scope: no RBAC policy matched'
    )
    namespaced = forbidden(attrs("GET", "/api/v1/namespaces/default/pods"))
    assert (
        namespaced.message
        == 'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default"'
    )
    assert forbidden(attrs("GET", "/metrics")).message == 'forbidden: User "alice" cannot get path "/metrics"'


def test_review_spec_carries_the_whole_identity() -> None:
    spec = review_spec(attrs("PATCH", f"{CG}/c1/proxy/x"))
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
    assert review_spec(attrs("GET", "/metrics")) == {
        "user": "alice",
        "uid": "u-1",
        "groups": ["devs", "system:authenticated"],
        "extra": {"scopes": ["a", "b"]},
        "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
    }
    bare = UserInfo("bob")
    assert review_spec(request_attributes("GET", f"{CG}/c1", MultiDict(), bare)) == {
        "user": "bob",
        "groups": [],
        "resourceAttributes": cg("get", "c1"),
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
    get_c1 = attrs("GET", f"{CG}/c1")
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
        await reviewer.authorize(attrs("GET", CG))
    assert (err.value.code, err.value.reason, err.value.message) == (
        500,
        "InternalError",
        "authorization failed: the SubjectAccessReview could not be made: ConnectionRefusedError",
    )


async def test_denied_wins_over_allowed() -> None:
    async def post(body: dict[str, Any]) -> dict[str, Any]:
        return {"status": {"allowed": True, "denied": True}}

    assert not (await SubjectAccessReviewer(post).authorize(attrs("GET", CG))).allowed


async def test_standalone_allows_everything() -> None:
    assert await AlwaysAllow().authorize(attrs("DELETE", CG)) == Decision(True, "standalone mode")


def test_a_non_resource_403_has_empty_details_as_the_kube_apiserver_sends() -> None:
    assert forbidden(attrs("GET", "/metrics")).to_status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'forbidden: User "alice" cannot get path "/metrics"',
        "reason": "Forbidden",
        "details": {},
        "code": 403,
    }


class Reviews:
    """A hosting cluster answering SubjectAccessReviews from a list, recording each body."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, body: dict[str, Any]) -> Any:
        self.sent.append(body)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


ALLOW = {"status": {"allowed": True}}
DENY = {"status": {"allowed": False}}


async def test_the_review_sent_is_the_request_spec() -> None:
    post = Reviews(ALLOW)
    reviewer = SubjectAccessReviewer(post)
    get_c1 = attrs("GET", f"{CG}/c1")
    assert await reviewer.authorize(get_c1) == Decision(True, "")
    assert post.sent == [{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": review_spec(get_c1)}]
    assert reviewer.reviews == 1


async def test_each_question_has_its_own_cached_answer() -> None:
    post = Reviews(ALLOW, DENY)
    reviewer = SubjectAccessReviewer(post)
    get_c1, get_c2 = attrs("GET", f"{CG}/c1"), attrs("GET", f"{CG}/c2")
    assert [(await reviewer.authorize(a)).allowed for a in (get_c1, get_c2, get_c1, get_c2)] == [True, False, True, False]
    assert [body["spec"]["resourceAttributes"]["name"] for body in post.sent] == ["c1", "c2"]
    assert reviewer.reviews == 2


async def test_the_same_identity_in_another_order_is_the_same_question() -> None:
    post = Reviews(ALLOW)
    reviewer = SubjectAccessReviewer(post)
    one = UserInfo("alice", extra={"a": ("1",), "b": ("2",)})
    other = UserInfo("alice", extra={"b": ("2",), "a": ("1",)})
    await reviewer.authorize(request_attributes("GET", CG, MultiDict(), one))
    await reviewer.authorize(request_attributes("GET", CG, MultiDict(), other))
    assert len(post.sent) == 1


@pytest.mark.parametrize("allowed", [True, False])
async def test_decisions_last_ten_seconds_by_default(allowed: bool) -> None:
    post = Reviews({"status": {"allowed": allowed}})
    clock = Clock()
    reviewer = SubjectAccessReviewer(post, clock=clock)
    get_c1 = attrs("GET", f"{CG}/c1")
    await reviewer.authorize(get_c1)
    clock.now += 9.99
    await reviewer.authorize(get_c1)
    assert len(post.sent) == 1
    clock.now += 0.01  # exactly ten seconds: expired
    await reviewer.authorize(get_c1)
    assert len(post.sent) == 2


async def test_an_allow_is_kept_for_the_allow_ttl_not_the_deny_ttl() -> None:
    post = Reviews(ALLOW)
    clock = Clock()
    reviewer = SubjectAccessReviewer(post, allow_ttl=10, deny_ttl=5, clock=clock)
    await reviewer.authorize(attrs("GET", CG))
    clock.now += 7
    await reviewer.authorize(attrs("GET", CG))
    assert len(post.sent) == 1


async def test_the_cache_forgets_the_oldest_question_first() -> None:
    post = Reviews(ALLOW)
    reviewer = SubjectAccessReviewer(post, max_entries=2)
    a, b, c = (attrs("GET", f"{CG}/{name}") for name in "abc")
    for question in (a, b, c, c, b):
        await reviewer.authorize(question)
    assert len(post.sent) == 3  # c and b were still cached
    await reviewer.authorize(a)
    assert len(post.sent) == 4  # a was forgotten


async def test_the_cache_holds_ten_thousand_questions_by_default() -> None:
    post = Reviews(ALLOW)
    reviewer = SubjectAccessReviewer(post)
    questions = [attrs("GET", f"{CG}/c{i}") for i in range(10_001)]
    for question in questions:
        await reviewer.authorize(question)
    await reviewer.authorize(questions[1])
    assert len(post.sent) == 10_001
    await reviewer.authorize(questions[0])
    assert len(post.sent) == 10_002


async def test_a_reason_is_passed_on_and_absent_is_empty() -> None:
    reviewer = SubjectAccessReviewer(Reviews({"status": {"allowed": False, "reason": "no rule"}}))
    assert await reviewer.authorize(attrs("GET", CG)) == Decision(False, "no rule")
    reviewer = SubjectAccessReviewer(Reviews({"status": {"allowed": False}}))
    assert await reviewer.authorize(attrs("GET", CG)) == Decision(False, "")


@pytest.mark.parametrize("answer", [None, [], "allowed", {"status": None}, {}])
async def test_an_answer_that_is_not_a_review_denies(answer: Any) -> None:
    assert await SubjectAccessReviewer(Reviews(answer)).authorize(attrs("GET", CG)) == Decision(False, "")


async def test_failures_and_evaluation_errors_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def refused(body: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionRefusedError("secret detail")

    with pytest.raises(StatusError) as err:
        await SubjectAccessReviewer(refused).authorize(attrs("GET", CG))
    assert (err.value.code, err.value.reason) == (500, "InternalError")
    denied = Reviews({"status": {"allowed": False, "evaluationError": "webhook down"}})
    await SubjectAccessReviewer(denied).authorize(attrs("GET", CG))
    allowed = Reviews({"status": {"allowed": True, "evaluationError": "one of two webhooks down"}})
    await SubjectAccessReviewer(allowed).authorize(attrs("GET", CG))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "SubjectAccessReview failed: ConnectionRefusedError"),
        ("WARNING", "SubjectAccessReview evaluation error: webhook down"),
    ]
    assert "secret detail" not in caplog.text  # the exception's text may carry anything: only its type is logged
