"""The watch half of `FakeKubeAPIServer`: initial events, selector transitions, bookmarks and timeouts.

What the kube-apiserver's watch cache sends a watcher: synthetic ADDED events for the current
state (resourceVersion "" or "0") or the history after a resourceVersion, then live events as
the watcher's selector sees them (a change into or out of the selector is ADDED or DELETED),
BOOKMARKs when asked for, and a clean end at timeoutSeconds. The HTTP layer lives in `kube_apiserver.py`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from .kube_rbac import query_bool
from .kube_store import Event, KindInfo, KubeStore, Obj, StatusError


def typed(info: KindInfo, obj: Obj) -> Obj:
    """The object with kind/apiVersion: single objects and watch events carry them, list items do not."""
    return {"kind": info.kind, "apiVersion": info.api_version, **obj}


class WatchConn:
    """One open watch: its request and the queue the store's listener feeds (None = cut)."""

    def __init__(self, request: web.Request, resource: str) -> None:
        self.request = request
        self.resource = resource
        self.ending = False  # end() asked for a clean end after the queued events
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def cut(self) -> None:
        """Abort the TCP connection mid-stream (no terminating chunk), as a crash or a reset would."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        self.queue.put_nowait(None)

    def end(self) -> None:
        """End the stream cleanly once the events already queued are sent (a CRD deleted)."""
        self.ending = True
        self.queue.put_nowait(None)


def initial_events(store: KubeStore, info: KindInfo, namespace: str | None, rv_param: str) -> list[Event]:
    """The events a watch from `rv_param` starts with; 410 if that history was compacted."""
    if rv_param in ("", "0"):
        # "Start at most recent" (or "any"): synthetic ADDED for the current state.
        objs = sorted(
            (o for o in store.objects[info.resource].values() if namespace in (None, o["metadata"].get("namespace", ""))),
            key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]),
        )
        return [Event(int(o["metadata"]["resourceVersion"]), info.resource, "ADDED", o, None) for o in objs]
    try:
        since = int(rv_param)
    except ValueError:
        raise StatusError(400, "BadRequest", f'invalid resource version "{rv_param}"') from None
    return [e for e in store.events_after(since) if e.resource == info.resource]


def to_watch_event(info: KindInfo, namespace: str | None, matcher: Callable[[Obj], bool], event: Event) -> Obj | None:
    """The event this watcher sees, as the cacher computes it from old/new selector matches."""
    if event.resource != info.resource or namespace not in (None, event.namespace):
        return None
    cur = event.type != "DELETED" and matcher(event.object)
    old = event.previous is not None and matcher(event.previous)
    if cur and not old:
        return {"type": "ADDED", "object": typed(info, event.object)}
    if cur and old:
        return {"type": "MODIFIED", "object": typed(info, event.object)}
    if old and event.previous is not None:
        # Stopped matching (or deleted): DELETED with the previous content at the event's RV.
        gone = {**event.previous, "metadata": {**event.previous["metadata"], "resourceVersion": str(event.rv)}}
        return {"type": "DELETED", "object": typed(info, gone)}
    return None


async def stream(
    conn: WatchConn,
    send: Callable[[Obj], Awaitable[None]],
    info: KindInfo,
    namespace: str | None,
    matcher: Callable[[Obj], bool],
    *,
    store: KubeStore,
    bookmark_interval: float | None,
    default_timeout: float | None,
) -> bool:
    """Send live events and bookmarks until timeoutSeconds (False) or a cut (True)."""
    loop = asyncio.get_running_loop()
    q = conn.request.query
    timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else default_timeout
    deadline = loop.time() + timeout if timeout else math.inf
    interval = bookmark_interval if query_bool(q, "allowWatchBookmarks") else None
    next_bookmark = loop.time() + interval if interval else math.inf
    while True:
        now = loop.time()
        if now >= deadline:
            return False  # timeoutSeconds: end the stream cleanly
        if not conn.queue.empty():
            event = conn.queue.get_nowait()
        elif now >= next_bookmark and interval:
            # The queue is drained, so every event up to the store's RV has been sent.
            meta = {"resourceVersion": str(store.rv)}
            await send({"type": "BOOKMARK", "object": {"kind": info.kind, "apiVersion": info.api_version, "metadata": meta}})
            next_bookmark = now + interval
            continue
        else:
            try:
                event = await asyncio.wait_for(conn.queue.get(), min(deadline, next_bookmark) - now)
            except TimeoutError:
                continue
        if event is None:
            return not conn.ending  # cut by drop_watches()/stop(): the transport is already gone
        if (out := to_watch_event(info, namespace, matcher, event)) is not None:
            await send(out)
