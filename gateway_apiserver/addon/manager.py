"""The add-on manager's loop: level-triggered, woken by watches, with a periodic resync.

Every pass reads the live state and converges it: the `cluster-gateway` ClusterManagementAddOn,
the ClusterGatewayConfiguration it names (installation, certificates, status conditions), the
cluster Secrets and the add-ons' `Available` conditions. Watches (the registry's `ListWatch`)
on the configurations, ManagedClusters, ManagedClusterAddOns, ManagedServiceAccounts and
APIServices only wake the loop early; the resync repairs drift in the installed objects and
runs the certificate steps on time. A pass holds no state between runs, so a manager
restarted mid-pass simply does the pass again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import ApiClient, Configuration, CustomObjectsApi

from ..registry.informer import ListCall, ListWatch
from ..registry.source import WatchEventType
from . import clusters, health
from .apply import ensure
from .certificates import Lifetimes
from .install import CONDITION, Installed, ServingProbe, install
from .kube import Kube, Obj, Ref, describe
from .render import MANAGED_BY
from .spec import ADDON_NAME, GROUP, KIND, RESOURCE, SpecError, parse_spec

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
CONFIG_API = f"{GROUP}/v1alpha1"
CMA_API = "addon.open-cluster-management.io/v1alpha1"
# What a pass watches to wake early: (group, version, plural).
WATCHED = (
    (GROUP, "v1alpha1", RESOURCE),
    ("cluster.open-cluster-management.io", "v1", "managedclusters"),
    ("addon.open-cluster-management.io", "v1alpha1", "managedclusteraddons"),
    ("authentication.open-cluster-management.io", "v1beta1", "managedserviceaccounts"),
    ("apiregistration.k8s.io", "v1", "apiservices"),
)


def cluster_management_addon(configuration: str) -> Obj:
    """The `cluster-gateway` ClusterManagementAddOn, naming the ClusterGatewayConfiguration to install."""
    spec = {
        "addOnMeta": {"displayName": "cluster-gateway", "description": "the cluster-gateway aggregated API server"},
        "addOnConfiguration": {"crdName": f"{RESOURCE}.{GROUP}", "crName": configuration},
    }
    return {
        "apiVersion": CMA_API,
        "kind": "ClusterManagementAddOn",
        "metadata": {"name": ADDON_NAME, "labels": dict(MANAGED_BY)},
        "spec": spec,
    }


class _Wake:
    """A `Sink` that only wakes the loop: the pass reads the live state itself."""

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def replace(self, objects: Sequence[dict[str, Any]], resource_version: str, /) -> None:
        self.event.set()

    def apply(self, event_type: WatchEventType, obj: dict[str, Any], /) -> None:
        self.event.set()

    def bookmark(self, resource_version: str, /) -> None:
        pass


class _CollectionWatch(ListWatch):
    """List+watch of one cluster-wide collection of any group."""

    name = "add-on manager watch"

    def __init__(self, client: Configuration, group: str, version: str, plural: str, **timing: Any) -> None:
        super().__init__(client, **timing)
        self.group, self.version, self.plural = group, version, plural
        self.what = f"{plural}.{group}"

    def list_call(self, api_client: Any) -> ListCall:
        custom = CustomObjectsApi(api_client)

        async def call(**params: Any) -> Any:
            return await custom.list_cluster_custom_object(self.group, self.version, self.plural, **params)

        return call


@dataclass
class ManagerSettings:
    """How the manager runs: its configuration's name, resync period, certificate lifetimes, clock."""

    configuration: str = "cluster-gateway"
    resync: float = 30.0
    lifetimes: Lifetimes = field(default_factory=Lifetimes)
    clock: Clock = field(default=lambda: dt.datetime.now(dt.UTC))
    probe: ServingProbe | None = None  # asks the gateway which certificate it serves


def _conditions(config: Obj, installed: Installed, problems: list[str], now: dt.datetime) -> list[Any] | None:
    condition = {"type": CONDITION, "status": installed.status, "reason": installed.reason, "message": installed.message}
    conditions = list((config.get("status") or {}).get("conditions") or [])
    updated = health.with_condition(conditions, condition, now)
    clusters_condition = {
        "type": "ClusterSecretsSynced",
        "status": "False" if problems else "True",
        "reason": "SyncFailed" if problems else "Synced",
        "message": "; ".join(problems) or "every enabled cluster has its Secret",
    }
    return health.with_condition(updated if updated is not None else conditions, clusters_condition, now) or updated


class AddonManager:
    """Runs passes against the hosting cluster (`kube`) and reads health through the gateway's API (`gateway`)."""

    def __init__(self, kube: Kube, gateway: Kube | None, settings: ManagerSettings) -> None:
        self.kube = kube
        self.gateway = gateway
        self.settings = settings
        self.wake = asyncio.Event()
        self.passes = 0  # completed passes, for tests and logs

    async def reconcile(self) -> dt.datetime | None:
        """One pass; when the certificates next need one (None: only on the resync)."""
        now = self.settings.clock()
        await ensure(self.kube, cluster_management_addon(self.settings.configuration))
        cma = await self.kube.get(Ref(CMA_API, "ClusterManagementAddOn", "", ADDON_NAME)) or {}
        name = ((cma.get("spec") or {}).get("addOnConfiguration") or {}).get("crName") or self.settings.configuration
        config = await self.kube.get(Ref(CONFIG_API, KIND, "", name))
        if config is None:
            log.info("no %s %s yet: nothing to install", KIND, name)
            return None
        problems: list[str] = []
        try:
            spec = parse_spec(config)
        except SpecError as exc:
            installed = Installed("False", "InvalidConfiguration", str(exc))
        else:
            installed = await install(self.kube, spec, now, self.settings.lifetimes, self.settings.probe)
            for event in installed.events:
                log.info("%s: %s", name, event)
            try:  # the installation's condition is reported even when OCM's add-on APIs fail
                enabled = await clusters.enabled_clusters(self.kube)
                problems = await clusters.feed(self.kube, spec, enabled)
                if self.gateway is not None and installed.status == "True":
                    await health.report(self.kube, self.gateway, enabled, now)
            except Exception as exc:
                problems.append(f"reading the clusters that enable the add-on failed: {describe(exc)}")
        conditions = _conditions(config, installed, problems, now)
        generation = (config.get("metadata") or {}).get("generation")
        status = dict(config.get("status") or {})
        if conditions is not None or status.get("lastObservedGeneration") != generation:
            status.update(lastObservedGeneration=generation, conditions=conditions or status.get("conditions") or [])
            await self.kube.replace_status({**config, "status": status})
        self.passes += 1
        return installed.next_check

    async def run(self, watch_config: Configuration | None = None) -> None:
        """Pass after pass until cancelled; `watch_config` (the hosting cluster) wakes it early on changes."""
        watches = (
            [
                asyncio.create_task(
                    _CollectionWatch(watch_config, *w, backoff_cap=10.0).run(_Wake(self.wake)), name=f"watch {w[2]}"
                )
                for w in WATCHED
            ]
            if watch_config is not None
            else []
        )
        try:
            while True:
                self.wake.clear()
                delay = self.settings.resync
                try:
                    next_check = await self.reconcile()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a pass that failed is retried at the next wake or resync
                    log.warning("reconcile failed: %s", describe(exc))
                    next_check = None
                if next_check is not None:
                    delay = min(delay, max(0.05, (next_check - self.settings.clock()).total_seconds()))
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the wake-up.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.wake.wait()
        finally:
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)


async def run_manager(hosting: Configuration, gateway: Configuration | None, settings: ManagerSettings) -> None:
    """Run the manager with kubernetes-asyncio clients for the hosting cluster and the gateway's API."""
    async with ApiClient(hosting) as hosting_client:
        gateway_client = ApiClient(gateway) if gateway is not None else hosting_client
        try:
            manager = AddonManager(Kube(hosting_client), Kube(gateway_client), settings)
            await manager.run(hosting)
        finally:
            if gateway_client is not hosting_client:
                await gateway_client.close()
