"""API discovery: `/api`, `/apis`, `/apis/<group>` and `/apis/<group>/<version>`.

Every kubectl invocation and the aggregator's availability probe (every few seconds) hit
these endpoints, so the documents are encoded once, when the routes are added, and served
as bytes. They list the `ResourceInfo`s the server was built with.

Formats follow k8s.io/apimachinery `metav1` (APIVersions, APIGroupList, APIGroup,
APIResourceList) and k8s.io/api `apidiscovery/v2` and `v2beta1` (APIGroupDiscoveryList),
as consumed by client-go `discovery_client.go` and `aggregated_discovery.go`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from ..base.status import StatusError, status_response
from .negotiation import Shape, negotiate
from .resource_info import GROUP, GROUP_VERSION, VERSION, ResourceInfo, gvk

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


def api_resource_list(resources: Sequence[ResourceInfo]) -> dict[str, Any]:
    """`GET /apis/cluster.core.oam.dev/v1alpha1`: the metav1 APIResourceList.

    This is also what the aggregator probes for availability. No `storageVersionHash`:
    the resources are virtual, and advertising one would invite the storage-version
    migrator to try to rewrite objects we cannot store.
    """
    entries: list[dict[str, Any]] = []
    for info in resources:
        entries.append(
            {
                "name": info.plural,
                "singularName": info.singular,
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": list(info.verbs),
                "shortNames": list(info.short_names),
            }
        )
        for sub in info.subresources:
            # The kube-apiserver leaves singularName empty for subresources.
            entries.append(
                {
                    "name": f"{info.plural}/{sub.name}",
                    "singularName": "",
                    "namespaced": info.namespaced,
                    "kind": sub.kind,
                    "verbs": list(sub.verbs),
                }
            )
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": entries}


def _resource_discovery(info: ResourceInfo) -> dict[str, Any]:
    """apidiscovery APIResourceDiscovery for one resource, subresources included."""
    return {
        "resource": info.plural,
        # client-go drops resources (and their subresources) without a responseKind.
        "responseKind": gvk(info.kind),
        "scope": "Namespaced" if info.namespaced else "Cluster",
        "singularResource": info.singular,
        "verbs": list(info.verbs),
        "shortNames": list(info.short_names),
        "subresources": [
            {"subresource": sub.name, "responseKind": gvk(sub.kind), "verbs": list(sub.verbs)} for sub in info.subresources
        ],
    }


def aggregated_discovery(version: str, resources: Sequence[ResourceInfo] = ()) -> dict[str, Any]:
    """An apidiscovery.k8s.io `APIGroupDiscoveryList` (`version` is `v2` or `v2beta1`).

    No resources gives the empty list served at `/api`. v2 and v2beta1 share one JSON
    shape; only apiVersion differs.
    """
    if version not in {"v2", "v2beta1"}:
        raise ValueError(f"unknown aggregated discovery version {version!r}")
    items: list[dict[str, Any]] = []
    if resources:
        versions = [{"version": VERSION, "resources": [_resource_discovery(r) for r in resources], "freshness": "Current"}]
        items.append({"metadata": {"name": GROUP}, "versions": versions})
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


def _root_documents(legacy: dict[str, Any], resources: Sequence[ResourceInfo]) -> dict[Shape, StaticDocument]:
    return {
        Shape.OBJECT: StaticDocument.from_object(legacy),
        Shape.DISCOVERY_V2: StaticDocument.from_object(aggregated_discovery("v2", resources), CONTENT_TYPE_V2),
        Shape.DISCOVERY_V2BETA1: StaticDocument.from_object(aggregated_discovery("v2beta1", resources), CONTENT_TYPE_V2BETA1),
    }


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


def add_discovery_routes(app: web.Application, resources: Sequence[ResourceInfo]) -> None:
    """Register GET (and HEAD) for the four discovery endpoints, with and without trailing slash."""
    routes: dict[str, Mapping[Shape, StaticDocument]] = {
        "/api": _root_documents(api_versions(), ()),
        "/apis": _root_documents(api_group_list(), resources),
        f"/apis/{GROUP}": {Shape.OBJECT: StaticDocument.from_object(api_group())},
        f"/apis/{GROUP_VERSION}": {Shape.OBJECT: StaticDocument.from_object(api_resource_list(resources))},
    }
    for path, documents in routes.items():
        handler = negotiated_handler(documents)
        app.router.add_get(path, handler)
        app.router.add_get(path + "/", handler)


__all__ = [
    "CONTENT_TYPE_V2",
    "CONTENT_TYPE_V2BETA1",
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
