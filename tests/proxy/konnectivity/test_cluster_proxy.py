"""ClusterProxy clusters through the gateway, reached over OCM cluster-proxy's Konnectivity tunnels:
pooled (one tunnel per kept-alive member connection), the member's TLS verified, and every failure a
Status naming its cause."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from tests.fakes.gateway import RunningGateway
from tests.fakes.proxying import eventually, proxied, status_of

from .conftest import CLUSTER, ClusterProxySetup

pytestmark = pytest.mark.timeout(60)
NS = "/api/v1/namespaces/default"
SERVER = "127.0.0.1"  # --proxy-host


def proxy_server(setup: ClusterProxySetup) -> str:
    return f"{SERVER}:{setup.server.port}"


async def kubectl(gw: RunningGateway, tmp_path: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """kubectl with a kubeconfig whose server is c1's proxy URL on the gateway."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c1", "cluster": {"server": gw.url + proxied(CLUSTER, ""), "certificate-authority": str(gw.ca_file)}}
        ],
        "users": [{"name": "u", "user": {"token": "caller-token"}}],
        "contexts": [{"name": "c1", "context": {"cluster": "c1", "user": "u", "namespace": "default"}}],
        "current-context": "c1",
    }
    kubeconfig = tmp_path / "c1.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={tmp_path / 'kube-cache'}",
        "--request-timeout=20s",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_kubectl_get_apply_and_logs_reach_the_member_through_its_agent(
    cluster_proxy: ClusterProxySetup, tmp_path: Path
) -> None:
    member, server = cluster_proxy.member, cluster_proxy.server
    async with cluster_proxy.gateway() as gw:

        async def ok(*args: str, stdin: bytes | None = None) -> str:
            code, out, err = await kubectl(gw, tmp_path, *args, stdin=stdin)
            assert code == 0, f"kubectl {' '.join(args)} failed: {err}"
            return out

        manifest = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}})
        await ok("apply", "--validate=false", "--server-side", "-f", "-", stdin=manifest.encode())
        assert json.loads(await ok("get", "configmap", "cm", "-o", "json"))["data"] == {"a": "1"}
        assert member.managers[("default", "cm")] == ["kubectl"]
        member.add_pod("default", "p1")
        logs = await ok("logs", "-f", "pod/p1")
        assert len(logs.splitlines()) == member.log_lines
    assert server.dial_addresses and set(server.dial_addresses) == {"c1:443"}  # the cluster's name, port 443
    for record in member.requests:
        assert record.headers.getall("Authorization") == [f"Bearer {member.token}"]
        assert record.headers["Host"] == "c1"
    # Every tunnel the gateway opened was closed with CLOSE_REQ once the gateway let go of it.
    await eventually(lambda: server.open_connections == 0)
    assert server.close_requests == server.established == server.dials


async def test_concurrent_requests_open_one_tunnel_each_and_kept_alive_connections_reuse_them(
    cluster_proxy: ClusterProxySetup,
) -> None:
    server = cluster_proxy.server
    async with cluster_proxy.gateway() as gw, gw.session() as client:

        async def slow() -> int:
            async with client.get(proxied(CLUSTER, "/slow?seconds=0.3")) as resp:
                await resp.read()
                return resp.status

        assert await asyncio.gather(*(slow() for _ in range(12))) == [200] * 12
        assert (server.dials, server.established, server.open_connections) == (12, 12, 12)
        for _ in range(30):  # one at a time: each rides one of the open, kept-alive tunnels
            assert (await status_of(gw, proxied(CLUSTER, "/version")))[0] == 200
        assert (server.dials, server.open_connections) == (12, 12)
        assert len(cluster_proxy.member.connections) == 12  # the agent's TCP connections to the member
