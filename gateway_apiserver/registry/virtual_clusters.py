"""VirtualCluster: every cluster a KubeVela user can target, in one read-only list.

Compatible with cluster-gateway's `virtualclusters.cluster.core.oam.dev/v1alpha1`. Three
sources, in this order: a synthetic `local` cluster (the hosting cluster itself), the
ClusterGateways converted from the cluster Secrets, and the OCM ManagedClusters that no
valid Secret names (the Secret wins a name clash). The objects are derived, so they carry
no uid; their resourceVersion is this store's own, which only ever grows, so watches
resume across changes from both sources.

The reference's VirtualCluster has no status; ours adds the cluster's health in the
ClusterGateway's status fields (healthy, healthyReason, lastProbeTime), so a health change is a
MODIFIED event here too: a Secret's is its ClusterGateway's status; a ManagedCluster's is its
`ManagedClusterConditionAvailable` condition (healthy when "True", else the condition's reason);
`local`, and a ManagedCluster without that condition, have no status.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..base.api_group import GROUP_VERSION
from ..base.status import initializing, not_found
from .cache import ClusterRegistry
from .managed_clusters import ManagedCluster, ManagedClusterCache, ManagedClusterChange
from .model import ClusterGateway, EndpointType, encode
from .store import ChangeEvent, ObjectStore

KIND = "VirtualCluster"
LIST_KIND = "VirtualClusterList"
RESOURCE = "virtualclusters"
LOCAL_CLUSTER = "local"
LABEL_CONTROL_PLANE = "cluster.core.oam.dev/control-plane"
RESERVED_LABEL_PREFIX = "cluster.core.oam.dev"  # such source labels are not shown, as in the reference
CREDENTIAL_TYPE_INTERNAL = "Internal"
CREDENTIAL_TYPE_MANAGED_CLUSTER = "ManagedCluster"
BLANK_ENDPOINT = "-"
NO_CLIENT_CONFIG = "the ManagedCluster has no spec.managedClusterClientConfigs"


@dataclass(frozen=True, slots=True)
class VirtualCluster:
    """One cluster as `kubectl get vc` shows it; `json` is encoded once, as for ClusterGateways."""

    name: str
    resource_version: str
    creation_timestamp: str | None
    labels: Mapping[str, str]
    alias: str
    accepted: bool
    endpoint: str
    credential_type: str
    # status: None when nothing is known of the cluster's health (local; a ManagedCluster without the condition).
    healthy: bool | None = None
    healthy_reason: str = ""
    last_probe_time: str | None = None
    manifest: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    json: bytes = field(default=b"", repr=False, compare=False)
    render_cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def metadata(self) -> dict[str, Any]:
        """The object's metadata, as served."""
        meta: dict[str, Any] = self.manifest["metadata"]
        return meta


def _manifest(vc: VirtualCluster) -> dict[str, Any]:
    # Shaped like the reference's Go struct: creationTimestamp is null when unset, and the spec's
    # fields are omitted when empty (so `accepted: false` is absent, as there).
    metadata: dict[str, Any] = {"name": vc.name, "resourceVersion": vc.resource_version}
    metadata["creationTimestamp"] = vc.creation_timestamp
    metadata["labels"] = dict(vc.labels)
    spec: dict[str, Any] = {}
    if vc.alias:
        spec["alias"] = vc.alias
    if vc.accepted:
        spec["accepted"] = True
    if vc.endpoint:
        spec["endpoint"] = vc.endpoint
    if vc.credential_type:
        spec["credential-type"] = vc.credential_type
    manifest = {"apiVersion": GROUP_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
    if vc.healthy is not None:  # the ClusterGateway's status fields, with the same names and omissions
        status: dict[str, Any] = {"healthy": vc.healthy}
        if vc.healthy_reason:
            status["healthyReason"] = vc.healthy_reason
        if vc.last_probe_time:
            status["lastProbeTime"] = vc.last_probe_time
        manifest["status"] = status
    return manifest


def _finish(vc: VirtualCluster) -> VirtualCluster:
    manifest = _manifest(vc)
    return dataclasses.replace(vc, manifest=manifest, json=encode(manifest), render_cache={})


def _shown_labels(labels: Mapping[str, str], control_plane: bool) -> dict[str, str]:
    shown = {k: v for k, v in labels.items() if not k.startswith(RESERVED_LABEL_PREFIX)}
    shown[LABEL_CONTROL_PLANE] = "true" if control_plane else "false"
    return dict(sorted(shown.items()))


def local_virtual_cluster(resource_version: str = "") -> VirtualCluster:
    """The hosting cluster itself, which KubeVela calls `local`."""
    return _finish(
        VirtualCluster(
            name=LOCAL_CLUSTER,
            resource_version=resource_version,
            creation_timestamp=None,
            labels=_shown_labels({}, control_plane=True),
            alias="",
            accepted=True,
            endpoint=BLANK_ENDPOINT,
            credential_type=CREDENTIAL_TYPE_INTERNAL,
        )
    )


def virtual_cluster_from_gateway(gw: ClusterGateway, resource_version: str = "") -> VirtualCluster:
    """The VirtualCluster of a cluster Secret. The endpoint is the URL the proxy uses; a ClusterProxy
    cluster has none, so it shows the endpoint type (the reference shows the type whenever the
    endpoint-type label is set, hiding the URL of a `Const` cluster)."""
    endpoint = gw.address if gw.endpoint_type is EndpointType.CONST and gw.address else gw.endpoint_type.value
    return _finish(
        VirtualCluster(
            name=gw.name,
            resource_version=resource_version,
            creation_timestamp=gw.creation_timestamp,
            labels=_shown_labels(gw.labels, control_plane=False),
            alias=gw.alias,
            accepted=True,
            endpoint=endpoint,
            credential_type=gw.credential_type.value,
            healthy=gw.healthy,
            healthy_reason=gw.healthy_reason,
            last_probe_time=gw.last_probe_time,
        )
    )


def virtual_cluster_from_managed_cluster(mc: ManagedCluster, resource_version: str = "") -> VirtualCluster | None:
    """The VirtualCluster of an OCM ManagedCluster; None when it has no client config (not a usable cluster)."""
    if mc.client_config is None:
        return None
    healthy, reason = (None, "") if mc.available is None else mc.available.verdict()
    return _finish(
        VirtualCluster(
            name=mc.name,
            resource_version=resource_version,
            creation_timestamp=mc.creation_timestamp,
            labels=_shown_labels(mc.labels, control_plane=False),
            alias=mc.annotations.get("cluster.core.oam.dev/cluster-alias", ""),
            accepted=mc.hub_accepts_client,
            endpoint=BLANK_ENDPOINT,
            credential_type=CREDENTIAL_TYPE_MANAGED_CLUSTER,
            healthy=healthy,
            healthy_reason=reason,
        )
    )


class VirtualClusterRegistry(ObjectStore[VirtualCluster]):
    """VirtualClusters kept current from the ClusterRegistry and the ManagedCluster cache.

    Until both sources have synced (`start` waits for them), reads answer 429 as the
    ClusterGateway API does; after that, each source change recomputes that one name.
    """

    def __init__(
        self, clusters: ClusterRegistry, managed_clusters: ManagedClusterCache, *, with_control_plane: bool = True
    ) -> None:
        super().__init__()
        self._clusters = clusters
        self._managed = managed_clusters
        self._with_control_plane = with_control_plane
        clusters.add_listener(self._on_cluster_change)
        managed_clusters.add_listener(self._on_managed_cluster_change)

    @property
    def managed_clusters(self) -> ManagedClusterCache:
        """The ManagedCluster cache this registry reads."""
        return self._managed

    async def start(self) -> None:
        """Wait for both sources' first listing, then build every VirtualCluster."""
        await asyncio.gather(self._clusters.synced.wait(), self._managed.synced.wait())
        if self.synced.is_set():
            return
        names = {gw.name for gw in self._clusters.snapshot().items} | {mc.name for mc in self._managed.items()}
        if self._with_control_plane:
            names.add(LOCAL_CLUSTER)
        events = []
        for name in sorted(names):
            vc = self._compute(name)
            if vc is not None:
                self._rv += 1
                events.append(ChangeEvent("ADDED", self._rv, self._stamped(vc, self._rv)))
        self.reset(events, self._rv)

    def get(self, name: str) -> VirtualCluster:
        """The VirtualCluster `name`; a 404 Status naming why a same-named source is not one."""
        if not self.synced.is_set():
            raise initializing()
        vc = self.lookup(name)
        if vc is not None:
            return vc
        what = f'{RESOURCE}.cluster.core.oam.dev "{name}" not found'
        reasons = []
        secret_problem = self._clusters.not_found_reason(name)
        if secret_problem is not None:
            reasons.append(secret_problem)
        managed = self._managed.get(name)
        if managed is not None and managed.client_config is None:
            reasons.append(f"ManagedCluster {name}: {NO_CLIENT_CONFIG}")
        raise not_found(name, f"{what}: {'; '.join(reasons)}" if reasons else None, resource=RESOURCE)

    # --- feeding ------------------------------------------------------------------------------

    def _on_cluster_change(self, event: ChangeEvent[ClusterGateway]) -> None:
        if event.object is not None:
            self._recompute(event.object.name, event.resource_version)

    def _on_managed_cluster_change(self, change: ManagedClusterChange) -> None:
        self._recompute(change.name, change.resource_version)

    def _compute(self, name: str) -> VirtualCluster | None:
        if name == LOCAL_CLUSTER and self._with_control_plane:
            return local_virtual_cluster()
        gw = self._clusters.lookup(name)
        if gw is not None:
            return virtual_cluster_from_gateway(gw)
        mc = self._managed.get(name)
        return None if mc is None else virtual_cluster_from_managed_cluster(mc)

    def _recompute(self, name: str, source_rv: int) -> None:
        if not self.synced.is_set():
            return  # `start` builds everything at once from the synced sources
        old = self.lookup(name)
        new = self._compute(name)
        if new is None and old is None:
            return
        if new is not None and old is not None and dataclasses.replace(new, resource_version=old.resource_version) == old:
            return
        rv = self.next_resource_version(source_rv)
        if new is None:
            assert old is not None
            self.publish(ChangeEvent("DELETED", rv, self._stamped(old, rv), old))
        else:
            self.publish(ChangeEvent("MODIFIED" if old else "ADDED", rv, self._stamped(new, rv), old))

    @staticmethod
    def _stamped(vc: VirtualCluster, rv: int) -> VirtualCluster:
        return _finish(dataclasses.replace(vc, resource_version=str(rv)))
