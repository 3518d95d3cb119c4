"""The standalone kubeconfig: one per port, and a certificate that covers the address it names."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from gateway_apiserver.config import Config
from gateway_apiserver.server import GatewayServer, kubeconfig_path, serving_hosts
from tests.fakes.gateway import ManualSecretSource
from tests.fakes.secrets import cluster_secret

pytestmark = pytest.mark.timeout(60)


def test_the_default_port_keeps_the_readme_path_and_other_ports_get_their_own_file() -> None:
    certs = Path("apiserver.local.config/certificates")
    assert kubeconfig_path(certs, 9443) == certs / "kubeconfig"  # the README's kubectl command
    assert kubeconfig_path(certs, 9444) == certs / "kubeconfig-9444"


def test_the_certificate_covers_a_specific_bind_address_but_not_a_wildcard() -> None:
    standalone = Config(standalone=True, bind_address="127.0.0.2")
    assert serving_hosts(standalone) == ["localhost", "127.0.0.1", "::1", "127.0.0.2"]
    assert serving_hosts(replace(standalone, bind_address="127.0.0.1")) == ["localhost", "127.0.0.1", "::1"]
    assert "0.0.0.0" not in serving_hosts(Config(bind_address="0.0.0.0"))


def server_of(kubeconfig: Path | None) -> str:
    assert kubeconfig is not None
    return str(yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"])


async def kubectl(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "kubectl", f"--kubeconfig={kubeconfig}", f"--cache-dir={kubeconfig.parent / 'cache'}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_two_standalone_gateways_sharing_a_cert_dir_each_work_with_kubectl(tmp_path: Path) -> None:
    base = Config(standalone=True, secure_port=0, cert_dir=tmp_path / "certs", tls_reload_interval=0.1)
    first = GatewayServer(replace(base, bind_address="127.0.0.1"), source=ManualSecretSource([cluster_secret("first")]))
    second = GatewayServer(replace(base, bind_address="127.0.0.2"), source=ManualSecretSource([cluster_secret("second")]))
    await first.start()
    try:
        await second.start()  # its bind address is new: the shared certificate is re-minted to cover it
        try:
            assert first.kubeconfig == tmp_path / "certs" / f"kubeconfig-{first.port}"
            assert second.kubeconfig == tmp_path / "certs" / f"kubeconfig-{second.port}"
            servers = [server_of(gw.kubeconfig) for gw in (first, second)]
            assert servers == [f"https://127.0.0.1:{first.port}", f"https://127.0.0.2:{second.port}"]
            for gw, name in ((second, "second"), (first, "first")):
                assert gw.kubeconfig is not None
                for _ in range(20):  # the first gateway picks the re-minted certificate up within its reload interval
                    code, out, err = await kubectl(gw.kubeconfig, "get", "clustergateways", "-o", "name")
                    if code == 0:
                        break
                    await asyncio.sleep(0.2)
                assert (code, out.split(), err) == (0, [f"clustergateway.cluster.core.oam.dev/{name}"], "")
        finally:
            await second.stop()
    finally:
        await first.stop()
