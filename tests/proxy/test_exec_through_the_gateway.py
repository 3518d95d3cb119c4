"""kubectl exec through the real gateway's proxy URL: the proxy handler hands the upgrade to the tunnel."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.member_upgrade import FakeUpgradeMember
from tests.fakes.secrets import cluster_secret

PROXY = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/m1/proxy"


@pytest.fixture
async def member() -> AsyncIterator[FakeUpgradeMember]:
    server = FakeUpgradeMember(token="member-secret-token")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def gateway(tmp_path: Path, member: FakeUpgradeMember) -> AsyncIterator[RunningGateway]:
    secret = cluster_secret("m1", endpoint=str(member.url), ca_pem=member.ca_pem, token=member.token)
    async with running_gateway(tmp_path, ManualSecretSource([secret])) as gw:
        yield gw


async def kubectl(gw: RunningGateway, tmp_path: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--server={gw.url}{PROXY}",
        f"--certificate-authority={gw.ca_file}",
        "--token=caller-token",
        "--namespace=default",
        "--request-timeout=20s",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 40)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_kubectl_exec_prints_stdout_with_the_member_credential(
    gateway: RunningGateway, member: FakeUpgradeMember, tmp_path: Path
) -> None:
    code, out, err = await kubectl(gateway, tmp_path, "exec", "mypod", "--", "echo", "hello", "world")
    assert (code, out) == (0, "hello world\n"), err
    [conn] = member.upgrades
    assert conn.status == 101
    assert conn.request.headers.getall("Authorization") == ["Bearer member-secret-token"]


async def test_kubectl_exec_exits_with_the_remote_exit_code(gateway: RunningGateway, tmp_path: Path) -> None:
    code, out, err = await kubectl(gateway, tmp_path, "exec", "mypod", "--", "sh", "-c", "exit 3")
    assert code == 3, (out, err)


async def test_kubectl_exec_stdin(gateway: RunningGateway, tmp_path: Path) -> None:
    code, out, err = await kubectl(gateway, tmp_path, "exec", "-i", "mypod", "--", "cat", stdin=b"ping\npong\n")
    assert (code, out) == (0, "ping\npong\n"), err
