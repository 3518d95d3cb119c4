"""Fixtures for the restated reference cases: a member cluster, proxy configuration files and ManagedClusters.

Each case talks to our real server over TLS: standalone (`tests/fakes/proxying.py`) when only the
Secret format and the proxy matter, hosting mode (`tests/fakes/hosting.py`) when the hosting
cluster's API is part of the case (health writes, ManagedClusters).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer

ADMIN = "admin-token"  # the hosting cluster's admin, in system:masters: every SubjectAccessReview allows it
PROXY_CONFIG_HEADER = "apiVersion: cluster.core.oam.dev/v1alpha1\nkind: ClusterGatewayProxyConfiguration\n"


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    """A member cluster on 127.0.0.1 with its own CA; the gateway's token is `member.token`."""
    async with FakeMemberAPIServer() as server:
        yield server


@pytest.fixture
def hub(kube_apiserver: FakeKubeAPIServer) -> FakeKubeAPIServer:
    """The hosting cluster, where the caller with token ADMIN may do anything through the gateway."""
    kube_apiserver.users[ADMIN] = {"username": "admin", "uid": "a-1", "groups": ["system:masters"]}
    kube_apiserver.policy = [PolicyRule(groups=("system:masters",))]
    return kube_apiserver


def proxy_rules(*rules: str) -> str:
    """A ClusterGatewayProxyConfiguration document holding the given one-line YAML rules."""
    return PROXY_CONFIG_HEADER + "spec:\n  clientIdentityExchanger:\n    rules:\n" + "".join(f"    - {r}\n" for r in rules)


def write_proxy_config(tmp_path: Path, *rules: str) -> Path:
    """The `--cluster-gateway-proxy-config` file holding `rules`."""
    path = tmp_path / "proxy-config.yaml"
    path.write_text(proxy_rules(*rules))
    return path


def add_managed_cluster(
    api: FakeKubeAPIServer,
    name: str,
    *,
    url: str | None = None,
    ca_pem: bytes | None = None,
    labels: Mapping[str, str] | None = None,
    accepted: bool = True,
) -> dict[str, Any]:
    """Create an OCM ManagedCluster (`cluster.open-cluster-management.io/v1`, cluster-scoped) in the
    hosting cluster through the fake's generic store, as `kubectl apply` of one would.

    With no `url` it has no `spec.managedClusterClientConfigs` (the reference calls that invalid).
    The fake serves the kind once helper "ocm" registers it (issue 13 item 3); until then this raises.
    """
    spec: dict[str, Any] = {"hubAcceptsClient": accepted}
    if url is not None:
        config: dict[str, Any] = {"url": url}
        if ca_pem is not None:
            config["caBundle"] = base64.b64encode(ca_pem).decode()
        spec["managedClusterClientConfigs"] = [config]
    body = {
        "apiVersion": "cluster.open-cluster-management.io/v1",
        "kind": "ManagedCluster",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": spec,
    }
    return api.store.create("managedclusters", "", body)
