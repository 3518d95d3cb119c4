"""Proxy target URLs: prefix joining, traversal rejection, query rewriting, long-running detection."""

from __future__ import annotations

import pytest

from gateway_apiserver.base.status import StatusError
from gateway_apiserver.proxy.paths import (
    check_remainder,
    is_long_running,
    join_path,
    proxy_target,
    remainder_of,
    request_timeout,
    rewrite_query,
)


@pytest.mark.parametrize(
    ("endpoint", "remainder", "expected"),
    [
        ("https://10.0.0.1:6443", "/api/v1/pods", "https://10.0.0.1:6443/api/v1/pods"),
        ("https://10.0.0.1:6443/", "/api", "https://10.0.0.1:6443/api"),
        ("https://rancher/k8s/clusters/c-abc", "/api/v1", "https://rancher/k8s/clusters/c-abc/api/v1"),
        ("https://rancher/k8s/clusters/c-abc/", "/version", "https://rancher/k8s/clusters/c-abc/version"),
        ("https://rancher/k8s/clusters/c-abc", "", "https://rancher/k8s/clusters/c-abc"),
        ("https://10.0.0.1", "", "https://10.0.0.1/"),
        ("https://10.0.0.1", "/api/", "https://10.0.0.1/api/"),
        ("https://h/p%20q", "/a%20b/c%3Ad", "https://h/p%20q/a%20b/c%3Ad"),  # raw bytes kept, never re-quoted
        ("https://h/clusterX", "/api", "https://h/clusterX/api"),  # only slashes are trimmed from the prefix
    ],
)
def test_the_endpoint_prefix_is_kept(endpoint: str, remainder: str, expected: str) -> None:
    assert str(proxy_target(endpoint, remainder, "").url) == expected


DOTS = "'.' and '..' segments (also percent-encoded) are not allowed"
SLASHES = "encoded slashes (%2F) are not allowed"
BACKSLASHES = "backslashes (also encoded as %5C) are not allowed"
EMPTY = "empty path segments ('//') are not allowed"
CONTROL = "control characters are not allowed"


@pytest.mark.parametrize(
    ("remainder", "reason"),
    [
        ("/..", DOTS),
        ("/../secrets", DOTS),
        ("/api/../../x", DOTS),
        ("/./api", DOTS),
        ("/.;x/api", DOTS),  # a path parameter on '.'
        ("/%2e/x", DOTS),
        ("/%2e%2e/x", DOTS),
        ("/%2E%2E/x", DOTS),
        ("/.%2e/x", DOTS),
        ("/%252e%252e/x", DOTS),  # double-encoded
        ("/api/..;/x", DOTS),  # path parameter trick
        ("/%2e%2e;x/y", DOTS),
        ("/a%2fb", SLASHES),
        ("/a%2Fb", SLASHES),
        ("/a%252fb", SLASHES),
        ("/a%5cb", BACKSLASHES),
        ("/a\\b", BACKSLASHES),
        ("//evil.example/x", EMPTY),
        ("/api//v1", EMPTY),
        ("/a%20b//c", EMPTY),  # also where a segment needed decoding
        ("/a\tb", CONTROL),
        ("/a%00b", CONTROL),
        ("/a%zz", "malformed percent-encoding"),
        ("api", "the path after /proxy must start with '/'"),
    ],
)
def test_traversal_attempts_are_400_saying_why(remainder: str, reason: str) -> None:
    with pytest.raises(StatusError) as err:
        proxy_target("https://rancher/k8s/clusters/c-abc", remainder, "")
    assert err.value.to_status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"invalid proxy path: {reason}",
        "reason": "BadRequest",
        "code": 400,
    }


@pytest.mark.parametrize(
    "remainder",
    ["", "/", "/api/v1/", "/a.b/c", "/.../x", "/.hidden", "/..x", "/x..", "/a%20b", "/a%20b/", "/%2e%2ex", "/a;b", "/x/..a;b"],
)
def test_ordinary_paths_pass(remainder: str) -> None:
    check_remainder(remainder)


def test_join_path() -> None:
    assert join_path("", "") == "/"
    assert join_path("/p/", "/x") == "/p/x"


def test_query_is_forwarded_byte_for_byte() -> None:
    raw = "labelSelector=app%3Dweb%2Ctier+in+(a)&limit=500&fieldSelector=metadata.name%3Dx&watch=1"
    target = proxy_target("https://h:1/p", "/api/v1/pods", raw)
    assert target.url.raw_query_string == raw
    assert str(target.url) == f"https://h:1/p/api/v1/pods?{raw}"
    assert target.impersonate_requested is False


def test_dry_run_and_impersonate() -> None:
    assert rewrite_query("__dryRun=All&fieldManager=kubectl") == ("dryRun=All&fieldManager=kubectl", False)
    assert rewrite_query("dryRun=All") == ("dryRun=All", False)
    assert rewrite_query("a=1&impersonate=true&b=%2F") == ("a=1&b=%2F", True)
    assert rewrite_query("impersonate=false") == ("", False)
    assert rewrite_query("impersonate=1&impersonate=0") == ("", True)
    assert rewrite_query("") == ("", False)
    assert rewrite_query("x") == ("x", False)
    assert rewrite_query("impersonate=true=1&a=1") == ("a=1", False)  # the name ends at the first '='
    assert rewrite_query("a=1&__dryRun=All=x") == ("a=1&dryRun=All=x", False)


def test_the_target_says_whether_impersonation_was_asked() -> None:
    target = proxy_target("https://h:1", "/api", "impersonate=true&watch=1")
    assert (str(target.url), target.impersonate_requested) == ("https://h:1/api?watch=1", True)
    assert proxy_target("https://h:1", "/api", "impersonate=false").impersonate_requested is False


def test_remainder_of_raw_path() -> None:
    base = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy"
    assert remainder_of(base, 6) == ""
    assert remainder_of(base + "/", 6) == "/"
    assert remainder_of(base + "/api/v1/a%2Fb", 6) == "/api/v1/a%2Fb"


@pytest.mark.parametrize(
    ("remainder", "query", "expected"),
    [
        ("/api/v1/namespaces/d/configmaps", {"watch": "true"}, True),
        ("/api/v1/namespaces/d/configmaps", {"watch": "1"}, True),
        ("/api/v1/namespaces/d/configmaps", {"watch": "false"}, False),
        ("/api/v1/namespaces/d/configmaps", {"watch": "t"}, True),  # Go's ParseBool spellings
        ("/api/v1/namespaces/d/configmaps", {"watch": "T"}, True),
        ("/api/v1/namespaces/d/configmaps", {"watch": "TRUE"}, True),
        ("/api/v1/namespaces/d/configmaps", {"watch": "yes"}, True),  # the member streams it: no request timeout
        ("/api/v1/namespaces/d/configmaps", {"watch": ""}, True),
        ("/api/v1/namespaces/d/configmaps", {"watch": "0"}, False),
        ("/api/v1/namespaces/d/pods/p/%65xec", {}, True),  # the member decodes it: exec
        ("/api/v1/namespaces/d/pods/p/log", {"follow": "true"}, True),
        ("/api/v1/namespaces/d/pods/p/log", {}, False),
        ("/api/v1/watch/namespaces/d/configmaps", {}, True),
        ("/apis/apps/v1/watch/deployments", {}, True),
        ("/api/v1/namespaces/d/pods/p/exec", {"command": "ls"}, True),
        ("/api/v1/namespaces/d/pods/p/portforward", {}, True),
        ("/api/v1/namespaces/d/services/s/proxy/metrics", {}, True),
        ("/api/v1/nodes/n/proxy/stats", {}, True),
        ("/api/v1/namespaces/exec/pods", {}, False),
        ("/api/v1/namespaces/d/configmaps/proxy", {}, False),
        ("/api/v1/namespaces/d/exec/x", {}, False),  # a resource named exec, not the subresource
        ("/version", {}, False),
    ],
)
def test_long_running(remainder: str, query: dict[str, str], expected: bool) -> None:
    assert is_long_running(remainder, query) is expected


def test_request_timeout() -> None:
    assert request_timeout({}, 60) == 60
    assert request_timeout({"timeout": "5s"}, 60) == 60
    assert request_timeout({"timeout": "2m0s"}, 60) == 125
    assert request_timeout({"timeout": "1h"}, 60) == 3605
    assert request_timeout({"timeout": "junk"}, 60) == 60
    assert request_timeout({"timeout": "2m0sjunk"}, 60) == 60  # all of it must be a duration
