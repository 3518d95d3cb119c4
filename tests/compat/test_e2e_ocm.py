"""The reference's OCM add-on e2e suite (e2e/ocm/clustergateway.go, "Addon Manager Test"), restated
for what the gateway itself serves. The suite's first case ("ClusterGateway addon installation should
work") waits for the OCM add-on manager to report the add-on healthy, which is not the gateway's
doing; its one gateway read (the health subresource) is e2e/roundtrip's, restated in
test_e2e_roundtrip.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.compat.conftest import ProbedMember, raw_get
from tests.fakes.hosting import CLUSTERGATEWAYS, HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def hub_gateway(tmp_path: Path, hub: FakeKubeAPIServer, probed_member: ProbedMember) -> AsyncIterator[HostingGateway]:
    """The gateway in hosting mode with one cluster, `loopback`, the probed member."""
    add_cluster(hub, "loopback", probed_member.url, token=probed_member.token, ca_pem=probed_member.ca_pem)
    async with hosting_gateway(tmp_path, hub) as gw:
        yield gw


async def test_manual_probe_healthiness_should_work(hub_gateway: HostingGateway, probed_member: ProbedMember) -> None:
    """reference: e2e/ocm/clustergateway.go, It("Manual probe healthiness should work").

    The add-on's prober reads `clustergateways/NAME/proxy/healthz` and treats the exact body `ok` as healthy."""
    assert await raw_get(hub_gateway, f"{CLUSTERGATEWAYS}/loopback/proxy/healthz") == (200, "ok")
    assert [(r.method, r.raw_path) for r in probed_member.requests] == [("GET", "/healthz")]
