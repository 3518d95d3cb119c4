"""Every proxy test runs on asyncio and on uvloop: upgrade tunnels reach into the loop's transports.

Upgrade tests share one setup: a hosting-mode gateway (TokenReview authentication,
SubjectAccessReview authorization) whose cluster `m1` is a `FakeUpgradeMember`.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.hosting import HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.loops import pytest_asyncio_loop_factories
from tests.fakes.member_upgrade import FakeUpgradeMember
from tests.fakes.pki import make_ca

__all__ = ["pytest_asyncio_loop_factories"]

ALICE_TOKEN = "alice-token"  # may use every cluster's proxy subresource (get and create)
MALLORY_TOKEN = "mallory-token"  # authenticated, with no right on any proxy
UPGRADE_ANSWER_TIMEOUT = 2.0  # --proxy-request-timeout: how long the member may take to answer an upgrade


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def upgrade_member() -> AsyncIterator[FakeUpgradeMember]:
    """The member cluster `m1`: exec, attach and port-forward over WebSocket and SPDY."""
    member = FakeUpgradeMember(token="member-secret-token")
    await member.start()
    try:
        yield member
    finally:
        await member.stop()


@pytest.fixture
async def tunnelling_gateway(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, upgrade_member: FakeUpgradeMember
) -> AsyncIterator[HostingGateway]:
    """The gateway in hosting mode with clusters `m1` (the upgrade member), `down` (nothing listens)
    and `wrong-ca` (the upgrade member, but a CA that did not sign its certificate)."""
    kube_apiserver.users[ALICE_TOKEN] = {"username": "alice", "uid": "a-1", "groups": ["devs"]}
    kube_apiserver.users[MALLORY_TOKEN] = {"username": "mallory", "uid": "m-1", "groups": []}
    kube_apiserver.policy = [
        PolicyRule(
            users=("alice",), verbs=("get", "create"), api_groups=("cluster.core.oam.dev",), resources=("clustergateways/proxy",)
        ),
    ]
    member_url, token = str(upgrade_member.url), upgrade_member.token
    add_cluster(kube_apiserver, "m1", member_url, token=token, ca_pem=upgrade_member.ca_pem)
    add_cluster(kube_apiserver, "down", f"https://127.0.0.1:{_free_port()}", token=token, ca_pem=upgrade_member.ca_pem)
    add_cluster(kube_apiserver, "wrong-ca", member_url, token=token, ca_pem=make_ca("not-the-members-ca").cert_pem)
    async with hosting_gateway(tmp_path, kube_apiserver, proxy_request_timeout=UPGRADE_ANSWER_TIMEOUT) as gateway:
        yield gateway
