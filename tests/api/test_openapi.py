"""OpenAPI v2 and v3 documents over real TLS sockets, and `kubectl explain` reading them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from gateway_apiserver.api.discovery import add_discovery_routes
from gateway_apiserver.api.openapi import add_openapi_routes
from gateway_apiserver.api.resource_info import served_resources

from .conftest import Kubectl, ServeTLS, TLSServer

PKG = "com.github.oam-dev.cluster-gateway.pkg.apis.cluster.v1alpha1."
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
CLUSTER_GATEWAY = PKG + "ClusterGateway"
CLUSTER_GATEWAY_LIST = PKG + "ClusterGatewayList"
GV_KEY = "apis/cluster.core.oam.dev/v1alpha1"
GV_DOC = "/openapi/v3/" + GV_KEY
COLLECTION = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
GVK = {"group": "cluster.core.oam.dev", "version": "v1alpha1", "kind": "ClusterGateway"}
PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
PROTOBUF_V3 = "application/com.github.proto-openapi.spec.v3.v1.0+protobuf"
# Field names that would mean credential material is part of the served schema.
CREDENTIAL_FIELDS = {"token", "serviceAccountToken", "x509", "certificate", "privateKey", "exec"}


@pytest.fixture
async def server(serve_tls: ServeTLS) -> TLSServer:
    # Discovery too: kubectl explain resolves `clustergateway` through it first.
    app = web.Application()
    resources = served_resources(health_writable=True)
    add_discovery_routes(app, resources)
    add_openapi_routes(app, resources)
    return await serve_tls(app)


@pytest.fixture
async def http(server: TLSServer) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=server.cert.client_context())
    async with aiohttp.ClientSession(server.url, connector=connector) as session:
        yield session


async def fetch(
    http: aiohttp.ClientSession, path: str, status: int = 200, headers: dict[str, str] | None = None
) -> tuple[aiohttp.ClientResponse, bytes]:
    async with http.get(path, headers=headers or {}, allow_redirects=False) as resp:
        body = await resp.read()
        assert resp.status == status, body[:500]
        return resp, body


async def fetch_json(http: aiohttp.ClientSession, path: str, accept: str | None = None) -> dict[str, Any]:
    resp, body = await fetch(http, path, headers={"Accept": accept} if accept else None)
    assert resp.headers["Content-Type"] == "application/json"
    document: dict[str, Any] = json.loads(body)
    return document


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict in a JSON document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def refs(node: Any) -> set[str]:
    return {d["$ref"] for d in walk(node) if isinstance(d.get("$ref"), str)}


def assert_own_fields_documented(schemas: dict[str, Any]) -> None:
    """Every field of our types has a description: that is what `kubectl explain` prints."""
    for name, schema in schemas.items():
        if not name.startswith(PKG):
            continue
        assert schema["description"], name
        for field, prop in schema.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field}"
            assert field not in CREDENTIAL_FIELDS, f"{name}.{field} would expose credentials"


# ---------------------------------------------------------------------------------------------
# /openapi/v2
# ---------------------------------------------------------------------------------------------


async def test_v2_is_swagger_with_our_kinds_and_the_meta_types(http: aiohttp.ClientSession) -> None:
    doc = await fetch_json(http, "/openapi/v2", "application/json")
    assert doc["swagger"] == "2.0"
    definitions = doc["definitions"]
    assert definitions[CLUSTER_GATEWAY]["x-kubernetes-group-version-kind"] == [GVK]
    assert definitions[CLUSTER_GATEWAY_LIST]["x-kubernetes-group-version-kind"] == [{**GVK, "kind": "ClusterGatewayList"}]
    object_meta = definitions[META + "ObjectMeta"]["properties"]
    assert {"name", "uid", "resourceVersion", "creationTimestamp", "labels", "annotations"} <= set(object_meta)
    assert definitions[META + "Time"] == {
        "type": "string",
        "format": "date-time",
        "description": definitions[META + "Time"]["description"],
    }
    assert "resourceVersion" in definitions[META + "ListMeta"]["properties"]
    # Every reference resolves within the document.
    assert {r.removeprefix("#/definitions/") for r in refs(doc)} <= set(definitions)
    assert_own_fields_documented(definitions)


async def test_v2_object_schema_matches_what_we_serve(http: aiohttp.ClientSession) -> None:
    definitions = (await fetch_json(http, "/openapi/v2"))["definitions"]

    def props(name: str) -> dict[str, Any]:
        return dict(definitions[PKG + name]["properties"])

    assert set(props("ClusterGateway")) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert set(props("ClusterGatewaySpec")) == {"provider", "access"}
    assert set(props("ClusterAccess")) == {"endpoint", "credential"}
    assert props("ClusterEndpoint")["type"]["enum"] == ["Const", "ClusterProxy"]
    assert set(props("ClusterEndpointConst")) == {"address", "caBundle", "insecure", "proxy-url"}
    assert props("ClusterEndpointConst")["caBundle"]["format"] == "byte"
    assert props("ClusterAccessCredential")["type"]["enum"] == ["ServiceAccountToken", "X509Certificate", "Dynamic"]
    assert set(props("ClusterGatewayStatus")) == {"healthy", "healthyReason", "lastProbeTime", "kubernetesVersion", "insecure"}
    assert props("ClusterGatewayStatus")["lastProbeTime"]["format"] == "date-time"


async def test_v2_paths_list_watch_and_get(http: aiohttp.ClientSession) -> None:
    paths = (await fetch_json(http, "/openapi/v2"))["paths"]
    list_op = paths[COLLECTION]["get"]
    assert list_op["x-kubernetes-action"] == "list"
    assert list_op["x-kubernetes-group-version-kind"] == GVK
    assert list_op["responses"]["200"]["schema"] == {"$ref": "#/definitions/" + CLUSTER_GATEWAY_LIST}
    assert {"watch", "labelSelector", "fieldSelector", "limit", "continue", "resourceVersion"} <= {
        p["name"] for p in list_op["parameters"]
    }
    assert "application/json;stream=watch" in list_op["produces"]

    get_op = paths[COLLECTION + "/{name}"]["get"]
    assert get_op["x-kubernetes-action"] == "get"
    assert get_op["responses"]["200"]["schema"] == {"$ref": "#/definitions/" + CLUSTER_GATEWAY}

    watch_op = paths["/apis/cluster.core.oam.dev/v1alpha1/watch/clustergateways"]["get"]
    assert watch_op["x-kubernetes-action"] == "watchlist"
    assert paths[COLLECTION + "/{name}/proxy/{path}"]["get"]["x-kubernetes-action"] == "connect"
    assert set(paths[COLLECTION + "/{name}/health"]) == {"get", "put", "patch", "parameters"}


# ---------------------------------------------------------------------------------------------
# /openapi/v3
# ---------------------------------------------------------------------------------------------


async def test_v3_index_points_at_each_document_with_its_hash(http: aiohttp.ClientSession) -> None:
    index = await fetch_json(http, "/openapi/v3")
    assert set(index) == {"paths"}
    assert set(index["paths"]) == {"apis", "apis/cluster.core.oam.dev", GV_KEY}
    for key, entry in index["paths"].items():
        url = entry["serverRelativeURL"]
        path, _, query = url.partition("?")
        assert path == f"/openapi/v3/{key}"
        # kube-openapi's hash: upper-case hex SHA-512 of the JSON document.
        _, body = await fetch(http, path)
        assert query == "hash=" + hashlib.sha512(body).hexdigest().upper()


async def test_v3_group_version_document(http: aiohttp.ClientSession) -> None:
    doc = await fetch_json(http, GV_DOC)
    assert doc["openapi"].startswith("3.0")
    schemas = doc["components"]["schemas"]
    assert schemas[CLUSTER_GATEWAY]["x-kubernetes-group-version-kind"] == [GVK]
    assert CLUSTER_GATEWAY_LIST in schemas
    assert {"name", "uid", "resourceVersion", "creationTimestamp", "labels", "annotations"} <= set(
        schemas[META + "ObjectMeta"]["properties"]
    )
    # kubectl explain finds the kind through the GVK on the collection's operation.
    assert doc["paths"][COLLECTION]["get"]["x-kubernetes-group-version-kind"] == GVK
    # OpenAPI 3 references only, all resolvable; a described field wraps its $ref in allOf.
    references = list(refs(doc))
    assert references and all(r.startswith("#/components/schemas/") for r in references)
    assert {r.removeprefix("#/components/schemas/") for r in refs(doc)} <= set(schemas)
    spec = schemas[CLUSTER_GATEWAY]["properties"]["spec"]
    assert spec["allOf"] == [{"$ref": "#/components/schemas/" + PKG + "ClusterGatewaySpec"}]
    assert spec["description"]
    assert_own_fields_documented(schemas)


async def test_v3_current_hash_is_cached_immutably(http: aiohttp.ClientSession) -> None:
    index = await fetch_json(http, "/openapi/v3")
    url = index["paths"][GV_KEY]["serverRelativeURL"]
    digest = url.partition("?hash=")[2]

    resp, _ = await fetch(http, url, headers={"Accept": "application/json"})
    assert resp.headers["ETag"] == f'"{digest}"'
    assert resp.headers["Cache-Control"] == "public, immutable"
    assert resp.headers["Vary"] == "Accept"
    expires = parsedate_to_datetime(resp.headers["Expires"])
    last_modified = parsedate_to_datetime(resp.headers["Last-Modified"])
    assert (expires - last_modified).days >= 364

    # Without a hash the document may change, so it is not immutable, but it can be revalidated.
    plain, _ = await fetch(http, GV_DOC)
    assert "Cache-Control" not in plain.headers
    await fetch(http, GV_DOC, status=304, headers={"If-None-Match": plain.headers["ETag"]})


async def test_v3_stale_hash_redirects_to_the_current_document(http: aiohttp.ClientSession) -> None:
    index = await fetch_json(http, "/openapi/v3")
    resp, _ = await fetch(http, GV_DOC + "?hash=0123ABCD", status=301)
    assert resp.headers["Location"] == index["paths"][GV_KEY]["serverRelativeURL"]


async def test_v3_unknown_document_is_404_status(http: aiohttp.ClientSession) -> None:
    _, body = await fetch(http, "/openapi/v3/apis/apps/v1", status=404)
    assert json.loads(body)["kind"] == "Status"


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/openapi/v2", PROTOBUF_V2),
        ("/openapi/v3", PROTOBUF_V3),
        (GV_DOC, PROTOBUF_V3),
        (GV_DOC, "application/vnd.kubernetes.protobuf"),
    ],
)
async def test_protobuf_only_is_406(http: aiohttp.ClientSession, path: str, accept: str) -> None:
    _, body = await fetch(http, path, status=406, headers={"Accept": accept})
    assert json.loads(body)["reason"] == "NotAcceptable"


@pytest.mark.parametrize("path", ["/openapi/v2", "/openapi/v3", GV_DOC])
@pytest.mark.parametrize("accept", [f"{PROTOBUF_V3}, application/json", f"{PROTOBUF_V2}, */*", "*/*"])
async def test_json_whenever_it_is_acceptable(http: aiohttp.ClientSession, path: str, accept: str) -> None:
    await fetch_json(http, path, accept)


# ---------------------------------------------------------------------------------------------
# Validation with openapi-spec-validator (a test dependency: pyproject.toml's `test` extra)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/openapi/v2", "/openapi/v3/apis", GV_DOC])
async def test_documents_pass_openapi_spec_validator(http: aiohttp.ClientSession, path: str) -> None:
    _, body = await fetch(http, path)
    validate(json.loads(body))  # raises, naming the offending part, if the document is not valid OpenAPI


# ---------------------------------------------------------------------------------------------
# kubectl explain (reads OpenAPI v3)
# ---------------------------------------------------------------------------------------------


async def test_kubectl_explain_kind(server: TLSServer, kubectl: Kubectl) -> None:
    result = await kubectl(server, "explain", "cg")
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    assert "GROUP:      cluster.core.oam.dev" in result.stdout
    assert "KIND:       ClusterGateway" in result.stdout
    assert "VERSION:    v1alpha1" in result.stdout
    assert "Credential material is never returned." in " ".join(result.stdout.split())
    for field in ("apiVersion", "kind", "metadata", "spec", "status"):
        assert f"\n  {field}\t<" in result.stdout


async def test_kubectl_explain_spec_access(server: TLSServer, kubectl: Kubectl) -> None:
    result = await kubectl(server, "explain", "clustergateway.spec.access")
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    text = " ".join(result.stdout.split())  # explain wraps long lines
    assert "FIELD: access <ClusterAccess>" in text
    assert "endpoint <ClusterEndpoint> -required-" in text
    assert "Endpoint prescribes where the cluster's kube-apiserver is." in text
    assert "credential <ClusterAccessCredential>" in text
    assert "The credential itself (token, certificate and key, exec plugin) is never returned." in text


async def test_kubectl_explain_spec_access_endpoint_const(server: TLSServer, kubectl: Kubectl) -> None:
    result = await kubectl(server, "explain", "clustergateway.spec.access.endpoint.const")
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    text = " ".join(result.stdout.split())
    assert "FIELD: const <ClusterEndpointConst>" in text
    assert "address <string> -required-" in text
    assert "Address is the URL of the cluster's kube-apiserver" in text
    assert "caBundle <string>" in text
    assert "base64-encoded" in text
    assert "insecure <boolean>" in text
    assert "proxy-url <string>" in text
    assert "http, https or socks5 proxy" in text


async def test_kubectl_explain_shows_enums(server: TLSServer, kubectl: Kubectl) -> None:
    result = await kubectl(server, "explain", "clustergateway.spec.access.endpoint.type")
    assert result.returncode == 0, result.stderr
    assert "ENUM:\n    Const\n    ClusterProxy" in result.stdout
