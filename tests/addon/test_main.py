"""`gateway-apiserver addon-manager`: the real command against the hub, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from tests.addon.conftest import INSTALL_NS, Hub
from tests.addon.test_install import stored
from tests.fakes.ocm_addon import CLUSTER_GATEWAY_CONFIGURATIONS, cluster_gateway_configuration
from tests.fakes.proxying import eventually


async def test_the_subcommand_installs_and_stops_on_sigterm(hub: Hub) -> None:
    hub.api.store.create(CLUSTER_GATEWAY_CONFIGURATIONS.resource, "", cluster_gateway_configuration())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway_apiserver",
        "addon-manager",
        f"--kubeconfig={hub.kubeconfig}",
        "--resync-period=0.5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await eventually(lambda: stored(hub, "services", INSTALL_NS, "cluster-gateway") is not None, timeout=15)
        assert stored(hub, "deployments", INSTALL_NS, "gateway-deployment") is not None
        assert stored(hub, "apiservices", "", "v1alpha1.cluster.core.oam.dev") is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "add-on manager stopped" in err.decode()


async def test_a_missing_kubeconfig_is_one_line_and_exit_2() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway_apiserver",
        "addon-manager",
        "--kubeconfig=/nonexistent/kubeconfig",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(15):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    lines = err.decode().splitlines()
    assert lines == ["gateway-apiserver addon-manager: error: --kubeconfig /nonexistent/kubeconfig: no such file"]
