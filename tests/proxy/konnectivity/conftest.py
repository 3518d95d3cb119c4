"""A ClusterProxy cluster as OCM's cluster-proxy serves it: the gateway dials the fake proxy-server
over mutual TLS; the fake agent registered for the cluster dials the fake member over real TCP.

gateway --gRPC, mTLS--> FakeProxyServer <--gRPC, mTLS-- FakeAgent(host=c1) --TCP--> FakeMemberAPIServer
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.konnectivity import FakeAgent, FakeProxyServer
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import CertKey, issue_server_cert
from tests.fakes.secrets import ENDPOINT_LABEL, cluster_secret

CLUSTER = "c1"
MEMBER_NAMES = ("kubernetes.default.svc", "kubernetes.default", "kubernetes")  # as a kube-apiserver's certificate


def cluster_proxy_secret(name: str, member: FakeMemberAPIServer, rv: int = 1, **kwargs: Any) -> dict[str, Any]:
    """OCM's Secret for a cluster-proxy cluster: ServiceAccountToken, ClusterProxy, ca.crt and token, no endpoint."""
    kwargs.setdefault("ca_pem", member.ca_pem)
    kwargs.setdefault("token", member.token)
    return cluster_secret(name, rv, endpoint=None, labels={ENDPOINT_LABEL: "ClusterProxy"}, **kwargs)


def kube_apiserver_cert(member: FakeMemberAPIServer) -> CertKey:
    """A serving certificate for `member` with the names every kube-apiserver's carries (and not the cluster's name)."""
    return issue_server_cert(member.ca, dns_names=MEMBER_NAMES, ip_addresses=("10.96.0.1",))


@dataclass
class ClusterProxySetup:
    """The member, the proxy-server and the agent for cluster c1."""

    member: FakeMemberAPIServer
    server: FakeProxyServer
    agent: FakeAgent
    tmp_path: Path

    def new_agent(self) -> FakeAgent:
        """Another agent for c1 (after the first one went away)."""
        return FakeAgent(self.server, "agent-c1-again", (CLUSTER,), {f"{CLUSTER}:443": ("127.0.0.1", self.member.port)})

    @asynccontextmanager
    async def gateway(
        self, *secrets: dict[str, Any], client: CertKey | None = None, **config: Any
    ) -> AsyncIterator[RunningGateway]:
        """A gateway reaching ClusterProxy clusters through the proxy-server (--proxy-host and its files),
        serving `secrets` (default: c1's OCM Secret), with `client` as its certificate for the proxy-server."""
        ca, cert, key = self.server.write_client_files(self.tmp_path / "proxy-client", client)
        flags = {
            "cluster_proxy_host": "127.0.0.1",
            "cluster_proxy_port": self.server.port,
            "cluster_proxy_ca_cert": str(ca),
            "cluster_proxy_cert": str(cert),
            "cluster_proxy_key": str(key),
        }
        source = ManualSecretSource(list(secrets) or [cluster_proxy_secret(CLUSTER, self.member)])
        async with running_gateway(self.tmp_path, source, **{**flags, **config}) as gw:
            yield gw


@pytest.fixture
async def cluster_proxy(tmp_path: Path) -> AsyncIterator[ClusterProxySetup]:
    """Cluster c1 behind the fake proxy-server, its agent connected."""
    async with FakeMemberAPIServer() as member:
        member.serve_certificate(kube_apiserver_cert(member))
        async with FakeProxyServer() as server:
            agent = FakeAgent(server, "agent-c1", (CLUSTER,), {f"{CLUSTER}:443": ("127.0.0.1", member.port)})
            async with agent:
                await server.wait_for_agents(1)
                yield ClusterProxySetup(member, server, agent, tmp_path)


__all__ = ["CLUSTER", "ClusterProxySetup", "cluster_proxy_secret", "kube_apiserver_cert"]
