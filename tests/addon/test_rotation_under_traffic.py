"""A signer-CA change under traffic: every request through the APIService's trust succeeds.

The manager runs with a CA that lives nine seconds (rotation at six), so a whole CA change
happens during the test: the new CA joins the APIService `caBundle`, the serving
certificate is reissued by it, the gateway reloads its mounted files, the old CA leaves the
bundle once the gateway is seen serving the new certificate. A client that re-reads the
`caBundle` before each request (as the aggregator follows its APIService) opens a new TLS
connection to the gateway for every request, verifying the Service's name; none may fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from pathlib import Path

import aiohttp

from gateway_apiserver.addon.certificates import Lifetimes, split_pems
from gateway_apiserver.addon.kube import Kube
from gateway_apiserver.addon.manager import AddonManager, ManagerSettings
from gateway_apiserver.addon.probe import serving_probe
from gateway_apiserver.addon.spec import GatewaySpec
from tests.addon.conftest import SERVICE_NAME, Hub, ca_bundle, mounted, serving_gateway
from tests.fakes.ocm_addon import CLUSTER_GATEWAY_CONFIGURATIONS, cluster_gateway_configuration
from tests.fakes.proxying import eventually

# The propagation delay stands for the aggregator's lag in following its APIService: here the client's
# time between reading the bundle and connecting, which a loaded 2-core machine can stretch past 0.5 s.
LIFETIMES = Lifetimes(
    ca=dt.timedelta(seconds=9),
    serving=dt.timedelta(seconds=12),
    propagation=dt.timedelta(seconds=1.5),
    overlap=dt.timedelta(seconds=1),
)


async def test_zero_failed_requests_across_a_signer_ca_change(hub: Hub, manager_kube: Kube, tmp_path: Path) -> None:
    hub.api.store.create(CLUSTER_GATEWAY_CONFIGURATIONS.resource, "", cluster_gateway_configuration())
    mounts = tmp_path / "tls"
    mounts.mkdir()
    port: list[int] = []

    def address(spec: GatewaySpec) -> tuple[str, int]:
        return "127.0.0.1", port[0]

    settings = ManagerSettings(resync=0.1, lifetimes=LIFETIMES, probe=serving_probe(address))
    manager = AddonManager(manager_kube, None, settings)
    await manager.reconcile()
    mounted(hub, mounts)
    first_bundle = split_pems(ca_bundle(hub))
    async with serving_gateway(hub, tmp_path, mounts) as gateway:
        port.append(gateway.port)
        ok, failures, bundles = 0, [], set()

        async def kubelet() -> None:
            while True:
                mounted(hub, mounts)
                await asyncio.sleep(0.2)  # a Secret volume lags its Secret

        async def aggregator() -> None:
            nonlocal ok
            while True:
                bundle = ca_bundle(hub)
                bundles.add(bundle)
                context = ssl.create_default_context(cadata=bundle.decode())
                connector = aiohttp.TCPConnector(ssl=context, force_close=True)
                async with aiohttp.ClientSession(connector=connector) as session:
                    try:
                        async with session.get(f"https://127.0.0.1:{gateway.port}/readyz", server_hostname=SERVICE_NAME) as resp:
                            assert resp.status == 200, resp.status
                            ok += 1
                    except (aiohttp.ClientError, AssertionError) as exc:
                        failures.append(repr(exc))
                await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(manager.run(None)), asyncio.create_task(kubelet()), asyncio.create_task(aggregator())]
        try:

            def rotated() -> bool:  # a new CA alone in the bundle, after a bundle with both
                now = split_pems(ca_bundle(hub))
                return len(bundles) >= 3 and len(now) == 1 and now != first_bundle

            await eventually(rotated, timeout=20)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    assert failures == []
    assert ok > 50
    # The bundle went old CA -> old and new CA -> new CA only.
    assert any(len(split_pems(b)) == 2 for b in bundles)
