"""ObjectStore: the generic read-only object cache behind every resource we serve.

It is the part of the kube-apiserver's watch cache that a virtual resource needs: the
current objects by name, sorted snapshots for lists and consistent pagination, a bounded
event history for watches that resume from a resourceVersion (410 when too old), and
per-watcher bounded queues. A registry subclass decides what the objects are and feeds
changes through `publish` and `reset`; everything runs on one event loop and every
mutation is synchronous, so a watcher's initial events and its registration are atomic.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from ..base.status import expired

log = logging.getLogger(__name__)

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


class StoredObject(Protocol):
    """What the store and the API machinery need of an object: its identity and its encodings."""

    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def resource_version(self) -> str: ...

    @property
    def json(self) -> bytes: ...

    @property
    def render_cache(self) -> dict[str, Any]: ...

    def metadata(self) -> dict[str, Any]: ...


T = TypeVar("T", bound=StoredObject)


@dataclass(frozen=True, slots=True)
class ChangeEvent(Generic[T]):
    """A change of the visible set. `previous` lets each watcher apply its own selector."""

    type: EventType
    resource_version: int
    object: T | None
    previous: T | None = None


@dataclass(frozen=True, slots=True)
class Snapshot(Generic[T]):
    """The visible objects at one resourceVersion, sorted by name."""

    resource_version: int
    items: tuple[T, ...]


class Watcher(Generic[T]):
    """One client watch: a bounded queue of events. Overflow or relist terminates it."""

    def __init__(self, store: ObjectStore[T], initial: Iterable[ChangeEvent[T]], queue_size: int) -> None:
        self._store = store
        self._pending: deque[ChangeEvent[T]] = deque(initial)
        self._queue_size = queue_size
        self._wakeup = asyncio.Event()
        self.terminated = False
        if self._pending:
            self._wakeup.set()

    def offer(self, event: ChangeEvent[T]) -> None:
        """Called by the store; never blocks. A client too slow to keep up is cut off."""
        if self.terminated:
            return
        if len(self._pending) >= self._queue_size:
            log.warning("watcher fell %d events behind; terminating it so the client re-watches", len(self._pending))
            self.terminate()
            return
        self._pending.append(event)
        self._wakeup.set()

    def terminate(self) -> None:
        """End this watch after what is already queued; the client resumes or relists."""
        self.terminated = True
        self._store._unregister(self)
        self._wakeup.set()

    def drain(self) -> list[ChangeEvent[T]]:
        """Take every queued event."""
        events = list(self._pending)
        self._pending.clear()
        self._wakeup.clear()
        return events

    def idle(self) -> bool:
        """True when nothing is queued: every change up to the store's RV was delivered."""
        return not self._pending

    async def wait(self, timeout: float | None) -> None:
        """Wait until an event is queued or the watch is terminated, or until `timeout`."""
        if self._pending or self.terminated:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        except TimeoutError:
            pass

    def close(self) -> None:
        """Unregister (idempotent)."""
        self._store._unregister(self)


class ObjectStore(Generic[T]):
    """Objects by name, with snapshots, watch history and fan-out; fed by a subclass."""

    def __init__(self, *, history_size: int = 1000, watcher_queue_size: int = 1000) -> None:
        self._objects: dict[str, T] = {}
        self._rv = 0
        self._history: deque[ChangeEvent[T]] = deque(maxlen=history_size)
        self._floor = 0  # every event with RV > floor is in _history
        self._watchers: set[Watcher[T]] = set()
        self._watcher_queue_size = watcher_queue_size
        self._sorted: tuple[T, ...] | None = None
        self._paged: OrderedDict[int, Snapshot[T]] = OrderedDict()
        self._listeners: list[Callable[[ChangeEvent[T]], None]] = []
        self.synced = asyncio.Event()
        self.relists = 0  # full listings after the first (a source's re-list after 410 or a reconnect), for /metrics

    # --- reads ------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The RV the store is current at."""
        return self._rv

    def lookup(self, name: str) -> T | None:
        """The object named `name`, if visible."""
        return self._objects.get(name)

    def snapshot(self) -> Snapshot[T]:
        """The visible objects now, sorted by name (cached until the next change)."""
        if self._sorted is None:
            self._sorted = tuple(sorted(self._objects.values(), key=lambda obj: obj.name))
        return Snapshot(self._rv, self._sorted)

    def remember(self, snapshot: Snapshot[T], keep: int = 16) -> None:
        """Keep a listing so later pages of a paginated list are served from the same state."""
        self._paged[snapshot.resource_version] = snapshot
        self._paged.move_to_end(snapshot.resource_version)
        while len(self._paged) > keep:
            self._paged.popitem(last=False)

    def snapshot_at(self, resource_version: int) -> Snapshot[T] | None:
        """The listing remembered at `resource_version`, or the current one if it is at that RV."""
        if resource_version == self._rv:
            return self.snapshot()
        return self._paged.get(resource_version)

    def watch(self, since: int | None) -> Watcher[T]:
        """Register a watcher. `since=None` starts with ADDED for every visible object.

        Raises a 410 Expired StatusError when `since` is older than the history kept.
        """
        initial: list[ChangeEvent[T]]
        if since is None:
            initial = [ChangeEvent("ADDED", self._rv, obj) for obj in self.snapshot().items]
        else:
            if since < self._floor:
                raise expired(f"too old resource version: {since} ({self._floor})")
            initial = [e for e in self._history if e.resource_version > since]
        watcher = Watcher(self, initial, self._watcher_queue_size)
        self._watchers.add(watcher)
        return watcher

    def add_listener(self, listener: Callable[[ChangeEvent[T]], None]) -> None:
        """Call `listener` on every change (e.g. the proxy rebuilds transports)."""
        self._listeners.append(listener)

    @property
    def watcher_count(self) -> int:
        """Open watches (for metrics and leak tests)."""
        return len(self._watchers)

    # --- feeding (for subclasses) ------------------------------------------------------------

    def publish(self, event: ChangeEvent[T]) -> None:
        """Apply one change: the object map, history, watchers and listeners."""
        self._set(event)
        self._rv = max(self._rv, event.resource_version)
        if self._history.maxlen is not None and len(self._history) == self._history.maxlen:
            self._floor = self._history[0].resource_version
        self._history.append(event)
        for watcher in list(self._watchers):
            watcher.offer(event)
        self._notify_listeners(event)

    def reset(self, events: Iterable[ChangeEvent[T]], resource_version: int) -> None:
        """Apply a relist's changes at once. The first one syncs the store; a later one that changed
        anything ends every watch, since events between the old RV and this listing are lost (as when
        the kube-apiserver's watch cache relists): clients resume past it, or get 410 from before it."""
        changes = list(events)
        for event in changes:
            self._set(event)
        self._rv = max(self._rv, resource_version)
        if self.synced.is_set():
            self.relists += 1
        if not self.synced.is_set():
            self._floor = self._rv
            self.synced.set()
        elif changes:
            self._history.clear()
            self._floor = self._rv
            for watcher in list(self._watchers):
                watcher.terminate()
        for event in changes:
            self._notify_listeners(event)

    def next_resource_version(self, source_rv: int) -> int:
        """The version for a change its source made at `source_rv`: that one when it is newer than
        everything served, else the next after it (a second source may lag behind the first)."""
        return max(source_rv, self._rv + 1)

    def advance(self, resource_version: int) -> None:
        """Nothing changed up to `resource_version`: move on, and send watchers a bookmark."""
        self._rv = max(self._rv, resource_version)
        for watcher in list(self._watchers):
            watcher.offer(ChangeEvent("BOOKMARK", self._rv, None))

    # --- internals --------------------------------------------------------------------------

    def _set(self, event: ChangeEvent[T]) -> None:
        if event.object is None:
            return
        if event.type == "DELETED":
            self._objects.pop(event.object.name, None)
        else:
            self._objects[event.object.name] = event.object
        self._sorted = None

    def _unregister(self, watcher: Watcher[T]) -> None:
        self._watchers.discard(watcher)

    def _notify_listeners(self, event: ChangeEvent[T]) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("store listener failed")
