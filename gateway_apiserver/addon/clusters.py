"""Feeding the gateway its clusters under ManagedServiceAccount secret management.

For every ManagedCluster that has the add-on enabled (a ManagedClusterAddOn named
`cluster-gateway` in the cluster's namespace), the manager keeps a ManagedServiceAccount in
that namespace and copies the token Secret OCM writes for it into the gateway's Secret
namespace as the cluster's Secret: ServiceAccountToken credentials, the endpoint type of the
configuration's egress, `ca.crt` and `token`, and no `endpoint` (the gateway takes it from the
ManagedCluster). A rotated token is copied again; a cluster or add-on that goes away takes its
Secret and ManagedServiceAccount with it. Secrets the manager did not write are never touched.
"""

from __future__ import annotations

import logging

from . import render
from .apply import ensure
from .kube import Kube, Obj, Ref, describe
from .spec import ADDON_NAME, GatewaySpec

log = logging.getLogger(__name__)

MSA_API = "authentication.open-cluster-management.io/v1beta1"
CREDENTIAL_TYPE = "cluster.core.oam.dev/cluster-credential-type"
ENDPOINT_TYPE = "cluster.core.oam.dev/cluster-endpoint-type"
MANAGED = ",".join(f"{k}={v}" for k, v in render.MANAGED_BY.items())


def managed_service_account(cluster: str, name: str) -> Obj:
    """The ManagedServiceAccount for `cluster` (token rotation on, OCM's default validity)."""
    meta = {"name": name, "namespace": cluster, "labels": dict(render.MANAGED_BY)}
    return {"apiVersion": MSA_API, "kind": "ManagedServiceAccount", "metadata": meta, "spec": {"rotation": {"enabled": True}}}


def cluster_secret(cluster: str, token_secret: Obj, spec: GatewaySpec) -> Obj | None:
    """The gateway's Secret for `cluster` from its ManagedServiceAccount token Secret; None until it has a token."""
    data = token_secret.get("data") or {}
    if not data.get("token"):
        return None
    labels = {**render.MANAGED_BY, CREDENTIAL_TYPE: "ServiceAccountToken", ENDPOINT_TYPE: spec.endpoint_type}
    copied = {key: data[key] for key in ("ca.crt", "token") if data.get(key)}
    meta = {"name": cluster, "namespace": spec.secret_namespace, "labels": labels}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": copied}


def _deleting(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


async def enabled_clusters(kube: Kube) -> set[str]:
    """The ManagedClusters (not being deleted) with a live `cluster-gateway` ManagedClusterAddOn."""
    clusters = {
        c["metadata"]["name"]
        for c in await kube.list(Ref("cluster.open-cluster-management.io/v1", "ManagedCluster", "", ""))
        if not _deleting(c)
    }
    addons = await kube.list(Ref("addon.open-cluster-management.io/v1alpha1", "ManagedClusterAddOn", "", ""))
    return {
        a["metadata"]["namespace"]
        for a in addons
        if a["metadata"]["name"] == ADDON_NAME and not _deleting(a) and a["metadata"].get("namespace") in clusters
    }


async def feed(kube: Kube, spec: GatewaySpec, enabled: set[str]) -> list[str]:
    """Bring cluster Secrets and ManagedServiceAccounts in line with `enabled`; the problems met (one line each)."""
    name = spec.managed_service_account
    if name is None:
        return []
    problems: list[str] = []
    for cluster in sorted(enabled):
        try:
            await ensure(kube, managed_service_account(cluster, name))
            token = await kube.get(Ref("v1", "Secret", cluster, name))
            if token is not None and (wanted := cluster_secret(cluster, token, spec)) is not None:
                await ensure(kube, wanted)
        except Exception as exc:
            problems.append(f"cluster {cluster}: {describe(exc)}")
    secrets = await kube.list(Ref("v1", "Secret", spec.secret_namespace, ""), label_selector=MANAGED)
    for secret in secrets:
        cluster = secret["metadata"]["name"]
        if cluster not in enabled and (secret["metadata"].get("labels") or {}).get(CREDENTIAL_TYPE):
            await kube.delete(Ref("v1", "Secret", spec.secret_namespace, cluster))
            log.info("removed the cluster Secret of %s", cluster)
    for msa in await kube.list(Ref(MSA_API, "ManagedServiceAccount", "", ""), label_selector=MANAGED):
        cluster = msa["metadata"]["namespace"]
        if cluster not in enabled and msa["metadata"]["name"] == name and not _deleting(msa):
            await kube.delete(Ref(MSA_API, "ManagedServiceAccount", cluster, name))
    return problems
