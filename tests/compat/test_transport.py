"""The reference's transport cases (pkg/apis/cluster/v1alpha1/transport_test.go, TestClusterRestConfigConversion),
restated as what the member (or the forward proxy in front of it) sees when a request is proxied:
the credential presented, the certificate checked against the Secret's CA, the port dialled, the
`proxy-url` used. The reference's 40 s client timeout has no outside effect in these cases (ours is
`--proxy-request-timeout`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.forward_proxies import http_connect_proxy, socks5_proxy
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import make_ca
from tests.fakes.proxying import gateway, proxied, status_of, token_secret
from tests.fakes.secrets import ENDPOINT_LABEL, cluster_secret

pytestmark = pytest.mark.timeout(30)

V1 = "client.authentication.k8s.io/v1"


async def proxied_version(tmp_path: Path, secret: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """GET /version of cluster `my-cluster` through the gateway serving `secret`."""
    async with gateway(tmp_path, secret) as gw:
        return await status_of(gw, proxied("my-cluster", "/version"))


def echo_exec(credential: dict[str, str]) -> str:
    """An exec config whose plugin (`echo`) prints a v1 ExecCredential holding `credential`."""
    output = json.dumps({"apiVersion": V1, "kind": "ExecCredential", "status": credential})
    return json.dumps({"apiVersion": V1, "command": "echo", "args": [output]})


async def test_sa_token_and_host_port(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: transport_test.go,
    TestClusterRestConfigConversion/"normal cluster-gateway with SA token + host-port should work".

    The token is sent as a bearer token, and the member's certificate is verified against the
    Secret's CA for the endpoint's host name: with a CA that did not sign it, nothing is sent."""
    endpoint = member.url.replace("127.0.0.1", "localhost")
    status, _ = await proxied_version(tmp_path, token_secret("my-cluster", member, endpoint=endpoint))
    assert status == 200
    assert member.requests[-1].headers.getall("Authorization") == [f"Bearer {member.token}"]
    sent = len(member.requests)
    other_ca = make_ca("not-the-members-ca").cert_pem
    status, body = await proxied_version(tmp_path, token_secret("my-cluster", member, endpoint=endpoint, ca_pem=other_ca))
    assert (status, body["reason"]) == (502, "BadGateway")
    assert body["message"] == (
        f'TLS verification of cluster "my-cluster" at localhost:{member.port} failed: '
        "the member's certificate is not trusted by the cluster's CA bundle (ca.crt in its Secret)"
    )
    assert len(member.requests) == sent


async def test_x509_and_host_port(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: transport_test.go,
    TestClusterRestConfigConversion/"normal cluster-gateway with X509 + host-port should work"."""
    pair = member.client_cert("gateway-x509")
    data: dict[str, str | bytes] = {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
    status, _ = await proxied_version(tmp_path, token_secret("my-cluster", member, credential_type="X509Certificate", data=data))
    assert status == 200
    assert member.requests[-1].user == "cert:gateway-x509"
    assert "Authorization" not in member.requests[-1].headers


async def test_https_port_defaulting(tmp_path: Path) -> None:
    """reference: transport_test.go, TestClusterRestConfigConversion/"https port defaulting should work".

    An https endpoint without a port is dialled on 443. Shown through an HTTP forward proxy (which
    refuses, so nothing leaves the machine): the gateway asks it for port 443."""
    heads: list[str] = []
    async with http_connect_proxy(heads, refuse_with=502) as port:
        secret = cluster_secret("my-cluster", endpoint="https://member.invalid", data={"proxy-url": f"http://127.0.0.1:{port}"})
        status, body = await proxied_version(tmp_path, secret)
    assert [head.split("\r\n")[0] for head in heads] == ["CONNECT member.invalid:443 HTTP/1.1"]
    message = (
        f'cluster "my-cluster" unreachable: its proxy http://127.0.0.1:{port} '
        "refused the tunnel to member.invalid:443: 502 Bad Gateway"
    )
    assert (status, body["reason"], body["message"]) == (503, "ServiceUnavailable", message)


async def test_insecure_no_ca_bundle(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: transport_test.go, TestClusterRestConfigConversion/"insecure (no CA bundle) should work".

    Without a CA the member's certificate is not verified, and the token is still sent."""
    status, _ = await proxied_version(tmp_path, token_secret("my-cluster", member, ca_pem=None))
    assert status == 200
    assert member.requests[-1].headers.getall("Authorization") == [f"Bearer {member.token}"]


async def test_cluster_proxy_egress(tmp_path: Path) -> None:
    """reference: transport_test.go, TestClusterRestConfigConversion/"cluster-proxy egress should work".

    The reference dials `my-cluster` through its Konnectivity tunnel (tests/proxy/konnectivity covers that);
    a gateway started without --proxy-host says why it cannot."""
    secret = cluster_secret("my-cluster", endpoint=None, labels={ENDPOINT_LABEL: "ClusterProxy"})
    status, body = await proxied_version(tmp_path, secret)
    assert (status, body) == (
        503,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": (
                'cluster "my-cluster" is reached through OCM cluster-proxy (endpoint type ClusterProxy), '
                "but this gateway was started without a Konnectivity proxy-server (--proxy-host)"
            ),
            "reason": "ServiceUnavailable",
            "code": 503,
        },
    )


async def test_proxy_url(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: transport_test.go, TestClusterRestConfigConversion/"proxy-url should work".

    A `socks5://` proxy-url: the member is reached through that proxy."""
    destinations: list[str] = []
    async with socks5_proxy(destinations) as port:
        secret = token_secret("my-cluster", member, data={"proxy-url": f"socks5://127.0.0.1:{port}"})
        status, _ = await proxied_version(tmp_path, secret)
    assert status == 200
    assert destinations == [f"127.0.0.1:{member.port}"]
    assert member.requests[-1].headers.getall("Authorization") == [f"Bearer {member.token}"]


async def test_dynamic_credential_service_account_token(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: transport_test.go, TestClusterRestConfigConversion/"dynamic credential: service account token"."""
    member.tokens["exec-token"] = "member-admin"
    secret = token_secret("my-cluster", member, credential_type="Dynamic", data={"exec": echo_exec({"token": "exec-token"})})
    status, _ = await proxied_version(tmp_path, secret)
    assert status == 200
    assert member.requests[-1].headers.getall("Authorization") == ["Bearer exec-token"]


async def test_dynamic_credential_certificate_and_private_key(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: transport_test.go, TestClusterRestConfigConversion/"dynamic credential: certificate + private key"."""
    pair = member.client_cert("exec-x509")
    credential = {"clientCertificateData": pair.cert_pem.decode(), "clientKeyData": pair.key_pem.decode()}
    secret = token_secret("my-cluster", member, credential_type="Dynamic", data={"exec": echo_exec(credential)})
    status, _ = await proxied_version(tmp_path, secret)
    assert status == 200
    assert member.requests[-1].user == "cert:exec-x509"
    assert "Authorization" not in member.requests[-1].headers
