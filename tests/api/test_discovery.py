"""Discovery (/api, /apis, /apis/<group>, /apis/<group>/<version>) over real TLS sockets.

Checks the exact documents and Content-Types client-go relies on, content negotiation,
and that real clients (the `kubernetes` Python package, kubectl) understand them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway_apiserver.api import resource_info
from gateway_apiserver.api.discovery import add_discovery_routes, aggregated_content_type

from .conftest import Kubectl, ServeTLS, TLSServer

GROUP_PATH = "/apis/cluster.core.oam.dev"
GV_PATH = "/apis/cluster.core.oam.dev/v1alpha1"
V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
# What client-go (kubectl 1.32) sends to /api and /apis.
CLIENT_GO_ACCEPT = f"{V2},{V2BETA1},application/json"
PROTOBUF = "application/vnd.kubernetes.protobuf"

GVK = {"group": "cluster.core.oam.dev", "version": "v1alpha1", "kind": "ClusterGateway"}
GROUP_VERSION = {"groupVersion": "cluster.core.oam.dev/v1alpha1", "version": "v1alpha1"}

EXPECTED_API_GROUP = {
    "name": "cluster.core.oam.dev",
    "versions": [GROUP_VERSION],
    "preferredVersion": GROUP_VERSION,
}

EXPECTED_RESOURCE_LIST: dict[str, Any] = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "cluster.core.oam.dev/v1alpha1",
    "resources": [
        {
            "name": "clustergateways",
            "singularName": "clustergateway",
            "namespaced": False,
            "kind": "ClusterGateway",
            "verbs": ["get", "list", "watch"],
            "shortNames": ["cg"],
        },
        {
            "name": "clustergateways/health",
            "singularName": "",
            "namespaced": False,
            "kind": "ClusterGateway",
            "verbs": ["get", "patch", "update"],
        },
        {
            "name": "clustergateways/proxy",
            "singularName": "",
            "namespaced": False,
            "kind": "ClusterGatewayProxyOptions",
            "verbs": ["create", "delete", "get", "patch", "update"],
        },
        {
            "name": "virtualclusters",
            "singularName": "virtualcluster",
            "namespaced": False,
            "kind": "VirtualCluster",
            "verbs": ["get", "list", "watch"],
            "shortNames": ["vc", "vcluster", "vclusters", "virtual-cluster", "virtual-clusters"],
        },
    ],
}


def expected_aggregated(version: str) -> dict[str, Any]:
    """The APIGroupDiscoveryList client-go's SplitGroupsAndResources must turn into our resources."""
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": "cluster.core.oam.dev"},
                "versions": [
                    {
                        "version": "v1alpha1",
                        "freshness": "Current",
                        "resources": [
                            {
                                "resource": "clustergateways",
                                "responseKind": GVK,
                                "scope": "Cluster",
                                "singularResource": "clustergateway",
                                "verbs": ["get", "list", "watch"],
                                "shortNames": ["cg"],
                                "subresources": [
                                    {"subresource": "health", "responseKind": GVK, "verbs": ["get", "patch", "update"]},
                                    {
                                        "subresource": "proxy",
                                        "responseKind": {**GVK, "kind": "ClusterGatewayProxyOptions"},
                                        "verbs": ["create", "delete", "get", "patch", "update"],
                                    },
                                ],
                            },
                            {
                                "resource": "virtualclusters",
                                "responseKind": {**GVK, "kind": "VirtualCluster"},
                                "scope": "Cluster",
                                "singularResource": "virtualcluster",
                                "verbs": ["get", "list", "watch"],
                                "shortNames": ["vc", "vcluster", "vclusters", "virtual-cluster", "virtual-clusters"],
                                "subresources": [],
                            },
                        ],
                    }
                ],
            }
        ],
    }


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

Seen = list[tuple[str, str]]


def discovery_app(seen: Seen) -> web.Application:
    """Only the discovery routes, plus a record of (path, Accept) for every request."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append((request.path, request.headers.get("Accept", "")))
        return await handler(request)

    async def version(_: web.Request) -> web.Response:
        # The kubernetes Python client reads /version before discovery. The aggregator answers
        # it in a cluster; here a stub stands in, since it is not a discovery endpoint.
        return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0"})

    app = web.Application(middlewares=[record])
    add_discovery_routes(app, resource_info.served_resources(health_writable=True))
    app.router.add_get("/version", version)
    return app


@pytest.fixture
def seen() -> Seen:
    return []


@pytest.fixture
async def server(serve_tls: ServeTLS, seen: Seen) -> TLSServer:
    return await serve_tls(discovery_app(seen))


@pytest.fixture
async def http(server: TLSServer) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=server.cert.client_context())
    async with aiohttp.ClientSession(server.url, connector=connector) as session:
        yield session


async def fetch(
    http: aiohttp.ClientSession, path: str, accept: str | None = None, status: int = 200, **headers: str
) -> tuple[aiohttp.ClientResponse, Any]:
    if accept is not None:
        headers["Accept"] = accept
    async with http.get(path, headers=headers) as resp:
        body = await resp.json(content_type=None) if resp.status != 304 else None
        assert resp.status == status, body
        return resp, body


# ---------------------------------------------------------------------------------------------
# The documents
# ---------------------------------------------------------------------------------------------


async def test_api_root_has_no_core_versions(http: aiohttp.ClientSession) -> None:
    resp, body = await fetch(http, "/api", "application/json")
    assert resp.headers["Content-Type"] == "application/json"
    assert body == {"kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": []}


@pytest.mark.parametrize("version", ["v2", "v2beta1"])
async def test_api_root_aggregated_is_an_empty_group_list(http: aiohttp.ClientSession, version: str) -> None:
    resp, body = await fetch(http, "/api", aggregated_content_type(version))
    assert resp.headers["Content-Type"] == f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
    assert body == {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": [],
    }


async def test_apis_lists_our_group_with_preferred_version(http: aiohttp.ClientSession) -> None:
    resp, body = await fetch(http, "/apis", "application/json")
    assert resp.headers["Content-Type"] == "application/json"
    assert body == {"kind": "APIGroupList", "apiVersion": "v1", "groups": [EXPECTED_API_GROUP]}


@pytest.mark.parametrize(("accept", "version"), [(V2, "v2"), (V2BETA1, "v2beta1")])
async def test_apis_aggregated_document(http: aiohttp.ClientSession, accept: str, version: str) -> None:
    resp, body = await fetch(http, "/apis", accept)
    assert resp.headers["Content-Type"] == accept  # exactly what client-go's ContentTypeIsGVK parses
    assert body == expected_aggregated(version)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (CLIENT_GO_ACCEPT, V2),  # v2 first wins
        (f"{V2BETA1},application/json", V2BETA1),  # an older client
        (f"application/json;q=0.5,{V2}", V2),  # quality beats order
        ("application/json", "application/json"),  # a legacy client
    ],
)
async def test_apis_follows_the_clients_preference(http: aiohttp.ClientSession, accept: str, content_type: str) -> None:
    resp, _ = await fetch(http, "/apis", accept)
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["Vary"] == "Accept"


async def test_group_document(http: aiohttp.ClientSession) -> None:
    resp, body = await fetch(http, GROUP_PATH)
    assert resp.headers["Content-Type"] == "application/json"
    assert body == {"kind": "APIGroup", "apiVersion": "v1", **EXPECTED_API_GROUP}


async def test_group_version_resource_list(http: aiohttp.ClientSession) -> None:
    # The aggregator's availability probe; it must stay 200 and exactly this.
    resp, body = await fetch(http, GV_PATH, "application/json, */*")
    assert resp.headers["Content-Type"] == "application/json"
    assert body == EXPECTED_RESOURCE_LIST


@pytest.mark.parametrize("path", ["/api/", "/apis/", f"{GROUP_PATH}/", f"{GV_PATH}/"])
async def test_trailing_slash_serves_the_same_document(http: aiohttp.ClientSession, path: str) -> None:
    _, with_slash = await fetch(http, path)
    _, without = await fetch(http, path.rstrip("/"))
    assert with_slash == without


def test_resource_facts_match_the_served_documents() -> None:
    assert EXPECTED_RESOURCE_LIST["groupVersion"] == resource_info.GROUP_VERSION
    served = resource_info.served_resources(health_writable=True)
    names = [name for info in served for name in (info.plural, *(f"{info.plural}/{s.name}" for s in info.subresources))]
    assert names == [r["name"] for r in EXPECTED_RESOURCE_LIST["resources"]]


# ---------------------------------------------------------------------------------------------
# Negotiation and caching
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/apis", PROTOBUF),
        ("/api", "application/yaml"),
        (GROUP_PATH, "text/html"),
        (GV_PATH, PROTOBUF),
        # Aggregated discovery exists only at /api and /apis.
        (GV_PATH, V2),
        ("/apis", "application/json;as=Table;v=v1;g=meta.k8s.io"),
    ],
)
async def test_unsupported_accept_is_406_status(http: aiohttp.ClientSession, path: str, accept: str) -> None:
    resp, body = await fetch(http, path, accept, status=406)
    assert resp.headers["Content-Type"] == "application/json"
    assert body["kind"] == "Status"
    assert body["reason"] == "NotAcceptable"
    assert body["code"] == 406


@pytest.mark.parametrize("accept", [f"{PROTOBUF}, */*", f"{PROTOBUF},application/json", "application/*", "*/*", ""])
@pytest.mark.parametrize("path", ["/apis", GV_PATH])
async def test_json_is_served_when_acceptable_at_all(http: aiohttp.ClientSession, path: str, accept: str) -> None:
    resp, body = await fetch(http, path, accept)
    assert resp.headers["Content-Type"] == "application/json"
    assert body["kind"] in {"APIGroupList", "APIResourceList"}


async def test_no_accept_header_gets_json(http: aiohttp.ClientSession) -> None:
    async with http.get(GV_PATH, skip_auto_headers=["Accept"]) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("accept", ["application/json", V2])
async def test_etag_lets_clients_revalidate(http: aiohttp.ClientSession, accept: str) -> None:
    first, _ = await fetch(http, "/apis", accept)
    etag = first.headers["ETag"]
    await fetch(http, "/apis", accept, status=304, **{"If-None-Match": etag})
    # The other representation has its own tag.
    other = V2 if accept == "application/json" else "application/json"
    await fetch(http, "/apis", other, status=200, **{"If-None-Match": etag})


async def test_head_is_answered(http: aiohttp.ClientSession) -> None:
    async with http.head(GV_PATH) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"


# ---------------------------------------------------------------------------------------------
# Real clients
# ---------------------------------------------------------------------------------------------


def discover_with_python_client(server: TLSServer, cache_file: Path) -> Any:
    """Blocking: what the kubernetes package's DynamicClient discovers for ClusterGateway."""
    from kubernetes import client, dynamic

    config = client.Configuration()
    config.host = server.url
    config.ssl_ca_cert = str(server.cert.ca_file)
    config.api_key = {"authorization": "Bearer any-token"}
    with client.ApiClient(config) as api:
        dyn = dynamic.DynamicClient(api, cache_file=str(cache_file))
        return dyn.resources.get(api_version="cluster.core.oam.dev/v1alpha1", kind="ClusterGateway")


async def test_kubernetes_python_dynamic_client_finds_the_resource(server: TLSServer, tmp_path: Path, seen: Seen) -> None:
    # The sync client must not block the event loop that serves it.
    resource = await asyncio.to_thread(discover_with_python_client, server, tmp_path / "discovery.json")
    assert resource.group_version == "cluster.core.oam.dev/v1alpha1"
    assert resource.name == "clustergateways"
    assert resource.singular_name == "clustergateway"
    assert resource.kind == "ClusterGateway"
    assert resource.namespaced is False
    assert resource.short_names == ["cg"]
    assert resource.verbs == ["get", "list", "watch"]
    assert set(resource.subresources) == {"proxy", "health"}
    assert resource.subresources["proxy"].kind == "ClusterGatewayProxyOptions"
    assert resource.subresources["health"].verbs == ["get", "patch", "update"]
    # This client reads the legacy documents.
    assert GV_PATH in [path for path, _ in seen]


API_RESOURCES_ROW = re.compile(
    r"^clustergateways\s+cg\s+cluster\.core\.oam\.dev/v1alpha1\s+false\s+ClusterGateway\s*$", re.MULTILINE
)


async def test_kubectl_api_resources_lists_clustergateways(server: TLSServer, kubectl: Kubectl, seen: Seen) -> None:
    result = await kubectl(server, "api-resources")
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    assert API_RESOURCES_ROW.search(result.stdout), result.stdout
    # kubectl took everything from the aggregated documents: two requests, v2 preferred,
    # and no per-group-version fallback.
    discovery_requests = sorted((path, accept) for path, accept in seen if path.startswith("/api"))
    assert discovery_requests == [("/api", CLIENT_GO_ACCEPT), ("/apis", CLIENT_GO_ACCEPT)]


async def test_kubectl_api_resources_wide_shows_verbs(server: TLSServer, kubectl: Kubectl) -> None:
    result = await kubectl(server, "api-resources", "--api-group=cluster.core.oam.dev", "-o", "wide")
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    row = next(line for line in result.stdout.splitlines() if line.startswith("clustergateways "))
    assert row.split()[5] == "get,list,watch"


async def test_kubectl_api_versions_lists_the_group_version(server: TLSServer, kubectl: Kubectl) -> None:
    result = await kubectl(server, "api-versions")
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    assert "cluster.core.oam.dev/v1alpha1" in result.stdout.split()
