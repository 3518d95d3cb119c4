"""The reference's exec-plugin cases (pkg/util/exec/exec_test.go, TestIssueClusterCredential), restated
through the proxy of a `Dynamic` cluster. A bad exec configuration is refused when the Secret is
read (GET answers 404 with the reason, as for any Secret that cannot be converted); a plugin that
fails, or prints something that is not a usable credential, makes the proxied request answer 503
naming the plugin's command and the problem, never its output. The reference runs the plugin while
converting the Secret, so its GET fails too; ours runs it only to proxy (no credential is ever served).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.gateway import RunningGateway
from tests.fakes.hosting import CLUSTERGATEWAYS
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.proxying import gateway, proxied, status_of, token_secret

pytestmark = pytest.mark.timeout(30)

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"
CLUSTER = "my-cluster"


def dynamic(member: FakeMemberAPIServer, exec_config: dict[str, Any]) -> dict[str, Any]:
    """Cluster `my-cluster` for `member`, its credential from `exec_config`."""
    return token_secret(CLUSTER, member, credential_type="Dynamic", data={"exec": json.dumps(exec_config)})


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def unusable(problem: str) -> tuple[int, dict[str, Any]]:
    """The proxy's 503 when the plugin gave no usable credential."""
    return 503, status(503, "ServiceUnavailable", f'cluster "{CLUSTER}" has no usable credential: {problem}')


def refused(reason: str) -> tuple[int, dict[str, Any]]:
    """GET's 404 when the exec configuration itself is refused at conversion."""
    message = (
        f'clustergateways.cluster.core.oam.dev "{CLUSTER}" not found: Secret vela-system/{CLUSTER} cannot be converted: {reason}'
    )
    return 404, status(404, "NotFound", message, {"name": CLUSTER, "group": "cluster.core.oam.dev", "kind": "clustergateways"})


async def proxied_version(tmp_path: Path, secret: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with gateway(tmp_path, secret) as gw:
        return await status_of(gw, proxied(CLUSTER, "/version"))


async def read(tmp_path: Path, secret: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with gateway(tmp_path, secret) as gw:
        return await status_of(gw, f"{CLUSTERGATEWAYS}/{CLUSTER}")


def echo(api_version: str, output: str) -> dict[str, Any]:
    """An exec config whose plugin is `echo -n OUTPUT`."""
    return {"apiVersion": api_version, "command": "echo", "args": ["-n", output]}


def script(tmp_path: Path, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """An exec config running a Python plugin that prints `outputs[n]` on its n-th run (the last one
    after that), and counts its runs in `runs`. `TOKEN` in an output's token is replaced by $TOKEN."""
    path = tmp_path / "plugin.py"
    path.write_text(
        "import json, os, pathlib\n"
        f"runs = pathlib.Path({str(tmp_path / 'runs')!r})\n"
        "n = int(runs.read_text()) if runs.exists() else 0\n"
        "runs.write_text(str(n + 1))\n"
        f"outputs = json.loads({json.dumps(json.dumps(outputs))})\n"
        "out = outputs[min(n, len(outputs) - 1)]\n"
        "if out['status'].get('token') == 'TOKEN':\n"
        "    out['status']['token'] = os.environ['TOKEN']\n"
        "print(json.dumps(out))\n"
    )
    return {"apiVersion": V1, "command": sys.executable, "args": [str(path)]}


def runs(tmp_path: Path) -> int:
    counter = tmp_path / "runs"
    return int(counter.read_text()) if counter.exists() else 0


def credential(token: str, expires: datetime.datetime | None = None) -> dict[str, Any]:
    status_: dict[str, Any] = {"token": token}
    if expires is not None:
        status_["expirationTimestamp"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"apiVersion": V1, "kind": "ExecCredential", "status": status_}


async def bearer_seen(gw: RunningGateway, member: FakeMemberAPIServer) -> str:
    """Proxy one request to the member; the Authorization it received."""
    code, _ = await status_of(gw, proxied(CLUSTER, "/version"))
    assert code == 200
    return member.requests[-1].headers["Authorization"]


async def test_missing_command_property_within_exec_config(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"missing command property within exec config"."""
    assert await read(tmp_path, dynamic(member, {})) == refused("data['exec'] must be a JSON object with a non-empty 'command'")


async def test_failed_to_run_external_command_command_not_found(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"failed to run external command: command not found"."""
    secret = dynamic(member, {"apiVersion": V1, "command": "/path/to/command/not/found"})
    assert await proxied_version(tmp_path, secret) == unusable(
        'exec plugin "/path/to/command/not/found" for cluster "my-cluster": executable not found'
    )
    assert member.requests == []


async def test_failed_to_run_external_command_finished_with_non_zero_exit_code(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"failed to run external command: finished with non-zero exit code"."""
    secret = dynamic(member, {"apiVersion": V1, "command": "false"})
    assert await proxied_version(tmp_path, secret) == unusable(
        'exec plugin "false" for cluster "my-cluster" failed with exit code 1'
    )


async def test_missing_api_version_in_exec_config(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"missing API version in exec config"."""
    assert await read(tmp_path, dynamic(member, {"command": "true"})) == refused(
        f"data['exec'].apiVersion None is not one of {V1}, {V1BETA1}"
    )


async def test_invalid_api_version_in_exec_config(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"invalid API version in exec config"."""
    assert await read(tmp_path, dynamic(member, {"apiVersion": "example.org/v1", "command": "true"})) == refused(
        f"data['exec'].apiVersion 'example.org/v1' is not one of {V1}, {V1BETA1}"
    )


async def test_invalid_exec_credential_json(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"invalid exec credential JSON".

    The plugin prints `[]`: refused, and its output is not quoted."""
    assert await proxied_version(tmp_path, dynamic(member, echo(V1, "[]"))) == unusable(
        'exec plugin "echo" for cluster "my-cluster" printed JSON that is not an ExecCredential'
    )


async def test_cannot_parse_the_api_version(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"cannot parse de API version"."""
    assert await read(tmp_path, dynamic(member, {"apiVersion": "a/b/c/d/e", "command": "true"})) == refused(
        f"data['exec'].apiVersion 'a/b/c/d/e' is not one of {V1}, {V1BETA1}"
    )


async def test_api_version_mismatch(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"API version mismatch".

    Configured for v1, the plugin answers v1beta1."""
    output = json.dumps({"apiVersion": V1BETA1, "kind": "ExecCredential", "status": {"token": "testToken"}})
    assert await proxied_version(tmp_path, dynamic(member, echo(V1, output))) == unusable(
        f'exec plugin "echo" for cluster "my-cluster" returned an ExecCredential whose apiVersion is not the configured {V1}'
    )


async def test_missing_status_property_on_external_command_output(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"missing status property on external command output"."""
    output = json.dumps({"apiVersion": V1, "kind": "ExecCredential"})
    assert await proxied_version(tmp_path, dynamic(member, echo(V1, output))) == unusable(
        'exec plugin "echo" for cluster "my-cluster" returned an ExecCredential without status'
    )


async def test_missing_any_auth_credential_on_status(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"missing any auth credential on status"."""
    output = json.dumps({"apiVersion": V1, "kind": "ExecCredential", "status": {}})
    assert await proxied_version(tmp_path, dynamic(member, echo(V1, output))) == unusable(
        'exec plugin "echo" for cluster "my-cluster" returned neither status.token nor a client certificate'
    )


async def test_has_cert_but_no_private_key(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"has cert but no private key"."""
    pair = member.client_cert("half")
    output = json.dumps({"apiVersion": V1, "kind": "ExecCredential", "status": {"clientCertificateData": pair.cert_pem.decode()}})
    assert await proxied_version(tmp_path, dynamic(member, echo(V1, output))) == unusable(
        'exec plugin "echo" for cluster "my-cluster" must return both status.clientCertificateData and status.clientKeyData'
    )


async def test_miss_credential_from_cache_should_issue_a_new_credential(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"MISS credential from cache, should issue a new credential".

    Nothing cached: the plugin runs (with the config's `env`) and its token is sent."""
    member.tokens["testToken"] = "member-admin"
    config = script(tmp_path, [credential("TOKEN")]) | {"env": [{"name": "TOKEN", "value": "testToken"}]}
    async with gateway(tmp_path, dynamic(member, config)) as gw:
        assert await bearer_seen(gw, member) == "Bearer testToken"
    assert runs(tmp_path) == 1


async def test_hit_credential_from_cache(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"HIT credential from cache".

    A credential valid for another hour is reused: the plugin does not run again."""
    member.tokens["testToken"] = "member-admin"
    in_an_hour = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    async with gateway(tmp_path, dynamic(member, script(tmp_path, [credential("testToken", in_an_hour)]))) as gw:
        assert [await bearer_seen(gw, member) for _ in range(3)] == ["Bearer testToken"] * 3
    assert runs(tmp_path) == 1


async def test_expired_credential_on_cache_should_issue_a_new_credential(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: exec_test.go, TestIssueClusterCredential/"expired credential on cache, should issue a new credential".

    The first credential expires in 2 s; once it is due, the next request runs the plugin again and
    sends the new token (valid for a day)."""
    member.tokens["oldToken"] = member.tokens["newToken"] = "member-admin"
    now = datetime.datetime.now(datetime.UTC)
    outputs = [
        credential("oldToken", now + datetime.timedelta(seconds=2)),
        credential("newToken", now + datetime.timedelta(days=1)),
    ]
    async with gateway(tmp_path, dynamic(member, script(tmp_path, outputs))) as gw:
        assert await bearer_seen(gw, member) == "Bearer oldToken"
        await asyncio.sleep(2.1)
        assert await bearer_seen(gw, member) == "Bearer newToken"
        assert await bearer_seen(gw, member) == "Bearer newToken"
    assert runs(tmp_path) == 2
