"""Each ManagedClusterAddOn's `Available` condition, from the health the gateway already reports.

The gateway probes its clusters itself (and keeps what `clustergateways/{name}/health` was
told); the manager reads each ClusterGateway through the gateway's API and mirrors its
`status.healthy` into the add-on's condition, with the reference's reasons. It probes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .kube import Kube, Obj, Ref, describe

ADDON_API = "addon.open-cluster-management.io/v1alpha1"
GATEWAY_API = "cluster.core.oam.dev/v1alpha1"
AVAILABLE = "Available"


def available_condition(gateway: Obj | None, error: str | None = None) -> dict[str, str]:
    """The `Available` condition (type, status, reason, message) for a ClusterGateway as read, or the error met."""
    if error is not None:
        return {"type": AVAILABLE, "status": "False", "reason": "FailedProbingHealthz", "message": error}
    if gateway is None:
        return {
            "type": AVAILABLE,
            "status": "False",
            "reason": "FailedProbingHealthz",
            "message": "the gateway has no such cluster",
        }
    status = gateway.get("status") or {}
    if status.get("healthy") is True:
        return {"type": AVAILABLE, "status": "True", "reason": "SuccessfullyProbedHealthz", "message": "Returned OK"}
    reason = str(status.get("healthyReason") or "the gateway reports the cluster unhealthy")
    return {"type": AVAILABLE, "status": "False", "reason": "FailedProbingHealthz", "message": reason}


def with_condition(conditions: list[Any], wanted: dict[str, str], now: dt.datetime) -> list[Any] | None:
    """`conditions` with `wanted` set (lastTransitionTime kept unless the status changes); None if nothing changes."""
    old = next((c for c in conditions if isinstance(c, dict) and c.get("type") == wanted["type"]), None)
    if old is not None and all(old.get(k) == v for k, v in wanted.items()):
        return None
    changed = old is None or old.get("status") != wanted["status"]
    since = now.strftime("%Y-%m-%dT%H:%M:%SZ") if changed else str(old.get("lastTransitionTime") if old else "")
    entry = {**wanted, "lastTransitionTime": since}
    return [c for c in conditions if c is not old] + [entry]


async def report(kube: Kube, gateway: Kube, clusters: set[str], now: dt.datetime) -> None:
    """Set every enabled cluster's ManagedClusterAddOn `Available` condition from its ClusterGateway."""
    for cluster in sorted(clusters):
        error: str | None = None
        found: Obj | None = None
        try:
            found = await gateway.get(Ref(GATEWAY_API, "ClusterGateway", "", cluster))
        except Exception as exc:
            error = f"reading the ClusterGateway failed: {describe(exc)}"
        addon = await kube.get(Ref(ADDON_API, "ManagedClusterAddOn", cluster, "cluster-gateway"))
        if addon is None:
            continue
        status = dict(addon.get("status") or {})
        updated = with_condition(list(status.get("conditions") or []), available_condition(found, error), now)
        if updated is not None:
            await kube.replace_status({**addon, "status": {**status, "conditions": updated}})
