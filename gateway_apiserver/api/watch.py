"""The watch stream: store events rendered per client, with selectors, bookmarks and timeouts."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from ..base.status import StatusError
from ..registry.model import encode
from ..registry.store import ChangeEvent, StoredObject, Watcher
from .listing import ListOptions, parse_resource_version
from .negotiation import Shape
from .resource_info import GROUP_VERSION
from .tables import TablePrinter, partial_object_metadata, table

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
TOO_LARGE_WAIT = 3.0  # seconds the kube-apiserver's cache waits to reach a requested resourceVersion


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """Server-side watch knobs."""

    bookmark_interval: float = 60.0
    min_request_timeout: int = 1800  # as the kube-apiserver: a watch lasts [1x, 2x) of this


WATCH_SETTINGS = web.AppKey("watch_settings", WatchSettings)
Renderer = Callable[[StoredObject], bytes]


class WatchedStore(Protocol):
    """The part of an `ObjectStore` a watch reads."""

    @property
    def resource_version(self) -> int: ...

    def watch(self, since: int | None) -> Watcher[Any]: ...


def _renderer(
    shape: Shape, include_object: str, table_version: str, kind: str, printer: TablePrinter
) -> tuple[Renderer, Callable[[int, dict[str, str] | None], bytes]]:
    """How one object and one bookmark are encoded for this client."""
    if shape is Shape.TABLE:
        first = [True]

        def render_table(obj: StoredObject) -> bytes:
            # As the kube-apiserver, only the first event carries the column definitions.
            doc = table([obj], printer, include_object, version=table_version, with_columns=first[0], now=datetime.now(UTC))
            first[0] = False
            return doc

        def table_bookmark(rv: int, annotations: dict[str, str] | None) -> bytes:
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            return encode(
                {
                    "kind": "Table",
                    "apiVersion": f"meta.k8s.io/{table_version}",
                    "metadata": meta,
                    "columnDefinitions": None,
                    "rows": None,
                }
            )

        return render_table, table_bookmark
    if shape is Shape.PARTIAL_METADATA:

        def render_partial(obj: StoredObject) -> bytes:
            return encode(partial_object_metadata(obj))

        def partial_bookmark(rv: int, annotations: dict[str, str] | None) -> bytes:
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if annotations:
                meta["annotations"] = annotations
            return encode({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})

        return render_partial, partial_bookmark

    def render_object(obj: StoredObject) -> bytes:
        return obj.json

    def object_bookmark(rv: int, annotations: dict[str, str] | None) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rv), "creationTimestamp": None}
        if annotations:
            meta["annotations"] = annotations
        return encode({"kind": kind, "apiVersion": GROUP_VERSION, "metadata": meta})

    return render_object, object_bookmark


def for_client(event: ChangeEvent[Any], opts: ListOptions) -> tuple[str, StoredObject] | None:
    """What this client sees of a change: selectors applied as the kube-apiserver's cacher does."""
    obj = event.object
    if obj is None:
        return None
    now = opts.matches_name(obj.name, obj.labels)
    prev = event.previous
    was = prev is not None and opts.matches_name(prev.name, prev.labels)
    if event.type == "ADDED":
        return ("ADDED", obj) if now else None
    if event.type == "DELETED":
        return ("DELETED", obj) if was else None
    if now and was:
        return "MODIFIED", obj
    if now:
        return "ADDED", obj
    if was and prev is not None:
        # The object stopped matching: the client sees it deleted, at the new resourceVersion.
        return "DELETED", obj
    return None


async def wait_for_resource_version(store: WatchedStore, wanted: int) -> None:
    """Wait up to TOO_LARGE_WAIT for the cache to reach `wanted`, then a 504 Timeout Status, as the kube-apiserver."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TOO_LARGE_WAIT
    while store.resource_version < wanted:
        if loop.time() >= deadline:
            raise StatusError(
                504,
                f"Too large resource version: {wanted}, current: {store.resource_version}",
                reason="Timeout",
                details={
                    "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                    "retryAfterSeconds": 1,
                },
            )
        await asyncio.sleep(0.05)


def _line(event_type: str, body: bytes) -> bytes:
    return b'{"type":"' + event_type.encode() + b'","object":' + body + b"}\n"


async def serve_watch(
    request: web.Request,
    store: WatchedStore,
    opts: ListOptions,
    shape: Shape,
    include_object: str,
    table_version: str,
    settings: WatchSettings,
    kind: str,
    printer: TablePrinter,
) -> web.StreamResponse:
    """Stream watch events until timeoutSeconds, a relist of the store, or the client leaves."""
    send_initial = bool(opts.send_initial_events)
    wanted = parse_resource_version({"resourceVersion": opts.resource_version or ""})
    since = None if send_initial else wanted
    render, render_bookmark = _renderer(shape, include_object, table_version, kind, printer)
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"})
    response.enable_chunked_encoding()
    try:
        # A resourceVersion the cache has not reached: wait a little, then say it is too large. (The
        # kube-apiserver does so for watch-lists; a plain watch there waits silently for ever.)
        if wanted is not None:
            await wait_for_resource_version(store, wanted)
        watcher = store.watch(since)
    except StatusError as exc:
        # The kube-apiserver answers a watch it cannot start with 200 and one ERROR event.
        await response.prepare(request)
        await response.write(_line("ERROR", encode(exc.to_status())))
        await response.write_eof()
        return response
    try:
        initial = watcher.drain()  # taken before any await: initial state and live feed are atomic
        await response.prepare(request)
        chunk = bytearray()
        for event in initial:
            seen = for_client(event, opts)
            if seen is not None:
                chunk += _line(seen[0], render(seen[1]))
        if send_initial:
            chunk += _line("BOOKMARK", render_bookmark(store.resource_version, {INITIAL_EVENTS_END: "true"}))
        if chunk:
            await response.write(bytes(chunk))
        timeout = opts.timeout_seconds
        if timeout is None:
            timeout = int(settings.min_request_timeout * (1 + random.random()))
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + settings.bookmark_interval
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait_for = min(remaining, next_bookmark - time.monotonic()) if opts.allow_bookmarks else remaining
            await watcher.wait(max(wait_for, 0))
            out = bytearray()
            for event in watcher.drain():
                if event.type == "BOOKMARK":
                    if opts.allow_bookmarks:
                        out += _line("BOOKMARK", render_bookmark(event.resource_version, None))
                        next_bookmark = time.monotonic() + settings.bookmark_interval
                    continue
                seen = for_client(event, opts)
                if seen is not None:
                    out += _line(seen[0], render(seen[1]))
            if opts.allow_bookmarks and time.monotonic() >= next_bookmark and watcher.idle():
                # Idle: every change up to the store's RV has been delivered to this client.
                out += _line("BOOKMARK", render_bookmark(store.resource_version, None))
                next_bookmark = time.monotonic() + settings.bookmark_interval
            if out:
                await response.write(bytes(out))
            if watcher.terminated and watcher.idle():
                break
        await response.write_eof()
        return response
    finally:
        watcher.close()
