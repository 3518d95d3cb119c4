"""Hosting-cluster mode security end to end, over real TLS with real client certificates.

The fake hosting kube-apiserver serves TokenReview, SubjectAccessReview (a policy table) and
the extension-apiserver-authentication ConfigMap; the gateway runs for real in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_apiserver.server import GatewayServer
from tests.fakes.gateway import write_kubeconfig
from tests.fakes.hosting import add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.pki import CertKey, client_ssl_context, issue_client_cert, make_ca
from tests.fakes.proxying import eventually

CG = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
AUTHENTICATED = "system:authenticated"


def cg(verb: str, name: str = "", subresource: str = "") -> dict[str, str]:
    """The resourceAttributes of a SubjectAccessReview about clustergateways."""
    spec = {"verb": verb, "group": "cluster.core.oam.dev", "version": "v1alpha1", "resource": "clustergateways"}
    return spec | ({"subresource": subresource} if subresource else {}) | ({"name": name} if name else {})


def core(verb: str, resource: str, *, name: str = "", namespace: str = "", subresource: str = "") -> dict[str, str]:
    """The resourceAttributes of a SubjectAccessReview about a core (group "") resource."""
    spec = {"verb": verb, "group": "", "version": "v1", "resource": resource}
    extra = {"subresource": subresource, "name": name, "namespace": namespace}
    return spec | {k: v for k, v in extra.items() if v}


def review(user: str, attributes: dict[str, str], groups: tuple[str, ...] = (AUTHENTICATED,)) -> dict[str, Any]:
    """A SubjectAccessReview spec for a front-proxy user without extra or uid."""
    return {"user": user, "groups": list(groups), "resourceAttributes": attributes}


def unreachable(cluster: str) -> dict[str, Any]:
    """What an allowed proxy request gets: the gateway dialled the member, which nothing serves here."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'cluster "{cluster}" unreachable: connecting to 127.0.0.1:6443 failed: connection refused',
        "reason": "ServiceUnavailable",
        "code": 503,
    }


def forbidden(message: str, details: dict[str, str]) -> dict[str, Any]:
    """The kube-apiserver's 403 Status."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "details": details,
        "code": 403,
    }


def names_in(body: Any) -> tuple[str, list[str]]:
    """The kind and object names of a ClusterGateway or ClusterGatewayList body."""
    items = body.get("items", [body])
    return body["kind"], [item["metadata"]["name"] for item in items]


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

    def reviewed(self) -> list[dict[str, Any]]:
        """The `spec` of every SubjectAccessReview the gateway sent, in order."""
        return [r["spec"] for r in self.hosting.access_review_log]

    def front_proxy(self) -> CertKey:
        return issue_client_cert(self.front_proxy_ca, "front-proxy-client")


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
    """The shared hosting-mode gateway (tests/fakes/hosting.py) with alice, bob and two clusters."""
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
    for name in ("c1", "c2"):
        add_cluster(kube_apiserver, name, "https://127.0.0.1:6443", token="member-token")
    overrides = {"tls_reload_interval": 0.1, "authorize_proxy_subpath": authorize_proxy_subpath}
    async with hosting_gateway(tmp_path, kube_apiserver, **overrides) as gw:
        yield Setup(kube_apiserver, gw.server, gw.url, gw.front_proxy_ca, gw.client_ca)


async def test_front_proxy_identity_is_trusted_with_the_right_certificate(setup: Setup) -> None:
    status, body = await setup.call(
        "GET", f"{CG}/c1", client=setup.front_proxy(), headers={"X-Remote-User": "alice", "X-Remote-Group": "devs"}
    )
    assert (status, names_in(body)) == (200, ("ClusterGateway", ["c1"]))
    assert setup.reviewed() == [review("alice", cg("get", "c1"), ("devs", AUTHENTICATED))]


async def test_x_remote_headers_without_a_front_proxy_certificate_are_ignored(setup: Setup) -> None:
    status, body = await setup.call("GET", CG, headers={"X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
    assert (status, body) == (
        403,
        forbidden(
            'clustergateways.cluster.core.oam.dev is forbidden: User "system:anonymous" cannot list resource '
            '"clustergateways" in API group "cluster.core.oam.dev" at the cluster scope',
            {"group": "cluster.core.oam.dev", "kind": "clustergateways"},
        ),
    )
    assert setup.reviewed() == [review("system:anonymous", cg("list"), ("system:unauthenticated",))]


async def test_a_certificate_from_another_ca_never_becomes_the_front_proxy(setup: Setup) -> None:
    rogue = issue_client_cert(make_ca("front-proxy-ca"), "front-proxy-client")  # same names, other key
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await setup.call("GET", CG, client=rogue, headers={"X-Remote-User": "admin"})
    assert setup.reviewed() == []


async def test_an_allowed_ca_with_an_unlisted_cn_is_refused(setup: Setup) -> None:
    unlisted = issue_client_cert(setup.front_proxy_ca, "someone-else")
    status, body = await setup.call("GET", CG, client=unlisted, headers={"X-Remote-User": "admin"})
    assert (status, body["kind"], body["reason"], body["code"]) == (401, "Status", "Unauthorized", 401)
    assert setup.reviewed() == []


async def test_client_certificates_give_cn_and_organisations(setup: Setup) -> None:
    cert = issue_client_cert(setup.client_ca, "alice", groups=("devs", "qa"))
    status, body = await setup.call("GET", CG, client=cert)
    assert (status, names_in(body)) == (200, ("ClusterGatewayList", ["c1", "c2"]))
    assert setup.reviewed() == [review("alice", cg("list"), ("devs", "qa", AUTHENTICATED))]


async def test_system_masters_is_allowed_without_a_review_as_by_kubes_delegated_authorizer(setup: Setup) -> None:
    """k8s.io/apiserver's delegated authorization allows the group system:masters at once (its
    AlwaysAllowGroups default): the hosting kube-apiserver would grant it everything anyway."""
    cert = issue_client_cert(setup.client_ca, "carol", groups=("system:masters",))
    status, body = await setup.call("GET", CG, client=cert)
    assert (status, names_in(body)) == (200, ("ClusterGatewayList", ["c1", "c2"]))
    status, body = await setup.call("GET", "/metrics-or-any-path", client=cert)
    assert (status, body["reason"]) == (404, "NotFound")  # authorized, then not found
    assert setup.reviewed() == []


async def test_good_and_bad_tokens(setup: Setup) -> None:
    status, body = await setup.call("GET", CG, headers={"Authorization": "Bearer alice-token"})
    assert (status, names_in(body)) == (200, ("ClusterGatewayList", ["c1", "c2"]))
    status, body = await setup.call("GET", CG, headers={"Authorization": "Bearer wrong"})
    assert (status, body["kind"], body["reason"], body["message"]) == (401, "Status", "Unauthorized", "Unauthorized")
    # Cached: a second call with the same token makes no new TokenReview.
    reviews = setup.hosting.token_reviews
    await setup.call("GET", CG, headers={"Authorization": "Bearer alice-token"})
    assert setup.hosting.token_reviews == reviews
    assert setup.reviewed() == [
        {"user": "alice", "uid": "a-1", "groups": ["devs", AUTHENTICATED], "resourceAttributes": cg("list")}
    ]


OK_GET = (200, ("ClusterGateway", ["c1"]))
OK_LIST = (200, ("ClusterGatewayList", ["c1", "c2"]))


@pytest.mark.parametrize(
    ("user", "method", "path", "attributes", "outcome"),
    [
        ("alice", "GET", f"{CG}/c1", cg("get", "c1"), OK_GET),
        ("alice", "GET", CG, cg("list"), OK_LIST),
        ("alice", "GET", f"{CG}?watch=true&timeoutSeconds=1", cg("watch"), (200, ("WATCH", ["c1", "c2"]))),
        # a named GET with watch=1 is a get, as in the kube-apiserver, and is answered with the object
        ("alice", "GET", f"{CG}/c1?watch=1", cg("get", "c1"), OK_GET),
        ("alice", "GET", f"{CG}/c1/proxy/api/v1/pods", cg("get", "c1", "proxy"), 'cannot get resource "clustergateways/proxy"'),
        ("bob", "GET", f"{CG}/c1/proxy/api/v1/pods", cg("get", "c1", "proxy"), (503, unreachable("c1"))),
        ("bob", "POST", f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps", cg("create", "c1", "proxy"), (503, unreachable("c1"))),
        (
            "bob",
            "PUT",
            f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps/y",
            cg("update", "c1", "proxy"),
            'cannot update resource "clustergateways/proxy"',
        ),
        (
            "bob",
            "PATCH",
            f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps/y",
            cg("patch", "c1", "proxy"),
            'cannot patch resource "clustergateways/proxy"',
        ),
        (
            "bob",
            "DELETE",
            f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps/y",
            cg("delete", "c1", "proxy"),
            'cannot delete resource "clustergateways/proxy"',
        ),
        ("bob", "GET", f"{CG}/c2/proxy/api/v1/pods", cg("get", "c2", "proxy"), 'cannot get resource "clustergateways/proxy"'),
        ("bob", "GET", CG, cg("list"), 'cannot list resource "clustergateways"'),
        ("bob", "GET", f"{CG}?watch=1", cg("watch"), 'cannot watch resource "clustergateways"'),
        # dave may read c1 only (resourceNames): naming it by field selector is enough, as in kube
        ("dave", "GET", f"{CG}?fieldSelector=metadata.name%3Dc1", cg("list", "c1"), (200, ("ClusterGatewayList", ["c1"]))),
        ("dave", "GET", f"{CG}?fieldSelector=metadata.name%3Dc2", cg("list", "c2"), 'cannot list resource "clustergateways"'),
        ("dave", "GET", CG, cg("list"), 'cannot list resource "clustergateways"'),
    ],
)
async def test_subject_access_review_decides_each_verb(
    setup: Setup, user: str, method: str, path: str, attributes: dict[str, str], outcome: Any
) -> None:
    allow_dave_c1_only(setup)
    status, body = await setup.call(method, path, client=setup.front_proxy(), headers={"X-Remote-User": user})
    assert setup.reviewed() == [review(user, attributes)]
    if isinstance(outcome, str):  # denied: kube's 403 wording
        name = attributes.get("name")
        subject = f'clustergateways.cluster.core.oam.dev "{name}"' if name else "clustergateways.cluster.core.oam.dev"
        details = {"group": "cluster.core.oam.dev", "kind": "clustergateways"} | ({"name": name} if name else {})
        message = f'{subject} is forbidden: User "{user}" {outcome} in API group "cluster.core.oam.dev" at the cluster scope'
        assert (status, body) == (403, forbidden(message, details))
    elif isinstance(body, str):  # a watch stream
        events = [json.loads(line) for line in body.splitlines()]
        assert (status, ("WATCH", [e["object"]["metadata"]["name"] for e in events])) == outcome
        assert {e["type"] for e in events} == {"ADDED"}
    elif body.get("kind") == "Status":
        assert (status, body) == outcome
    else:
        assert (status, names_in(body)) == outcome


def allow_dave_c1_only(setup: Setup) -> None:
    """dave: get, list and watch of clustergateway c1, by name (RBAC resourceNames)."""
    setup.hosting.policy.insert(
        0,
        PolicyRule(
            users=("dave",),
            verbs=("get", "list", "watch"),
            api_groups=("cluster.core.oam.dev",),
            resources=("clustergateways",),
            names=("c1",),
        ),
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (.ci/run installs it)")
async def test_kubectl_watch_of_one_cluster_by_a_user_allowed_that_cluster_only(setup: Setup, tmp_path: Path) -> None:
    allow_dave_c1_only(setup)
    setup.hosting.users["dave-token"] = {"username": "dave", "uid": "d-1", "groups": ["devs"]}
    assert setup.gateway.cert is not None
    kubeconfig = write_kubeconfig(tmp_path / "dave.kubeconfig", setup.url, setup.gateway.cert.cert_file, "dave-token")
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={tmp_path / 'kubectl-cache'}",
        "get",
        "cg",
        "c1",
        "-w",
        "--request-timeout=20s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 20)).decode() for _ in range(2)]
        assert [line.split()[0] for line in lines] == ["NAME", "c1"], await proc.stderr.read()
        # kubectl prints the row before it opens the watch: let the watch be reviewed before stopping it.
        await eventually(lambda: sum("resourceAttributes" in spec for spec in setup.reviewed()) >= 2, 20)
    finally:
        proc.kill()
        await proc.wait()
    dave = {"user": "dave", "uid": "d-1", "groups": ["devs", AUTHENTICATED]}
    resource_reviews = [spec for spec in setup.reviewed() if "resourceAttributes" in spec]
    # kubectl gets c1, then watches it with fieldSelector=metadata.name=c1: both name c1
    assert resource_reviews == [dave | {"resourceAttributes": cg("get", "c1")}, dave | {"resourceAttributes": cg("watch", "c1")}]
    assert setup.reviewed() == resource_reviews  # discovery needs no review


async def test_the_exact_403_message(setup: Setup) -> None:
    status, body = await setup.call(
        "GET", f"{CG}/c1/proxy/api/v1/pods", client=setup.front_proxy(), headers={"X-Remote-User": "alice"}
    )
    assert (status, body) == (
        403,
        forbidden(
            'clustergateways.cluster.core.oam.dev "c1" is forbidden: User "alice" cannot get resource "clustergateways/proxy" '
            'in API group "cluster.core.oam.dev" at the cluster scope',
            {"group": "cluster.core.oam.dev", "kind": "clustergateways", "name": "c1"},
        ),
    )


async def test_a_rotated_front_proxy_ca_in_the_configmap_is_picked_up(setup: Setup) -> None:
    new_ca = make_ca("front-proxy-ca-2")
    setup.hosting.set_authentication_configmap(requestheader_ca_pem=new_ca.cert_pem, client_ca_pem=setup.client_ca.cert_pem)
    new_proxy = issue_client_cert(new_ca, "front-proxy-client")
    for _ in range(100):
        try:
            status, body = await setup.call("GET", f"{CG}/c1", client=new_proxy, headers={"X-Remote-User": "alice"})
            if status == 200:
                break
        except (aiohttp.ClientError, ssl.SSLError, ConnectionError):
            pass
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the rotated front-proxy CA was not accepted")
    assert names_in(body) == ("ClusterGateway", ["c1"])
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await setup.call("GET", f"{CG}/c1", client=setup.front_proxy(), headers={"X-Remote-User": "admin"})
    assert "admin" not in setup.reviewed_users()


async def test_probes_and_discovery_need_no_authorization(setup: Setup) -> None:
    for path in ("/readyz", "/livez", "/healthz", "/version", "/apis", "/apis/cluster.core.oam.dev/v1alpha1", "/openapi/v2"):
        status, _ = await setup.call("GET", path)
        assert status == 200, path
    assert setup.reviewed() == []


async def test_authorize_proxy_subpath_also_checks_the_inner_request_against_the_hub(setup_with_subpath: Setup) -> None:
    setup = setup_with_subpath
    bob = {"X-Remote-User": "bob"}
    status, body = await setup.call("GET", f"{CG}/c1/proxy/api/v1/pods", client=setup.front_proxy(), headers=bob)
    assert (status, body) == (
        403,
        forbidden(
            'pods is forbidden: User "bob" cannot list resource "pods" in API group "" at the cluster scope',
            {"group": "", "kind": "pods"},
        ),
    )
    status, body = await setup.call(
        "GET", f"{CG}/c1/proxy/api/v1/namespaces/x/configmaps", client=setup.front_proxy(), headers=bob
    )
    assert (status, body) == (503, unreachable("c1"))
    assert setup.reviewed() == [
        review("bob", cg("get", "c1", "proxy")),
        review("bob", core("list", "pods")),
        review("bob", core("list", "configmaps", namespace="x")),  # the allowed outer decision is cached
    ]


@pytest.mark.parametrize(
    ("method", "inner", "attributes", "message", "details"),
    [
        (
            "GET",
            "/api/v1/namespaces/default",
            core("get", "namespaces", name="default", namespace="default"),
            'namespaces "default" is forbidden: User "erin" cannot get resource "namespaces" in API group "" '
            'in the namespace "default"',
            {"group": "", "kind": "namespaces", "name": "default"},
        ),
        (
            "DELETE",
            "/api/v1/namespaces/foo",
            core("delete", "namespaces", name="foo", namespace="foo"),
            'namespaces "foo" is forbidden: User "erin" cannot delete resource "namespaces" in API group "" '
            'in the namespace "foo"',
            {"group": "", "kind": "namespaces", "name": "foo"},
        ),
        (
            "GET",
            "/api/v1/namespaces/foo/status",
            core("get", "namespaces", name="foo", namespace="foo", subresource="status"),
            'namespaces "foo" is forbidden: User "erin" cannot get resource "namespaces/status" in API group "" '
            'in the namespace "foo"',
            {"group": "", "kind": "namespaces", "name": "foo"},
        ),
        (
            "GET",
            "/api/v1/namespaces/x/configmaps?fieldSelector=metadata.name%3Dcm&watch=1",
            core("watch", "configmaps", name="cm", namespace="x"),
            'configmaps "cm" is forbidden: User "erin" cannot watch resource "configmaps" in API group "" in the namespace "x"',
            {"group": "", "kind": "configmaps", "name": "cm"},
        ),
    ],
)
async def test_authorize_proxy_subpath_reads_member_paths_as_kube_does(
    setup_with_subpath: Setup, method: str, inner: str, attributes: dict[str, str], message: str, details: dict[str, str]
) -> None:
    setup = setup_with_subpath
    setup.hosting.policy.insert(
        0,
        PolicyRule(
            users=("erin",), verbs=("get", "delete"), api_groups=("cluster.core.oam.dev",), resources=("clustergateways/proxy",)
        ),
    )
    status, body = await setup.call(
        method, f"{CG}/c1/proxy{inner}", client=setup.front_proxy(), headers={"X-Remote-User": "erin"}
    )
    assert (status, body) == (403, forbidden(message, details))
    outer = cg("delete" if method == "DELETE" else "get", "c1", "proxy")
    assert setup.reviewed() == [review("erin", outer), review("erin", attributes)]


async def test_without_authorize_proxy_subpath_only_the_proxy_subresource_is_checked(setup: Setup) -> None:
    status, body = await setup.call(
        "GET", f"{CG}/c1/proxy/api/v1/pods", client=setup.front_proxy(), headers={"X-Remote-User": "bob"}
    )
    assert (status, body) == (503, unreachable("c1"))
    assert setup.reviewed() == [review("bob", cg("get", "c1", "proxy"))]
