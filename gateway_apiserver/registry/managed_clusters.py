"""OCM ManagedClusters: the pure model, and the cache that a ManagedCluster source feeds.

Open Cluster Management describes each member cluster with a cluster-scoped
`managedclusters.cluster.open-cluster-management.io/v1` object. Two consumers read them:
VirtualCluster (always, as the reference does) and `--ocm-integration`, which takes a
cluster's endpoint and CA from the ManagedCluster of the Secret's name. Sources deliver
plain dicts through the same sink calls as Secrets (`replace`, `apply`, `bookmark`), plus
`mark_unavailable` when the hosting cluster does not serve the API (or refuses us).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .event_lag import EventLag
from .source import WatchEventType

log = logging.getLogger(__name__)

GROUP = "cluster.open-cluster-management.io"
VERSION = "v1"
RESOURCE = "managedclusters"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """One entry of `spec.managedClusterClientConfigs`: where and how to reach the member."""

    url: str
    # None when absent; `ca_bundle_problem` says why when the field was there but unusable.
    ca_bundle: bytes | None = field(default=None, repr=False)
    ca_bundle_problem: str | None = None


AVAILABLE_CONDITION = "ManagedClusterConditionAvailable"  # set by the hub from the klusterlet's lease and probes


@dataclass(frozen=True, slots=True)
class Availability:
    """The `ManagedClusterConditionAvailable` condition of a ManagedCluster: its status, reason and
    lastTransitionTime (its message is left out, so that only a verdict change is a change)."""

    status: str  # "True", "False" or "Unknown"
    reason: str
    # As written (RFC 3339); it moves only when the status does, not on the klusterlet's lease renewals.
    last_transition_time: str | None = None

    def verdict(self) -> tuple[bool, str]:
        """(healthy, reason) as ClusterGateway and VirtualCluster show it: healthy when "True"; otherwise
        the condition's reason (OCM's reasons name themselves, e.g. `ManagedClusterLeaseUpdateStopped`)."""
        if self.status == "True":
            return True, ""
        return False, self.reason or f"{AVAILABLE_CONDITION} is {self.status}"


@dataclass(frozen=True, slots=True)
class ManagedCluster:
    """The facts we use of one ManagedCluster."""

    name: str
    resource_version: str
    creation_timestamp: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    hub_accepts_client: bool
    client_configs: tuple[ClientConfig, ...]
    available: Availability | None = None  # None when the hub has not set the condition

    @property
    def client_config(self) -> ClientConfig | None:
        """The first client config, the one the reference uses; None when there is none."""
        return self.client_configs[0] if self.client_configs else None


def managed_cluster_from_object(obj: Mapping[str, Any]) -> ManagedCluster:
    """Read a ManagedCluster (Kubernetes JSON shape); malformed fields read as absent, never raise."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    configs: list[ClientConfig] = []
    for raw in spec.get("managedClusterClientConfigs") or ():
        if not isinstance(raw, Mapping) or not isinstance(raw.get("url"), str) or not raw["url"]:
            continue
        configs.append(_client_config(raw["url"], raw.get("caBundle")))
    labels = meta.get("labels")
    annotations = meta.get("annotations")
    return ManagedCluster(
        name=str(meta.get("name") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        creation_timestamp=meta.get("creationTimestamp"),
        labels=dict(labels) if isinstance(labels, Mapping) else {},
        annotations=dict(annotations) if isinstance(annotations, Mapping) else {},
        hub_accepts_client=spec.get("hubAcceptsClient") is True,
        client_configs=tuple(configs),
        available=_availability(obj.get("status")),
    )


def _availability(status: Any) -> Availability | None:
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for condition in conditions if isinstance(conditions, list) else ():
        if isinstance(condition, Mapping) and condition.get("type") == AVAILABLE_CONDITION:
            value, reason, since = condition.get("status"), condition.get("reason"), condition.get("lastTransitionTime")
            return Availability(
                value if isinstance(value, str) else "Unknown",
                reason if isinstance(reason, str) else "",
                since if isinstance(since, str) else None,
            )
    return None


def _client_config(url: str, ca_bundle: Any) -> ClientConfig:
    if ca_bundle is None or ca_bundle == "":
        return ClientConfig(url)
    if not isinstance(ca_bundle, str):
        return ClientConfig(url, None, "spec.managedClusterClientConfigs[0].caBundle is not a base64 string")
    try:
        return ClientConfig(url, base64.b64decode(ca_bundle, validate=True))
    except (binascii.Error, ValueError):
        return ClientConfig(url, None, "spec.managedClusterClientConfigs[0].caBundle is not valid base64")


@dataclass(frozen=True, slots=True)
class ManagedClusterChange:
    """One ManagedCluster appeared, changed or left, at the hosting resourceVersion `resource_version`."""

    name: str
    old: ManagedCluster | None
    new: ManagedCluster | None
    resource_version: int


Listener = Callable[[ManagedClusterChange], None]


class ManagedClusterCache:
    """The ManagedClusters the hosting cluster has, by name; a sink for a ManagedCluster source.

    `synced` is set after the first listing, or as soon as the source finds the API
    unavailable: a hub without OCM has no ManagedClusters, and that is a complete answer.
    """

    def __init__(self) -> None:
        self._items: dict[str, ManagedCluster] = {}
        self._rv = 0
        self._listeners: list[Listener] = []
        self.available = False
        self.synced = asyncio.Event()
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.event_lag = EventLag()  # ManagedCluster write to applied watch event, for /metrics

    # --- sink -------------------------------------------------------------------------------

    def replace(self, objects: Sequence[Mapping[str, Any]], resource_version: str) -> None:
        """A full listing: diff it in, telling listeners of each change."""
        rv = self._parse_rv(resource_version)
        new = {mc.name: mc for mc in map(managed_cluster_from_object, objects) if mc.name}
        self._swap(new, rv)
        self.available = True
        self.synced.set()

    def apply(self, event_type: WatchEventType, obj: Mapping[str, Any]) -> None:
        """One watch event."""
        mc = managed_cluster_from_object(obj)
        if not mc.name:
            return
        rv = self._parse_rv(mc.resource_version)
        old = self._items.get(mc.name)
        if event_type == "DELETED":
            self._items.pop(mc.name, None)
            self._notify(ManagedClusterChange(mc.name, old, None, rv))
        else:
            self._items[mc.name] = mc
            self._notify(ManagedClusterChange(mc.name, old, mc, rv))
            self.event_lag.observe_event(obj, self.clock())

    def bookmark(self, resource_version: str) -> None:
        """The source has seen everything up to `resource_version`."""
        self._rv = max(self._rv, self._parse_rv(resource_version))

    def mark_unavailable(self) -> None:
        """The API is not served (no CRD) or refused to us: no ManagedClusters, and that is final until it appears."""
        self._swap({}, self._rv)
        self.available = False
        self.synced.set()

    # --- reads ------------------------------------------------------------------------------

    def get(self, name: str) -> ManagedCluster | None:
        """The ManagedCluster of this name, if any."""
        return self._items.get(name)

    def items(self) -> list[ManagedCluster]:
        """Every ManagedCluster, in name order."""
        return [self._items[name] for name in sorted(self._items)]

    @property
    def resource_version(self) -> int:
        """The hosting resourceVersion the cache is current at."""
        return self._rv

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` on every change."""
        self._listeners.append(listener)

    # --- internals --------------------------------------------------------------------------

    def _swap(self, new: dict[str, ManagedCluster], rv: int) -> None:
        old = self._items
        self._items = new
        self._rv = max(self._rv, rv)
        for name in sorted(old.keys() | new.keys()):
            before, after = old.get(name), new.get(name)
            if before != after:
                self._notify(ManagedClusterChange(name, before, after, self._rv))

    def _notify(self, change: ManagedClusterChange) -> None:
        self._rv = max(self._rv, change.resource_version)
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                log.exception("ManagedCluster listener failed")

    def _parse_rv(self, value: str) -> int:
        try:
            return int(value)
        except ValueError:
            return self._rv
