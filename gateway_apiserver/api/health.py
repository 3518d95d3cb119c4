"""The `clustergateways/{name}/health` writes: PUT of a ClusterGateway, merge and JSON PATCH.

Only `status.healthy` and `status.healthyReason` are kept; they are stored on the cluster's Secret
(registry/health.py). The answer is the ClusterGateway the registry will show for the patched Secret the
hosting cluster returned (its ManagedCluster, the newer of this write and the prober's last result, the
prober's lastProbeTime and kubernetesVersion), so it carries the status a GET shows once the informer has
delivered the MODIFIED, at the Secret's new resourceVersion (a GET with that resourceVersion waits for it).
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
from aiohttp import web

from ..app_keys import REGISTRY
from ..base.status import StatusError, bad_request, method_not_allowed, no_such_cluster, not_found
from ..registry.conversion import ConversionError
from ..registry.health import (
    MERGE_PATCH,
    PATCH_TYPES,
    Health,
    HealthBodyError,
    HealthWriteFailed,
    SecretGone,
    SecretHealthWriter,
    apply_merge_patch,
    health_from_cluster_gateway,
)
from ..registry.model import ClusterGateway

HEALTH_WRITER = web.AppKey("health_writer", SecretHealthWriter)

UNSUPPORTED_PATCH = "the body of the request was in an unknown format - accepted media types include: " + ", ".join(PATCH_TYPES)


def _writer(request: web.Request, name: str) -> SecretHealthWriter:
    writer = request.app.get(HEALTH_WRITER)
    if writer is None:
        what = f'clustergateways.cluster.core.oam.dev "{name}"'
        error = method_not_allowed(request.method, f"{what}/health")
        error.message = (
            f"{request.method} is not supported on the health of {what} in standalone mode: "
            "there is no cluster Secret in a hosting cluster to store it on"
        )
        error.headers = {"Allow": "GET, HEAD"}
        raise error
    return writer


def _cluster(request: web.Request, name: str) -> ClusterGateway:
    """The cluster, or its 404 in the reference's words ("no such cluster NAME: ...")."""
    try:
        return request.app[REGISTRY].get(name)
    except StatusError as exc:
        raise no_such_cluster(name, exc) from None


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body of the request is not valid JSON: {exc}") from None


async def _store(request: web.Request, writer: SecretHealthWriter, name: str, health: Health) -> web.Response:
    try:
        secret = await writer.write(name, health)
    except SecretGone:
        raise no_such_cluster(name, not_found(name)) from None
    except HealthWriteFailed as exc:
        raise StatusError(503 if exc.status == 503 else 500, str(exc)) from None
    try:
        gw = request.app[REGISTRY].shown_for(dict(secret))
    except ConversionError as exc:  # the Secret changed under us into something invalid
        raise StatusError(500, f"the health was stored, but Secret {name} cannot be converted: {exc}") from None
    return web.Response(body=gw.json, content_type="application/json")


async def put_health(request: web.Request) -> web.StreamResponse:
    """PUT a ClusterGateway on `health`: store its status on the Secret, answer the updated object."""
    name = request.match_info["name"]
    writer = _writer(request, name)
    _cluster(request, name)  # 404 (with the Secret's problem) before reading the body
    try:
        health = health_from_cluster_gateway(await _json_body(request), name)
    except HealthBodyError as exc:
        raise bad_request(str(exc)) from None
    return await _store(request, writer, name, health)


async def patch_health(request: web.Request) -> web.StreamResponse:
    """PATCH `health` with a merge or JSON patch, applied to the current ClusterGateway."""
    name = request.match_info["name"]
    writer = _writer(request, name)
    content_type = request.content_type
    if content_type not in PATCH_TYPES:
        raise StatusError(415, UNSUPPORTED_PATCH)
    current = _cluster(request, name).manifest
    patch = await _json_body(request)
    if content_type == MERGE_PATCH:
        if not isinstance(patch, dict):
            raise bad_request("a merge patch must be a JSON object")
        patched = apply_merge_patch(current, patch)
    else:
        try:
            patched = jsonpatch.apply_patch(current, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, AttributeError) as exc:
            raise bad_request(f"the JSON patch cannot be applied: {exc}") from None
    try:
        health = health_from_cluster_gateway(patched, name)
    except HealthBodyError as exc:
        raise bad_request(str(exc)) from None
    return await _store(request, writer, name, health)


def add_health_routes(app: web.Application, item: str) -> None:
    """PUT and PATCH on `item`/health (`item` is the clustergateway path with `{name}`)."""
    app.router.add_put(item + "/health", put_health)
    app.router.add_patch(item + "/health", patch_health)
