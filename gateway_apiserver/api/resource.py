"""Generic read-only resource handlers: get, list and watch over an `ObjectStore`, writes refused.

One `ReadOnlyResource` serves one resource of our group version (ClusterGateways,
VirtualClusters), as the kube-apiserver's generic registry serves any type: the same
selectors, pagination, resourceVersion semantics, Table and PartialObjectMetadata for all.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from ..base.status import StatusError, expired, initializing, method_not_allowed
from ..registry.model import encode
from ..registry.store import Snapshot, StoredObject, Watcher
from .listing import ContinueToken, ListOptions, parse_list_options, parse_resource_version
from .negotiation import Shape, negotiate, table_version
from .resource_info import GROUP_VERSION, ResourceInfo
from .tables import TablePrinter, parse_include_object, partial_object_metadata, table
from .watch import WATCH_SETTINGS, serve_watch, wait_for_resource_version

_SHAPES = frozenset({Shape.OBJECT, Shape.TABLE, Shape.PARTIAL_METADATA})

# How a route words a missing object: (name, the store's error) -> the error to answer.
NotFoundHook = Callable[[str, StatusError], StatusError]


class ReadableStore(Protocol):
    """What the handlers read: an `ObjectStore` whose `get` answers 404 (or 429) as its resource needs."""

    @property
    def synced(self) -> Any: ...

    @property
    def resource_version(self) -> int: ...

    def snapshot(self) -> Snapshot[Any]: ...

    def snapshot_at(self, resource_version: int) -> Snapshot[Any] | None: ...

    def remember(self, snapshot: Snapshot[Any], keep: int = 16) -> None: ...

    def watch(self, since: int | None) -> Watcher[Any]: ...

    def get(self, name: str) -> Any: ...


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


async def _snapshot_for(store: ReadableStore, opts: ListOptions) -> Snapshot[Any]:
    """The listing this request must be served from, honouring continue and resourceVersion."""
    if opts.continue_token is not None:
        # A token from a newer listing (another replica, a restarted cache) is too large, not too old.
        await wait_for_resource_version(store, opts.continue_token.resource_version)
        snap = store.snapshot_at(opts.continue_token.resource_version)
        if snap is None:
            raise expired(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter."
            )
        return snap
    wanted = parse_resource_version({"resourceVersion": opts.resource_version or ""})
    if wanted is None:
        return store.snapshot()
    await wait_for_resource_version(store, wanted)
    if opts.resource_version_match == "Exact":
        snap = store.snapshot_at(wanted)
        if snap is None:
            raise expired(f"too old resource version: {wanted} ({store.resource_version})")
        return snap
    return store.snapshot()


def _page(snap: Snapshot[Any], opts: ListOptions) -> tuple[list[StoredObject], str | None, int | None]:
    """Filter and paginate a sorted listing: (items, continue token, remainingItemCount)."""
    items: tuple[StoredObject, ...] = snap.items
    start = 0
    if opts.continue_token is not None:
        start = bisect.bisect_right(items, opts.continue_token.start, key=lambda obj: obj.name)
    pinned = opts.field_selector.exact_value("metadata.name")
    if pinned is not None:
        # The field selector names one object: find it by bisection instead of a scan.
        at = bisect.bisect_left(items, pinned, lo=start, key=lambda obj: obj.name)
        candidates = items[at : at + 1] if at < len(items) and items[at].name == pinned else ()
        return [obj for obj in candidates if opts.matches_name(obj.name, obj.labels)], None, None
    selected: list[StoredObject] = []
    index = start
    limit = opts.limit
    while index < len(items):
        obj = items[index]
        index += 1
        if opts.matches_name(obj.name, obj.labels):
            selected.append(obj)
            if limit and len(selected) >= limit:
                break
    if limit and index < len(items):
        token = ContinueToken(snap.resource_version, selected[-1].name if selected else items[index - 1].name)
        remaining = None
        if opts.label_selector.empty and opts.field_selector.empty:
            remaining = len(items) - index
        return selected, token.encode(), remaining
    return selected, None, None


@dataclass(frozen=True, slots=True)
class ReadOnlyResource:
    """The HTTP surface of one read-only resource: its store (an app key) and its Table printer."""

    info: ResourceInfo
    store_key: web.AppKey[Any]
    printer: TablePrinter

    def store(self, request: web.Request) -> ReadableStore:
        """This resource's store in the request's application."""
        store: ReadableStore = request.app[self.store_key]
        return store

    async def list_or_watch(self, request: web.Request) -> web.StreamResponse:
        """GET the collection: a list, or a watch with `?watch=true`."""
        return await self._list_or_watch(request, force_watch=False)

    async def watch_collection(self, request: web.Request) -> web.StreamResponse:
        """The legacy `/watch/<plural>` path."""
        return await self._list_or_watch(request, force_watch=True)

    async def watch_one(self, request: web.Request) -> web.StreamResponse:
        """The legacy `/watch/<plural>/{name}` path."""
        return await self._list_or_watch(request, force_watch=True, name=request.match_info["name"])

    async def get_one(self, request: web.Request, *, not_found: NotFoundHook | None = None) -> web.StreamResponse:
        """GET one object. As in the kube-apiserver, `?watch=true` on a named object is ignored: it is a get.

        `not_found` rewords the store's errors for this route (a subresource may need its own words).
        """
        name = request.match_info["name"]
        accept = request.headers.get("Accept")
        shape = negotiate(accept, _SHAPES)
        include_object = parse_include_object(request.query.get("includeObject"))
        store = self.store(request)
        wanted = parse_resource_version(request.query)
        if wanted is not None:  # as the kube-apiserver's cache: "not older than", waiting a little for a newer one
            await wait_for_resource_version(store, wanted)
        try:
            obj = store.get(name)
        except StatusError as exc:
            if not_found is None:
                raise
            raise not_found(name, exc) from None
        if shape is Shape.TABLE:
            version = table_version(accept)
            return _json(table([obj], self.printer, include_object, version=version, resource_version=obj.resource_version))
        if shape is Shape.PARTIAL_METADATA:
            return _json(encode(partial_object_metadata(obj)))
        return _json(obj.json)

    async def refuse_write(self, request: web.Request) -> web.StreamResponse:
        """create, update, patch and delete: the resource is computed, so read-only."""
        name = request.match_info.get("name")
        what = f'{self.info.group_resource} "{name}"' if name else self.info.group_resource
        error = method_not_allowed(request.method, what)
        error.message = (
            f"{request.method} is not supported on {what}: {self.info.kind}s are read-only, "
            f"computed from the cluster Secrets; change the Secret instead"
        )
        error.headers = {"Allow": "GET, HEAD"}
        raise error

    async def _list_or_watch(self, request: web.Request, *, force_watch: bool, name: str | None = None) -> web.StreamResponse:
        store = self.store(request)
        if not store.synced.is_set():
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
                request,
                store,
                opts,
                shape,
                include_object,
                table_version(accept),
                request.app[WATCH_SETTINGS],
                self.info.kind,
                self.printer,
            )
        snap = await _snapshot_for(store, opts)
        items, token, remaining = _page(snap, opts)
        if token is not None:
            store.remember(snap)
        rv = str(snap.resource_version)
        if shape is Shape.TABLE:
            return _json(
                table(
                    items,
                    self.printer,
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
            partial = [partial_object_metadata(obj) for obj in items]
            return _json(
                encode({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": partial})
            )
        head = b'{"kind":"' + self.info.list_kind.encode() + b'","apiVersion":"' + GROUP_VERSION.encode() + b'","metadata":'
        return _json(head + encode(meta) + b',"items":[' + b",".join(obj.json for obj in items) + b"]}")

    def add_routes(self, app: web.Application, *, readable_subresources: Mapping[str, NotFoundHook | None] | None = None) -> None:
        """Register get, list and watch (with the legacy /watch paths), and refuse writes.

        `readable_subresources` (e.g. `health`) answer GET with the object itself, its errors reworded
        by the subresource's hook if it has one, and refuse POST and DELETE; their other writes are
        registered by whoever implements them.
        """
        r = app.router
        collection = self.info.path
        item = collection + "/{name}"
        watch = f"{collection.rsplit('/', 1)[0]}/watch/{self.info.plural}"
        r.add_get(collection, self.list_or_watch)
        r.add_get(watch, self.watch_collection)
        r.add_get(item, self.get_one)
        r.add_get(watch + "/{name}", self.watch_one)
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            r.add_route(method, collection, self.refuse_write)
            r.add_route(method, item, self.refuse_write)
        for sub, not_found in (readable_subresources or {}).items():
            r.add_get(f"{item}/{sub}", functools.partial(self.get_one, not_found=not_found))
            for method in ("POST", "DELETE"):
                r.add_route(method, f"{item}/{sub}", self.refuse_write)
