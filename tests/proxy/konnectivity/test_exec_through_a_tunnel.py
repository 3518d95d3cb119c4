"""kubectl exec to a ClusterProxy cluster: the upgrade rides its own Konnectivity tunnel, TLS to the
member verified as kubernetes.default.svc, and the tunnel is closed when the exec ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.gateway import ManualSecretSource, running_gateway
from tests.fakes.konnectivity import FakeAgent, FakeProxyServer
from tests.fakes.member_upgrade import FakeUpgradeMember
from tests.fakes.pki import issue_server_cert
from tests.fakes.proxying import eventually
from tests.fakes.secrets import ENDPOINT_LABEL, cluster_secret

from .conftest import CLUSTER, MEMBER_NAMES
from .test_cluster_proxy import kubectl

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def upgrade_member() -> AsyncIterator[FakeUpgradeMember]:
    member = FakeUpgradeMember(token="member-secret-token")
    member.serving = issue_server_cert(member.ca, dns_names=MEMBER_NAMES, ip_addresses=())
    await member.start()
    try:
        yield member
    finally:
        await member.stop()


async def test_kubectl_exec_through_the_tunnel(upgrade_member: FakeUpgradeMember, tmp_path: Path) -> None:
    async with FakeProxyServer() as server:
        route = {f"{CLUSTER}:443": ("127.0.0.1", upgrade_member.url.port or 0)}
        async with FakeAgent(server, "agent-c1", (CLUSTER,), route):
            await server.wait_for_agents(1)
            ca, cert, key = server.write_client_files(tmp_path / "proxy-client")
            secret = cluster_secret(
                CLUSTER,
                endpoint=None,
                labels={ENDPOINT_LABEL: "ClusterProxy"},
                token=upgrade_member.token,
                ca_pem=upgrade_member.ca_pem,
            )
            flags = {
                "cluster_proxy_host": "127.0.0.1",
                "cluster_proxy_port": server.port,
                "cluster_proxy_ca_cert": str(ca),
                "cluster_proxy_cert": str(cert),
                "cluster_proxy_key": str(key),
            }
            async with running_gateway(tmp_path, ManualSecretSource([secret]), **flags) as gw:
                code, out, err = await kubectl(gw, tmp_path, "exec", "mypod", "--", "echo", "hello", "world")
                assert (code, out, err) == (0, "hello world\n", "")
                code, out, err = await kubectl(gw, tmp_path, "exec", "-i", "mypod", "--", "cat", stdin=b"ping\npong\n")
                assert (code, out, err) == (0, "ping\npong\n", "")
                assert [conn.status for conn in upgrade_member.upgrades] == [101, 101]
                assert all(
                    c.request.headers.getall("Authorization") == [f"Bearer {upgrade_member.token}"]
                    for c in upgrade_member.upgrades
                )
                # Each exec had its own tunnel, besides the one pooled connection kubectl's plain GETs rode;
                # both exec tunnels are gone once the execs ended (closed by whichever side ended first).
                await eventually(lambda: server.open_connections == 1, timeout=15)
                assert server.dials == server.established == 3
            assert set(server.dial_addresses) == {"c1:443"}
