"""ClusterRegistry: the in-memory cache of ClusterGateways, with watch history and fan-out.

Sources (the hosting-cluster informer, standalone files) feed it through the `SecretSink`
calls; API handlers read snapshots and register watchers. Everything runs on one event
loop and every mutation is synchronous, so a watcher's initial events and its live
registration are taken atomically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..api.status import expired, initializing, not_found
from .conversion import ConversionError, secret_to_cluster_gateway, with_resource_version
from .managed_clusters import ManagedCluster, ManagedClusterCache, ManagedClusterChange
from .model import ClusterGateway, InvalidSecret
from .source import Secret, WatchEventType

log = logging.getLogger(__name__)

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
Entry = ClusterGateway | InvalidSecret


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A change of the visible set. `previous` lets each watcher apply its own selector."""

    type: EventType
    resource_version: int
    object: ClusterGateway | None
    previous: ClusterGateway | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The visible clusters at one resourceVersion, sorted by name."""

    resource_version: int
    items: tuple[ClusterGateway, ...]


class Watcher:
    """One client watch: a bounded queue of events. Overflow or relist terminates it."""

    def __init__(self, registry: ClusterRegistry, initial: Iterable[ChangeEvent], queue_size: int) -> None:
        self._registry = registry
        self._pending: deque[ChangeEvent] = deque(initial)
        self._queue_size = queue_size
        self._wakeup = asyncio.Event()
        self.terminated = False
        if self._pending:
            self._wakeup.set()

    def offer(self, event: ChangeEvent) -> None:
        """Called by the registry; never blocks. A client too slow to keep up is cut off."""
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
        self._registry._unregister(self)
        self._wakeup.set()

    def drain(self) -> list[ChangeEvent]:
        """Take every queued event."""
        events = list(self._pending)
        self._pending.clear()
        self._wakeup.clear()
        return events

    def idle(self) -> bool:
        """True when nothing is queued: every change up to the registry's RV was delivered."""
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
        self._registry._unregister(self)


class ClusterRegistry:
    """The cache of clusters, implementing `SecretSink` for the sources."""

    def __init__(self, namespace: str, *, history_size: int = 1000, watcher_queue_size: int = 1000) -> None:
        self.namespace = namespace
        self._entries: dict[str, Entry] = {}
        self._rv = 0
        self._history: deque[ChangeEvent] = deque(maxlen=history_size)
        self._floor = 0  # every event with RV > floor is in _history
        self._watchers: set[Watcher] = set()
        self._watcher_queue_size = watcher_queue_size
        self._sorted: tuple[ClusterGateway, ...] | None = None
        self._paged: OrderedDict[int, Snapshot] = OrderedDict()
        self._listeners: list[Callable[[ChangeEvent], None]] = []
        self.synced = asyncio.Event()
        self._secrets: dict[str, Secret] = {}  # as last delivered, to convert again when a ManagedCluster changes
        self._managed_clusters: ManagedClusterCache | None = None

    # --- SecretSink -------------------------------------------------------------------------

    def replace(self, secrets: Sequence[Secret], resource_version: str) -> None:
        """A full listing: diff it in. After the first sync, a changed relist ends all watches."""
        rv = self._parse_rv(resource_version)
        new_entries: dict[str, Entry] = {}
        for secret in secrets:
            if not _name(secret):
                log.warning("ignoring a Secret without metadata.name in the listing")
                continue
            entry = self._convert(secret, self._entries.get(_name(secret)))
            new_entries[entry.name] = entry
        events = list(self._diff(self._entries, new_entries, rv))
        self._entries = new_entries
        self._secrets = {_name(secret): secret for secret in secrets if _name(secret)}
        self._rv = max(self._rv, rv)
        if not self.synced.is_set():
            self._floor = self._rv
            self.synced.set()
        elif events:
            # Events between the old RV and this listing are lost: clients must resume past
            # it (410 from before), as when the kube-apiserver's watch cache re-lists.
            self._history.clear()
            self._floor = self._rv
            for watcher in list(self._watchers):
                watcher.terminate()
        self._sorted = None
        for event in events:
            self._notify_listeners(event)
        log.info("cluster registry synced: %d clusters at resourceVersion %d", len(self.snapshot().items), self._rv)

    def apply(self, event_type: WatchEventType, secret: Secret) -> None:
        """One Secret watch event."""
        name = _name(secret)
        if not name:
            log.warning("ignoring a %s event for a Secret without metadata.name", event_type)
            return
        rv = self._parse_rv(str((secret.get("metadata") or {}).get("resourceVersion", "")))
        old = self._entries.get(name)
        new: Entry | None
        if event_type == "DELETED":
            new = None
            self._entries.pop(name, None)
            self._secrets.pop(name, None)
        else:
            new = self._convert(secret, old)
            self._entries[name] = new
            self._secrets[name] = secret
        self._rv = max(self._rv, rv)
        managed_cluster = self._managed_clusters.get(name) if self._managed_clusters is not None else None
        event = _transition(old, new, rv, secret if event_type == "DELETED" else None, managed_cluster)
        if event is not None:
            self._publish(event)

    def bookmark(self, resource_version: str) -> None:
        """The source has seen everything up to this RV: advance, and tell watchers."""
        rv = self._parse_rv(resource_version)
        self._rv = max(self._rv, rv)
        for watcher in list(self._watchers):
            watcher.offer(ChangeEvent("BOOKMARK", self._rv, None))

    # --- OCM ManagedClusters (--ocm-integration) -----------------------------------------------

    def use_managed_clusters(self, managed_clusters: ManagedClusterCache) -> None:
        """Take each cluster's endpoint and CA from the ManagedCluster of its name, following its changes."""
        self._managed_clusters = managed_clusters
        managed_clusters.add_listener(self._on_managed_cluster)

    def _on_managed_cluster(self, change: ManagedClusterChange) -> None:
        self.reconvert(change.name, change.resource_version)

    def reconvert(self, name: str, resource_version: int) -> None:
        """Convert the Secret `name` again (its ManagedCluster changed at `resource_version`); publish what clients see change."""
        secret = self._secrets.get(name)
        if secret is None:
            return
        old = self._entries.get(name)
        new = self._convert(secret, old)
        if new is old:
            return  # nothing a client sees changed (e.g. only the ManagedCluster's status)
        # The change happened at the ManagedCluster's resourceVersion: never before what clients have seen.
        rv = max(self._rv, resource_version)
        if isinstance(new, ClusterGateway):
            new = with_resource_version(new, str(rv))
        self._entries[name] = new
        self._rv = rv
        event = _transition(old, new, rv, None)
        if event is not None:
            self._publish(event)

    # --- reads ------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The RV the cache is current at."""
        return self._rv

    def snapshot(self) -> Snapshot:
        """The visible clusters now, sorted by name (cached until the next change)."""
        if self._sorted is None:
            visible = (e for e in self._entries.values() if isinstance(e, ClusterGateway))
            self._sorted = tuple(sorted(visible, key=lambda gw: gw.name))
        return Snapshot(self._rv, self._sorted)

    def remember(self, snapshot: Snapshot, keep: int = 16) -> None:
        """Keep a listing so later pages of a paginated list are served from the same state."""
        self._paged[snapshot.resource_version] = snapshot
        self._paged.move_to_end(snapshot.resource_version)
        while len(self._paged) > keep:
            self._paged.popitem(last=False)

    def snapshot_at(self, resource_version: int) -> Snapshot | None:
        """The listing remembered at `resource_version`, or the current one if it is at that RV."""
        if resource_version == self._rv:
            return self.snapshot()
        return self._paged.get(resource_version)

    def get(self, name: str) -> ClusterGateway:
        """The cluster named `name`; a 404 Status naming the Secret's problem otherwise (429 before the first list)."""
        if not self.synced.is_set():
            raise initializing()
        entry = self._entries.get(name)
        if isinstance(entry, ClusterGateway):
            return entry
        if isinstance(entry, InvalidSecret):
            raise not_found(
                name,
                f'clustergateways.cluster.core.oam.dev "{name}" not found: '
                f"Secret {self.namespace}/{name} cannot be converted: {entry.reason}",
            )
        raise not_found(name)

    def watch(self, since: int | None) -> Watcher:
        """Register a watcher. `since=None` starts with ADDED for every visible cluster.

        Raises a 410 Expired StatusError when `since` is older than the history kept.
        """
        initial: list[ChangeEvent]
        if since is None:
            initial = [ChangeEvent("ADDED", self._rv, gw) for gw in self.snapshot().items]
        else:
            if since < self._floor:
                raise expired(f"too old resource version: {since} ({self._floor})")
            initial = [e for e in self._history if e.resource_version > since]
        watcher = Watcher(self, initial, self._watcher_queue_size)
        self._watchers.add(watcher)
        return watcher

    def add_listener(self, listener: Callable[[ChangeEvent], None]) -> None:
        """Call `listener` on every change (the proxy uses this to rebuild transports)."""
        self._listeners.append(listener)

    @property
    def watcher_count(self) -> int:
        """Open watches (for metrics and leak tests)."""
        return len(self._watchers)

    # --- internals --------------------------------------------------------------------------

    def _unregister(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def _publish(self, event: ChangeEvent) -> None:
        if self._history.maxlen is not None and len(self._history) == self._history.maxlen:
            self._floor = self._history[0].resource_version
        self._history.append(event)
        self._sorted = None
        for watcher in list(self._watchers):
            watcher.offer(event)
        self._notify_listeners(event)

    def _notify_listeners(self, event: ChangeEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("registry listener failed")

    def _convert(self, secret: Secret, old: Entry | None) -> Entry:
        name = _name(secret)
        rv = str((secret.get("metadata") or {}).get("resourceVersion", ""))
        managed_cluster = self._managed_clusters.get(name) if self._managed_clusters is not None else None
        try:
            gateway = secret_to_cluster_gateway(secret, managed_cluster)
        except ConversionError as exc:
            # Logged once per Secret version, not per LIST, so the log names each problem once.
            if not (isinstance(old, InvalidSecret) and old.reason == str(exc)):
                log.warning("skipping Secret %s/%s: %s", self.namespace, name, exc)
            if isinstance(old, InvalidSecret) and old.reason == str(exc) and old.resource_version == rv:
                return old
            return InvalidSecret(name, rv, str(exc))
        # Same Secret, same ManagedCluster facts: keep the object, and the version a ManagedCluster change gave it.
        if (
            isinstance(old, ClusterGateway)
            and dataclasses.replace(gateway, resource_version=old.resource_version) == old
            and _rv_number(old.resource_version) >= _rv_number(gateway.resource_version)
        ):
            return old
        return gateway

    def _diff(self, old: dict[str, Entry], new: dict[str, Entry], rv: int) -> Iterable[ChangeEvent]:
        for name in sorted(old.keys() | new.keys()):
            event = _transition(old.get(name), new.get(name), rv, None)
            if event is not None:
                yield event

    def _parse_rv(self, value: str) -> int:
        try:
            return int(value)
        except ValueError:
            # Kubernetes RVs are opaque, but every real API server sends etcd revisions.
            log.warning("non-integer resourceVersion %r; keeping %d", value, self._rv)
            return self._rv


def _rv_number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return -1


def _name(secret: Secret) -> str:
    name = (secret.get("metadata") or {}).get("name")
    return name if isinstance(name, str) else ""


def _transition(
    old: Entry | None, new: Entry | None, rv: int, deleted: Secret | None, managed_cluster: ManagedCluster | None = None
) -> ChangeEvent | None:
    was = old if isinstance(old, ClusterGateway) else None
    now = new if isinstance(new, ClusterGateway) else None
    if now is not None and was is not None:
        if now == was and now.resource_version == was.resource_version:
            return None
        return ChangeEvent("MODIFIED", rv, now, was)
    if now is not None:
        return ChangeEvent("ADDED", rv, now)
    if was is not None:
        # A deleted object carries the deletion's resourceVersion, as the kube-apiserver sends it.
        gone = was
        if deleted is not None:
            try:
                gone = secret_to_cluster_gateway(deleted, managed_cluster)
            except ConversionError:
                gone = with_resource_version(was, str(rv))
        else:
            gone = with_resource_version(was, str(rv))
        return ChangeEvent("DELETED", rv, gone, was)
    return None
