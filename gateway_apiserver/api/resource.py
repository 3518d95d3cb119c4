"""HTTP handlers for clustergateways: get, list, watch; writes are refused, except on `health` (api/health.py)."""

from __future__ import annotations

import bisect
from typing import Any

from aiohttp import web

from ..base.status import expired, initializing, method_not_allowed
from ..registry.cache import ClusterRegistry, Snapshot
from ..registry.model import GROUP_VERSION, LIST_KIND, ClusterGateway, encode
from .listing import ContinueToken, ListOptions, parse_list_options, parse_resource_version
from .negotiation import Shape, negotiate, table_version
from .tables import parse_include_object, partial_object_metadata, table
from .watch import WatchSettings, serve_watch, wait_for_resource_version

PREFIX = f"/apis/{GROUP_VERSION}"
REGISTRY = web.AppKey("registry", ClusterRegistry)
WATCH_SETTINGS = web.AppKey("watch_settings", WatchSettings)

_SHAPES = frozenset({Shape.OBJECT, Shape.TABLE, Shape.PARTIAL_METADATA})


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


async def _snapshot_for(registry: ClusterRegistry, opts: ListOptions) -> Snapshot:
    """The listing this request must be served from, honouring continue and resourceVersion."""
    if opts.continue_token is not None:
        # A token from a newer listing (another replica, a restarted cache) is too large, not too old.
        await wait_for_resource_version(registry, opts.continue_token.resource_version)
        snap = registry.snapshot_at(opts.continue_token.resource_version)
        if snap is None:
            raise expired(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter."
            )
        return snap
    wanted = parse_resource_version({"resourceVersion": opts.resource_version or ""})
    if wanted is None:
        return registry.snapshot()
    await wait_for_resource_version(registry, wanted)
    if opts.resource_version_match == "Exact":
        snap = registry.snapshot_at(wanted)
        if snap is None:
            raise expired(f"too old resource version: {wanted} ({registry.resource_version})")
        return snap
    return registry.snapshot()


def _page(snap: Snapshot, opts: ListOptions) -> tuple[list[ClusterGateway], str | None, int | None]:
    """Filter and paginate a sorted listing: (items, continue token, remainingItemCount)."""
    items = snap.items
    start = 0
    if opts.continue_token is not None:
        start = bisect.bisect_right(items, opts.continue_token.start, key=lambda gw: gw.name)
    selected: list[ClusterGateway] = []
    index = start
    pinned = opts.field_selector.exact_value("metadata.name")
    if pinned is not None:
        # The field selector names one object: find it by bisection instead of a scan.
        at = bisect.bisect_left(items, pinned, lo=start, key=lambda gw: gw.name)
        candidates = items[at : at + 1] if at < len(items) and items[at].name == pinned else ()
        return [gw for gw in candidates if opts.matches_name(gw.name, gw.labels)], None, None
    limit = opts.limit
    while index < len(items):
        gw = items[index]
        index += 1
        if opts.matches_name(gw.name, gw.labels):
            selected.append(gw)
            if limit and len(selected) >= limit:
                break
    if limit and index < len(items):
        token = ContinueToken(snap.resource_version, selected[-1].name if selected else items[index - 1].name)
        remaining = None
        if opts.label_selector.empty and opts.field_selector.empty:
            remaining = len(items) - index
        return selected, token.encode(), remaining
    return selected, None, None


async def list_or_watch(request: web.Request) -> web.StreamResponse:
    """GET the collection: a list, or a watch with `?watch=true`."""
    return await _list_or_watch(request, force_watch=False)


async def watch_collection(request: web.Request) -> web.StreamResponse:
    """The legacy `/watch/clustergateways` path."""
    return await _list_or_watch(request, force_watch=True)


async def _list_or_watch(request: web.Request, *, force_watch: bool, name: str | None = None) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    if not registry.synced.is_set():
        raise initializing()
    query = dict(request.query)
    if name is not None:
        selector = query.get("fieldSelector", "")
        query["fieldSelector"] = f"metadata.name={name}" + (f",{selector}" if selector else "")
    opts = parse_list_options(query, force_watch=force_watch)
    accept = request.headers.get("Accept")
    shape = negotiate(accept, _SHAPES)
    include_object = parse_include_object(opts.include_object)
    if opts.watch:
        return await serve_watch(
            request, registry, opts, shape, include_object, table_version(accept), request.app[WATCH_SETTINGS]
        )
    snap = await _snapshot_for(registry, opts)
    items, token, remaining = _page(snap, opts)
    if token is not None:
        registry.remember(snap)
    rv = str(snap.resource_version)
    if shape is Shape.TABLE:
        return _json(
            table(
                items,
                include_object,
                version=table_version(accept),
                resource_version=rv,
                continue_token=token,
                remaining=remaining,
            )
        )
    meta: dict[str, Any] = {"resourceVersion": rv}
    if token:
        meta["continue"] = token
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    if shape is Shape.PARTIAL_METADATA:
        return _json(
            encode(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                    "items": [partial_object_metadata(gw) for gw in items],
                }
            )
        )
    head = b'{"kind":"' + LIST_KIND.encode() + b'","apiVersion":"' + GROUP_VERSION.encode() + b'","metadata":'
    return _json(head + encode(meta) + b',"items":[' + b",".join(gw.json for gw in items) + b"]}")


async def get_one(request: web.Request) -> web.StreamResponse:
    """GET one cluster. As in the kube-apiserver, `?watch=true` on a named object is ignored: it is a get."""
    name = request.match_info["name"]
    accept = request.headers.get("Accept")
    shape = negotiate(accept, _SHAPES)
    include_object = parse_include_object(request.query.get("includeObject"))
    registry = request.app[REGISTRY]
    wanted = parse_resource_version(request.query)
    if wanted is not None:  # as the kube-apiserver's cache: "not older than", waiting a little for a newer one
        await wait_for_resource_version(registry, wanted)
    gw = registry.get(name)
    if shape is Shape.TABLE:
        return _json(table([gw], include_object, version=table_version(accept), resource_version=gw.resource_version))
    if shape is Shape.PARTIAL_METADATA:
        return _json(encode(partial_object_metadata(gw)))
    return _json(gw.json)


async def watch_one(request: web.Request) -> web.StreamResponse:
    """The legacy `/watch/clustergateways/{name}` path."""
    return await _list_or_watch(request, force_watch=True, name=request.match_info["name"])


async def refuse_write(request: web.Request) -> web.StreamResponse:
    """create, update, patch and delete: the resource is computed from Secrets, so read-only."""
    name = request.match_info.get("name")
    what = f'clustergateways.cluster.core.oam.dev "{name}"' if name else "clustergateways.cluster.core.oam.dev"
    error = method_not_allowed(request.method, what)
    error.message = (
        f"{request.method} is not supported on {what}: ClusterGateways are read-only, "
        f"computed from the cluster Secrets; change the Secret instead"
    )
    error.headers = {"Allow": "GET, HEAD"}
    raise error


def add_resource_routes(app: web.Application) -> None:
    """Register the clustergateways routes."""
    # Imported here, not at the top: the proxy handler imports this module's REGISTRY.
    from ..proxy.handler import add_proxy_routes
    from .health import add_health_routes

    # First: the router tries the routes of one path prefix in registration order, and the
    # proxy is the hot path.
    add_proxy_routes(app)
    r = app.router
    collection = f"{PREFIX}/clustergateways"
    item = collection + "/{name}"
    r.add_get(collection, list_or_watch)
    r.add_get(f"{PREFIX}/watch/clustergateways", watch_collection)
    r.add_get(item, get_one)
    r.add_get(f"{PREFIX}/watch/clustergateways/{{name}}", watch_one)
    r.add_get(item + "/health", get_one)
    add_health_routes(app, item)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        r.add_route(method, collection, refuse_write)
        r.add_route(method, item, refuse_write)
    for method in ("POST", "DELETE"):
        r.add_route(method, item + "/health", refuse_write)
