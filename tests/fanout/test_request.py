"""Reading a fan-out request: the clusters it selects, the path each member is asked, the query it receives."""

from __future__ import annotations

import pytest

from gateway_apiserver.base.status import StatusError
from gateway_apiserver.fanout.request import page_query, parse_fanout


def test_the_cluster_selector_is_read_and_never_forwarded() -> None:
    plan = parse_fanout("/api/v1/namespaces/shop/pods", "labelSelector=app%3Dweb&clusterSelector=env%3Dprod&impersonate=true")
    assert (plan.verb, plan.member_query, str(plan.selector), plan.inner_path) == (
        "list",
        "labelSelector=app%3Dweb&impersonate=true",  # impersonate is the proxy's to strip, as on a proxied request
        "env=prod",
        "/api/v1/namespaces/shop/pods",
    )
    assert plan.selector.matches({"env": "prod"}) and not plan.selector.matches({"env": "dev"})


def test_no_cluster_selector_selects_every_cluster() -> None:
    assert parse_fanout("/api/v1/pods", "").selector.empty


def test_a_watch_ends_when_the_fan_out_says_so_not_when_a_member_does() -> None:
    plan = parse_fanout("/api/v1/pods", "watch=true&timeoutSeconds=30&allowWatchBookmarks=true")
    assert (plan.verb, plan.watch, plan.timeout_seconds, plan.member_query) == (
        "watch",
        True,
        30,
        "watch=true&allowWatchBookmarks=true",
    )
    assert parse_fanout("/api/v1/watch/pods", "").verb == "watch"  # the legacy watch path too


def test_a_get_reads_one_object_everywhere() -> None:
    assert parse_fanout("/apis/apps/v1/namespaces/shop/deployments/web", "").verb == "get"


@pytest.mark.parametrize(
    ("remainder", "query", "message"),
    [
        ("", "", "a fan-out needs a resource path after /proxy, e.g. /api/v1/namespaces/default/pods"),
        ("/api/v1/pods", "continue=abc", "continue is not supported on a fan-out: limit and continue page one cluster's list; "
         "the fan-out answers whole lists, paging each member itself"),
        ("/api/v1/pods", "resourceVersionMatch=Exact", "resourceVersionMatch is not supported on a fan-out: "
         "resourceVersions differ from cluster to cluster"),
        ("/api/v1/pods", "clusterSelector=a&clusterSelector=b", "clusterSelector may be given once"),
        ("/api/v1/pods", "watch=1&timeoutSeconds=soon", 'invalid timeoutSeconds "soon": not an integer'),
        ("/version", "", "a fan-out reads resources only (list, watch, or get of one object without a subresource); "
         "/version is not one"),
        ("/api/v1/namespaces/shop/pods/web-1/status", "", "a fan-out reads resources only (list, watch, or get of one "
         "object without a subresource); /api/v1/namespaces/shop/pods/web-1/status is not one"),
        ("/api/v1/../../secrets", "", "invalid proxy path: '.' and '..' segments (also percent-encoded) are not allowed"),
    ],
)  # fmt: skip
def test_what_a_fan_out_cannot_answer_is_a_bad_request(remainder: str, query: str, message: str) -> None:
    with pytest.raises(StatusError) as caught:
        parse_fanout(remainder, query)
    assert (caught.value.code, caught.value.reason, caught.value.message) == (400, "BadRequest", message)


def test_resource_version_zero_means_the_same_on_every_member() -> None:
    assert parse_fanout("/api/v1/pods", "resourceVersion=0").member_query == "resourceVersion=0"


def test_each_page_adds_the_limit_and_the_members_continue_token() -> None:
    assert page_query("", 500, "") == "limit=500"
    assert page_query("labelSelector=a", 500, "eyJ2Ijo=+/") == "labelSelector=a&limit=500&continue=eyJ2Ijo%3D%2B%2F"
