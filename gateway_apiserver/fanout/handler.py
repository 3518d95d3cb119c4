"""The fan-out handler: merge the members' lists or watches into one streamed answer.

Memory stays bounded by the settings, not by the clusters' sizes: at most `concurrency` members are
read at once, each one page (`page_size` items) at a time, and a page is written to the client as
soon as it is read; a watch holds a small queue of events. The only thing kept per cluster is its
Status (a list) or its task (a watch).

HTTP status: 200 whenever the request itself is valid and at least one selected cluster answered
(or none is selected); failing clusters are reported in the answer. When every selected cluster
fails a list, the answer is their shared code (502 when they differ) with one cause per cluster.
A watch answers 200 at once: clusters come and go while it runs, and each failure is an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiDict

from ..api.watch import WATCH_SETTINGS
from ..app_keys import AUTHORIZER, REGISTRY
from ..base.api_group import API_PREFIX
from ..base.status import StatusError, initializing, method_not_allowed
from ..proxy.handler import METHODS, TRANSPORT_POOL
from ..proxy.paths import remainder_of, request_timeout
from ..registry.model import ClusterGateway
from ..registry.store import ChangeEvent
from ..security.authorization import forbidden, request_attributes
from ..security.identity import request_user
from . import shape
from .members import FanoutSettings, Members
from .request import FANOUT_PATH, FanoutRequest, parse_fanout

log = logging.getLogger(__name__)

FANOUT_SETTINGS = web.AppKey("fanout_settings", FanoutSettings)
_PREFIX_SEGMENTS = FANOUT_PATH.count("/")
_WATCH_QUEUE = 256  # watch lines waiting for a slow client before members wait too


@dataclass(frozen=True, slots=True)
class _Page:
    items: bytes  # encoded items, comma-separated


@dataclass(frozen=True, slots=True)
class _Done:
    status: dict[str, Any]


async def fanout(request: web.Request) -> web.StreamResponse:
    """Serve one fan-out request (GET only: every member request is a read)."""
    if request.method != "GET":
        raise method_not_allowed(request.method, "a fan-out (clustergateways/-/proxy), which only reads")
    registry = request.app[REGISTRY]
    if not registry.synced.is_set():
        raise initializing()
    plan = parse_fanout(remainder_of(request.rel_url.raw_path, _PREFIX_SEGMENTS), request.rel_url.raw_query_string)
    user = request_user(request)
    authorizer = request.app.get(AUTHORIZER)
    if authorizer is None:  # fail closed: members are never read unauthorized
        raise StatusError(500, "the fan-out cannot authorize its members: the server set no authorizer")
    # The answer names the clusters the selector matches: that is listing ClusterGateways.
    selector_query = MultiDict({"labelSelector": str(plan.selector)} if not plan.selector.empty else {})
    listing = request_attributes("GET", f"{API_PREFIX}/clustergateways", selector_query, user)
    decision = await authorizer.authorize(listing)
    if not decision.allowed:
        raise forbidden(listing, decision.reason)
    settings = request.app[FANOUT_SETTINGS]
    default_timeout = request.app[TRANSPORT_POOL].settings.request_timeout
    members = Members(request, plan, authorizer, user, request_timeout(dict(request.query), default_timeout), settings)
    if plan.watch:
        return await _serve_watch(request, plan, members)
    clusters = [gw for gw in registry.snapshot().items if plan.selector.matches(gw.labels)]
    return await _serve_list(request, members, clusters)


def _json_stream() -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
    response.enable_chunked_encoding()
    return response


async def _serve_list(request: web.Request, members: Members, clusters: list[ClusterGateway]) -> web.StreamResponse:
    queue: asyncio.Queue[_Page | _Done] = asyncio.Queue(maxsize=members.settings.concurrency)
    limit = asyncio.Semaphore(members.settings.concurrency)

    async def emit(items: bytes) -> None:
        if items:
            await queue.put(_Page(items))

    async def one(cluster: ClusterGateway) -> None:
        async with limit:
            status = await _guarded(cluster, members.list(cluster, emit))
        await queue.put(_Done(status))

    tasks = [asyncio.create_task(one(cluster), name=f"fanout-list-{cluster.name}") for cluster in clusters]
    try:
        response: web.StreamResponse | None = None
        statuses: list[dict[str, Any]] = []
        first = True
        while len(statuses) < len(clusters):
            entry = await queue.get()
            if isinstance(entry, _Done):
                statuses.append(entry.status)
                continue
            if response is None:  # the first item: the answer is a 200 from now on
                response = _json_stream()
                await response.prepare(request)
                await response.write(shape.LIST_HEAD)
            await response.write(entry.items if first else b"," + entry.items)
            first = False
        if response is None:
            if clusters and all(s["status"] == "Failure" for s in statuses):
                raise shape.all_failed(statuses)
            response = _json_stream()
            await response.prepare(request)
            await response.write(shape.LIST_HEAD)
        await response.write(shape.list_tail(statuses))
        await response.write_eof()
        return response
    finally:
        await _cancel(tasks)


async def _guarded(cluster: ClusterGateway, reading: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """A member's Status, also when reading it failed unexpectedly: one cluster never stalls the whole answer."""
    try:
        return await reading
    except Exception:
        log.exception("fan-out: reading cluster %s failed", cluster.name)
        return shape.failed(cluster.name, 500, "an internal error ended the reading of this cluster (see the gateway's log)")


async def _cancel(tasks: Iterable[asyncio.Task[None]]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _watch_duration(request: web.Request, plan: FanoutRequest) -> float:
    """timeoutSeconds when given, else the kube-apiserver's random [1x, 2x) of its minimum request timeout."""
    if plan.timeout_seconds is not None:
        return float(plan.timeout_seconds)
    minimum = request.app[WATCH_SETTINGS].min_request_timeout
    return minimum * (1 + random.random())


class _WatchedClusters:
    """The member watches of one fan-out watch, following the registry's selected clusters."""

    def __init__(self, plan: FanoutRequest, members: Members, lines: asyncio.Queue[bytes]) -> None:
        self._plan = plan
        self._members = members
        self._lines = lines
        self._opening = asyncio.Semaphore(members.settings.concurrency)
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def apply(self, event: ChangeEvent[ClusterGateway]) -> None:
        """Start a member watch for a newly selected cluster; stop one that is no longer selected."""
        cluster = event.object
        if cluster is None:
            return
        selected = event.type != "DELETED" and self._plan.selector.matches(cluster.labels)
        if selected and cluster.name not in self.tasks:
            self.tasks[cluster.name] = asyncio.create_task(self._watch(cluster), name=f"fanout-watch-{cluster.name}")
        elif not selected:
            await self.drop(cluster.name, "deleted" if event.type == "DELETED" else "no longer matched by the cluster selector")

    async def drop(self, name: str, why: str) -> None:
        """Stop watching a cluster, and say so."""
        task = self.tasks.pop(name, None)
        if task is None:
            return
        await _cancel([task])
        gone = shape.failed(name, 404, f"the cluster was {why}: its objects are no longer watched (no DELETED events follow)")
        await self._lines.put(shape.status_event(gone))

    async def _watch(self, cluster: ClusterGateway) -> None:
        await self._opening.acquire()
        opened = False

        def started() -> None:
            nonlocal opened
            if not opened:
                opened = True
                self._opening.release()

        try:
            status = await _guarded(cluster, self._members.watch(cluster, self._lines.put, started))
        finally:
            started()
        await self._lines.put(shape.status_event(status))


async def _serve_watch(request: web.Request, plan: FanoutRequest, members: Members) -> web.StreamResponse:
    lines: asyncio.Queue[bytes] = asyncio.Queue(maxsize=_WATCH_QUEUE)
    clusters = _WatchedClusters(plan, members, lines)
    watcher = request.app[REGISTRY].watch(None)  # ADDED for every cluster now, then every change

    async def follow_registry() -> None:
        nonlocal watcher
        while True:
            await watcher.wait(None)
            for event in watcher.drain():
                await clusters.apply(event)
            if watcher.terminated:  # the registry relisted, or this watch fell behind: start from a fresh view
                watcher.close()
                watcher = request.app[REGISTRY].watch(None)
                current = watcher.drain()
                names = {event.object.name for event in current if event.object is not None}
                for name in [name for name in clusters.tasks if name not in names]:
                    await clusters.drop(name, "deleted")
                for event in current:
                    await clusters.apply(event)

    response = _json_stream()
    await response.prepare(request)
    follower = asyncio.create_task(follow_registry(), name="fanout-watch-registry")
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_watch_duration(request, plan)):
                while True:
                    await response.write(await lines.get())
        await response.write_eof()
        return response
    finally:
        await _cancel([follower, *clusters.tasks.values()])
        watcher.close()


def add_fanout_routes(app: web.Application) -> None:
    """Register `clustergateways/-/proxy/{path}` (before the proxy routes: it is their `-` name) and app[FANOUT_SETTINGS]."""
    app[FANOUT_SETTINGS] = FanoutSettings()
    for method in METHODS:
        app.router.add_route(method, FANOUT_PATH, fanout)
        app.router.add_route(method, FANOUT_PATH + r"/{path:[\s\S]*}", fanout)
