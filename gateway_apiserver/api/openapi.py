"""OpenAPI documents: `/openapi/v2` (Swagger 2.0) and `/openapi/v3` (index + per group version).

The aggregator downloads these to merge into the cluster's documents, and `kubectl explain`
reads the v3 document of our group version, so every schema carries
`x-kubernetes-group-version-kind` and the resource paths carry it on their operations.
All bodies are encoded once, when the routes are added, for the resources the server
serves. The v3 serving rules (ETag = upper-case hex SHA-512 of the document, `?hash=` in
the index, 301 on a stale hash, immutable caching headers on a matching one) follow
kube-openapi's `handler3`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from email.utils import formatdate
from time import time
from typing import Any, Final

from aiohttp import web

from .. import __version__
from ..base.status import StatusError, status_response
from .discovery import JSON, StaticDocument
from .negotiation import Shape, negotiate
from .resource_info import GROUP, PROXY, VERSION, ResourceInfo, gvk
from .schemas import (
    API_GROUP,
    API_GROUP_LIST,
    API_RESOURCE_LIST,
    PATCH,
    PKG,
    PROXY_OPTIONS,
    WATCH_EVENT,
    Schema,
    closure,
    ref,
    to_v3,
)

_JSON_ONLY: Final = frozenset({Shape.OBJECT})
_GROUP_TOKEN: Final = "".join(part.capitalize() for part in GROUP.split("."))  # ClusterCoreOamDev
_GV_TOKEN: Final = _GROUP_TOKEN + VERSION.capitalize()  # ClusterCoreOamDevV1alpha1
_GV_TAG: Final = f"{_GROUP_TOKEN[0].lower()}{_GROUP_TOKEN[1:]}_{VERSION}"  # clusterCoreOamDev_v1alpha1
_PREFIX: Final = f"/apis/{GROUP}/{VERSION}"
_WATCH_STREAM: Final = "application/json;stream=watch"
_PATCH_TYPES: Final = ("application/json-patch+json", "application/merge-patch+json")


# ---------------------------------------------------------------------------------------------
# Operations, described once and rendered for either OpenAPI version
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter."""

    name: str
    location: str  # "path" or "query"
    type: str
    description: str

    def v2(self) -> Schema:
        """Swagger 2.0 form."""
        param: Schema = {"name": self.name, "in": self.location, "type": self.type}
        param["description"] = self.description
        param["uniqueItems"] = True
        if self.location == "path":
            param["required"] = True
        return param

    def v3(self) -> Schema:
        """OpenAPI 3.0 form."""
        param: Schema = {"name": self.name, "in": self.location, "description": self.description}
        if self.location == "path":
            param["required"] = True
        param["schema"] = {"type": self.type, "uniqueItems": True}
        return param


@dataclass(frozen=True, slots=True)
class Operation:
    """One HTTP method on one path, with Kubernetes' operation extensions."""

    method: str
    operation_id: str
    description: str
    tag: str
    response: str | None  # a definition name; None for an opaque (proxied) body
    action: str | None = None  # x-kubernetes-action
    kind: str | None = None  # x-kubernetes-group-version-kind in our group version
    params: tuple[Param, ...] = ()
    body: str | None = None
    consumes: tuple[str, ...] = ("*/*",)
    produces: tuple[str, ...] = (JSON,)

    def _extensions(self) -> Schema:
        ext: Schema = {}
        if self.action:
            ext["x-kubernetes-action"] = self.action
        if self.kind:
            ext["x-kubernetes-group-version-kind"] = gvk(self.kind)
        return ext

    def _schema(self) -> Schema:
        return ref(self.response) if self.response else {"type": "string"}

    def v2(self) -> Schema:
        """Swagger 2.0 form."""
        params = [p.v2() for p in self.params]
        if self.body:
            params.insert(0, {"name": "body", "in": "body", "required": True, "schema": ref(self.body)})
        op: Schema = {
            "description": self.description,
            "consumes": list(self.consumes),
            "produces": list(self.produces),
            "schemes": ["https"],
            "tags": [self.tag],
            "operationId": self.operation_id,
            "responses": {
                "200": {"description": "OK", "schema": self._schema()},
                "401": {"description": "Unauthorized"},
            },
        }
        if params:
            op["parameters"] = params
        return {**op, **self._extensions()}

    def v3(self) -> Schema:
        """OpenAPI 3.0 form (refs still in 2.0 form: `to_v3` rewrites the whole document)."""
        op: Schema = {"tags": [self.tag], "description": self.description, "operationId": self.operation_id}
        if self.params:
            op["parameters"] = [p.v3() for p in self.params]
        if self.body:
            op["requestBody"] = {
                "content": {ct: {"schema": ref(self.body)} for ct in self.consumes},
                "required": True,
            }
        op["responses"] = {
            "200": {
                "description": "OK",
                "content": {ct: {"schema": self._schema()} for ct in self.produces},
            },
            "401": {"description": "Unauthorized"},
        }
        return {**op, **self._extensions()}


@dataclass(frozen=True, slots=True)
class PathItem:
    """A path, the parameters all its operations share, and its operations."""

    path: str
    operations: tuple[Operation, ...]
    params: tuple[Param, ...] = ()

    def render(self, version: int) -> Schema:
        """The path item for OpenAPI `version` 2 or 3."""
        item: Schema = {op.method: op.v2() if version == 2 else op.v3() for op in self.operations}
        if self.params:
            item["parameters"] = [p.v2() if version == 2 else p.v3() for p in self.params]
        return item


def _query(name: str, type_: str, description: str) -> Param:
    return Param(name, "query", type_, description)


def _name(info: ResourceInfo) -> Param:
    return Param("name", "path", "string", f"name of the {info.kind}")


_LIST_PARAMS: Final = (
    _query("allowWatchBookmarks", "boolean", 'allowWatchBookmarks requests watch events with type "BOOKMARK".'),
    _query("continue", "string", "The continue option should be set when retrieving more results from the server."),
    _query("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields."),
    _query("labelSelector", "string", "A selector to restrict the list of returned objects by their labels."),
    _query("limit", "integer", "limit is a maximum number of responses to return for a list call."),
    _query(
        "resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."
    ),
    _query("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
    _query("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
    _query("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    _query(
        "watch",
        "boolean",
        "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
    ),
)
_PROXY_METHODS: Final = ("delete", "get", "head", "options", "patch", "post", "put")


def _proxy_item(info: ResourceInfo, path: str, with_path: bool) -> PathItem:
    suffix = "WithPath" if with_path else ""
    name = _name(info)
    params = (name, Param("path", "path", "string", "path to the resource")) if with_path else (name,)
    query = () if with_path else (_query("path", "string", "Path is the URL path to use for the current proxy request."),)
    ops = tuple(
        Operation(
            method,
            f"connect{method.capitalize()}{_GV_TOKEN}{info.kind}Proxy{suffix}",
            f"connect {method.upper()} requests to proxy of {info.kind}: forwarded to the cluster's "
            "kube-apiserver, with the path appended to its address",
            _GV_TAG,
            None,
            action="connect",
            kind=PROXY.kind,
            params=query,
            produces=("*/*",),
        )
        for method in _PROXY_METHODS
    )
    return PathItem(path, ops, params)


def _resource_op(
    info: ResourceInfo, method: str, verb: str, description: str, response: str, action: str, *, suffix: str = "", **options: Any
) -> Operation:
    """An operation on a resource, with a kube-style id (e.g. `readClusterCoreOamDevV1alpha1ClusterGateway`)."""
    operation_id = f"{verb}{_GV_TOKEN}{info.kind}{suffix}"
    return Operation(method, operation_id, description, _GV_TAG, response, action=action, kind=info.kind, **options)


def _health_item(info: ResourceInfo, item: str, verbs: tuple[str, ...]) -> PathItem:
    """The health subresource: GET always, PATCH and PUT where the server can store health."""
    kind = PKG + info.kind
    ops = [_resource_op(info, "get", "read", f"read health of the specified {info.kind}", kind, "get", suffix="Health")]
    if "patch" in verbs:
        patch = f"partially update health of the specified {info.kind}"
        ops.append(_resource_op(info, "patch", "patch", patch, kind, "patch", suffix="Health", body=PATCH, consumes=_PATCH_TYPES))
    if "update" in verbs:
        replace = f"replace health of the specified {info.kind}"
        ops.append(_resource_op(info, "put", "replace", replace, kind, "put", suffix="Health", body=kind, consumes=(JSON,)))
    return PathItem(f"{item}/health", tuple(ops), (_name(info),))


def resource_paths(info: ResourceInfo) -> tuple[PathItem, ...]:
    """Every path of one resource: list/watch, get, its subresources and the legacy watch paths."""
    collection = f"{_PREFIX}/{info.plural}"
    item = f"{collection}/{{name}}"
    watch = f"{_PREFIX}/watch/{info.plural}"
    kind, list_kind = PKG + info.kind, PKG + info.list_kind
    streaming: dict[str, Any] = {"params": _LIST_PARAMS, "produces": (JSON, _WATCH_STREAM)}
    deprecated = "deprecated: use the 'watch' parameter with a list operation instead"
    name = _name(info)
    items: list[PathItem] = [
        PathItem(
            collection,
            (_resource_op(info, "get", "list", f"list or watch objects of kind {info.kind}", list_kind, "list", **streaming),),
        ),
        PathItem(item, (_resource_op(info, "get", "read", f"read the specified {info.kind}", kind, "get"),), (name,)),
    ]
    health = info.subresource("health")
    if health is not None:
        items.append(_health_item(info, item, health.verbs))
    if info.subresource(PROXY.name) is not None:
        items.append(_proxy_item(info, f"{item}/{PROXY.name}", with_path=False))
        items.append(_proxy_item(info, f"{item}/{PROXY.name}/{{path}}", with_path=True))
    watch_list = f"watch individual changes to a list of {info.kind}. {deprecated}."
    watch_one = (
        f"watch changes to an object of kind {info.kind}. {deprecated}, "
        "filtered to a single item with the 'fieldSelector' parameter."
    )
    items.append(
        PathItem(watch, (_resource_op(info, "get", "watch", watch_list, WATCH_EVENT, "watchlist", suffix="List", **streaming),))
    )
    items.append(
        PathItem(
            f"{watch}/{{name}}", (_resource_op(info, "get", "watch", watch_one, WATCH_EVENT, "watch", **streaming),), (name,)
        )
    )
    return tuple(items)


def group_version_paths(resources: tuple[ResourceInfo, ...]) -> tuple[PathItem, ...]:
    """Every path under /apis/cluster.core.oam.dev/v1alpha1 we serve."""
    discovery = PathItem(
        f"{_PREFIX}/",
        (Operation("get", f"get{_GV_TOKEN}APIResources", "get available resources", _GV_TAG, API_RESOURCE_LIST),),
    )
    return (discovery, *(path for info in resources for path in resource_paths(info)))


def root_kinds(resources: tuple[ResourceInfo, ...]) -> tuple[str, ...]:
    """The definitions every document of the group version carries, referenced or not."""
    kinds = [name for info in resources for name in (PKG + info.kind, PKG + info.list_kind)]
    return (*kinds, PROXY_OPTIONS)


def apis_paths() -> tuple[PathItem, ...]:
    """The `/apis/` discovery path."""
    get = Operation("get", "getAPIVersions", "get available API versions", "apis", API_GROUP_LIST)
    return (PathItem("/apis/", (get,)),)


def group_paths() -> tuple[PathItem, ...]:
    """The `/apis/cluster.core.oam.dev/` discovery path."""
    tag = _GV_TAG.split("_")[0]  # clusterCoreOamDev
    get = Operation("get", f"get{_GROUP_TOKEN}APIGroup", "get information of a group", tag, API_GROUP)
    return (PathItem(f"/apis/{GROUP}/", (get,)),)


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------

_INFO: Final = {"title": "gateway-apiserver", "version": f"v{__version__}"}
_BEARER: Final = {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}


def swagger_v2(resources: tuple[ResourceInfo, ...]) -> dict[str, Any]:
    """The Swagger 2.0 document served at /openapi/v2."""
    items = (*apis_paths(), *group_paths(), *group_version_paths(resources))
    paths = {item.path: item.render(2) for item in items}
    return {
        "swagger": "2.0",
        "info": dict(_INFO),
        "paths": paths,
        "definitions": closure(root_kinds(resources), paths),
        "securityDefinitions": {"BearerToken": dict(_BEARER)},
        "security": [{"BearerToken": []}],
    }


def openapi_v3(items: tuple[PathItem, ...], roots: tuple[str, ...] = ()) -> dict[str, Any]:
    """An OpenAPI 3.0 document for `items`, with the schemas they (and `roots`) reference."""
    paths = {item.path: item.render(3) for item in items}
    document: dict[str, Any] = to_v3(
        {
            "openapi": "3.0.0",
            "info": dict(_INFO),
            "paths": paths,
            "components": {
                "schemas": closure(roots, paths),
                "securitySchemes": {"BearerToken": dict(_BEARER)},
            },
            "security": [{"BearerToken": []}],
        }
    )
    return document


def v3_documents(resources: tuple[ResourceInfo, ...]) -> dict[str, dict[str, Any]]:
    """The per-path OpenAPI 3.0 documents, keyed as in the /openapi/v3 index."""
    return {
        "apis": openapi_v3(apis_paths()),
        f"apis/{GROUP}": openapi_v3(group_paths()),
        f"apis/{GROUP}/{VERSION}": openapi_v3(group_version_paths(resources), root_kinds(resources)),
    }


def _v3_document(doc: dict[str, Any]) -> tuple[StaticDocument, str]:
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hashlib.sha512(body).hexdigest().upper()  # kube-openapi's computeETag
    return StaticDocument(body, JSON, f'"{digest}"'), digest


def server_relative_url(key: str, digest: str) -> str:
    """The index entry for one document, e.g. /openapi/v3/apis/g/v?hash=ABC..."""
    return f"/openapi/v3/{key}?hash={digest}"


_LAST_MODIFIED: Final = formatdate(time(), usegmt=True)


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------


def _check_accept(request: web.Request) -> None:
    # Only JSON: a client asking for protobuf alone gets 406, as from a server without it.
    negotiate(request.headers.get("Accept"), _JSON_ONLY)


class OpenAPIDocuments:
    """The encoded documents of one server, and their handlers."""

    def __init__(self, resources: tuple[ResourceInfo, ...]) -> None:
        self.v2 = StaticDocument.from_object(swagger_v2(resources))
        encoded = {key: _v3_document(doc) for key, doc in v3_documents(resources).items()}
        self.v3 = {key: document for key, (document, _) in encoded.items()}
        self.v3_hashes = {key: digest for key, (_, digest) in encoded.items()}
        index = {key: {"serverRelativeURL": server_relative_url(key, self.v3_hashes[key])} for key in sorted(encoded)}
        self.v3_index = StaticDocument.from_object({"paths": index})

    async def handle_v2(self, request: web.Request) -> web.StreamResponse:
        """GET /openapi/v2."""
        try:
            _check_accept(request)
        except StatusError as err:
            return status_response(err)
        return self.v2.response(request, {"Vary": "Accept", "Last-Modified": _LAST_MODIFIED})

    async def handle_v3_index(self, request: web.Request) -> web.StreamResponse:
        """GET /openapi/v3: where each document is, with its content hash."""
        try:
            _check_accept(request)
        except StatusError as err:
            return status_response(err)
        return self.v3_index.response(request)

    async def handle_v3_document(self, request: web.Request) -> web.StreamResponse:
        """GET /openapi/v3/<path>: one document; immutable caching when `?hash=` is current."""
        key = request.match_info["path"]
        document = self.v3.get(key)
        if document is None:
            return status_response(StatusError(404, f"no OpenAPI v3 document for {key!r}"))
        try:
            _check_accept(request)
        except StatusError as err:
            return status_response(err)
        headers = {"Vary": "Accept", "Last-Modified": _LAST_MODIFIED}
        requested = request.query.get("hash")
        if requested:
            current = self.v3_hashes[key]
            if requested != current:
                # A stale hash: send the client to the current document, as kube-openapi does.
                return web.Response(status=301, headers={"Location": server_relative_url(key, current)})
            headers["Cache-Control"] = "public, immutable"
            headers["Expires"] = formatdate(time() + 365 * 24 * 3600, usegmt=True)
        return document.response(request, headers)


def add_openapi_routes(app: web.Application, resources: tuple[ResourceInfo, ...]) -> None:
    """Register GET (and HEAD) for /openapi/v2, /openapi/v3 and /openapi/v3/<path>."""
    documents = OpenAPIDocuments(resources)
    app.router.add_get("/openapi/v2", documents.handle_v2)
    app.router.add_get("/openapi/v3", documents.handle_v3_index)
    app.router.add_get("/openapi/v3/{path:.+}", documents.handle_v3_document)


__all__ = [
    "OpenAPIDocuments",
    "add_openapi_routes",
    "apis_paths",
    "group_paths",
    "group_version_paths",
    "openapi_v3",
    "resource_paths",
    "server_relative_url",
    "swagger_v2",
    "v3_documents",
]
