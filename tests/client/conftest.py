"""A hub (a hosting-mode gateway) with two fake member clusters, and hub users of every kind.

Members `m1` and `m2` each hold ConfigMaps named after themselves in `default`. Users in the group
`clients` may read ClusterGateways and VirtualClusters and use every cluster's proxy subresource.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.hosting import SECRET_NAMESPACE, HostingGateway, hosting_gateway
from tests.fakes.hub_users import ExecPluginUser, certificate_user, kubeconfig_with_user, token_user
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.secrets import CREDENTIAL_LABEL

CLIENTS = "clients"


def client_policy(*, proxy_names: tuple[str, ...] = ()) -> list[PolicyRule]:
    """Group `clients` reads our resources and proxies to `proxy_names` (every cluster when empty)."""
    read = PolicyRule(
        groups=(CLIENTS,),
        verbs=("get", "list", "watch"),
        api_groups=("cluster.core.oam.dev",),
        resources=("clustergateways", "virtualclusters"),
    )
    proxy = PolicyRule(
        groups=(CLIENTS,), api_groups=("cluster.core.oam.dev",), resources=("clustergateways/proxy",), names=proxy_names
    )
    return [read, proxy]


def add_member(api: FakeKubeAPIServer, name: str, endpoint: str, *, token: str, ca_pem: bytes, **labels: str) -> None:
    """A ServiceAccountToken cluster Secret named `name` with `labels`."""
    api.create_secret(
        SECRET_NAMESPACE,
        name,
        labels={CREDENTIAL_LABEL: "ServiceAccountToken", **labels},
        data={"endpoint": endpoint, "token": token, "ca.crt": ca_pem},
    )


@dataclass
class Hub:
    """The hub gateway, its members, and kubeconfigs of its users."""

    gateway: HostingGateway
    members: dict[str, FakeMemberAPIServer]
    directory: Path

    def kubeconfig(self, name: str, user: dict[str, object]) -> Path:
        """A kubeconfig of the hub as `user`."""
        return kubeconfig_with_user(
            self.directory / f"{name}.kubeconfig", self.gateway.url, self.gateway.ca_file.read_bytes(), user
        )

    def token_kubeconfig(self) -> Path:
        """As `alice`, with a bearer token."""
        return self.kubeconfig("token", token_user(self.gateway.api, "alice-token", "alice", (CLIENTS,)))

    def certificate_kubeconfig(self) -> Path:
        """As `carol`, with a client certificate."""
        user, _ = certificate_user(self.gateway, "carol", (CLIENTS,))
        return self.kubeconfig("certificate", user)

    def exec_user(self) -> ExecPluginUser:
        """An exec-plugin user whose every run prints a new token (users `exec-user-N`)."""
        return ExecPluginUser(self.directory / "exec", self.gateway.api, "exec", (CLIENTS,))

    def proxy_reviews(self) -> list[tuple[str, str]]:
        """(user, cluster) of each SubjectAccessReview of the proxy subresource the hub asked for, in order."""
        found = []
        for spec in self.gateway.reviews():
            attrs = spec.get("resourceAttributes") or {}
            if attrs.get("subresource") == "proxy":
                found.append((spec["user"], attrs["name"]))
        return found


@pytest.fixture
async def members() -> AsyncIterator[dict[str, FakeMemberAPIServer]]:
    """Members m1 and m2; each holds ConfigMaps `<member>-a` and `<member>-b` in `default`."""
    async with FakeMemberAPIServer() as m1, FakeMemberAPIServer() as m2:
        for name, member in (("m1", m1), ("m2", m2)):
            for suffix in ("a", "b"):
                member.store.create("configmaps", "default", {"metadata": {"name": f"{name}-{suffix}"}, "data": {}})
        yield {"m1": m1, "m2": m2}


@pytest.fixture
async def hub(tmp_path: Path, kube_apiserver: FakeKubeAPIServer, members: dict[str, FakeMemberAPIServer]) -> AsyncIterator[Hub]:
    """The hub with clusters m1 (env=prod) and m2 (env=dev), every proxy open to group `clients`."""
    kube_apiserver.policy = client_policy()
    for (name, member), env in zip(members.items(), ("prod", "dev"), strict=True):
        add_member(kube_apiserver, name, member.url, token=member.token, ca_pem=member.ca_pem, env=env)
    async with hosting_gateway(tmp_path, kube_apiserver) as gateway:
        yield Hub(gateway, members, tmp_path)
