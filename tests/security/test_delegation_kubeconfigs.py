"""--authentication-kubeconfig and --authorization-kubeconfig: TokenReview and SubjectAccessReview go to the clusters they name.

The hosting cluster (--kubeconfig) keeps serving the Secrets; a second fake kube-apiserver is the delegation target.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.hosting import CLUSTERGATEWAYS, HostingGateway, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.pki import issue_client_cert, make_ca

ALICE_TOKEN = "alice-token"
ALICE = {"username": "alice", "uid": "a-1", "groups": ["readers", "system:authenticated"]}
READ_CLUSTERGATEWAYS = PolicyRule(users=("alice",), verbs=("list",), resources=("clustergateways",))
ALICE_LISTS = {
    "user": "alice",
    "groups": ["readers", "system:authenticated"],
    "uid": "a-1",
    "resourceAttributes": {
        "verb": "list",
        "group": "cluster.core.oam.dev",
        "version": "v1alpha1",
        "resource": "clustergateways",
    },
}


@pytest.fixture
async def other_cluster() -> AsyncIterator[FakeKubeAPIServer]:
    """A second cluster the gateway's ServiceAccount may ask for TokenReviews and SubjectAccessReviews."""
    async with FakeKubeAPIServer(bookmark_interval=0.2) as other:
        yield other


async def list_as_alice(gw: HostingGateway) -> int:
    async with gw.session() as s, s.get(CLUSTERGATEWAYS, headers={"Authorization": f"Bearer {ALICE_TOKEN}"}) as resp:
        await resp.read()
        return resp.status


async def test_authorization_kubeconfig_sends_subject_access_reviews_there(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, other_cluster: FakeKubeAPIServer
) -> None:
    kube_apiserver.users[ALICE_TOKEN] = ALICE
    other_cluster.policy = [READ_CLUSTERGATEWAYS]  # the hosting cluster's policy allows alice nothing
    authorization = other_cluster.write_kubeconfig(tmp_path / "authorization.kubeconfig")
    async with hosting_gateway(tmp_path, kube_apiserver, authorization_kubeconfig=authorization) as gw:
        assert await list_as_alice(gw) == 200
        assert [review["spec"] for review in other_cluster.access_review_log] == [ALICE_LISTS]
        assert kube_apiserver.access_review_log == []
        assert (kube_apiserver.token_reviews, other_cluster.token_reviews) == (1, 0)


async def test_authentication_kubeconfig_sends_token_reviews_there(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, other_cluster: FakeKubeAPIServer
) -> None:
    other_cluster.users[ALICE_TOKEN] = ALICE  # the hosting cluster does not know alice's token
    kube_apiserver.policy = [READ_CLUSTERGATEWAYS]
    authentication = other_cluster.write_kubeconfig(tmp_path / "authentication.kubeconfig")
    # The trust ConfigMap is read from the authentication cluster too; with the lookup skipped, no ConfigMap is needed.
    async with hosting_gateway(
        tmp_path, kube_apiserver, authentication_kubeconfig=authentication, authentication_skip_lookup=True
    ) as gw:
        assert await list_as_alice(gw) == 200
        assert (kube_apiserver.token_reviews, other_cluster.token_reviews) == (0, 1)
        assert [review["spec"] for review in kube_apiserver.access_review_log] == [ALICE_LISTS]


async def test_the_trust_configmap_is_read_from_the_authentication_cluster(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, other_cluster: FakeKubeAPIServer
) -> None:
    """Client certificates are checked against the client CA of the authentication cluster's ConfigMap."""
    other_ca = make_ca("other-cluster-client-ca")
    other_cluster.set_authentication_configmap(client_ca_pem=other_ca.cert_pem)
    kube_apiserver.policy = [PolicyRule(users=("carol",), verbs=("list",), resources=("clustergateways",))]
    authentication = other_cluster.write_kubeconfig(tmp_path / "authentication.kubeconfig")
    async with hosting_gateway(tmp_path, kube_apiserver, authentication_kubeconfig=authentication) as gw:
        async with gw.session(issue_client_cert(other_ca, "carol")) as s, s.get(CLUSTERGATEWAYS) as resp:
            assert resp.status == 200
        assert [review["spec"]["user"] for review in kube_apiserver.access_review_log] == ["carol"]
        # The hosting cluster's own ConfigMap (its client CA is gw.client_ca) is not the one trusted.
        with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
            async with gw.session(issue_client_cert(gw.client_ca, "dave")) as s, s.get(CLUSTERGATEWAYS) as resp:
                await resp.read()
