"""ClusterProxy clusters through the gateway, reached over OCM cluster-proxy's Konnectivity tunnels:
pooled (one tunnel per kept-alive member connection), the member's TLS verified, and every failure a
Status naming its cause."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fakes.gateway import RunningGateway, get_json, kubectl_with
from tests.fakes.pki import issue_client_cert, issue_server_cert, make_ca
from tests.fakes.proxying import eventually, proxied, status_body, status_of

from .conftest import CLUSTER, ClusterProxySetup, cluster_proxy_secret

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
    return await kubectl_with(kubeconfig, *args, stdin=stdin)


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


async def test_the_health_prober_reaches_a_cluster_proxy_cluster_through_its_tunnel(cluster_proxy: ClusterProxySetup) -> None:
    async with cluster_proxy.gateway(health_probe_interval=0.2, health_probe_timeout=2.0) as gw:
        path = f"/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{CLUSTER}"

        async def status() -> dict[str, Any]:
            observed: dict[str, Any] = (await get_json(gw, path))["status"]
            return observed

        for _ in range(100):
            if (await status()).get("healthy"):
                break
            await asyncio.sleep(0.05)
        observed = await status()
        assert (observed["healthy"], observed["kubernetesVersion"]) == (True, "v1.32.0-fake-member")
    assert {r.raw_path for r in cluster_proxy.member.requests} >= {"/readyz", "/version"}


# --- failures, each a Status naming its cause ----------------------------------------------------


async def test_a_cluster_whose_agent_is_not_connected_gets_503_no_agent_available(cluster_proxy: ClusterProxySetup) -> None:
    other = cluster_proxy_secret("c2", cluster_proxy.member)
    async with cluster_proxy.gateway(cluster_proxy_secret(CLUSTER, cluster_proxy.member), other) as gw:
        assert await status_of(gw, proxied("c2", "/version")) == (
            503,
            status_body(
                503,
                f'cluster "c2" unreachable: the Konnectivity proxy-server {proxy_server(cluster_proxy)} has no agent for it '
                "(No agent available): is the cluster-proxy agent running and connected in that cluster?",
            ),
        )
        assert (await status_of(gw, proxied(CLUSTER, "/version")))[0] == 200  # another cluster is not affected
    assert cluster_proxy.server.no_agent == 1


async def test_an_agent_leaving_mid_watch_ends_the_watch_and_later_requests_get_no_agent_available(
    cluster_proxy: ClusterProxySetup,
) -> None:
    member = cluster_proxy.member
    async with cluster_proxy.gateway() as gw, gw.session() as client:
        path = proxied(CLUSTER, f"{NS}/configmaps?watch=true&resourceVersion={member.store.rv}&timeoutSeconds=30")
        async with client.get(path) as resp:
            assert resp.status == 200
            member.store.create("configmaps", "default", {"metadata": {"name": "before"}, "data": {}})
            first = json.loads(await asyncio.wait_for(resp.content.readline(), 5))
            assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "before")
            await cluster_proxy.agent.disconnect()
            with pytest.raises(aiohttp.ClientPayloadError):  # cut, never a clean end that looks complete
                await asyncio.wait_for(resp.content.read(), 5)
        assert await status_of(gw, proxied(CLUSTER, "/version")) == (
            503,
            status_body(
                503,
                f'cluster "c1" unreachable: the Konnectivity proxy-server {proxy_server(cluster_proxy)} has no agent for it '
                "(No agent available): is the cluster-proxy agent running and connected in that cluster?",
            ),
        )
        async with cluster_proxy.new_agent():
            await cluster_proxy.server.wait_for_agents(1)
            assert (await status_of(gw, proxied(CLUSTER, "/version")))[0] == 200


async def test_requests_succeed_again_once_the_proxy_server_is_back(cluster_proxy: ClusterProxySetup) -> None:
    server = cluster_proxy.server
    async with cluster_proxy.gateway() as gw:
        assert (await status_of(gw, proxied(CLUSTER, "/version")))[0] == 200
        await server.stop()
        await cluster_proxy.agent.disconnect()
        assert await status_of(gw, proxied(CLUSTER, "/version")) == (
            503,
            status_body(
                503,
                f'cluster "c1" unreachable: the Konnectivity proxy-server {proxy_server(cluster_proxy)} '
                "cannot be reached: connection refused",
            ),
        )
        await server.start()  # the same port
        async with cluster_proxy.new_agent():
            await server.wait_for_agents(1)
            statuses: list[int] = []

            async def answered() -> bool:
                statuses.append((await status_of(gw, proxied(CLUSTER, "/version")))[0])
                return statuses[-1] == 200

            for _ in range(100):  # the channel is rebuilt after a short backoff
                if await answered():
                    break
                await asyncio.sleep(0.1)
            assert statuses[-1] == 200 and set(statuses) <= {503, 200}


async def test_a_dial_the_agent_never_answers_times_out_with_503_and_is_withdrawn(cluster_proxy: ClusterProxySetup) -> None:
    cluster_proxy.agent.answering = False
    async with cluster_proxy.gateway(proxy_connect_timeout=0.5) as gw:
        assert await status_of(gw, proxied(CLUSTER, "/version")) == (
            503,
            status_body(
                503,
                f'cluster "c1" unreachable: dialing it through the Konnectivity proxy-server {proxy_server(cluster_proxy)} '
                "timed out after 0.5s",
            ),
        )
        await eventually(lambda: cluster_proxy.server.withdrawn == 1)  # DIAL_CLS: the server forgets the dial
    assert cluster_proxy.member.requests == []


async def test_a_client_certificate_the_proxy_server_does_not_trust_gets_503_naming_it(cluster_proxy: ClusterProxySetup) -> None:
    stranger = issue_client_cert(make_ca("not-the-proxy-client-ca"), "gateway")
    async with cluster_proxy.gateway(client=stranger) as gw:
        assert await status_of(gw, proxied(CLUSTER, "/version")) == (
            503,
            status_body(
                503,
                f'cluster "c1" unreachable: the Konnectivity proxy-server {proxy_server(cluster_proxy)} refused the '
                "gateway's client certificate (--proxy-cert) during the TLS handshake",
            ),
        )
    assert cluster_proxy.server.dials == 0


async def test_a_member_certificate_the_secrets_ca_did_not_sign_gets_502(cluster_proxy: ClusterProxySetup) -> None:
    wrong_ca = cluster_proxy_secret(CLUSTER, cluster_proxy.member, ca_pem=make_ca("not-the-members-ca").cert_pem)
    async with cluster_proxy.gateway(wrong_ca) as gw:
        assert await status_of(gw, proxied(CLUSTER, "/version")) == (
            502,
            status_body(
                502,
                'TLS verification of cluster "c1" at c1:443 failed: the member\'s certificate is not trusted '
                "by the cluster's CA bundle (ca.crt in its Secret)",
            ),
        )
    assert cluster_proxy.member.requests == []


async def test_a_member_certificate_without_the_kubernetes_default_svc_name_gets_502(cluster_proxy: ClusterProxySetup) -> None:
    member = cluster_proxy.member
    member.serve_certificate(issue_server_cert(member.ca, dns_names=("localhost",)))
    async with cluster_proxy.gateway() as gw:
        assert await status_of(gw, proxied(CLUSTER, "/version")) == (
            502,
            status_body(
                502,
                'TLS verification of cluster "c1" at c1:443 failed: the member\'s certificate is not valid for '
                '"kubernetes.default.svc" (the server name is not in its names)',
            ),
        )
    assert member.requests == []


async def test_a_secret_without_ca_is_reached_unverified_and_its_status_says_so(cluster_proxy: ClusterProxySetup) -> None:
    member = cluster_proxy.member
    member.serve_certificate(issue_server_cert(make_ca("unknown-ca"), dns_names=("anything",)))
    async with cluster_proxy.gateway(cluster_proxy_secret(CLUSTER, member, ca_pem=None)) as gw:
        assert (await status_of(gw, proxied(CLUSTER, "/version")))[0] == 200
        body = await get_json(gw, f"/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{CLUSTER}")
        assert body["spec"]["access"]["endpoint"] == {"type": "ClusterProxy"}
        assert body["status"] == {"healthy": False, "insecure": True}


async def test_without_a_proxy_server_configured_a_cluster_proxy_cluster_gets_503(cluster_proxy: ClusterProxySetup) -> None:
    async with cluster_proxy.gateway(cluster_proxy_host="") as gw:
        assert await status_of(gw, proxied(CLUSTER, "/version")) == (
            503,
            status_body(
                503,
                'cluster "c1" is reached through OCM cluster-proxy (endpoint type ClusterProxy), but this gateway '
                "was started without a Konnectivity proxy-server (--proxy-host)",
            ),
        )
