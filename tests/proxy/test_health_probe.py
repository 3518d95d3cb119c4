"""The built-in health prober, end to end: a real gateway probing FakeMemberAPIServers over TLS.

Each member's /readyz (else /healthz) and /version are probed through the proxy's pooled transport
with the cluster's credential; the verdict shows as status.healthy, healthyReason, lastProbeTime
and kubernetesVersion, a change reaches watchers as a MODIFIED event, and kubectl's HEALTHY follows.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway_apiserver.proxy.health_probe import HEALTH_PROBER, HealthProber
from tests.fakes.gateway import ManualSecretSource, RunningGateway, get_json, run_kubectl, running_gateway
from tests.fakes.hosting import HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import make_ca
from tests.fakes.proxying import closed_port, eventually, token_secret

pytestmark = pytest.mark.timeout(60)
CG = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
VERSION = "v1.32.0-fake-member"  # what the fake member's /version says


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    async with FakeMemberAPIServer() as server:
        yield server


@asynccontextmanager
async def probing_gateway(tmp_path: Path, *secrets: dict[str, Any], **config: Any) -> AsyncIterator[RunningGateway]:
    """A gateway serving `secrets`; probing paced by `config` (default: no rounds of its own, see `prober`)."""
    async with running_gateway(tmp_path, ManualSecretSource(list(secrets)), **config) as gw:
        yield gw


def prober(gw: RunningGateway) -> HealthProber:
    assert gw.server.app is not None
    return gw.server.app[HEALTH_PROBER]


def status(gw: RunningGateway, name: str = "m1") -> dict[str, Any]:
    return dict(gw.registry.get(name).manifest["status"])


async def kubectl_healthy(gw: RunningGateway) -> str:
    """The HEALTHY cell of `kubectl get clustergateways m1`."""
    code, out, err = await run_kubectl(gw, "get", "clustergateways", "m1")
    assert code == 0, err
    header, row = out.splitlines()
    return row[header.index("HEALTHY") :].split()[0]


async def probed_status(gw: RunningGateway, name: str) -> dict[str, Any]:
    """Probe every cluster once, then GET the cluster's status as a client sees it."""
    await prober(gw).probe_all()
    body = await get_json(gw, f"{CG}/{name}")
    return dict(body["status"])


async def test_a_member_that_stops_answering_and_recovers_is_seen_by_watchers_and_kubectl(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    # A timeout far above a loaded machine's worst answer time: only the hung member may time out.
    config = {"health_probe_interval": 0.2, "health_probe_timeout": 2.0}
    async with probing_gateway(tmp_path, token_secret("m1", member), **config) as gw:
        listed = await get_json(gw, CG)
        events: list[dict[str, Any]] = []

        async def watch() -> None:
            params = {"watch": "true", "resourceVersion": listed["metadata"]["resourceVersion"]}
            async with gw.session() as client, client.get(CG, params=params) as resp:
                assert resp.status == 200
                async for line in resp.content:
                    events.append(json.loads(line))

        watcher = asyncio.create_task(watch())
        try:
            await eventually(lambda: status(gw).get("healthy") is True)
            assert status(gw)["kubernetesVersion"] == VERSION
            assert await kubectl_healthy(gw) == "true"

            member.hang()
            await eventually(lambda: status(gw).get("healthy") is False)
            assert status(gw)["healthyReason"] == "ConnectionTimeout"
            assert status(gw)["kubernetesVersion"] == VERSION  # the version last learnt stays
            assert await kubectl_healthy(gw) == "false"

            member.recover()
            await eventually(lambda: status(gw).get("healthy") is True)
            assert await kubectl_healthy(gw) == "true"
            # The first probe may land before the listing the watch starts from: then the list already shows it.
            first_probe_listed = (listed["items"][0].get("status") or {}).get("healthy") is True
            expected = [("MODIFIED", False, "ConnectionTimeout"), ("MODIFIED", True, None)]
            if not first_probe_listed:
                expected.insert(0, ("MODIFIED", True, None))
            await eventually(lambda: len(events) >= len(expected))
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        transitions = [(e["type"], e["object"]["status"]["healthy"], e["object"]["status"].get("healthyReason")) for e in events]
        assert transitions == expected
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert versions == sorted(set(versions)) and versions[0] > int(listed["metadata"]["resourceVersion"])
        assert all(e["object"]["status"]["lastProbeTime"].endswith("Z") for e in events)


async def test_probes_use_the_clusters_credential_and_the_proxys_pooled_connections(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    async with probing_gateway(tmp_path, token_secret("m1", member)) as gw:
        for _ in range(3):
            assert (await probed_status(gw, "m1"))["healthy"] is True
        probes = member.requests_to("/readyz") + member.requests_to("/version")
        assert len(probes) == 6
        assert {r.headers["Authorization"] for r in probes} == {f"Bearer {member.token}"}
        assert {r.user for r in probes} == {"member-admin"}
        assert len(member.connections) == 1  # one keep-alive connection for six probes
        assert member.requests_to("/healthz") == []


async def test_healthz_is_the_fallback_for_a_member_without_readyz(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    member.without_readyz = True
    async with probing_gateway(tmp_path, token_secret("m1", member)) as gw:
        assert (await probed_status(gw, "m1"))["healthy"] is True
        assert (len(member.requests_to("/readyz")), len(member.requests_to("/healthz"))) == (1, 1)


async def test_each_failure_has_its_precise_reason(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    port = closed_port()
    secrets = [
        token_secret("bad-token", member, token="not-the-members-token"),
        token_secret("wrong-ca", member, ca_pem=make_ca("not-the-members-ca").cert_pem),
        token_secret("refused", member, endpoint=f"https://127.0.0.1:{port}"),
        token_secret("failing", member, endpoint=member.url),
    ]
    async with probing_gateway(tmp_path, *secrets) as gw:
        member.readyz_status = 500
        await prober(gw).probe_all()
        reasons = {name: status(gw, name).get("healthyReason") for name in ("bad-token", "wrong-ca", "refused", "failing")}
        assert reasons == {
            "bad-token": "Unauthorized",
            "wrong-ca": "CertificateMismatch",
            "refused": f'Unknown:cluster "refused" unreachable: connecting to 127.0.0.1:{port} failed: connection refused',
            "failing": "ProbeFailed:500",
        }
        assert not any(status(gw, name)["healthy"] for name in reasons)
        assert "not-the-members-token" not in json.dumps(await get_json(gw, CG))


async def test_probes_in_flight_are_bounded_and_the_loop_keeps_serving(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    member.readyz_delay = 0.5
    secrets = [token_secret(f"c{i:02}", member) for i in range(40)]
    async with probing_gateway(tmp_path, *secrets, health_probe_concurrency=4) as gw:
        round_ = asyncio.create_task(prober(gw).probe_all())
        await eventually(lambda: member.readyz_in_flight == 4)
        started = time.monotonic()
        listed = await get_json(gw, CG)  # answered while 36 probes wait their turn
        assert time.monotonic() - started < 2.0  # a round takes 5 s (40 probes x 0.5 s / 4): the list did not wait for it
        assert len(listed["items"]) == 40 and not round_.done()
        await asyncio.wait_for(round_, 10)
        assert (member.readyz_max_in_flight, prober(gw).max_in_flight) == (4, 4)
        assert all(gw.registry.get(f"c{i:02}").healthy for i in range(40))


async def test_an_interval_of_zero_turns_probing_off(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with probing_gateway(tmp_path, token_secret("m1", member), health_probe_interval=0) as gw:
        await asyncio.sleep(0.5)
        assert member.requests == []
        assert (await get_json(gw, f"{CG}/m1"))["status"] == {"healthy": False}


async def test_a_short_interval_probes_round_after_round(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with probing_gateway(tmp_path, token_secret("m1", member), health_probe_interval=0.1):
        await eventually(lambda: len(member.requests_to("/readyz")) >= 3)


# --- precedence: the health subresource (the OCM add-on's writes) and the prober -----------------


async def test_the_newer_of_a_health_write_and_a_probe_decides(
    member: FakeMemberAPIServer, tmp_path: Path, kube_apiserver: FakeKubeAPIServer
) -> None:
    """A write through `health` stores its time on the Secret: it shows until a later probe, which shows
    until a later write. Without the prober's rounds, the write would stand."""
    add_cluster(kube_apiserver, "m1", member.url, token=member.token, ca_pem=member.ca_pem)
    kube_apiserver.users["addon-token"] = {"username": "addon", "uid": "a-1", "groups": []}
    kube_apiserver.policy = [PolicyRule(users=("addon",), verbs=("get", "update"), resources=("clustergateways/health",))]
    async with hosting_gateway(tmp_path, kube_apiserver) as gw:
        assert gw.server.app is not None
        probe_all = gw.server.app[HEALTH_PROBER].probe_all
        headers = {"Authorization": "Bearer addon-token"}

        async def shown() -> dict[str, Any]:
            async with gw.session() as client, client.get(f"{CG}/m1/health", headers=headers) as resp:
                assert resp.status == 200
                return dict((await resp.json())["status"])

        async def write(healthy: bool, reason: str) -> None:
            body = {"apiVersion": "cluster.core.oam.dev/v1alpha1", "kind": "ClusterGateway", "metadata": {"name": "m1"}}
            body["status"] = {"healthy": healthy, "healthyReason": reason}
            async with gw.session() as client, client.put(f"{CG}/m1/health", json=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()

        await probe_all()
        assert (await shown())["healthy"] is True
        await write(False, "ClusterGatewayNotRegistered")
        await eventually(lambda: not gw.server.registry.get("m1").healthy)  # the informer delivered the Secret
        assert await shown() == {
            "healthy": False,
            "healthyReason": "ClusterGatewayNotRegistered",
            "lastProbeTime": status_of_registry(gw)["lastProbeTime"],
            "kubernetesVersion": VERSION,
        }
        await asyncio.sleep(0.01)
        await probe_all()  # newer than the write
        assert (await shown())["healthy"] is True
        member.readyz_status = 500
        await probe_all()
        assert (await shown())["healthyReason"] == "ProbeFailed:500"
        await write(True, "")  # newer than the probe
        await eventually(lambda: gw.server.registry.get("m1").healthy)
        assert (await shown())["healthy"] is True


def status_of_registry(gw: HostingGateway) -> dict[str, Any]:
    return dict(gw.server.registry.get("m1").manifest["status"])


async def test_each_probes_duration_is_a_histogram_by_verdict(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    down = token_secret("down", member, endpoint=f"https://127.0.0.1:{closed_port()}")
    async with probing_gateway(tmp_path, token_secret("m1", member), down) as gw:
        await prober(gw).probe_all()
        await prober(gw).probe_all()
        async with gw.session() as s, s.get("/metrics") as resp:
            text = await resp.text()
    counts = {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "gateway_apiserver_health_probe_duration_seconds_count"
    }
    assert counts == {"healthy": 2.0, "unhealthy": 2.0}
