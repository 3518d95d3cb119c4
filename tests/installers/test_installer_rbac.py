"""Swapping the image keeps the installer's RBAC: our gateway runs on exactly what each installer grants
the ServiceAccount of its pod (restated in installer_rbac.py), and the fake hosting cluster enforces it.

cluster-gateway's own chart grants no TokenReview (it binds no system:auth-delegator): callers must come
through the aggregator, whose front-proxy certificate needs none; a bearer token sent to the gateway
directly cannot be reviewed, and is 401 for us as for the reference. vela-core's pod runs as KubeVela's
controller ServiceAccount: cluster-admin, or the manager role with `authentication.enabled`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_rbac import deploy_rbac
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer

from .conftest import CLUSTERGATEWAYS, InstalledGateway, add_token_cluster, installed_gateway, vela_core_files
from .installer_args import REFERENCE_CHART_SECRET_NAMESPACE, reference_chart_args, vela_core_args
from .installer_rbac import VELA_CORE_ACCOUNT, reference_chart_rbac, vela_core_rbac

pytestmark = pytest.mark.timeout(30)
OPERATOR = PolicyRule(users=("operator",), api_groups=("cluster.core.oam.dev",))
RELEASE_NAMESPACE = "cluster-gateway"
CHART_ACCOUNT = f"system:serviceaccount:{RELEASE_NAMESPACE}:cluster-gateway"
CHART_ACCOUNT_TOKEN = "cluster-gateway-sa-token"


def add_service_account(api: FakeKubeAPIServer, namespace: str, name: str, token: str) -> None:
    """A ServiceAccount whose token the hosting cluster's TokenReview knows."""
    api.users[token] = {
        "username": f"system:serviceaccount:{namespace}:{name}",
        "uid": f"{name}-uid",
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
    }


@pytest.fixture
def chart_cluster(kube_apiserver: FakeKubeAPIServer, member: FakeMemberAPIServer) -> FakeKubeAPIServer:
    """The hosting cluster after `helm install` of the chart in RELEASE_NAMESPACE, one member cluster joined."""
    kube_apiserver.rbac = deploy_rbac(reference_chart_rbac(RELEASE_NAMESPACE, REFERENCE_CHART_SECRET_NAMESPACE))
    add_service_account(kube_apiserver, RELEASE_NAMESPACE, "cluster-gateway", CHART_ACCOUNT_TOKEN)
    kube_apiserver.policy = [OPERATOR]
    add_token_cluster(kube_apiserver, REFERENCE_CHART_SECRET_NAMESPACE, "member-1", member)
    return kube_apiserver


def chart_gateway(tmp_path: Path, api: FakeKubeAPIServer) -> AbstractAsyncContextManager[InstalledGateway]:
    """Our gateway as the chart's pod runs it: the chart's args, as the chart's ServiceAccount."""
    return installed_gateway(tmp_path, api, reference_chart_args(), token=CHART_ACCOUNT_TOKEN)


async def operator_requests(gw: InstalledGateway) -> list[int]:
    """As the aggregator forwards `operator`: list, then proxy to member-1 (a path the member lets any
    authenticated user call, so the answer holds with identity penetration as without); the statuses."""
    statuses = []
    async with gw.via_aggregator("operator") as s:
        for path in (CLUSTERGATEWAYS, f"{CLUSTERGATEWAYS}/member-1/proxy/echo/installer"):
            async with s.get(path) as resp:
                statuses.append(resp.status)
    return statuses


async def test_behind_the_aggregator_the_charts_grants_are_all_the_gateway_needs(
    tmp_path: Path, chart_cluster: FakeKubeAPIServer
) -> None:
    async with chart_gateway(tmp_path, chart_cluster) as gw:
        assert await operator_requests(gw) == [200, 200]
    assert chart_cluster.forbidden == []


async def test_a_bearer_token_sent_directly_is_401_since_the_chart_grants_no_token_review(
    tmp_path: Path, chart_cluster: FakeKubeAPIServer
) -> None:
    async with (
        chart_gateway(tmp_path, chart_cluster) as gw,
        gw.session(headers={"Authorization": f"Bearer {chart_cluster.token}"}) as s,
        s.get(CLUSTERGATEWAYS) as resp,
    ):
        answer = (resp.status, await resp.json())
    assert answer == (
        401,
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
         "reason": "Unauthorized", "code": 401},
    )  # fmt: skip
    assert chart_cluster.forbidden == [
        f'tokenreviews.authentication.k8s.io is forbidden: User "{CHART_ACCOUNT}" cannot create resource "tokenreviews" '
        'in API group "authentication.k8s.io" at the cluster scope'
    ]


@pytest.mark.parametrize("authentication", [False, True], ids=["cluster-admin", "manager-role"])
async def test_vela_core_pod_runs_on_the_controllers_grants(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, member: FakeMemberAPIServer, authentication: bool
) -> None:
    kube_apiserver.rbac = deploy_rbac(vela_core_rbac(authentication=authentication))
    add_service_account(kube_apiserver, "vela-system", VELA_CORE_ACCOUNT, "vela-core-sa-token")
    kube_apiserver.policy = [OPERATOR]
    add_token_cluster(kube_apiserver, "vela-system", "member-1", member)
    files, ca_pem = vela_core_files()
    args = vela_core_args(authentication=authentication)
    async with installed_gateway(
        tmp_path, kube_apiserver, args, mounts=files, serving_ca_pem=ca_pem, token="vela-core-sa-token"
    ) as gw:
        assert await operator_requests(gw) == [200, 200]
    assert kube_apiserver.forbidden == []
