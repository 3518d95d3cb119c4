"""The fake member's stateless answers: discovery documents and test endpoints (echo, gzip, fail)."""

from __future__ import annotations

import gzip
import json
from typing import Any

from aiohttp import web

from .kube_store import status_object

_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def json_response(body: Any, status: int = 200) -> web.Response:
    """A compact JSON answer."""
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status, content_type="application/json")


async def version(request: web.Request) -> web.StreamResponse:
    """GET /version: a 1.32 server."""
    return json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake-member", "platform": "linux/amd64"})


async def api_v1(request: web.Request) -> web.StreamResponse:
    """GET /api/v1: configmaps, pods and pods/log."""
    resources = [
        {
            "name": "configmaps",
            "singularName": "configmap",
            "namespaced": True,
            "kind": "ConfigMap",
            "verbs": _VERBS,
            "shortNames": ["cm"],
        },
        {
            "name": "pods",
            "singularName": "pod",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["get", "list", "watch"],
            "shortNames": ["po"],
        },
        {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    ]
    return json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": resources})


# The PATCH endpoints of the OpenAPI v3 documents: kubectl apply looks there for `fieldValidation` before it
# lets the server validate (for custom resources it looks at Namespace's); without it, it validates itself
# against /openapi/v2, which the fake does not serve.
_PATCHABLE = {
    "api/v1": [
        ("", "Namespace", "/api/v1/namespaces/{name}"),
        ("", "ConfigMap", "/api/v1/namespaces/{namespace}/configmaps/{name}"),
    ],
    "apis/apiextensions.k8s.io/v1": [
        ("apiextensions.k8s.io", "CustomResourceDefinition", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    ],
}


async def openapi_v3_index(request: web.Request) -> web.StreamResponse:
    """GET /openapi/v3: the group-versions that have a document (core v1 and apiextensions.k8s.io/v1)."""
    paths = {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash=fake"} for gv in _PATCHABLE}
    return json_response({"paths": paths})


async def openapi_v3_group(request: web.Request) -> web.StreamResponse:
    """GET /openapi/v3/<group-version>: its PATCH operations, which take dryRun, fieldManager, fieldValidation, force."""
    patchable = _PATCHABLE.get(request.match_info["gv"])
    if patchable is None:
        raise web.HTTPNotFound()
    params = [
        {"name": p, "in": "query", "schema": {"type": "string"}} for p in ("dryRun", "fieldManager", "fieldValidation", "force")
    ]
    paths = {
        path: {
            "patch": {
                "x-kubernetes-group-version-kind": {"group": group, "version": "v1", "kind": kind},
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
            }
        }
        for group, kind, path in patchable
    }
    return json_response({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": paths})


async def echo(request: web.Request) -> web.StreamResponse:
    """Any method on /echo...: the request as received (method, raw path and query, headers, body)."""
    body = await request.read()
    return json_response(
        {
            "method": request.method,
            "path": request.rel_url.raw_path,
            "query": request.rel_url.raw_query_string,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body.decode(errors="replace"),
            "bodyLength": len(body),
        },
        status=int(request.query.get("status", "200")),
    )


async def gzipped(request: web.Request) -> web.StreamResponse:
    """GET /gzip: a gzip-encoded JSON body."""
    body = gzip.compress(json.dumps({"compressed": True, "pad": "z" * 4096}).encode())
    return web.Response(body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})


async def fail(request: web.Request) -> web.StreamResponse:
    """Any method on /fail/{code}: that status as a Status, with an `X-Member` header."""
    code = int(request.match_info["code"])
    resp = json_response(status_object(code, "InternalError" if code >= 500 else "BadRequest", f"member says {code}"), code)
    resp.headers["X-Member"] = "yes"
    return resp
