"""How a request is read for authorization: the facts of kube's RequestInfoFactory, and our own paths.

The first tables restate, as facts, what k8s.io/apiserver's requestinfo_test.go pins for the
kube-apiserver; the later ones add the gateway's routes and the member paths that
--authorize-proxy-subpath authorizes a second time.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest
from multidict import MultiDict
from yarl import URL

from gateway_apiserver.security.request_info import RequestInfo, RequestInfoError, request_info

G = "/apis/cluster.core.oam.dev/v1alpha1"
CG = f"{G}/clustergateways"


class Read(NamedTuple):
    """What one request is read as (resource requests only)."""

    verb: str
    group: str
    version: str
    namespace: str
    resource: str
    subresource: str
    name: str
    parts: tuple[str, ...]


def read(method: str, url: str) -> RequestInfo:
    parsed = URL(url)
    return request_info(method, parsed.path, parsed.query)


def summary(info: RequestInfo) -> Read:
    assert info.resource_request
    return Read(
        info.verb,
        info.api_group,
        info.api_version,
        info.namespace,
        info.resource,
        info.subresource,
        info.name,
        info.parts,
    )


KUBE_RESOURCE_REQUESTS = [
    # Collections and objects, in and out of a namespace. `namespaces/<n>` alone is the namespace object.
    ("GET", "/api/v1/namespaces", Read("list", "", "v1", "", "namespaces", "", "", ("namespaces",))),
    ("GET", "/api/v1/namespaces/other", Read("get", "", "v1", "other", "namespaces", "", "other", ("namespaces", "other"))),
    ("GET", "/api/v1/namespaces/other/pods", Read("list", "", "v1", "other", "pods", "", "", ("pods",))),
    ("GET", "/api/v1/namespaces/other/pods/foo", Read("get", "", "v1", "other", "pods", "", "foo", ("pods", "foo"))),
    ("HEAD", "/api/v1/namespaces/other/pods/foo", Read("get", "", "v1", "other", "pods", "", "foo", ("pods", "foo"))),
    ("GET", "/api/v1/pods", Read("list", "", "v1", "", "pods", "", "", ("pods",))),
    ("HEAD", "/api/v1/pods", Read("list", "", "v1", "", "pods", "", "", ("pods",))),
    # A verb in the path: `proxy/` keeps the rest of the path out of the subresource, `watch/` names a watch.
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo", Read("proxy", "", "v1", "other", "pods", "", "foo", ("pods", "foo"))),
    (
        "GET",
        "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource",
        Read("proxy", "", "v1", "other", "pods", "", "foo", ("pods", "foo", "subpath", "not", "a", "subresource")),
    ),
    ("GET", "/api/v1/watch/pods", Read("watch", "", "v1", "", "pods", "", "", ("pods",))),
    ("GET", "/api/v1/watch/namespaces/other/pods", Read("watch", "", "v1", "other", "pods", "", "", ("pods",))),
    # The watch parameter turns a list into a watch: "true" and "1" do, "false" and "0" do not.
    ("GET", "/api/v1/pods?watch=true", Read("watch", "", "v1", "", "pods", "", "", ("pods",))),
    ("GET", "/api/v1/pods?watch=false", Read("list", "", "v1", "", "pods", "", "", ("pods",))),
    ("GET", "/api/v1/namespaces/other/pods?watch=1", Read("watch", "", "v1", "other", "pods", "", "", ("pods",))),
    ("GET", "/api/v1/namespaces/other/pods?watch=0", Read("list", "", "v1", "other", "pods", "", "", ("pods",))),
    # The third part after the resource is the subresource; a namespace has its own status and finalize.
    (
        "GET",
        "/api/v1/namespaces/other/pods/foo/status",
        Read("get", "", "v1", "other", "pods", "status", "foo", ("pods", "foo", "status")),
    ),
    (
        "GET",
        "/api/v1/namespaces/other/pods/foo/proxy/subpath",
        Read("get", "", "v1", "other", "pods", "proxy", "foo", ("pods", "foo", "proxy", "subpath")),
    ),
    (
        "PUT",
        "/api/v1/namespaces/other/finalize",
        Read("update", "", "v1", "other", "namespaces", "finalize", "other", ("namespaces", "other", "finalize")),
    ),
    (
        "PUT",
        "/api/v1/namespaces/other/status",
        Read("update", "", "v1", "other", "namespaces", "status", "other", ("namespaces", "other", "status")),
    ),
    # Each HTTP method has its verb.
    ("PATCH", "/api/v1/namespaces/other/pods/foo", Read("patch", "", "v1", "other", "pods", "", "foo", ("pods", "foo"))),
    ("DELETE", "/api/v1/namespaces/other/pods/foo", Read("delete", "", "v1", "other", "pods", "", "foo", ("pods", "foo"))),
    ("POST", "/api/v1/namespaces/other/pods", Read("create", "", "v1", "other", "pods", "", "", ("pods",))),
    # A DELETE without a name deletes a collection.
    ("DELETE", "/api/v1/nodes", Read("deletecollection", "", "v1", "", "nodes", "", "", ("nodes",))),
    ("DELETE", "/api/v1/namespaces", Read("deletecollection", "", "v1", "", "namespaces", "", "", ("namespaces",))),
    ("DELETE", "/api/v1/namespaces/other/pods", Read("deletecollection", "", "v1", "other", "pods", "", "", ("pods",))),
    (
        "DELETE",
        "/apis/extensions/v1/namespaces/other/pods",
        Read("deletecollection", "extensions", "v1", "other", "pods", "", "", ("pods",)),
    ),
    # Group and version come from the path after `apis`.
    ("POST", "/apis/extensions/v1/namespaces/other/pods", Read("create", "extensions", "v1", "other", "pods", "", "", ("pods",))),
    (
        "POST",
        "/apis/extensions/v1beta3/namespaces/other/pods",
        Read("create", "extensions", "v1beta3", "other", "pods", "", "", ("pods",)),
    ),
]


@pytest.mark.parametrize(("method", "url", "expected"), KUBE_RESOURCE_REQUESTS)
def test_resource_requests_read_as_kube_reads_them(method: str, url: str, expected: Read) -> None:
    info = read(method, url)
    assert summary(info) == expected
    assert info.api_prefix == url.split("/")[1]
    assert info.path == URL(url).path


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "",
        "/api",
        "/api/version",
        "/api/version/",
        "/apis",
        "/apis/group/version/",
        "/apis/extensions/v1beta1",
        "/badprefix/version/resource",
        "/not-api/version/resource",
        "/apis/version/resource",  # under `apis` a group comes first, so this is too short
        "/healthz",
        "/metrics",
    ],
)
def test_paths_without_a_resource_are_non_resource_requests(url: str) -> None:
    assert read("GET", url) == RequestInfo(False, URL(url).path, "get")


def test_a_non_resource_request_carries_the_http_method_in_lower_case() -> None:
    assert read("HEAD", "/healthz").verb == "head"
    assert read("POST", "/metrics").verb == "post"


@pytest.mark.parametrize(
    ("url", "resource", "name", "subresource"),
    [
        ("/api/version/resource", "resource", "", ""),
        ("/apis/group/version/resource/name/subresource", "resource", "name", "subresource"),
        ("/api/version/resource/name/subresource", "resource", "name", "subresource"),
        ("/apis/batch/v1/job", "job", "", ""),
        ("/apis/batch/v1/job/foo", "job", "foo", ""),
        ("/apis/batch/v1/job/foo/scale", "job", "foo", "scale"),
    ],
)
def test_enough_path_steps_make_a_resource_request(url: str, resource: str, name: str, subresource: str) -> None:
    info = read("GET", url)
    assert (info.resource_request, info.resource, info.name, info.subresource) == (True, resource, name, subresource)


class Selected(NamedTuple):
    verb: str
    name: str
    field_selector: str
    label_selector: str


R = "/apis/group/version/resource"


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        # kube's selector facts
        ("GET", R, Selected("list", "", "", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=name1", Selected("list", "name1", "metadata.name=name1", "")),
        ("GET", f"{R}?watch=true&fieldSelector=metadata.name=name1", Selected("watch", "name1", "metadata.name=name1", "")),
        ("GET", f"{R}?fieldSelector=foo=bar&labelSelector=baz=qux", Selected("list", "", "foo=bar", "baz=qux")),
        # a selector kube cannot parse names nothing, and the watch parameter still counts
        ("GET", f"{R}?fieldSelector=metadata.name=name1,foo", Selected("list", "", "metadata.name=name1,foo", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=name1,foo&watch=true", Selected("watch", "", "metadata.name=name1,foo", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=name1,foo&watch=false", Selected("list", "", "metadata.name=name1,foo", "")),
        ("DELETE", f"{R}?fieldSelector=foo=bar&labelSelector=baz=qux", Selected("deletecollection", "", "foo=bar", "baz=qux")),
        # a repeated parameter counts by its first value
        (
            "GET",
            f"{R}?fieldSelector=metadata.name=foo&fieldSelector=metadata.name=bar&labelSelector=foo=bar&labelSelector=foo=baz",
            Selected("list", "foo", "metadata.name=foo", "foo=bar"),
        ),
        # selectors belong to list, watch and deletecollection only, and not to the `watch/` path forms
        ("GET", f"{R}/name?fieldSelector=foo=bar&labelSelector=foo=bar", Selected("get", "name", "", "")),
        (
            "GET",
            "/apis/group/version/watch/resource?fieldSelector=metadata.name=foo&labelSelector=foo=bar",
            Selected("watch", "", "", ""),
        ),
        (
            "GET",
            "/apis/group/version/watch/resource/name?fieldSelector=metadata.name=foo&labelSelector=foo=bar",
            Selected("watch", "name", "", ""),
        ),
        # further facts of kube's list-option decoding
        ("GET", f"{R}?watch=", Selected("watch", "", "", "")),  # any value but false/0 is true, even an empty one
        ("GET", f"{R}?watch=yes", Selected("watch", "", "", "")),
        ("GET", f"{R}?watch=FALSE", Selected("list", "", "", "")),
        ("GET", f"{R}?fieldSelector=metadata.name==name1", Selected("list", "name1", "metadata.name==name1", "")),
        ("GET", f"{R}?fieldSelector=metadata.name!=name1", Selected("list", "", "metadata.name!=name1", "")),
        (
            "GET",
            f"{R}?fieldSelector=status.phase=x,metadata.name=name1",
            Selected("list", "name1", "status.phase=x,metadata.name=name1", ""),
        ),
        # kube sorts the terms, so of two names the one that sorts first is taken
        (
            "GET",
            f"{R}?fieldSelector=metadata.name=b,metadata.name=a",
            Selected("list", "a", "metadata.name=b,metadata.name=a", ""),
        ),
        ("GET", f"{R}?fieldSelector=metadata.name=a%5C,b", Selected("list", "a,b", "metadata.name=a\\,b", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=a%5Cb", Selected("list", "", "metadata.name=a\\b", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=a%5C", Selected("list", "", "metadata.name=a\\", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=a=b", Selected("list", "", "metadata.name=a=b", "")),
        ("GET", f"{R}?fieldSelector=,metadata.name=name1,", Selected("list", "name1", ",metadata.name=name1,", "")),
        # an escaped comma stays inside its term; "!=" is the operator even before "="
        (
            "GET",
            f"{R}?fieldSelector=metadata.name=a%5C,b,status.phase=x",
            Selected("list", "a,b", "metadata.name=a\\,b,status.phase=x", ""),
        ),
        ("GET", f"{R}?fieldSelector=metadata.name=n,a!==b", Selected("list", "", "metadata.name=n,a!==b", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=a%5CX", Selected("list", "", "metadata.name=a\\X", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=Xy", Selected("list", "Xy", "metadata.name=Xy", "")),
        # a name that could not be a path segment is not taken
        ("GET", f"{R}?fieldSelector=metadata.name=..", Selected("list", "", "metadata.name=..", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=.", Selected("list", "", "metadata.name=.", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=a/b", Selected("list", "", "metadata.name=a/b", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=a%25b", Selected("list", "", "metadata.name=a%b", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=...", Selected("list", "...", "metadata.name=...", "")),
        # a number that does not decode fails the whole decoding: no name
        ("GET", f"{R}?fieldSelector=metadata.name=n&limit=x", Selected("list", "", "metadata.name=n", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=n&limit=9223372036854775808", Selected("list", "", "metadata.name=n", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=n&limit=", Selected("list", "", "metadata.name=n", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=n&limit={'9' * 5000}", Selected("list", "", "metadata.name=n", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=n&limit={'0' * 30}5", Selected("list", "n", "metadata.name=n", "")),
        (
            "GET",
            f"{R}?fieldSelector=metadata.name=n&limit=-{'0' * 30}9223372036854775808",
            Selected("list", "n", "metadata.name=n", ""),
        ),
        ("GET", f"{R}?fieldSelector=metadata.name=n&timeoutSeconds=1.5&watch=1", Selected("watch", "", "metadata.name=n", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=n&limit=-9223372036854775808", Selected("list", "n", "metadata.name=n", "")),
        ("GET", f"{R}?fieldSelector=metadata.name=n&limit=%2B5&timeoutSeconds=9", Selected("list", "n", "metadata.name=n", "")),
    ],
)
def test_selectors_and_the_name_they_require(method: str, url: str, expected: Selected) -> None:
    info = read(method, url)
    assert Selected(info.verb, info.name, info.field_selector, info.label_selector) == expected


# The gateway's own routes, as the hub's kube-apiserver reads them before forwarding them to us.
GATEWAY_REQUESTS = [
    ("GET", CG, Read("list", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "", "", ("clustergateways",))),
    (
        "GET",
        f"{CG}?watch=1",
        Read("watch", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "", "", ("clustergateways",)),
    ),
    (
        "GET",
        f"{G}/watch/clustergateways",
        Read("watch", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "", "", ("clustergateways",)),
    ),
    (
        "GET",
        f"{CG}?fieldSelector=metadata.name%3Dc1",
        Read("list", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "", "c1", ("clustergateways",)),
    ),
    (  # what `kubectl get cg c1 -w` sends
        "GET",
        f"{CG}?fieldSelector=metadata.name%3Dc1&resourceVersion=5&watch=true",
        Read("watch", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "", "c1", ("clustergateways",)),
    ),
    (
        "GET",
        f"{CG}/c1",
        Read("get", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "", "c1", ("clustergateways", "c1")),
    ),
    # a named GET stays a get whatever the watch parameter says
    (
        "GET",
        f"{CG}/c1?watch=1",
        Read("get", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "", "c1", ("clustergateways", "c1")),
    ),
    (
        "GET",
        f"{G}/watch/clustergateways/c1",
        Read("watch", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "", "c1", ("clustergateways", "c1")),
    ),
    (
        "GET",
        f"{CG}/c1/health",
        Read(
            "get", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "health", "c1", ("clustergateways", "c1", "health")
        ),
    ),
    (
        "PATCH",
        f"{CG}/c1/health",
        Read(
            "patch",
            "cluster.core.oam.dev",
            "v1alpha1",
            "",
            "clustergateways",
            "health",
            "c1",
            ("clustergateways", "c1", "health"),
        ),
    ),
    # the proxy subresource: the verb is the HTTP method's, whatever the member path or query says
    (
        "GET",
        f"{CG}/c1/proxy/api/v1/pods?watch=true",
        Read(
            "get",
            "cluster.core.oam.dev",
            "v1alpha1",
            "",
            "clustergateways",
            "proxy",
            "c1",
            ("clustergateways", "c1", "proxy", "api", "v1", "pods"),
        ),
    ),
    (
        "DELETE",
        f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps",
        Read(
            "delete",
            "cluster.core.oam.dev",
            "v1alpha1",
            "",
            "clustergateways",
            "proxy",
            "c1",
            ("clustergateways", "c1", "proxy", "api", "v1", "namespaces", "x", "configmaps"),
        ),
    ),
    (
        "POST",
        f"{CG}/c1/proxy/",
        Read(
            "create", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "proxy", "c1", ("clustergateways", "c1", "proxy")
        ),
    ),
    (
        "PUT",
        f"{CG}/c1",
        Read("update", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "", "c1", ("clustergateways", "c1")),
    ),
    (
        "DELETE",
        CG,
        Read("deletecollection", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "", "", ("clustergateways",)),
    ),
    (
        "OPTIONS",
        f"{CG}/c1",
        Read("", "cluster.core.oam.dev", "v1alpha1", "", "clustergateways", "", "c1", ("clustergateways", "c1")),
    ),
]


@pytest.mark.parametrize(("method", "url", "expected"), GATEWAY_REQUESTS)
def test_gateway_routes(method: str, url: str, expected: Read) -> None:
    assert summary(read(method, url)) == expected


# Member paths, read as the member's kube-apiserver reads them (what --authorize-proxy-subpath authorizes).
MEMBER_REQUESTS = [
    (
        "GET",
        "/api/v1/namespaces/default",
        Read("get", "", "v1", "default", "namespaces", "", "default", ("namespaces", "default")),
    ),
    ("DELETE", "/api/v1/namespaces/foo", Read("delete", "", "v1", "foo", "namespaces", "", "foo", ("namespaces", "foo"))),
    (
        "GET",
        "/api/v1/namespaces/foo/status",
        Read("get", "", "v1", "foo", "namespaces", "status", "foo", ("namespaces", "foo", "status")),
    ),
    (
        "PUT",
        "/api/v1/namespaces/foo/finalize",
        Read("update", "", "v1", "foo", "namespaces", "finalize", "foo", ("namespaces", "foo", "finalize")),
    ),
    (
        "GET",
        "/api/v1/namespaces/foo/configmaps?fieldSelector=metadata.name%3Dcm&watch=1",
        Read("watch", "", "v1", "foo", "configmaps", "", "cm", ("configmaps",)),
    ),
    (
        "GET",
        "/api/v1/namespaces/d/pods/p/log?follow=true",
        Read("get", "", "v1", "d", "pods", "log", "p", ("pods", "p", "log")),
    ),
    ("POST", "/api/v1/namespaces/d/pods/p/exec", Read("create", "", "v1", "d", "pods", "exec", "p", ("pods", "p", "exec"))),
    ("GET", "/apis/apps/v1/watch/deployments", Read("watch", "apps", "v1", "", "deployments", "", "", ("deployments",))),
]


@pytest.mark.parametrize(("method", "url", "expected"), MEMBER_REQUESTS)
def test_member_paths(method: str, url: str, expected: Read) -> None:
    assert summary(read(method, url)) == expected


@pytest.mark.parametrize("url", ["/api/v1/watch", "/apis/g/v1/watch", "/api/v1/proxy", f"{G}/watch"])
def test_a_verb_in_the_path_with_nothing_after_it_cannot_be_read(url: str) -> None:
    with pytest.raises(RequestInfoError, match=f"^unable to determine kind and namespace from url {url}$"):
        read("GET", url)


def test_every_segment_is_kept_whole() -> None:
    info = read("GET", "/apis/Xg/vX/Xjobs/fooX/")
    assert (info.api_group, info.api_version, info.resource, info.name) == ("Xg", "vX", "Xjobs", "fooX")


def test_the_path_is_split_as_given_so_the_router_and_authorization_agree_on_the_name() -> None:
    # The decoded path the router matches; nothing is decoded a second time.
    info = request_info("GET", f"{CG}/a%2Fb", MultiDict())
    assert (info.name, info.parts) == ("a%2Fb", ("clustergateways", "a%2Fb"))
