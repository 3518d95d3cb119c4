"""A hosting-mode gateway (TokenReview, SubjectAccessReview) in front of a small fleet for fan-out tests.

Clusters (label `env`):
- `east` (prod): a member with Pods `web-1` and `web-2` in `shop`;
- `west` (prod): another member with Pod `api-1` in `shop`;
- `down` (prod, tier=broken): nothing listens at its endpoint;
- `secret` (prod, tier=broken): the `west` member, but alice may not use its proxy (the hub's RBAC);
- `lab` (dev): the `east` member, never selected by `env=prod`.
Alice may list ClusterGateways and use (get, create) the proxy of every cluster but `secret`, and of `-` (the fan-out).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway_apiserver.fanout.handler import FANOUT_SETTINGS
from tests.fakes.hosting import SECRET_NAMESPACE, HostingGateway, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule, status_object
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.secrets import CREDENTIAL_LABEL

ALICE_TOKEN = "alice-token"
FANOUT = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/-/proxy"
MEMBER_TIMEOUT = 1.5  # --proxy-request-timeout: the per-cluster timeout of a fan-out
GROUP = "cluster.core.oam.dev"


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def add_labelled_cluster(api: FakeKubeAPIServer, name: str, member: FakeMemberAPIServer | str, **labels: str) -> None:
    """A ServiceAccountToken cluster Secret for `member` (or an endpoint URL) with `labels`."""
    if isinstance(member, str):
        data: dict[str, str | bytes] = {"endpoint": member, "token": "unused"}
    else:
        data = {"endpoint": member.url, "token": member.token, "ca.crt": member.ca_pem}
    api.create_secret(SECRET_NAMESPACE, name, labels={CREDENTIAL_LABEL: "ServiceAccountToken", **labels}, data=data)


@dataclass
class Fleet:
    """The gateway and its members."""

    gateway: HostingGateway
    api: FakeKubeAPIServer
    east: FakeMemberAPIServer
    west: FakeMemberAPIServer
    down_port: int
    tmp_path: Path

    def kubeconfig(self) -> Path:
        """Alice's kubeconfig for the gateway."""
        return self.gateway.write_kubeconfig(self.tmp_path / "alice.kubeconfig", token=ALICE_TOKEN)

    def headers(self) -> dict[str, str]:
        """Alice's bearer token."""
        return {"Authorization": f"Bearer {ALICE_TOKEN}"}


def pod(member: FakeMemberAPIServer, name: str, cluster: str) -> dict[str, Any]:
    """A Pod as a fan-out item: the member's own object, annotated with its cluster."""
    obj = member.store.get("pods", "shop", name)
    meta = {**obj["metadata"], "annotations": {f"{GROUP}/cluster-name": cluster}}
    return {"kind": "Pod", "apiVersion": "v1", **obj, "metadata": meta}


def cluster_status(cluster: str, message: str, code: int = 200, reason: str = "") -> dict[str, Any]:
    """The Status a fan-out reports for one cluster."""
    details = {"name": cluster, "group": GROUP, "kind": "clustergateways"}
    if code == 200:
        success = {"status": "Success", "message": f'cluster "{cluster}": {message}', "code": 200, "details": details}
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, **success}
    return status_object(code, reason, message, details)


def forbidden_message(cluster: str) -> str:
    """The hub's 403 for alice's proxied request to `cluster`, as the proxy words it."""
    return (
        f'clustergateways.{GROUP} "{cluster}" is forbidden: User "alice" cannot get resource "clustergateways/proxy" '
        f'in API group "{GROUP}" at the cluster scope'
    )


@contextlib.asynccontextmanager
async def started_fleet(tmp_path: Path, kube_apiserver: FakeKubeAPIServer, **overrides: Any) -> AsyncIterator[Fleet]:
    """The fleet described above, behind a hosting-mode gateway with these Config `overrides`."""
    kube_apiserver.users[ALICE_TOKEN] = {"username": "alice", "uid": "a-1", "groups": ["devs"]}
    kube_apiserver.policy = [
        PolicyRule(users=("alice",), verbs=("list", "watch"), api_groups=(GROUP,), resources=("clustergateways",)),
        PolicyRule(
            users=("alice",),
            verbs=("get", "create"),
            api_groups=(GROUP,),
            resources=("clustergateways/proxy",),
            names=("-", "east", "west", "down", "lab", "late"),
        ),
    ]
    async with FakeMemberAPIServer() as east, FakeMemberAPIServer() as west:
        east.add_pod("shop", "web-1", app="web")
        east.add_pod("shop", "web-2", app="web")
        west.add_pod("shop", "api-1", app="api")
        add_labelled_cluster(kube_apiserver, "east", east, env="prod")
        add_labelled_cluster(kube_apiserver, "west", west, env="prod")
        down_port = free_port()
        add_labelled_cluster(kube_apiserver, "down", f"https://127.0.0.1:{down_port}", env="prod", tier="broken")
        add_labelled_cluster(kube_apiserver, "secret", west, env="prod", tier="broken")
        add_labelled_cluster(kube_apiserver, "lab", east, env="dev")
        config = {"proxy_request_timeout": MEMBER_TIMEOUT, **overrides}
        async with hosting_gateway(tmp_path, kube_apiserver, **config) as gateway:
            # Two members read at once, in pages of one Pod: paging and the concurrency bound are exercised.
            assert gateway.server.app is not None
            settings = gateway.server.app[FANOUT_SETTINGS]
            settings.concurrency, settings.page_size = 2, 1
            yield Fleet(gateway, kube_apiserver, east, west, down_port, tmp_path)


@pytest.fixture
async def fleet(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> AsyncIterator[Fleet]:
    """The fleet described above."""
    async with started_fleet(tmp_path, kube_apiserver) as started:
        yield started
