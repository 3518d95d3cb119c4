"""A gateway in hosting-cluster mode in front of the fake hosting kube-apiserver, as in production.

Cluster Secrets live in the fake kube-apiserver and reach the gateway through its own
informer; callers are authenticated by TokenReview, client certificates or the front proxy's
`X-Remote-*` headers (trust read from the extension-apiserver-authentication ConfigMap), and
every request is authorized by SubjectAccessReview against the fake's policy table.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gateway_apiserver.config import Config
from gateway_apiserver.server import GatewayServer

from .gateway import write_kubeconfig
from .kube_apiserver import FakeKubeAPIServer
from .pki import CertKey, client_ssl_context, make_ca
from .secrets import CREDENTIAL_LABEL

SECRET_NAMESPACE = "vela-system"
CLUSTERGATEWAYS = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
FRONT_PROXY_CN = "front-proxy-client"  # the aggregator's client certificate name


def add_cluster(api: FakeKubeAPIServer, name: str, endpoint: str, *, token: str, ca_pem: bytes | None = None) -> None:
    """Store a ServiceAccountToken cluster Secret in the hosting cluster's Secret namespace."""
    data: dict[str, str | bytes] = {"endpoint": endpoint, "token": token}
    if ca_pem is not None:
        data["ca.crt"] = ca_pem
    api.create_secret(SECRET_NAMESPACE, name, labels={CREDENTIAL_LABEL: "ServiceAccountToken"}, data=data)


@dataclass
class HostingGateway:
    """A started hosting-mode gateway and the trust it was given."""

    api: FakeKubeAPIServer
    server: GatewayServer
    front_proxy_ca: CertKey  # signs the aggregator's certificate (X-Remote-* are believed only from it)
    client_ca: CertKey  # signs callers' client certificates

    @property
    def port(self) -> int:
        """The gateway's port on 127.0.0.1."""
        return self.server.port

    @property
    def url(self) -> str:
        """https://127.0.0.1:<port>"""
        return f"https://127.0.0.1:{self.server.port}"

    @property
    def ca_file(self) -> Path:
        """The gateway's self-signed serving certificate (its own CA)."""
        assert self.server.cert is not None
        return self.server.cert.cert_file

    def ssl_context(self, client: CertKey | None = None) -> ssl.SSLContext:
        """A client context trusting the gateway, presenting `client` if given."""
        return client_ssl_context(self.ca_file.read_bytes(), client)

    async def open_connection(self, client: CertKey | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw TLS connection to the gateway, for requests no client library would write."""
        return await asyncio.open_connection("127.0.0.1", self.server.port, ssl=self.ssl_context(client))

    def session(self, client: CertKey | None = None, **kwargs: Any) -> aiohttp.ClientSession:
        """An aiohttp client bound to the gateway (one TLS identity per session)."""
        return aiohttp.ClientSession(base_url=self.url, connector=aiohttp.TCPConnector(ssl=self.ssl_context(client)), **kwargs)

    def write_kubeconfig(self, path: Path, *, token: str, path_prefix: str = "") -> Path:
        """A kubeconfig whose server is the gateway URL plus `path_prefix` (e.g. a cluster's proxy URL)."""
        return write_kubeconfig(path, self.url + path_prefix, self.ca_file, token=token)

    def reviews(self) -> list[dict[str, Any]]:
        """The specs of the SubjectAccessReviews the hosting cluster received, in order."""
        return [review["spec"] for review in self.api.access_review_log]


@asynccontextmanager
async def hosting_gateway(tmp_path: Path, api: FakeKubeAPIServer, **overrides: Any) -> AsyncIterator[HostingGateway]:
    """Start a hosting-mode gateway against `api` (its users, policy and Secrets set by the caller) and wait until ready.

    `overrides` are Config fields. The gateway reads Secrets with its own informer and trusts a
    fresh front-proxy CA (allowed name `front-proxy-client`) and a fresh client CA.
    """
    front_proxy_ca, client_ca = make_ca("front-proxy-ca"), make_ca("client-ca")
    api.set_authentication_configmap(
        requestheader_ca_pem=front_proxy_ca.cert_pem, client_ca_pem=client_ca.cert_pem, allowed_names=(FRONT_PROXY_CN,)
    )
    config = Config(
        secure_port=0,
        bind_address="127.0.0.1",
        cert_dir=tmp_path / "certs",
        secret_namespace=SECRET_NAMESPACE,
        kubeconfig=api.write_kubeconfig(tmp_path / "hosting.kubeconfig"),
        # No background prober unless a test asks: it would add member traffic (and DNS lookups of test endpoints).
        **{"health_probe_interval": 0.0, **overrides},
    )
    server = GatewayServer(config)
    await server.start()
    try:
        gateway = HostingGateway(api, server, front_proxy_ca, client_ca)
        async with gateway.session() as session:
            for _ in range(200):  # ready once the trust ConfigMap and the Secrets are loaded
                async with session.get("/readyz") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the hosting-mode gateway did not become ready within 10s")
        yield gateway
    finally:
        await server.stop()
