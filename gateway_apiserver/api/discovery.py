"""API discovery: `/api`, `/apis`, `/apis/<group>` and `/apis/<group>/<version>`.

Every kubectl invocation and the aggregator's availability probe (every few seconds) hit
these endpoints, so the documents are encoded once, at import, and served as bytes.

Formats follow k8s.io/apimachinery `metav1` (APIVersions, APIGroupList, APIGroup,
APIResourceList) and k8s.io/api `apidiscovery/v2` and `v2beta1` (APIGroupDiscoveryList),
as consumed by client-go `discovery_client.go` and `aggregated_discovery.go`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from ..base.status import StatusError, status_response
from .negotiation import Shape, negotiate
from .resource_info import (
    GROUP,
    GROUP_VERSION,
    KIND,
    NAMESPACED,
    RESOURCE,
    SHORT_NAMES,
    SINGULAR,
    SUBRESOURCES,
    VERBS,
    VERSION,
    gvk,
)

JSON: Final = "application/json"
DISCOVERY_GROUP: Final = "apidiscovery.k8s.io"


def aggregated_content_type(version: str) -> str:
    """The Content-Type client-go's `ContentTypeIsGVK` recognises as aggregated discovery."""
    return f"{JSON};g={DISCOVERY_GROUP};v={version};as=APIGroupDiscoveryList"


CONTENT_TYPE_V2: Final = aggregated_content_type("v2")
CONTENT_TYPE_V2BETA1: Final = aggregated_content_type("v2beta1")


# ---------------------------------------------------------------------------------------------
# Precomputed documents
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaticDocument:
    """An immutable response body with its Content-Type and a strong ETag."""

    body: bytes
    content_type: str
    etag: str  # quoted, ready for the ETag header

    @classmethod
    def from_object(cls, obj: Any, content_type: str = JSON) -> StaticDocument:
        """Encode `obj` compactly once and fingerprint it."""
        body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(body, content_type, f'"{hashlib.sha256(body).hexdigest()}"')

    def response(self, request: web.Request, headers: Mapping[str, str] | None = None) -> web.Response:
        """The document, or 304 when the client already holds this exact version."""
        all_headers = {"ETag": self.etag, **(headers or {})}
        if etag_matches(request.headers.get("If-None-Match"), self.etag):
            return web.Response(status=304, headers=all_headers)
        # Content-Type goes in the headers: aiohttp's content_type= argument rejects parameters.
        return web.Response(body=self.body, headers={"Content-Type": self.content_type, **all_headers})


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weak comparison, as RFC 9110 asks for GET)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Pure builders (dicts, so tests and other modules can inspect them)
# ---------------------------------------------------------------------------------------------


def _group_version_for_discovery() -> dict[str, str]:
    return {"groupVersion": GROUP_VERSION, "version": VERSION}


def api_versions() -> dict[str, Any]:
    """`GET /api`: we serve no core (legacy) group, so the version list is empty."""
    return {"kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": []}


def api_group() -> dict[str, Any]:
    """`GET /apis/cluster.core.oam.dev`: the metav1 APIGroup."""
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [_group_version_for_discovery()],
        "preferredVersion": _group_version_for_discovery(),
    }


def api_group_list() -> dict[str, Any]:
    """`GET /apis`: the metav1 APIGroupList with our one group."""
    group = api_group()
    del group["kind"], group["apiVersion"]  # list items carry no TypeMeta
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def api_resource_list() -> dict[str, Any]:
    """`GET /apis/cluster.core.oam.dev/v1alpha1`: the metav1 APIResourceList.

    This is also what the aggregator probes for availability. No `storageVersionHash`:
    the resource is virtual, and advertising one would invite the storage-version
    migrator to try to rewrite objects we cannot store.
    """
    resources: list[dict[str, Any]] = [
        {
            "name": RESOURCE,
            "singularName": SINGULAR,
            "namespaced": NAMESPACED,
            "kind": KIND,
            "verbs": list(VERBS),
            "shortNames": list(SHORT_NAMES),
        }
    ]
    for sub in SUBRESOURCES:
        # The kube-apiserver leaves singularName empty for subresources.
        resources.append(
            {
                "name": sub.resource,
                "singularName": "",
                "namespaced": NAMESPACED,
                "kind": sub.kind,
                "verbs": list(sub.verbs),
            }
        )
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": resources}


def _resource_discovery() -> dict[str, Any]:
    """apidiscovery APIResourceDiscovery for clustergateways, subresources included."""
    return {
        "resource": RESOURCE,
        # client-go drops resources (and their subresources) without a responseKind.
        "responseKind": gvk(KIND),
        "scope": "Namespaced" if NAMESPACED else "Cluster",
        "singularResource": SINGULAR,
        "verbs": list(VERBS),
        "shortNames": list(SHORT_NAMES),
        "subresources": [
            {"subresource": sub.name, "responseKind": gvk(sub.kind), "verbs": list(sub.verbs)} for sub in SUBRESOURCES
        ],
    }


def aggregated_discovery(version: str, *, with_group: bool = True) -> dict[str, Any]:
    """An apidiscovery.k8s.io `APIGroupDiscoveryList` (`version` is `v2` or `v2beta1`).

    `with_group=False` gives the empty list served at `/api`. v2 and v2beta1 share
    one JSON shape; only apiVersion differs.
    """
    if version not in {"v2", "v2beta1"}:
        raise ValueError(f"unknown aggregated discovery version {version!r}")
    items: list[dict[str, Any]] = []
    if with_group:
        items.append(
            {
                "metadata": {"name": GROUP},
                "versions": [{"version": VERSION, "resources": [_resource_discovery()], "freshness": "Current"}],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"{DISCOVERY_GROUP}/{version}",
        "metadata": {},
        "items": items,
    }


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_AGGREGATABLE: Final = frozenset({Shape.OBJECT, Shape.DISCOVERY_V2, Shape.DISCOVERY_V2BETA1})


def _root_documents(legacy: dict[str, Any], *, with_group: bool) -> dict[Shape, StaticDocument]:
    return {
        Shape.OBJECT: StaticDocument.from_object(legacy),
        Shape.DISCOVERY_V2: StaticDocument.from_object(aggregated_discovery("v2", with_group=with_group), CONTENT_TYPE_V2),
        Shape.DISCOVERY_V2BETA1: StaticDocument.from_object(
            aggregated_discovery("v2beta1", with_group=with_group), CONTENT_TYPE_V2BETA1
        ),
    }


API_DOCUMENTS: Final = _root_documents(api_versions(), with_group=False)
APIS_DOCUMENTS: Final = _root_documents(api_group_list(), with_group=True)
GROUP_DOCUMENT: Final = StaticDocument.from_object(api_group())
RESOURCE_LIST_DOCUMENT: Final = StaticDocument.from_object(api_resource_list())


def negotiated_handler(documents: Mapping[Shape, StaticDocument]) -> Handler:
    """A handler picking one of `documents` by the request's Accept header (406 if none fits)."""
    allowed = frozenset(documents)
    # The body varies with Accept only when there is more than one representation.
    headers = {"Vary": "Accept"} if len(documents) > 1 else {}

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            shape = negotiate(request.headers.get("Accept"), allowed)
        except StatusError as err:
            return status_response(err)
        return documents[shape].response(request, headers)

    return handle


def add_discovery_routes(app: web.Application) -> None:
    """Register GET (and HEAD) for the four discovery endpoints, with and without trailing slash."""
    routes: dict[str, Mapping[Shape, StaticDocument]] = {
        "/api": API_DOCUMENTS,
        "/apis": APIS_DOCUMENTS,
        f"/apis/{GROUP}": {Shape.OBJECT: GROUP_DOCUMENT},
        f"/apis/{GROUP_VERSION}": {Shape.OBJECT: RESOURCE_LIST_DOCUMENT},
    }
    for path, documents in routes.items():
        handler = negotiated_handler(documents)
        app.router.add_get(path, handler)
        app.router.add_get(path + "/", handler)


__all__ = [
    "APIS_DOCUMENTS",
    "API_DOCUMENTS",
    "CONTENT_TYPE_V2",
    "CONTENT_TYPE_V2BETA1",
    "GROUP_DOCUMENT",
    "RESOURCE_LIST_DOCUMENT",
    "StaticDocument",
    "add_discovery_routes",
    "aggregated_content_type",
    "aggregated_discovery",
    "api_group",
    "api_group_list",
    "api_resource_list",
    "api_versions",
    "etag_matches",
    "negotiated_handler",
]
