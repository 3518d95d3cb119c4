"""kubectl exec through the gateway in hosting mode, as users run it: a kubeconfig whose server is
the cluster's proxy URL, a bearer token the gateway checks by TokenReview, each request
authorized by SubjectAccessReview. kubectl tries WebSocket `v5.channel.k8s.io` first and
falls back to SPDY/3.1 on any non-101 answer.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.hosting import CLUSTERGATEWAYS, HostingGateway
from tests.fakes.member_upgrade import FakeUpgradeMember
from tests.proxy.conftest import ALICE_TOKEN, MALLORY_TOKEN

pytestmark = pytest.mark.timeout(90)
PROXY = f"{CLUSTERGATEWAYS}/m1/proxy"


def proxy_review(user: str, uid: str, groups: list[str]) -> dict[str, Any]:
    """The SubjectAccessReview spec of a `get` on m1's proxy subresource."""
    attributes = {"verb": "get", "group": "cluster.core.oam.dev", "version": "v1alpha1", "resource": "clustergateways"}
    attributes |= {"subresource": "proxy", "name": "m1"}
    return {"user": user, "uid": uid, "groups": groups, "resourceAttributes": attributes}


async def kubectl(
    gateway: HostingGateway, tmp_path: Path, *args: str, token: str = ALICE_TOKEN, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """Run kubectl with a kubeconfig pointing at cluster m1's proxy URL; its exit code, stdout and stderr."""
    kubeconfig = gateway.write_kubeconfig(tmp_path / "m1.kubeconfig", token=token, path_prefix=PROXY)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        "--namespace=default",
        "--request-timeout=20s",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(40):
            out, err = await proc.communicate(stdin)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_kubectl_exec_prints_stdout_and_the_member_sees_only_the_gateways_credential(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember, tmp_path: Path
) -> None:
    code, out, err = await kubectl(tunnelling_gateway, tmp_path, "exec", "mypod", "--", "echo", "hello", "world")
    assert (code, out, err) == (0, "hello world\n", "")
    [conn] = upgrade_member.upgrades
    headers = conn.request.headers
    assert conn.status == 101 and conn.request.method == "GET"
    query = "command=echo&command=hello&command=world&container=main&stderr=true&stdout=true&timeout=20s"
    assert conn.request.target == f"/api/v1/namespaces/default/pods/mypod/exec?{query}"
    assert (headers["Upgrade"], headers["Sec-WebSocket-Protocol"]) == ("websocket", "v5.channel.k8s.io")
    assert headers.getall("Authorization") == [f"Bearer {upgrade_member.token}"]
    # Every request kubectl made was authenticated as alice and authorized on the proxy subresource.
    # kubectl's requests (discovery, the pod, the upgrade: all GETs) are alice's `get` of m1's proxy: one
    # review, whose allowed verdict the gateway then caches as the kube-apiserver's webhook authorizer does.
    assert tunnelling_gateway.reviews() == [proxy_review("alice", "a-1", ["devs", "system:authenticated"])]


async def test_kubectl_exec_exits_with_the_remote_exit_code(tunnelling_gateway: HostingGateway, tmp_path: Path) -> None:
    code, out, err = await kubectl(tunnelling_gateway, tmp_path, "exec", "mypod", "--", "sh", "-c", "exit 3")
    assert (code, out) == (3, "")
    assert err == "command terminated with exit code 3\n"


async def test_kubectl_exec_stdin_reaches_the_member(tunnelling_gateway: HostingGateway, tmp_path: Path) -> None:
    code, out, err = await kubectl(tunnelling_gateway, tmp_path, "exec", "-i", "mypod", "--", "cat", stdin=b"ping\npong\n")
    assert (code, out, err) == (0, "ping\npong\n", "")


async def test_a_members_refusal_is_reported_and_never_tunnelled(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember, tmp_path: Path
) -> None:
    code, out, err = await kubectl(tunnelling_gateway, tmp_path, "exec", "forbidden", "--", "echo", "x")
    assert (code, out) == (1, "")
    assert 'pods "forbidden" is forbidden: User "member" cannot create resource "pods/exec"' in err
    # WebSocket first, then the SPDY fallback on the non-101: both refusals relayed, no tunnel.
    assert [(c.request.headers["Upgrade"], c.status, bytes(c.received)) for c in upgrade_member.upgrades] == [
        ("websocket", 403, b""),
        ("SPDY/3.1", 403, b""),
    ]


async def test_a_caller_without_the_proxy_right_never_reaches_the_member(
    tunnelling_gateway: HostingGateway, upgrade_member: FakeUpgradeMember, tmp_path: Path
) -> None:
    code, out, err = await kubectl(tunnelling_gateway, tmp_path, "exec", "mypod", "--", "echo", "x", token=MALLORY_TOKEN)
    assert (code, out) == (1, "")
    # kubectl stops at discovery; client-go's discovery prints a 403 Status it asked for as aggregated
    # discovery as "unknown" (the Status itself is pinned in test_upgrade.py).
    assert err.endswith("Error from server (Forbidden): unknown\n")
    assert tunnelling_gateway.reviews() == [proxy_review("mallory", "m-1", ["system:authenticated"])]
    assert upgrade_member.connections == 0
