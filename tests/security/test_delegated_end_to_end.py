"""Hosting-cluster mode security end to end, over real TLS with real client certificates.

The fake hosting kube-apiserver serves TokenReview, SubjectAccessReview (a policy table) and
the extension-apiserver-authentication ConfigMap; the gateway runs for real in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_apiserver.config import Config
from gateway_apiserver.server import GatewayServer
from tests.fakes.gateway import ManualSecretSource
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.pki import CertKey, client_ssl_context, issue_client_cert, make_ca
from tests.fakes.secrets import cluster_secret

CG = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"


@dataclass
class Setup:
    hosting: FakeKubeAPIServer
    gateway: GatewayServer
    url: str
    front_proxy_ca: CertKey
    client_ca: CertKey

    def context(self, client: CertKey | None = None) -> ssl.SSLContext:
        assert self.gateway.cert is not None
        return client_ssl_context(self.gateway.cert.cert_file.read_bytes(), client)

    async def call(
        self, method: str, path: str, *, client: CertKey | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.context(client))) as s,
            s.request(method, self.url + path, headers=headers or {}) as resp,
        ):
            raw = await resp.read()
            try:
                return resp.status, json.loads(raw)
            except ValueError:  # a watch stream (several JSON lines) or plain text
                return resp.status, raw.decode()

    def reviewed_users(self) -> list[str]:
        return [r["spec"]["user"] for r in self.hosting.access_review_log]


@pytest.fixture
async def setup(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> AsyncIterator[Setup]:
    async with started(tmp_path, kube_apiserver, authorize_proxy_subpath=False) as built:
        yield built


@pytest.fixture
async def setup_with_subpath(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> AsyncIterator[Setup]:
    async with started(tmp_path, kube_apiserver, authorize_proxy_subpath=True) as built:
        yield built


@contextlib.asynccontextmanager
async def started(tmp_path: Path, kube_apiserver: FakeKubeAPIServer, *, authorize_proxy_subpath: bool) -> AsyncIterator[Setup]:
    front_proxy_ca, client_ca = make_ca("front-proxy-ca"), make_ca("client-ca")
    kube_apiserver.set_authentication_configmap(
        requestheader_ca_pem=front_proxy_ca.cert_pem, client_ca_pem=client_ca.cert_pem, allowed_names=("front-proxy-client",)
    )
    kube_apiserver.users["alice-token"] = {"username": "alice", "uid": "a-1", "groups": ["devs"]}
    kube_apiserver.policy = [
        PolicyRule(
            users=("alice",), verbs=("get", "list", "watch"), api_groups=("cluster.core.oam.dev",), resources=("clustergateways",)
        ),
        PolicyRule(
            users=("bob",),
            verbs=("get", "create"),
            api_groups=("cluster.core.oam.dev",),
            resources=("clustergateways/proxy",),
            names=("c1",),
        ),
        PolicyRule(users=("bob",), verbs=("list",), resources=("configmaps",), namespaces=("x",)),  # on the hub
        PolicyRule(groups=("system:masters",)),
    ]
    config = Config(
        secure_port=0,
        bind_address="127.0.0.1",
        cert_dir=tmp_path / "certs",
        kubeconfig=kube_apiserver.write_kubeconfig(tmp_path / "hosting.kubeconfig"),
        tls_reload_interval=0.1,
        authorize_proxy_subpath=authorize_proxy_subpath,
    )
    gateway = GatewayServer(config, source=ManualSecretSource([cluster_secret("c1"), cluster_secret("c2")]))
    await gateway.start()
    try:
        setup = Setup(kube_apiserver, gateway, f"https://127.0.0.1:{gateway.port}", front_proxy_ca, client_ca)
        for _ in range(100):  # ready once the trust ConfigMap and the Secrets are loaded
            status, _ = await setup.call("GET", "/readyz")
            if status == 200:
                break
            await asyncio.sleep(0.05)
        yield setup
    finally:
        await gateway.stop()


async def test_front_proxy_identity_is_trusted_with_the_right_certificate(setup: Setup) -> None:
    proxy_cert = issue_client_cert(setup.front_proxy_ca, "front-proxy-client")
    status, body = await setup.call(
        "GET", f"{CG}/c1", client=proxy_cert, headers={"X-Remote-User": "alice", "X-Remote-Group": "devs"}
    )
    assert status == 200, body
    [spec] = [r["spec"] for r in setup.hosting.access_review_log]
    assert (spec["user"], spec["groups"]) == ("alice", ["devs", "system:authenticated"])
    assert spec["resourceAttributes"] == {
        "verb": "get",
        "group": "cluster.core.oam.dev",
        "version": "v1alpha1",
        "resource": "clustergateways",
        "name": "c1",
    }


async def test_x_remote_headers_without_a_front_proxy_certificate_are_ignored(setup: Setup) -> None:
    status, body = await setup.call("GET", CG, headers={"X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
    assert status == 403
    assert body["message"].startswith('clustergateways.cluster.core.oam.dev is forbidden: User "system:anonymous" cannot list')
    assert setup.reviewed_users() == ["system:anonymous"]


async def test_a_certificate_from_another_ca_never_becomes_the_front_proxy(setup: Setup) -> None:
    rogue = issue_client_cert(make_ca("front-proxy-ca"), "front-proxy-client")  # same names, other key
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        status, _ = await setup.call("GET", CG, client=rogue, headers={"X-Remote-User": "admin"})
        assert status != 200  # if the handshake were ever accepted, it must still not be admin
    assert "admin" not in setup.reviewed_users()


async def test_an_allowed_ca_with_an_unlisted_cn_is_refused(setup: Setup) -> None:
    unlisted = issue_client_cert(setup.front_proxy_ca, "someone-else")
    status, body = await setup.call("GET", CG, client=unlisted, headers={"X-Remote-User": "admin"})
    assert (status, body["reason"]) == (401, "Unauthorized")
    assert setup.reviewed_users() == []


async def test_client_certificates_give_cn_and_organisations(setup: Setup) -> None:
    cert = issue_client_cert(setup.client_ca, "carol", groups=("system:masters",))
    status, _ = await setup.call("GET", CG, client=cert)
    assert status == 200
    assert setup.reviewed_users() == ["carol"]


async def test_good_and_bad_tokens(setup: Setup) -> None:
    status, _ = await setup.call("GET", CG, headers={"Authorization": "Bearer alice-token"})
    assert status == 200
    status, body = await setup.call("GET", CG, headers={"Authorization": "Bearer wrong"})
    assert (status, body["kind"], body["reason"], body["message"]) == (401, "Status", "Unauthorized", "Unauthorized")
    # Cached: a second call with the same token makes no new TokenReview.
    reviews = setup.hosting.token_reviews
    await setup.call("GET", CG, headers={"Authorization": "Bearer alice-token"})
    assert setup.hosting.token_reviews == reviews


@pytest.mark.parametrize(
    ("user", "method", "path", "allowed", "verb_resource"),
    [
        ("alice", "GET", f"{CG}/c1", True, ""),
        ("alice", "GET", CG, True, ""),
        ("alice", "GET", f"{CG}?watch=true&timeoutSeconds=1", True, ""),
        ("alice", "GET", f"{CG}/c1/proxy/api/v1/pods", False, 'cannot get resource "clustergateways/proxy"'),
        ("bob", "GET", f"{CG}/c1/proxy/api/v1/pods", True, ""),
        ("bob", "POST", f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps", True, ""),
        (
            "bob",
            "PUT",
            f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps/y",
            False,
            'cannot update resource "clustergateways/proxy"',
        ),
        (
            "bob",
            "PATCH",
            f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps/y",
            False,
            'cannot patch resource "clustergateways/proxy"',
        ),
        (
            "bob",
            "DELETE",
            f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps/y",
            False,
            'cannot delete resource "clustergateways/proxy"',
        ),
        ("bob", "GET", f"{CG}/c2/proxy/api/v1/pods", False, 'cannot get resource "clustergateways/proxy"'),
        ("bob", "GET", CG, False, 'cannot list resource "clustergateways"'),
        ("bob", "GET", f"{CG}?watch=1", False, 'cannot watch resource "clustergateways"'),
    ],
)
async def test_subject_access_review_decides_each_verb(
    setup: Setup, user: str, method: str, path: str, allowed: bool, verb_resource: str
) -> None:
    proxy_cert = issue_client_cert(setup.front_proxy_ca, "front-proxy-client")
    status, body = await setup.call(method, path, client=proxy_cert, headers={"X-Remote-User": user})
    if allowed:
        assert status != 403, body
    else:
        assert status == 403
        assert body["reason"] == "Forbidden"
        assert f'User "{user}" {verb_resource} in API group "cluster.core.oam.dev" at the cluster scope' in body["message"]


async def test_the_exact_403_message(setup: Setup) -> None:
    proxy_cert = issue_client_cert(setup.front_proxy_ca, "front-proxy-client")
    status, body = await setup.call("GET", f"{CG}/c1/proxy/api/v1/pods", client=proxy_cert, headers={"X-Remote-User": "alice"})
    assert status == 403
    assert body["message"] == (
        'clustergateways.cluster.core.oam.dev "c1" is forbidden: User "alice" cannot get resource "clustergateways/proxy" '
        'in API group "cluster.core.oam.dev" at the cluster scope'
    )


async def test_a_rotated_front_proxy_ca_in_the_configmap_is_picked_up(setup: Setup) -> None:
    new_ca = make_ca("front-proxy-ca-2")
    setup.hosting.set_authentication_configmap(requestheader_ca_pem=new_ca.cert_pem, client_ca_pem=setup.client_ca.cert_pem)
    new_proxy = issue_client_cert(new_ca, "front-proxy-client")
    for _ in range(100):
        try:
            status, _ = await setup.call("GET", f"{CG}/c1", client=new_proxy, headers={"X-Remote-User": "alice"})
            if status == 200:
                break
        except (aiohttp.ClientError, ssl.SSLError, ConnectionError):
            pass
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the rotated front-proxy CA was not accepted")
    old_proxy = issue_client_cert(setup.front_proxy_ca, "front-proxy-client")
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        status, _ = await setup.call("GET", f"{CG}/c1", client=old_proxy, headers={"X-Remote-User": "admin"})
        assert status != 200


async def test_probes_and_discovery_need_no_authorization(setup: Setup) -> None:
    for path in ("/readyz", "/livez", "/healthz", "/version", "/apis", "/apis/cluster.core.oam.dev/v1alpha1", "/openapi/v2"):
        status, _ = await setup.call("GET", path)
        assert status == 200, path
    assert setup.reviewed_users() == []


async def test_authorize_proxy_subpath_also_checks_the_inner_request_against_the_hub(setup_with_subpath: Setup) -> None:
    setup = setup_with_subpath
    proxy_cert = issue_client_cert(setup.front_proxy_ca, "front-proxy-client")
    bob = {"X-Remote-User": "bob"}
    status, body = await setup.call("GET", f"{CG}/c1/proxy/api/v1/pods", client=proxy_cert, headers=bob)
    assert status == 403
    assert body["message"] == 'pods is forbidden: User "bob" cannot list resource "pods" in API group "" at the cluster scope'
    status, body = await setup.call("GET", f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps", client=proxy_cert, headers=bob)
    assert status != 403, body
    inner = [r["spec"].get("resourceAttributes") for r in setup.hosting.access_review_log]
    assert {"verb": "list", "group": "", "version": "v1", "resource": "configmaps", "namespace": "x"} in inner


async def test_without_authorize_proxy_subpath_only_the_proxy_subresource_is_checked(setup: Setup) -> None:
    proxy_cert = issue_client_cert(setup.front_proxy_ca, "front-proxy-client")
    status, _ = await setup.call("GET", f"{CG}/c1/proxy/api/v1/pods", client=proxy_cert, headers={"X-Remote-User": "bob"})
    assert status != 403
    assert all(r["spec"]["resourceAttributes"]["resource"] == "clustergateways" for r in setup.hosting.access_review_log)
