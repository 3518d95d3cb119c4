"""ClusterRegistry: the ClusterGateways converted from the cluster Secrets, in an `ObjectStore`.

Sources (the hosting-cluster informer, standalone files) feed it through the `SecretSink`
calls; API handlers read snapshots and register watchers through the store. Secrets that
cannot be converted are kept aside, so a GET can say what is wrong with them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from ..base.status import initializing, not_found
from .conversion import ConversionError, secret_to_cluster_gateway, with_manifest, with_resource_version
from .event_lag import EventLag
from .managed_clusters import Availability, ManagedCluster, ManagedClusterCache, ManagedClusterChange
from .model import ANNOTATION_HEALTHY, ANNOTATION_HEALTHY_TIME, ClusterGateway, InvalidSecret
from .observed_health import (
    Observation,
    ProbeResult,
    condition_observation,
    newest,
    parse_time,
    with_observed_health,
)
from .source import Secret, WatchEventType
from .store import ChangeEvent, ObjectStore, Snapshot, Watcher

log = logging.getLogger(__name__)

Entry = ClusterGateway | InvalidSecret

__all__ = ["ChangeEvent", "ClusterRegistry", "Entry", "Snapshot", "Watcher"]

HIDE_DANGLING_FLAG = "--hide-dangling-cluster-gateways"


class ClusterRegistry(ObjectStore[ClusterGateway]):
    """The cache of clusters, implementing `SecretSink` for the sources."""

    def __init__(self, namespace: str, *, history_size: int = 1000, watcher_queue_size: int = 1000) -> None:
        super().__init__(history_size=history_size, watcher_queue_size=watcher_queue_size)
        self.namespace = namespace
        self._invalid: dict[str, InvalidSecret] = {}
        self._secrets: dict[str, Secret] = {}  # as last delivered, to convert again when a ManagedCluster changes
        self._managed_clusters: ManagedClusterCache | None = None
        self._hide_dangling = False  # hide a cluster whose ManagedCluster is missing
        self._probes: dict[str, ProbeResult] = {}  # the built-in prober's latest result per cluster
        self._written: dict[str, Observation] = {}  # the health written on each Secret, with its time
        # Each cluster's ManagedCluster condition (--ocm-integration), and when this gateway first saw it so.
        self._conditions: dict[str, tuple[Availability, Observation]] = {}
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.event_lag = EventLag()  # Secret write to applied watch event, for /metrics

    # --- SecretSink -------------------------------------------------------------------------

    def replace(self, secrets: Sequence[Secret], resource_version: str) -> None:
        """A full listing: diff it in. After the first sync, a changed relist ends all watches."""
        rv = self._parse_rv(resource_version)
        new_entries: dict[str, Entry] = {}
        for secret in secrets:
            if not _name(secret):
                log.warning("ignoring a Secret without metadata.name in the listing")
                continue
            entry = self._convert(secret, self._entry(_name(secret)))
            new_entries[entry.name] = entry
        old_entries: dict[str, Entry] = {**self._invalid, **self._objects}
        events = list(self._diff(old_entries, new_entries, rv))
        self._invalid = {name: e for name, e in new_entries.items() if isinstance(e, InvalidSecret)}
        self._secrets = {_name(secret): secret for secret in secrets if _name(secret)}
        self._forget_health(lambda name: name not in self._secrets)
        self.reset(events, rv)
        log.info("cluster registry synced: %d clusters at resourceVersion %d", len(self._objects), self._rv)

    def apply(self, event_type: WatchEventType, secret: Secret) -> None:
        """One Secret watch event; the lag of an ADDED or MODIFIED one is observed (registry/event_lag.py)."""
        name = _name(secret)
        if not name:
            log.warning("ignoring a %s event for a Secret without metadata.name", event_type)
            return
        rv = self._parse_rv(str((secret.get("metadata") or {}).get("resourceVersion", "")))
        old = self._entry(name)
        new: Entry | None = None if event_type == "DELETED" else self._convert(secret, old)
        self._invalid.pop(name, None)
        self._secrets.pop(name, None)
        if new is not None:
            self._secrets[name] = secret
        else:
            self._forget_health(lambda gone: gone == name)
        if isinstance(new, InvalidSecret):
            self._invalid[name] = new
        self._publish_transition(old, new, rv, secret if event_type == "DELETED" else None)
        if event_type != "DELETED":
            self.event_lag.observe_event(secret, self.clock())

    def bookmark(self, resource_version: str) -> None:
        """The source has seen everything up to this RV: advance, and tell watchers."""
        self.advance(self._parse_rv(resource_version))

    # --- OCM ManagedClusters (--ocm-integration) -----------------------------------------------

    def use_managed_clusters(self, managed_clusters: ManagedClusterCache, *, hide_dangling: bool = False) -> None:
        """Take each cluster's endpoint, CA and `ManagedClusterConditionAvailable` from the ManagedCluster of its
        name, following its changes; with `hide_dangling`, a cluster without one is not served at all."""
        self._managed_clusters = managed_clusters
        self._hide_dangling = hide_dangling
        managed_clusters.add_listener(self._on_managed_cluster)

    def _on_managed_cluster(self, change: ManagedClusterChange) -> None:
        self.reconvert(change.name, change.resource_version)

    def reconvert(self, name: str, resource_version: int) -> None:
        """Convert the Secret `name` again (its ManagedCluster changed at `resource_version`); publish what clients see change."""
        secret = self._secrets.get(name)
        if secret is None:
            return
        old = self._entry(name)
        new = self._convert(secret, old)
        if new is old:
            return  # nothing a client sees changed (e.g. only the ManagedCluster's version or lease)
        self._invalid.pop(name, None)
        if isinstance(new, InvalidSecret):
            self._invalid[name] = new
        self._publish_transition(old, new, resource_version, None)

    # --- health observed by the built-in prober --------------------------------------------------

    def record_probe(self, name: str, result: ProbeResult) -> None:
        """The prober's latest result for `name`: a MODIFIED event when it changes what the cluster shows."""
        if name not in self._secrets:
            return  # deleted while it was probed
        previous = self._probes.get(name)
        if result.kubernetes_version is None and previous is not None:  # unanswered: the version last learnt stays
            result = dataclasses.replace(result, kubernetes_version=previous.kubernetes_version)
        self._probes[name] = result
        self.reconvert(name, self._rv)

    def health_observation(self, name: str) -> Observation | None:
        """The observation that decides the health of `name` (the newest of the prober's, a write and the
        ManagedCluster's condition), if any."""
        probe = self._probes.get(name)
        condition = self._conditions.get(name)
        return newest(
            self._written.get(name),
            condition[1] if condition is not None else None,
            probe.observation() if probe is not None else None,
        )

    def _forget_health(self, gone: Callable[[str], bool]) -> None:
        for table in (self._probes, self._written, self._conditions):
            for name in [name for name in table if gone(name)]:
                del table[name]

    def _observed(self, secret: Secret, gateway: ClusterGateway) -> ClusterGateway:
        """`gateway` showing the newest of its written health, its ManagedCluster's condition and the prober's
        (registry/observed_health.py); remembers the first two for the next decision."""
        written = self._written_observation(secret, gateway)
        condition = self._condition_observation(gateway.name)
        if written is None:
            self._written.pop(gateway.name, None)
        else:
            self._written[gateway.name] = written
        if condition is None:
            self._conditions.pop(gateway.name, None)
        else:
            self._conditions[gateway.name] = condition
        return self._showing(gateway, written, condition[1] if condition is not None else None)

    def _showing(self, gateway: ClusterGateway, written: Observation | None, condition: Observation | None) -> ClusterGateway:
        probe = self._probes.get(gateway.name)
        if probe is None and condition is None:
            return gateway
        return with_manifest(with_observed_health(gateway, written, probe, condition))

    def shown_for(self, secret: Secret) -> ClusterGateway:
        """The ClusterGateway this registry will show for `secret` once its watch event arrives (changing nothing
        now): converted with its ManagedCluster, showing the newest of its written health, the ManagedCluster's
        condition and the prober's, with the prober's lastProbeTime and kubernetesVersion. A health write
        answers it. Raises ConversionError."""
        gateway = secret_to_cluster_gateway(secret, self._managed_cluster(_name(secret)))
        condition = self._condition_observation(gateway.name)
        return self._showing(gateway, self._written_observation(secret, gateway), condition[1] if condition else None)

    def _condition_observation(self, name: str) -> tuple[Availability, Observation] | None:
        """With --ocm-integration, the ManagedCluster's Available condition and its observation (changing nothing)."""
        managed = self._managed_cluster(name)
        if managed is None or managed.available is None:
            return None
        seen = self._conditions.get(name)
        first_seen = seen[1].at if seen is not None and seen[0] == managed.available else self.clock()
        return managed.available, condition_observation(managed.available, first_seen)

    def _written_observation(self, secret: Secret, gateway: ClusterGateway) -> Observation | None:
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        if ANNOTATION_HEALTHY not in annotations:
            return None
        at = parse_time(str(annotations.get(ANNOTATION_HEALTHY_TIME, "")))
        if at is None:  # written without a time: it counts from when this gateway first saw it
            seen = self._written.get(gateway.name)
            same = seen is not None and (seen.healthy, seen.reason) == (gateway.healthy, gateway.healthy_reason)
            at = seen.at if seen is not None and same else self.clock()
        return Observation(gateway.healthy, gateway.healthy_reason, at, "write")

    # --- reads ------------------------------------------------------------------------------

    def get(self, name: str) -> ClusterGateway:
        """The cluster named `name`; a 404 Status naming the Secret's problem otherwise (429 before the first list)."""
        if not self.synced.is_set():
            raise initializing()
        gw = self._objects.get(name)
        if gw is not None:
            return gw
        why = self.not_found_reason(name)
        if why is not None:
            raise not_found(name, f'clustergateways.cluster.core.oam.dev "{name}" not found: {why}')
        raise not_found(name)

    def not_found_reason(self, name: str) -> str | None:
        """Why the labelled Secret `name` is no cluster: it cannot be converted, or it is hidden as dangling."""
        invalid = self._invalid.get(name)
        if invalid is None:
            return None
        if invalid.dangling:
            return self._dangling_reason(name)
        return f"Secret {self.namespace}/{name} cannot be converted: {invalid.reason}"

    def _dangling_reason(self, name: str) -> str:
        managed = self._managed_clusters
        if managed is not None and not managed.synced.is_set():
            missing = "the ManagedClusters are not listed yet"
        elif managed is not None and not managed.available:
            missing = (
                "this gateway cannot read ManagedClusters (the hosting cluster does not serve "
                "managedclusters.cluster.open-cluster-management.io, or refuses them to it)"
            )
        else:
            missing = f'there is no ManagedCluster "{name}"'
        return f"{missing}, and {HIDE_DANGLING_FLAG} hides a cluster without one"

    # --- internals --------------------------------------------------------------------------

    def _entry(self, name: str) -> Entry | None:
        return self._objects.get(name) or self._invalid.get(name)

    def _publish_transition(self, old: Entry | None, new: Entry | None, source_rv: int, deleted: Secret | None) -> None:
        """Publish what clients see change. The Secret and ManagedCluster watches are two streams, and
        one may deliver a revision older than the other's last: the event then gets the next version
        after every one served, and so does its object (a client resumes from the object's)."""
        if new is not None and new is old:  # the conversion kept the object: nothing a client sees changed
            self._rv = max(self._rv, source_rv)
            return
        rv = self.next_resource_version(source_rv)
        if isinstance(new, ClusterGateway) and new.resource_version != str(rv):
            new = with_resource_version(new, str(rv))
        name = new.name if new is not None else old.name if old is not None else ""
        event = _transition(old, new, rv, deleted, self._managed_cluster(name))
        if event is not None:
            self.publish(event)
        else:
            self._rv = max(self._rv, source_rv)

    def _managed_cluster(self, name: str) -> ManagedCluster | None:
        return self._managed_clusters.get(name) if self._managed_clusters is not None else None

    def _convert(self, secret: Secret, old: Entry | None) -> Entry:
        name = _name(secret)
        rv = str((secret.get("metadata") or {}).get("resourceVersion", ""))
        if self._hide_dangling and self._managed_cluster(name) is None:
            if isinstance(old, InvalidSecret) and old.dangling and old.resource_version == rv:
                return old
            synced = self._managed_clusters is not None and self._managed_clusters.synced.is_set()
            if synced and not (isinstance(old, InvalidSecret) and old.dangling):  # not every Secret at start-up
                log.info("hiding cluster %s: it has no ManagedCluster (%s)", name, HIDE_DANGLING_FLAG)
            return InvalidSecret(name, rv, "", dangling=True)
        try:
            gateway = secret_to_cluster_gateway(secret, self._managed_cluster(name))
        except ConversionError as exc:
            # Logged once per Secret version, not per LIST, so the log names each problem once.
            if not (isinstance(old, InvalidSecret) and old.reason == str(exc)):
                log.warning("skipping Secret %s/%s: %s", self.namespace, name, exc)
            if isinstance(old, InvalidSecret) and old.reason == str(exc) and old.resource_version == rv:
                return old
            return InvalidSecret(name, rv, str(exc))
        gateway = self._observed(secret, gateway)
        # Same Secret, same ManagedCluster facts: keep the object, and the version a ManagedCluster change gave it.
        if (
            isinstance(old, ClusterGateway)
            and dataclasses.replace(gateway, resource_version=old.resource_version) == old
            and _rv_number(old.resource_version) >= _rv_number(gateway.resource_version)
        ):
            return old
        return gateway

    def _diff(self, old: dict[str, Entry], new: dict[str, Entry], rv: int) -> Iterable[ChangeEvent[ClusterGateway]]:
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
) -> ChangeEvent[ClusterGateway] | None:
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
