"""Open Cluster Management in the fake hosting kube-apiserver: the ManagedCluster CRD and its objects.

`managedclusters.cluster.open-cluster-management.io/v1` is cluster-scoped and served only once
its CRD is installed (`FakeKubeAPIServer.install_managed_cluster_crd`), as on a hub: before
that, discovery has no `cluster.open-cluster-management.io` group and its paths answer 404.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from .kube_store import KindInfo, Obj

GROUP = "cluster.open-cluster-management.io"
VERSION = "v1"
MANAGED_CLUSTERS = KindInfo("managedclusters", "ManagedCluster", group=GROUP, version=VERSION, namespaced=False)
# The collection's path, and the rule the OCM component of deploy/ grants the gateway.
MANAGED_CLUSTERS_PATH = f"/apis/{GROUP}/{VERSION}/managedclusters"


def client_config(url: str, ca_pem: bytes | None = None) -> Obj:
    """One `spec.managedClusterClientConfigs` entry: the URL, and the CA bundle base64-encoded if given."""
    config: Obj = {"url": url}
    if ca_pem is not None:
        config["caBundle"] = base64.b64encode(ca_pem).decode()
    return config


def managed_cluster(
    name: str,
    *,
    url: str | None = None,
    ca_pem: bytes | None = None,
    client_configs: Sequence[Obj] | None = None,
    labels: Mapping[str, str] | None = None,
    accepted: bool = True,
    status: Mapping[str, Any] | None = None,
) -> Obj:
    """A ManagedCluster body: `client_configs` as given, else one built from `url`/`ca_pem`, else none."""
    configs = list(client_configs) if client_configs is not None else ([client_config(url, ca_pem)] if url else [])
    spec: Obj = {"hubAcceptsClient": accepted}
    if configs:
        spec["managedClusterClientConfigs"] = configs
    body: Obj = {"metadata": {"name": name, "labels": dict(labels or {})}, "spec": spec}
    if status is not None:
        body["status"] = dict(status)
    return body
