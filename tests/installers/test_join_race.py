"""KubeVela's `vela cluster join` races the gateway's Secret watch, and wins by retrying on "no such cluster".

The join writes the cluster Secret in the hosting cluster, then at once creates the namespace given by
`--create-namespace` in the new member through the gateway's proxy. KubeVela's rule, restated from
kubevela/kubevela@5a44b5f10c59f80a4fcd1990f59e024856c78cd8 (pkg/multicluster/cluster_management.go,
KubeClusterConfig.PostRegistration): up to three attempts; after a failure whose error text contains
"no such cluster" it waits one second and tries again (after the first and the second attempt only);
any other error, or a third failure, detaches the cluster (deletes the Secret) and fails the join.

Here the hosting cluster's watch lags half a second, so the gateway learns of the Secret after the
first proxied request, as on a busy cluster. The member's stand-in for a namespace is a ConfigMap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.hosting import CLUSTERGATEWAYS, SECRET_NAMESPACE, HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer

pytestmark = pytest.mark.timeout(30)
WATCH_LAG = 0.5
CREATE = f"{CLUSTERGATEWAYS}/joined/proxy/api/v1/namespaces/vela-system/configmaps"
BODY = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "joined-by-vela"}}


async def create_in_member(gw: HostingGateway) -> tuple[int, dict[str, Any]]:
    """One proxied create, as the hosting cluster's admin runs `vela cluster join`."""
    async with gw.session(headers={"Authorization": f"Bearer {gw.api.token}"}) as s, s.post(CREATE, json=BODY) as resp:
        return resp.status, await resp.json()


async def kubevela_post_registration(gw: HostingGateway) -> list[tuple[int, dict[str, Any]]]:
    """KubeVela's rule: up to three attempts, one second apart while the answer says "no such cluster"."""
    answers = []
    for attempt in range(3):
        status, body = await create_in_member(gw)
        answers.append((status, body))
        if status < 300 or "no such cluster" not in body.get("message", "") or attempt == 2:
            break
        await asyncio.sleep(1)
    return answers


def assert_no_such_cluster(status: int, body: dict[str, Any]) -> None:
    """The answer KubeVela retries on: the kube 404 for the cluster, its message containing the phrase."""
    message = body.pop("message")
    assert message.startswith("no such cluster") and message.endswith('clustergateways.cluster.core.oam.dev "joined" not found')
    assert (status, body) == (
        404,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "reason": "NotFound",
            "details": {"name": "joined", "group": "cluster.core.oam.dev", "kind": "clustergateways"},
            "code": 404,
        },
    )


@pytest.fixture
async def lagging_gateway(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> AsyncIterator[HostingGateway]:
    """A hosting-mode gateway whose hosting cluster delivers each Secret change WATCH_LAG seconds late."""
    kube_apiserver.policy = [PolicyRule(groups=("system:masters",))]
    kube_apiserver.watch_lag = WATCH_LAG
    async with hosting_gateway(tmp_path, kube_apiserver) as gw:
        yield gw


async def test_until_the_secret_is_seen_the_proxy_answers_no_such_cluster_then_within_a_second_it_works(
    lagging_gateway: HostingGateway, member: FakeMemberAPIServer
) -> None:
    loop = asyncio.get_running_loop()
    add_cluster(lagging_gateway.api, "joined", member.url, token=member.token, ca_pem=member.ca_pem)
    written = loop.time()
    answers = []
    while loop.time() - written < 3:
        status, body = await create_in_member(lagging_gateway)
        answers.append((status, body))
        if status != 404:
            break
        await asyncio.sleep(0.05)
    took = loop.time() - written
    *refused, (status, created) = answers
    assert refused, "the first answer came after the Secret was seen: the race did not happen"
    for refused_status, body in refused:
        assert_no_such_cluster(refused_status, body)
    assert (status, created["metadata"]["name"]) == (201, "joined-by-vela")
    assert WATCH_LAG <= took < 1.0


async def test_kubevelas_retry_rule_completes_the_join_on_its_second_attempt(
    lagging_gateway: HostingGateway, member: FakeMemberAPIServer
) -> None:
    add_cluster(lagging_gateway.api, "joined", member.url, token=member.token, ca_pem=member.ca_pem)
    first, *rest = await kubevela_post_registration(lagging_gateway)
    assert_no_such_cluster(*first)
    assert [(status, body["metadata"]["name"]) for status, body in rest] == [(201, "joined-by-vela")]
    assert [r.method for r in member.requests_to("/api/v1/namespaces/vela-system/configmaps")] == ["POST"]
    assert lagging_gateway.api.store.get("secrets", SECRET_NAMESPACE, "joined") is not None  # not detached
