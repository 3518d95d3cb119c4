"""Our gateway started with an installer's argument list, in front of the fake hosting cluster.

`installed_gateway` writes the files the installer mounts (under a temporary root standing for the pod's
`/etc`), parses the installer's args with the real command-line parser, and serves them with the real
server on a loopback port. The pod's environment supplies two things a test cannot: the hosting cluster
(in-cluster configuration, here `--kubeconfig` of the fake) and the network (here `--bind-address=127.0.0.1`).
"""

from __future__ import annotations

import asyncio
import copy
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_apiserver.config import Config, parse_config
from gateway_apiserver.server import GatewayServer
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_rbac import Rbac, deploy_documents, deploy_rbac, ocm_component_documents
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import CertKey, client_ssl_context, issue_client_cert, issue_server_cert, make_ca
from tests.fakes.secrets import CREDENTIAL_LABEL

from .installer_args import VELA_CORE_PROXY_CONFIG, VELA_CORE_SERVICE, VELA_CORE_TLS_DIR, in_test_pod

CLUSTERGATEWAYS = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
FRONT_PROXY_CN = "front-proxy-client"


@pytest.fixture(autouse=True)
def pod_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The pod's working directory: where a gateway without TLS flags writes its self-signed certificate."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


def installer_rbac(secret_namespace: str, *, ocm: bool = False) -> Rbac:
    """deploy/'s grants with the Secret reader moved to `secret_namespace` (as `./dev install --secret-namespace`
    does), plus the OCM component for `--ocm-integration`."""
    documents = copy.deepcopy(deploy_documents())
    for doc in documents:
        if doc["kind"] in ("Role", "RoleBinding") and doc["metadata"]["name"] == "gateway-apiserver:cluster-secrets-reader":
            doc["metadata"]["namespace"] = secret_namespace
    return deploy_rbac([*documents, *(ocm_component_documents() if ocm else [])])


def add_token_cluster(api: FakeKubeAPIServer, namespace: str, name: str, member: FakeMemberAPIServer, **data: str) -> None:
    """A ServiceAccountToken cluster Secret for `member` in `namespace` (as `vela cluster join` writes it)."""
    fields: dict[str, str | bytes] = {"endpoint": member.url, "ca.crt": member.ca_pem, "token": member.token, **data}
    api.create_secret(namespace, name, labels={CREDENTIAL_LABEL: "ServiceAccountToken"}, data=fields)


def serving_pair(ca: CertKey, service: str, namespace: str) -> tuple[bytes, bytes]:
    """A serving certificate for a Service (and 127.0.0.1, where the test dials it), as an installer's CA issues it."""
    dns = (service, f"{service}.{namespace}", f"{service}.{namespace}.svc")
    pair = issue_server_cert(ca, dns_names=dns, ip_addresses=("127.0.0.1",))
    return pair.cert_pem, pair.key_pem


def vela_core_files() -> tuple[dict[str, bytes | str], bytes]:
    """What vela-core mounts (the proxy-config ConfigMap; the chart's TLS Secret, secureTLS being the default),
    and the chart's CA, which signed the serving certificate."""
    chart_ca = make_ca("kubevela-cluster-gateway-ca")
    cert, key = serving_pair(chart_ca, VELA_CORE_SERVICE, "vela-system")
    files: dict[str, bytes | str] = {
        "/etc/proxy-config/config.yaml": VELA_CORE_PROXY_CONFIG,
        f"{VELA_CORE_TLS_DIR}/tls.crt": cert,
        f"{VELA_CORE_TLS_DIR}/tls.key": key,
        f"{VELA_CORE_TLS_DIR}/ca": chart_ca.cert_pem,
    }
    return files, chart_ca.cert_pem


def ocm_addon_files() -> tuple[dict[str, bytes | str], bytes]:
    """The add-on manager's serving certificate (its Secret, mounted at /etc/server), and the CA that signed it."""
    ca = make_ca("cluster-gateway-addon-ca")
    cert, key = serving_pair(ca, "cluster-gateway", "vela-system")
    return {"/etc/server/tls.crt": cert, "/etc/server/tls.key": key}, ca.cert_pem


@dataclass
class InstalledGateway:
    """A gateway started from an installer's args, the parsed Config, and the trust a client needs."""

    api: FakeKubeAPIServer
    server: GatewayServer
    config: Config
    argv: list[str]
    serving_ca_pem: bytes
    front_proxy_ca: CertKey

    @property
    def url(self) -> str:
        """https://127.0.0.1:<port>"""
        return f"https://127.0.0.1:{self.server.port}"

    def ssl_context(self, client: CertKey | None = None) -> ssl.SSLContext:
        """A client context trusting the installer's serving CA (or the self-signed certificate)."""
        return client_ssl_context(self.serving_ca_pem, client)

    def session(self, client: CertKey | None = None, **kwargs: Any) -> aiohttp.ClientSession:
        """An aiohttp client bound to the gateway, with no credentials unless given."""
        return aiohttp.ClientSession(base_url=self.url, connector=aiohttp.TCPConnector(ssl=self.ssl_context(client)), **kwargs)

    def via_aggregator(self, user: str, *groups: str) -> aiohttp.ClientSession:
        """A client as the kube-aggregator forwards `user`: its front-proxy certificate and X-Remote-* headers."""
        headers = [("X-Remote-User", user), *(("X-Remote-Group", g) for g in groups)]
        return self.session(issue_client_cert(self.front_proxy_ca, FRONT_PROXY_CN), headers=headers)

    def reviews(self) -> list[dict[str, Any]]:
        """The SubjectAccessReview specs the hosting cluster received, in order."""
        return [review["spec"] for review in self.api.access_review_log]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Pod:
    """An installer's pod as a test runs it: its command line, its port, and the aggregator's CA it trusts."""

    argv: list[str]
    port: int
    front_proxy_ca: CertKey


def prepare_pod(
    tmp_path: Path,
    api: FakeKubeAPIServer,
    args: list[str],
    mounts: Mapping[str, bytes | str] | None = None,
    *,
    token: str | None = None,
) -> Pod:
    """Write `mounts` (pod path -> content) under a temporary root, publish a fresh front-proxy CA in the
    hosting cluster's trust ConfigMap, and give `args` the test's paths, port, address and kubeconfig
    (with the pod's ServiceAccount `token`, by default the one deploy/rbac.yaml creates)."""
    root = tmp_path / "pod"
    for pod_path, content in (mounts or {}).items():
        path = root / pod_path.removeprefix("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    front_proxy_ca = make_ca("front-proxy-ca")
    api.set_authentication_configmap(requestheader_ca_pem=front_proxy_ca.cert_pem, allowed_names=(FRONT_PROXY_CN,))
    kubeconfig = api.write_kubeconfig(tmp_path / "in-cluster.kubeconfig", token=token)
    port = _free_port()
    argv = [*in_test_pod(args, root, port), "--bind-address=127.0.0.1", f"--kubeconfig={kubeconfig}"]
    return Pod(argv, port, front_proxy_ca)


async def wait_ready(session: aiohttp.ClientSession) -> None:
    """Poll /readyz until 200 (the trust ConfigMap and the Secrets loaded), at most 10 s."""
    for _ in range(200):
        try:
            async with session.get("/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass  # a separate process may not listen yet
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway did not become ready within 10s")


@asynccontextmanager
async def installed_gateway(
    tmp_path: Path,
    api: FakeKubeAPIServer,
    args: list[str],
    *,
    mounts: Mapping[str, bytes | str] | None = None,
    serving_ca_pem: bytes | None = None,
    token: str | None = None,
) -> AsyncIterator[InstalledGateway]:
    """Start our gateway in this process with an installer's `args` once `mounts` are written, and wait
    until ready. `serving_ca_pem` is the CA that signed a mounted serving certificate (default: the
    self-signed one the gateway writes)."""
    pod = prepare_pod(tmp_path, api, args, mounts, token=token)
    config = parse_config(pod.argv)
    server = GatewayServer(config)
    await server.start()
    try:
        assert server.cert is not None
        ca_pem = serving_ca_pem if serving_ca_pem is not None else server.cert.cert_file.read_bytes()
        gateway = InstalledGateway(api, server, config, pod.argv, ca_pem, pod.front_proxy_ca)
        async with gateway.session() as session:
            await wait_ready(session)
        yield gateway
    finally:
        await server.stop()
