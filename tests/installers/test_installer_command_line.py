"""The real `gateway-apiserver` command, run as the image runs it, with each installer's default args.

`python -m gateway_apiserver` is what the image's entrypoint runs. Each installer's command line (its
/etc paths, port, bind address and kubeconfig localised, nothing else changed) must start a process
that becomes ready, lists the clusters of the Secret namespace the installer names, and stops with
exit code 0 on the SIGTERM of a pod deletion.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import client_ssl_context, issue_client_cert

from .conftest import (
    CLUSTERGATEWAYS,
    FRONT_PROXY_CN,
    add_token_cluster,
    installer_rbac,
    ocm_addon_files,
    prepare_pod,
    vela_core_files,
    wait_ready,
)
from .installer_args import REFERENCE_CHART_SECRET_NAMESPACE, ocm_addon_args, reference_chart_args, vela_core_args

pytestmark = pytest.mark.timeout(60)
SELF_SIGNED = Path("apiserver.local.config/certificates/apiserver.crt")  # under the working directory


def vela_core(api: FakeKubeAPIServer) -> tuple[list[str], dict[str, bytes | str], bytes | None, str]:
    files, ca_pem = vela_core_files()
    return vela_core_args(), files, ca_pem, "vela-system"


def reference_chart(api: FakeKubeAPIServer) -> tuple[list[str], dict[str, bytes | str], bytes | None, str]:
    api.rbac = installer_rbac(REFERENCE_CHART_SECRET_NAMESPACE)
    return reference_chart_args(), {}, None, REFERENCE_CHART_SECRET_NAMESPACE


def ocm_addon(api: FakeKubeAPIServer) -> tuple[list[str], dict[str, bytes | str], bytes | None, str]:
    api.rbac = installer_rbac(REFERENCE_CHART_SECRET_NAMESPACE, ocm=True)
    api.install_managed_cluster_crd()
    files, ca_pem = ocm_addon_files()
    return ocm_addon_args(), files, ca_pem, REFERENCE_CHART_SECRET_NAMESPACE


Installer = Callable[[FakeKubeAPIServer], tuple[list[str], dict[str, bytes | str], bytes | None, str]]


async def serving_ca(ca_pem: bytes | None, workdir: Path, proc: asyncio.subprocess.Process) -> bytes:
    """The CA to trust: the installer's, or the self-signed certificate once the process has written it."""
    for _ in range(200):
        if ca_pem is not None:
            return ca_pem
        if (workdir / SELF_SIGNED).is_file() and (workdir / SELF_SIGNED).stat().st_size:
            return (workdir / SELF_SIGNED).read_bytes()
        assert proc.returncode is None, "the gateway exited at start-up"
        await asyncio.sleep(0.05)
    raise AssertionError("no self-signed certificate was written within 10s")


@pytest.mark.parametrize(
    "installer",
    [
        pytest.param(vela_core, id="vela-core"),
        pytest.param(reference_chart, id="cluster-gateway-chart"),
        pytest.param(ocm_addon, id="ocm-addon"),
    ],
)
async def test_the_command_starts_serves_and_stops_with_the_installers_args(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer, member: FakeMemberAPIServer, pod_workdir: Path, installer: Installer
) -> None:
    args, files, ca_pem, secret_namespace = installer(kube_apiserver)
    kube_apiserver.policy = [PolicyRule(users=("operator",), api_groups=("cluster.core.oam.dev",))]
    add_token_cluster(kube_apiserver, secret_namespace, "member-1", member)
    pod = prepare_pod(tmp_path, kube_apiserver, args, files)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    log = tmp_path / "gateway.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway_apiserver", *pod.argv, stderr=stderr, env=env, cwd=pod_workdir
        )
    try:
        trusted = await serving_ca(ca_pem, pod_workdir, proc)
        url = f"https://127.0.0.1:{pod.port}"
        # Probe as the kubelet does (anonymous); a connection opened before the trust was loaded has no client certificate.
        async with aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(ssl=client_ssl_context(trusted))) as probe:
            await wait_ready(probe)
        aggregator = client_ssl_context(trusted, issue_client_cert(pod.front_proxy_ca, FRONT_PROXY_CN))
        headers = {"X-Remote-User": "operator"}
        async with (
            aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(ssl=aggregator), headers=headers) as s,
            s.get(CLUSTERGATEWAYS) as resp,
        ):
            body = await resp.json()
            assert (resp.status, [i["metadata"]["name"] for i in body.get("items", [])]) == (200, ["member-1"]), body
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "Traceback" not in log.read_text(), log.read_text()
