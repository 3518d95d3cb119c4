"""Swap the image, change nothing else: our gateway runs with each installer's argument list verbatim.

For KubeVela's vela-core chart, cluster-gateway's own chart and the OCM add-on manager, the args the
installer writes into the Deployment (see installer_args.py for the sources) are parsed by our real
command-line parser and served by our real server in front of the fake hosting cluster. Each test
checks what the installation relies on: the gateway is ready, lists clustergateways from the Secret
namespace the installer names, proxies to a member, and honours the files the installer mounts.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.member_rbac import Identity
from tests.fakes.pki import make_ca

from .conftest import (
    CLUSTERGATEWAYS,
    InstalledGateway,
    add_token_cluster,
    installed_gateway,
    installer_rbac,
    ocm_addon_files,
    vela_core_files,
)
from .installer_args import (
    REFERENCE_CHART_SECRET_NAMESPACE,
    ocm_addon_args,
    reference_chart_args,
    vela_core_args,
)

pytestmark = pytest.mark.timeout(30)
OPERATOR = PolicyRule(users=("operator",), api_groups=("cluster.core.oam.dev",))  # may list and proxy every cluster
CONFIGMAPS = "api/v1/namespaces/default/configmaps"


def vela_core_gateway(tmp_path: Path, api: FakeKubeAPIServer, **values: Any) -> AbstractAsyncContextManager[InstalledGateway]:
    """The gateway as vela-core (release `kubevela` in vela-system) runs it, with chart `values`."""
    mounts, chart_ca_pem = vela_core_files()
    return installed_gateway(tmp_path, api, vela_core_args(**values), mounts=mounts, serving_ca_pem=chart_ca_pem)


async def listed(gw: InstalledGateway, user: str = "operator") -> tuple[int, list[str]]:
    """The status and cluster names of a list of clustergateways, forwarded by the aggregator for `user`."""
    async with gw.via_aggregator(user) as s, s.get(CLUSTERGATEWAYS) as resp:
        body = await resp.json()
        return resp.status, [item["metadata"]["name"] for item in body.get("items", [])]


async def proxied_configmaps(gw: InstalledGateway, cluster: str, user: str = "operator") -> tuple[int, dict[str, Any]]:
    """A list of the member's ConfigMaps through `cluster`'s proxy subresource."""
    async with gw.via_aggregator(user) as s, s.get(f"{CLUSTERGATEWAYS}/{cluster}/proxy/{CONFIGMAPS}") as resp:
        return resp.status, await resp.json()


def with_whoami(member: FakeMemberAPIServer, name: str) -> FakeMemberAPIServer:
    """`member` holding the ConfigMap default/whoami that names it."""
    member.store.create("configmaps", "default", {"metadata": {"name": "whoami"}, "data": {"member": name}})
    return member


def whoami(body: dict[str, Any]) -> list[str]:
    return [item["data"]["member"] for item in body["items"]]


# --- KubeVela's vela-core chart -----------------------------------------------------------------


async def test_vela_core_chart_args_serve_the_release_namespace_and_proxy(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, member: FakeMemberAPIServer
) -> None:
    """The chart's defaults: Secrets in the release namespace, the chart's serving certificate, the proxy config mounted."""
    kube_apiserver.policy = [OPERATOR]
    add_token_cluster(kube_apiserver, "vela-system", "member-1", with_whoami(member, "member-1"))
    async with vela_core_gateway(tmp_path, kube_apiserver) as gw:
        assert (gw.config.secret_namespace, gw.config.tls_cert_file) == (
            "vela-system",
            tmp_path / "pod/etc/k8s-cluster-gateway-certs/tls.crt",
        )
        assert gw.config.feature_gates["ClientIdentityPenetration"] is False
        assert await listed(gw) == (200, ["member-1"])
        status, body = await proxied_configmaps(gw, "member-1")
        assert (status, whoami(body)) == (200, ["member-1"])


async def test_vela_core_always_allow_paths_skip_authorization_for_anonymous_probes_and_metrics(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer
) -> None:
    """`--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics`: anonymous callers (kubelet probes,
    Prometheus scraping https://:9443/metrics as the chart's annotations ask) are not reviewed."""
    async with vela_core_gateway(tmp_path, kube_apiserver) as gw, gw.session() as s:
        answers = {}
        for path in ("/healthz", "/readyz", "/livez", "/metrics"):
            async with s.get(path) as resp:
                answers[path] = (resp.status, await resp.text())
        scraped = answers.pop("/metrics")
        assert gw.reviews() == []
        async with s.get(CLUSTERGATEWAYS) as resp:  # any other path is still authorized
            denied = (resp.status, (await resp.json())["message"])
        assert [(r["user"], r.get("nonResourceAttributes"), r["resourceAttributes"]["verb"]) for r in gw.reviews()] == [
            ("system:anonymous", None, "list")
        ]
    assert denied == (
        403,
        'clustergateways.cluster.core.oam.dev is forbidden: User "system:anonymous" cannot list resource "clustergateways" '
        'in API group "cluster.core.oam.dev" at the cluster scope',
    )
    assert answers == {
        "/healthz": (200, "ok"),
        "/readyz": (200, "ok"),
        "/livez": (200, "ok"),
    }
    assert scraped[0] == 200
    assert "# TYPE ocm_proxy_proxied_requests_by_cluster_total counter" in scraped[1]


async def test_vela_core_with_authentication_exchanges_identities_by_the_mounted_rules(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, member: FakeMemberAPIServer
) -> None:
    """`authentication.enabled=true` turns ClientIdentityPenetration on: a caller reaches the member as
    itself (impersonated), except a caller in `kubevela:ux`, whom the mounted rule `super-user`
    sends with the gateway's own credential."""
    kube_apiserver.policy = [PolicyRule(groups=("devs", "kubevela:ux"), api_groups=("cluster.core.oam.dev",))]
    add_token_cluster(kube_apiserver, "vela-system", "member-1", member)
    async with vela_core_gateway(tmp_path, kube_apiserver, authentication=True) as gw:
        assert gw.config.feature_gates["ClientIdentityPenetration"] is True
        for user, group in (("alice", "devs"), ("ux-backend", "kubevela:ux")):
            async with gw.via_aggregator(user, group) as s, s.get(f"{CLUSTERGATEWAYS}/member-1/proxy/echo/{user}") as resp:
                assert resp.status == 200, await resp.text()
    alice, ux = member.requests_to("/echo/alice"), member.requests_to("/echo/ux-backend")
    assert [(r.acting_as, r.headers.getall("Impersonate-User", [])) for r in (*alice, *ux)] == [
        (Identity("alice", ("devs", "system:authenticated")), ["alice"]),
        (Identity("member-admin", ("system:masters", "system:authenticated")), []),
    ]


# --- cluster-gateway's own chart ----------------------------------------------------------------


async def test_reference_chart_args_serve_its_secret_namespace_with_a_self_signed_certificate(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, member: FakeMemberAPIServer, pod_workdir: Path
) -> None:
    """The chart's defaults: Secrets in open-cluster-management-credentials, no TLS flag (a self-signed
    certificate in the working directory, as the reference writes one), and an empty `--feature-gates=`."""
    kube_apiserver.rbac = installer_rbac(REFERENCE_CHART_SECRET_NAMESPACE)
    kube_apiserver.policy = [OPERATOR]
    add_token_cluster(kube_apiserver, REFERENCE_CHART_SECRET_NAMESPACE, "member-1", with_whoami(member, "member-1"))
    add_token_cluster(kube_apiserver, "vela-system", "elsewhere", member)  # another namespace: not ours to serve
    args = reference_chart_args()
    assert args[-1] == "--feature-gates="
    async with installed_gateway(tmp_path, kube_apiserver, args) as gw:
        assert gw.config.tls_cert_file is None
        assert gw.server.cert is not None and (pod_workdir / gw.server.cert.cert_file).is_file()
        assert await listed(gw) == (200, ["member-1"])
        status, body = await proxied_configmaps(gw, "member-1")
        assert (status, whoami(body)) == (200, ["member-1"])


async def test_reference_chart_feature_gate_values_keep_their_meaning(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> None:
    """featureGate.healthiness and featureGate.secretCache each render a gate followed by a comma."""
    kube_apiserver.rbac = installer_rbac(REFERENCE_CHART_SECRET_NAMESPACE)
    args = reference_chart_args(healthiness=True, secret_cache=True)
    assert args[-1] == "--feature-gates=HealthinessCheck=true,SecretCache=true,"
    async with installed_gateway(tmp_path, kube_apiserver, args) as gw:
        assert (gw.config.feature_gates["HealthinessCheck"], gw.config.feature_gates["SecretCache"]) == (True, True)


async def test_reference_chart_with_the_cluster_proxy_starts_and_lists(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> None:
    """ocmIntegration.enabled with clusterProxy.enabled adds the Konnectivity flags (--proxy-host and the
    others), which are accepted; the gateway starts and lists its clusters."""
    kube_apiserver.rbac = installer_rbac(REFERENCE_CHART_SECRET_NAMESPACE, ocm=True)
    kube_apiserver.install_managed_cluster_crd()
    kube_apiserver.policy = [OPERATOR]
    ca = make_ca("proxy-server-ca")
    client = make_ca("proxy-client")  # any PEM pair: nothing dials the proxy in this test
    mounts = {"/etc/ca/ca.crt": ca.cert_pem, "/etc/tls/tls.crt": client.cert_pem, "/etc/tls/tls.key": client.key_pem}
    args = reference_chart_args(ocm_integration=True, cluster_proxy=True)
    async with installed_gateway(tmp_path, kube_apiserver, args, mounts=mounts) as gw:
        assert gw.config.ocm_integration is True
        assert await listed(gw) == (200, [])


# --- the OCM add-on manager ---------------------------------------------------------------------


async def test_ocm_addon_args_take_the_endpoint_from_the_managed_cluster(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, member: FakeMemberAPIServer
) -> None:
    """The add-on's Direct egress (the default): --ocm-integration=true, its mounted certificate, two gates.
    The Secret holds only the credential; the ManagedCluster of the same name gives the endpoint and CA."""
    kube_apiserver.rbac = installer_rbac(REFERENCE_CHART_SECRET_NAMESPACE, ocm=True)
    kube_apiserver.install_managed_cluster_crd()
    kube_apiserver.policy = [OPERATOR]
    kube_apiserver.create_managed_cluster("member-1", url=member.url, ca_pem=member.ca_pem)
    with_whoami(member, "member-1")
    kube_apiserver.create_secret(
        REFERENCE_CHART_SECRET_NAMESPACE,
        "member-1",
        labels={"cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken"},
        data={"token": member.token},
    )
    mounts, ca_pem = ocm_addon_files()
    async with installed_gateway(tmp_path, kube_apiserver, ocm_addon_args(), mounts=mounts, serving_ca_pem=ca_pem) as gw:
        gates = gw.config.feature_gates
        assert (gw.config.ocm_integration, gates["HealthinessCheck"], gates["SecretCache"]) == (True, True, True)
        assert await listed(gw) == (200, ["member-1"])
        status, body = await proxied_configmaps(gw, "member-1")
        assert (status, whoami(body)) == (200, ["member-1"])


async def test_ocm_addon_args_with_the_cluster_proxy_egress_start_and_list(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer
) -> None:
    """konnectivityEgress: the ClusterProxy egress adds --proxy-host/--proxy-port/--proxy-ca-cert/--proxy-cert/
    --proxy-key, which are accepted; the gateway starts and lists its clusters."""
    kube_apiserver.rbac = installer_rbac(REFERENCE_CHART_SECRET_NAMESPACE, ocm=True)
    kube_apiserver.install_managed_cluster_crd()
    kube_apiserver.policy = [OPERATOR]
    mounts, ca_pem = ocm_addon_files()
    proxy_ca, proxy_client = make_ca("proxy-server-ca"), make_ca("proxy-client")
    mounts |= {
        "/etc/ca/ca.crt": proxy_ca.cert_pem,
        "/etc/tls/tls.crt": proxy_client.cert_pem,
        "/etc/tls/tls.key": proxy_client.key_pem,
    }
    args = ocm_addon_args(cluster_proxy=True)
    async with installed_gateway(tmp_path, kube_apiserver, args, mounts=mounts, serving_ca_pem=ca_pem) as gw:
        assert await listed(gw) == (200, [])
