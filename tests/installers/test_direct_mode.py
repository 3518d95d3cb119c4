"""KubeVela's direct mode (`multicluster.clusterGateway.direct: true`, the vela-core chart's default).

The vela-core controller then skips the aggregator: it calls `https://kubevela-cluster-gateway-service:9443`
itself (its flags `--cluster-gateway-url` and `--cluster-gateway-ca-file=/cluster-gateway-tls-cert/ca`),
with its ServiceAccount token, trusting only the `ca` of the chart's TLS Secret. No front-proxy certificate,
no X-Remote-* headers: the gateway authenticates the token by TokenReview and authorizes it by
SubjectAccessReview, both answered by the hosting cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer

from .conftest import CLUSTERGATEWAYS, InstalledGateway, add_token_cluster, installed_gateway, vela_core_files
from .installer_args import vela_core_args

pytestmark = pytest.mark.timeout(30)

# The controller's ServiceAccount: kubevela.serviceAccountName, i.e. the chart's fullname for release `kubevela`.
CONTROLLER = "system:serviceaccount:vela-system:kubevela-vela-core"
CONTROLLER_TOKEN = "kubevela-vela-core-token"


def controller_session(gw: InstalledGateway, chart_ca_pem: bytes) -> aiohttp.ClientSession:
    """The controller's direct client: its token, the chart's CA, nothing else."""
    connector = aiohttp.TCPConnector(ssl=gw.ssl_context())
    assert gw.serving_ca_pem == chart_ca_pem  # trusts the chart's CA only
    return aiohttp.ClientSession(base_url=gw.url, connector=connector, headers={"Authorization": f"Bearer {CONTROLLER_TOKEN}"})


async def direct_gateway_run(
    tmp_path: Path, api: FakeKubeAPIServer, member: FakeMemberAPIServer
) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """Start the gateway from vela-core's args; as the controller, list clustergateways and proxy to `member-1`.
    Returns both answers and the users the SubjectAccessReviews were about."""
    api.users[CONTROLLER_TOKEN] = {
        "username": CONTROLLER,
        "uid": "controller-uid",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:vela-system", "system:authenticated"],
    }
    add_token_cluster(api, "vela-system", "member-1", member)
    mounts, chart_ca_pem = vela_core_files()
    answers = []
    async with (
        installed_gateway(tmp_path, api, vela_core_args(), mounts=mounts, serving_ca_pem=chart_ca_pem) as gw,
        controller_session(gw, chart_ca_pem) as s,
    ):
        for path in (CLUSTERGATEWAYS, f"{CLUSTERGATEWAYS}/member-1/proxy/api/v1/namespaces/default/configmaps"):
            async with s.get(path) as resp:
                answers.append((resp.status, await resp.json()))
        reviewed = [review["user"] for review in gw.reviews()]
    return answers, reviewed


async def test_the_controllers_token_lists_and_proxies_with_the_rbac_the_chart_grants(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, member: FakeMemberAPIServer
) -> None:
    # The chart binds cluster-admin (or, with authentication, its manager role) and clustergateways/proxy to it.
    kube_apiserver.policy = [PolicyRule(users=(CONTROLLER,), api_groups=("cluster.core.oam.dev",))]
    answers, reviewed = await direct_gateway_run(tmp_path, kube_apiserver, member)
    (list_status, listing), (proxy_status, configmaps) = answers
    assert reviewed == [CONTROLLER, CONTROLLER]  # no aggregator: the token's user is the one reviewed
    assert (list_status, [item["metadata"]["name"] for item in listing["items"]]) == (200, ["member-1"])
    assert (proxy_status, configmaps["kind"]) == (200, "ConfigMapList")


async def test_without_the_rbac_the_controller_gets_the_kube_apiservers_403(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, member: FakeMemberAPIServer
) -> None:
    kube_apiserver.policy = []  # the hosting cluster's SubjectAccessReview denies
    answers, reviewed = await direct_gateway_run(tmp_path, kube_apiserver, member)
    assert reviewed == [CONTROLLER, CONTROLLER]
    assert answers == [
        (
            403,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f'clustergateways.cluster.core.oam.dev is forbidden: User "{CONTROLLER}" cannot list resource '
                '"clustergateways" in API group "cluster.core.oam.dev" at the cluster scope',
                "reason": "Forbidden",
                "details": {"group": "cluster.core.oam.dev", "kind": "clustergateways"},
                "code": 403,
            },
        ),
        (
            403,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f'clustergateways.cluster.core.oam.dev "member-1" is forbidden: User "{CONTROLLER}" cannot get '
                'resource "clustergateways/proxy" in API group "cluster.core.oam.dev" at the cluster scope',
                "reason": "Forbidden",
                "details": {"name": "member-1", "group": "cluster.core.oam.dev", "kind": "clustergateways"},
                "code": 403,
            },
        ),
    ]
    assert member.requests_to("/api/v1/namespaces/default/configmaps") == []
