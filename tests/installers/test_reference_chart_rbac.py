"""Swapping the image keeps the installer's RBAC: our gateway runs on exactly what cluster-gateway's own chart grants.

The chart's ServiceAccount `cluster-gateway` gets, restated from its templates (oam-dev/cluster-gateway@
2b04dd452b7a9da6e75de105cd00499a1c6369bd, charts/cluster-gateway/templates/clusterroles.yaml,
clusterrolebindings.yaml, rolebindings.yaml, secret-roles.yaml, secret-rolebindings.yaml): read
ManagedClusters, Namespaces, admission and flow-control objects; SubjectAccessReviews; every verb on
Secrets of the Secret namespace; and the kube-system Role extension-apiserver-authentication-reader.
It gets no TokenReview (the chart binds no system:auth-delegator): callers must come through the
aggregator, whose front-proxy certificate needs none; a bearer token sent to the gateway directly
cannot be reviewed, and is 401 for us as for the reference.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_rbac import deploy_rbac
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer

from .conftest import CLUSTERGATEWAYS, InstalledGateway, add_token_cluster, installed_gateway
from .installer_args import REFERENCE_CHART_SECRET_NAMESPACE, reference_chart_args

pytestmark = pytest.mark.timeout(30)
RELEASE_NAMESPACE = "cluster-gateway"
CHART_ACCOUNT = f"system:serviceaccount:{RELEASE_NAMESPACE}:cluster-gateway"
CHART_ACCOUNT_TOKEN = "cluster-gateway-sa-token"
READ = ["get", "list", "watch"]


def reference_chart_rbac(release_namespace: str, secret_namespace: str) -> list[dict[str, Any]]:
    """The chart's RBAC objects, with its values substituted."""
    account = [{"kind": "ServiceAccount", "name": "cluster-gateway", "namespace": release_namespace}]
    rbac = "rbac.authorization.k8s.io"
    reader = "open-cluster-management:cluster-gateway:managedcluster-reader"
    admission = ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"]
    admission += ["validatingadmissionpolicies", "validatingadmissionpolicybindings"]
    return [
        {
            "kind": "ClusterRole",
            "metadata": {"name": reader},
            "rules": [
                {"apiGroups": ["cluster.open-cluster-management.io"], "resources": ["managedclusters"], "verbs": READ},
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": READ},
                {"apiGroups": ["admissionregistration.k8s.io"], "resources": admission, "verbs": READ},
                {
                    "apiGroups": ["flowcontrol.apiserver.k8s.io"],
                    "resources": ["prioritylevelconfigurations", "flowschemas"],
                    "verbs": READ,
                },
                {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["*"]},
            ],
        },
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": reader},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": reader},
            "subjects": account,
        },
        {
            "kind": "RoleBinding",
            "metadata": {"name": "system:extension-apiserver-authentication-reader:cluster-gateway", "namespace": "kube-system"},
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "extension-apiserver-authentication-reader"},
            "subjects": account,
        },
        {
            "kind": "Role",
            "metadata": {"name": "cluster-gateway-secret-reader", "namespace": secret_namespace},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}],
        },
        {
            "kind": "RoleBinding",
            "metadata": {"name": "cluster-gateway-secret-reader", "namespace": secret_namespace},
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "cluster-gateway-secret-reader"},
            "subjects": account,
        },
    ]


@pytest.fixture
def chart_cluster(kube_apiserver: FakeKubeAPIServer, member: FakeMemberAPIServer) -> FakeKubeAPIServer:
    """The hosting cluster after `helm install` of the chart in RELEASE_NAMESPACE, one member cluster joined."""
    kube_apiserver.rbac = deploy_rbac(reference_chart_rbac(RELEASE_NAMESPACE, REFERENCE_CHART_SECRET_NAMESPACE))
    kube_apiserver.users[CHART_ACCOUNT_TOKEN] = {
        "username": CHART_ACCOUNT,
        "uid": "chart-account-uid",
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{RELEASE_NAMESPACE}", "system:authenticated"],
    }
    kube_apiserver.policy = [PolicyRule(users=("operator",), api_groups=("cluster.core.oam.dev",))]
    add_token_cluster(kube_apiserver, REFERENCE_CHART_SECRET_NAMESPACE, "member-1", member)
    return kube_apiserver


def chart_gateway(tmp_path: Path, api: FakeKubeAPIServer) -> AbstractAsyncContextManager[InstalledGateway]:
    """Our gateway as the chart's pod runs it: the chart's args, as the chart's ServiceAccount."""
    return installed_gateway(tmp_path, api, reference_chart_args(), token=CHART_ACCOUNT_TOKEN)


async def operator_requests(gw: InstalledGateway) -> list[int]:
    """As the aggregator forwards `operator`: list, then proxy to member-1; the statuses."""
    statuses = []
    async with gw.via_aggregator("operator") as s:
        for path in (CLUSTERGATEWAYS, f"{CLUSTERGATEWAYS}/member-1/proxy/api/v1/namespaces/default/configmaps"):
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
