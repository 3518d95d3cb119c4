"""Threat model: whatever a request carries, and whatever a cluster's credential is, never reaches a log line.

Log lines are read by more people than credentials are (log pipelines, support bundles). So no
line, in either `--log-format`, at any level down to DEBUG, may hold: a caller's bearer token
(valid or not), what a caller writes into `Impersonate-*` or `X-Remote-Extra-*`, a query string,
body or exec session's stdin proxied to a member, a member's credential (its Secret's token, an exec plugin's token),
or anything an exec plugin prints; in any spelling: raw, percent-encoded, base64, JSON-escaped.
Both deployments are covered: hosting mode (TokenReview, client certificates, the front proxy,
SubjectAccessReview) and standalone mode.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_apiserver.observability.access_log import ACCESS_LOGGER
from tests.fakes.hosting import SECRET_NAMESPACE, HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.log_capture import PARSERS, captured_log, leaked_forms
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.member_upgrade import FakeUpgradeMember
from tests.fakes.pki import issue_client_cert, make_ca
from tests.fakes.proxying import eventually, exec_secret, gateway, proxied, token_secret
from tests.fakes.secrets import cluster_secret

pytestmark = pytest.mark.timeout(90)
V1 = "client.authentication.k8s.io/v1"
# Each secret has characters that percent-encoding and JSON change, so every spelling is searched for.
ALICE_TOKEN = "alice-Tok3n/with+plus=="
WRONG_TOKEN = "wrong-Tok3n/never+valid="
QUERY_SECRET = "query-S3cret/value+x"
BODY_SECRET = "body-S3cret/in+a+Secret"
IMPERSONATE_SECRET = "impersonate-S3cret/extra"
FRONT_PROXY_SECRET = "front-proxy-S3cret/extra"
PLUGIN_SECRET = 'plugin-S3cret/printed"out'
PLUGIN_TOKEN = "plugin-Tok3n/the+member+refuses"
EXEC_STDIN_SECRET = "exec-stdin-S3cret/typed+in"
UPGRADE_MEMBER_TOKEN = "upgrade-member-Tok3n"
STDIN, STDOUT, CLOSE_STDIN = b"\x00", b"\x01", b"\xff\x00"  # exec's channel bytes (v5 closes stdin with 255, 0)
# What callers and plugins send that must never be logged (with the clusters' own credentials).
CALLER_SECRETS = [ALICE_TOKEN, QUERY_SECRET, BODY_SECRET, IMPERSONATE_SECRET, FRONT_PROXY_SECRET, EXEC_STDIN_SECRET]
CALLER_SECRETS += [PLUGIN_SECRET, PLUGIN_TOKEN, UPGRADE_MEMBER_TOKEN]
ALICE = {"username": "alice", "uid": "a-1", "groups": ["devs"]}
CG = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
SECRET, TOKEN = PLUGIN_SECRET, PLUGIN_TOKEN
# Plugins that fail in each way that is worth logging, each printing PLUGIN_SECRET (the last one a token the member refuses).
PLUGINS = {
    "plugin-fails": f"sys.stderr.write({SECRET!r}); print({SECRET!r}); sys.exit(1)",
    "plugin-garbage": f"print({SECRET!r})",
    "plugin-no-status": f"print(json.dumps({{'kind': 'ExecCredential', 'apiVersion': {V1!r}, 'spec': {{'x': {SECRET!r}}}}}))",
    "plugin-refused": f"sys.stderr.write({SECRET!r}); print(json.dumps({{'kind': 'ExecCredential', 'apiVersion': {V1!r}, "
    f"'status': {{'token': {TOKEN!r}}}}}))",
}
PLUGIN_FAILURES = {
    "plugin-fails": "failed with exit code 1",
    "plugin-garbage": f"printed invalid output ({len(PLUGIN_SECRET) + 1} bytes, not an ExecCredential JSON)",
    "plugin-no-status": "returned an ExecCredential without status",
}


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    """The member every cluster but `u1` points at."""
    async with FakeMemberAPIServer() as server:
        yield server


@pytest.fixture
async def upgrade_member() -> AsyncIterator[FakeUpgradeMember]:
    """The member of cluster `u1`, which runs `cat` over exec's WebSocket channels."""
    server = FakeUpgradeMember(token=UPGRADE_MEMBER_TOKEN)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def exec_cat(session: aiohttp.ClientSession, headers: dict[str, str]) -> tuple[int, str]:
    """`kubectl exec -i p -- cat` on cluster u1 over WebSocket: EXEC_STDIN_SECRET goes in and comes back out."""
    path = proxied("u1", "/api/v1/namespaces/default/pods/p/exec?command=cat&stdin=1&stdout=1")
    async with session.ws_connect(path, protocols=("v5.channel.k8s.io",), headers=headers) as ws:
        await ws.send_bytes(STDIN + EXEC_STDIN_SECRET.encode())
        echoed = await ws.receive(timeout=5)
        assert echoed.data == STDOUT + EXEC_STDIN_SECRET.encode()
        await ws.send_bytes(CLOSE_STDIN)
        async with asyncio.timeout(5):
            async for _ in ws:  # the exit status, then the member's close
                pass
    return 101, ""


def secret_body() -> bytes:
    """A Secret manifest holding BODY_SECRET, as `kubectl apply` through the proxy sends it."""
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": BODY_SECRET}}
    return json.dumps(manifest).encode()


async def send(session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> tuple[int, str]:
    """One request; its status and the Audit-Id it was answered with."""
    async with session.request(method, path, **kwargs) as resp:
        await resp.read()
        return resp.status, resp.headers["Audit-Id"]


async def send_secret_carrying_requests(session: aiohttp.ClientSession, headers: dict[str, str]) -> list[tuple[int, str]]:
    """Every kind of secret-carrying request, by the caller `headers` authenticate: a query string, a body,
    forged identity headers, an exec session's stdin, and calls to clusters whose plugins fail, print
    garbage or get refused."""
    forged = {"Impersonate-User": "admin", "Impersonate-Extra-Token": IMPERSONATE_SECRET}
    forged["X-Remote-Extra-Token"] = FRONT_PROXY_SECRET  # believed only from the front proxy's certificate
    results = [
        await send(session, "GET", proxied("c1", "/echo/get"), params={"token": QUERY_SECRET}, headers=headers),
        await send(session, "POST", proxied("c1", "/echo/create"), data=secret_body(), headers=headers),
        await send(session, "GET", proxied("c1", "/version"), headers={**headers, **forged}),
        await exec_cat(session, headers),
    ]
    for name in PLUGINS:
        results.append(await send(session, "GET", proxied(name, "/version"), headers=headers))
    return results


def assert_no_secret_in(output: str, secrets: list[str]) -> None:
    """No spelling of any of `secrets` in `output`, naming the one found."""
    for secret in secrets:
        for form in leaked_forms(secret):
            assert form not in output, f"{secret!r} logged as {form!r}"


def plugin_clusters(api: FakeKubeAPIServer, tmp_path: Path, member: FakeMemberAPIServer) -> None:
    """The PLUGINS clusters as Dynamic Secrets in the hosting cluster (the standalone manifests, stored)."""
    for name, body in PLUGINS.items():
        manifest = exec_secret(tmp_path, member, name, body)
        data = {key: base64.b64decode(value) for key, value in manifest["data"].items()}
        api.create_secret(SECRET_NAMESPACE, name, labels=manifest["metadata"]["labels"], data=data)


async def access_lines_written(output: Any, count: int, log_format: str) -> None:
    """Wait (bounded) until `count` access-log lines are out: lines written after the response count too."""
    marker = '"gateway_apiserver.access"' if log_format == "json" else " gateway_apiserver.access: "
    await eventually(lambda: output.getvalue().count(marker) >= count)


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_hosting_mode_logs_no_credential_and_no_plugin_output(
    kube_apiserver: FakeKubeAPIServer,
    member: FakeMemberAPIServer,
    upgrade_member: FakeUpgradeMember,
    tmp_path: Path,
    log_format: str,
) -> None:
    kube_apiserver.users[ALICE_TOKEN] = ALICE
    group = ("cluster.core.oam.dev",)
    kube_apiserver.policy = [  # the proxy for alice, carol (client certificate) and bob (front proxy)
        PolicyRule(
            users=("alice", "carol", "bob"), verbs=("get", "create"), api_groups=group, resources=("clustergateways/proxy",)
        ),
        PolicyRule(users=("carol",), verbs=("list",), api_groups=group, resources=("clustergateways",)),
    ]
    add_cluster(kube_apiserver, "c1", member.url, token=member.token, ca_pem=member.ca_pem)
    add_cluster(kube_apiserver, "u1", str(upgrade_member.url), token=upgrade_member.token, ca_pem=upgrade_member.ca_pem)
    plugin_clusters(kube_apiserver, tmp_path, member)
    with captured_log(log_format) as output:
        async with hosting_gateway(tmp_path, kube_apiserver) as gw:
            statuses = await hosting_requests(gw)
            await access_lines_written(output, len(statuses), log_format)
    assert statuses == [200, 200, 200, 101, 503, 503, 503, 401, 401, 200, 200]
    logged = output.getvalue()
    assert_no_secret_in(logged, [*CALLER_SECRETS, WRONG_TOKEN, member.token, kube_apiserver.gateway_token, kube_apiserver.token])
    lines = PARSERS[log_format](logged)  # every line parses, in either format
    assert_failures_logged_as_facts(lines)
    # The refused token's line names its request, and no user: authentication failed.
    (refused,) = [line for line in lines if line["message"] == "unable to authenticate the request: invalid bearer token"]
    (access,) = [line for line in lines if line["logger"] == ACCESS_LOGGER and line["auditID"] == refused["auditID"]]
    assert (refused["cluster"], refused["user"], access["status"], access["path"]) == ("", "", 401, CG)


async def hosting_requests(gw: HostingGateway) -> list[int]:
    """The secret-carrying requests by alice (a TokenReview token), then a wrong token, an untrusted certificate
    (refused by the handshake: no status), carol (a client certificate) and bob (the front proxy, with a
    secret in an extra); their statuses."""
    alice = {"Authorization": f"Bearer {ALICE_TOKEN}"}
    async with gw.session() as session:
        statuses = [status for status, _ in await send_secret_carrying_requests(session, alice)]
        statuses.append((await send(session, "GET", CG, headers={"Authorization": f"Bearer {WRONG_TOKEN}"}))[0])
    untrusted = issue_client_cert(make_ca("untrusted-ca"), "mallory")
    async with gw.session(untrusted) as session:
        with pytest.raises(aiohttp.ClientConnectionError):  # the TLS handshake refuses it, as kube's does
            await send(session, "GET", CG)
    async with gw.session(issue_client_cert(gw.client_ca, "carol", groups=("team-c",))) as session:
        statuses.append((await send(session, "GET", CG))[0])
    aggregator = issue_client_cert(gw.front_proxy_ca, "front-proxy-client")
    front_proxy = {"X-Remote-User": "bob", "X-Remote-Group": "team-b", "X-Remote-Extra-Token": FRONT_PROXY_SECRET}
    async with gw.session(aggregator) as session:
        statuses.append((await send(session, "GET", proxied("c1", "/version"), headers=front_proxy))[0])
    return statuses


def assert_failures_logged_as_facts(lines: list[dict[str, Any]]) -> None:
    """Each plugin failure is logged, by plugin command and cluster, with its stderr's size only, naming its request."""
    for name, how in PLUGIN_FAILURES.items():
        stderr_bytes = len(PLUGIN_SECRET) if name == "plugin-fails" else 0
        message = f'exec plugin "python3" for cluster "{name}" {how} (stderr: {stderr_bytes} bytes, not logged)'
        (line,) = [line for line in lines if line["message"] == message]
        assert (line["level"], line["cluster"]) == ("WARNING", name) and line["auditID"]
    refused = (
        'exec plugin "python3" for cluster "plugin-refused": the member answered 401; the plugin runs again on the next request'
    )
    (line,) = [line for line in lines if line["message"] == refused]
    assert (line["level"], line["cluster"]) == ("INFO", "plugin-refused")


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_standalone_mode_logs_no_credential_and_no_plugin_output(
    member: FakeMemberAPIServer, upgrade_member: FakeUpgradeMember, tmp_path: Path, log_format: str
) -> None:
    u1 = cluster_secret("u1", endpoint=str(upgrade_member.url), token=upgrade_member.token, ca_pem=upgrade_member.ca_pem)
    secrets = [token_secret("c1", member), u1, *(exec_secret(tmp_path, member, name, body) for name, body in PLUGINS.items())]
    with captured_log(log_format) as output:
        async with gateway(tmp_path, *secrets) as gw, gw.session() as session:
            results = await send_secret_carrying_requests(session, {"Authorization": f"Bearer {ALICE_TOKEN}"})
            await access_lines_written(output, len(results), log_format)
    assert [status for status, _ in results] == [200, 200, 200, 101, 503, 503, 503, 401]
    logged = output.getvalue()
    assert_no_secret_in(logged, [*CALLER_SECRETS, member.token])
    assert_failures_logged_as_facts(PARSERS[log_format](logged))
