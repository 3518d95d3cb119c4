"""A cluster's transport hands the fast path a raw HTTP/1.1 pool per TLS context, for direct clusters only,
honouring tls-server-name and the cluster's client certificate, and closes its pools with it."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from gateway_apiserver.proxy.http1 import DialFailed
from gateway_apiserver.proxy.konnectivity.channel import KonnectivitySettings
from gateway_apiserver.proxy.konnectivity.tunnel import ProxyServerTunnels
from gateway_apiserver.proxy.transport import ClusterTransport, ProxySettings, server_ssl_context
from gateway_apiserver.proxy.upstream_errors import describe_failure
from gateway_apiserver.registry.conversion import secret_to_cluster_gateway
from gateway_apiserver.registry.model import ClusterGateway
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import issue_server_cert
from tests.fakes.proxying import token_secret
from tests.fakes.secrets import cluster_secret
from tests.proxy.http1.helpers import body_of, request

pytestmark = pytest.mark.timeout(30)
CM = "/api/v1/namespaces/default/configmaps"


def version_request(member: FakeMemberAPIServer, authorization: dict[str, str], path: str = "/version") -> bytes:
    head = request("GET", path, port=member.port)
    extra = "".join(f"{name}: {value}\r\n" for name, value in authorization.items())
    return head[:-2] + extra.encode() + b"\r\n"


async def test_a_direct_cluster_gets_one_pool_per_context_whose_requests_carry_its_credential(
    member: FakeMemberAPIServer,
) -> None:
    transport = ClusterTransport(secret_to_cluster_gateway(token_secret("c1", member)), ProxySettings())
    try:
        credential, tls = await transport.authenticate()
        pool = transport.http1_pool(tls)
        assert pool is not None and transport.http1_pool(tls) is pool
        exchange = await pool.send(version_request(member, credential.headers()), idempotent=True)
        assert (exchange.status, await body_of(exchange) != b"") == (200, True)
        assert (member.requests[-1].user, pool.idle, transport.http1_pools()) == ("member-admin", 1, [pool])
    finally:
        await transport.close()
    assert (pool.closed, pool.idle, transport.http1_pools(), transport.http1_pool(tls)) == (True, 0, [], None)


def kubeconfig_named(member: FakeMemberAPIServer, server_name: str | None) -> ClusterGateway:
    data = {"tls-server-name": server_name} if server_name else {}
    return secret_to_cluster_gateway(token_secret("c1", member, data=data))


async def test_tls_server_name_is_the_name_checked_and_without_it_the_host_is(member: FakeMemberAPIServer) -> None:
    member.serve_certificate(issue_server_cert(member.ca, dns_names=("member.internal",), ip_addresses=()))
    named = ClusterTransport(kubeconfig_named(member, "member.internal"), ProxySettings())
    unnamed = ClusterTransport(kubeconfig_named(member, None), ProxySettings())
    try:
        credential, tls = await named.authenticate()
        pool = named.http1_pool(tls)
        assert pool is not None
        exchange = await pool.send(version_request(member, credential.headers()), idempotent=True)
        await body_of(exchange)
        _, unnamed_tls = await unnamed.authenticate()
        unnamed_pool = unnamed.http1_pool(unnamed_tls)
        assert unnamed_pool is not None
        with pytest.raises(DialFailed) as raised:
            await unnamed_pool.send(version_request(member, credential.headers()), idempotent=True)
    finally:
        await named.close()
        await unnamed.close()
    assert exchange.status == 200
    status = describe_failure(unnamed.hop(unnamed.base_url), raised.value)
    assert (status.code, status.message) == (
        502,
        f'TLS verification of cluster "c1" at 127.0.0.1:{member.port} failed: '
        "the member's certificate is not valid for \"127.0.0.1\" (the endpoint's host is not in its names)",
    )


async def test_a_client_certificate_context_has_its_own_pool_and_a_third_context_closes_the_oldest(
    member: FakeMemberAPIServer,
) -> None:
    pair = member.client_cert("gateway-x509")
    secret = token_secret(
        "c1", member, credential_type="X509Certificate", data={"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
    )
    cluster = secret_to_cluster_gateway(secret)
    transport = ClusterTransport(cluster, ProxySettings())
    try:
        credential, tls = await transport.authenticate()
        first = transport.http1_pool(tls)
        assert first is not None
        exchange = await first.send(version_request(member, credential.headers()), idempotent=True)
        await body_of(exchange)
        rotated, newest = server_ssl_context(cluster), server_ssl_context(cluster)  # as after two rotations
        second, third = transport.http1_pool(rotated), transport.http1_pool(newest)
        assert second is not None and third is not None
        assert (first.closed, second.closed, third.closed) == (True, False, False)
        assert transport.http1_pools() == [second, third]
    finally:
        await transport.close()
    assert (exchange.status, member.requests[-1].user) == (200, "cert:gateway-x509")
    assert "Authorization" not in member.requests[-1].headers


async def test_clusters_behind_a_proxy_or_a_tunnel_have_no_pool(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    proxied = ClusterTransport(
        secret_to_cluster_gateway(token_secret("c1", member, data={"proxy-url": "http://127.0.0.1:3128"})), ProxySettings()
    )
    konnectivity = KonnectivitySettings("127.0.0.1", 8090, tmp_path / "ca.crt", tmp_path / "tls.crt", tmp_path / "tls.key")
    cluster_proxy = secret_to_cluster_gateway(
        cluster_secret("kp", labels={"cluster.core.oam.dev/cluster-endpoint-type": "ClusterProxy"})
    )
    tunnelled = ClusterTransport(cluster_proxy, ProxySettings(), ProxyServerTunnels(konnectivity, 1.0))
    try:
        for transport in (proxied, tunnelled):
            _, tls = await transport.authenticate()
            assert isinstance(tls, ssl.SSLContext)
            assert (transport.http1_pool(tls), transport.http1_pools()) == (None, [])
    finally:
        await proxied.close()
        await tunnelled.close()


async def test_closing_the_transport_cuts_a_watch_on_its_pool(member: FakeMemberAPIServer) -> None:
    transport = ClusterTransport(secret_to_cluster_gateway(token_secret("c1", member)), ProxySettings())
    credential, tls = await transport.authenticate()
    pool = transport.http1_pool(tls)
    assert pool is not None
    watch = await pool.send(version_request(member, credential.headers(), f"{CM}?watch=true"), idempotent=True)
    relayed = watch.relay(lambda chunk: None)
    await transport.close()
    with pytest.raises(ConnectionAbortedError):
        await asyncio.wait_for(relayed, 5)
    assert (pool.idle, pool.active) == (0, 0)
