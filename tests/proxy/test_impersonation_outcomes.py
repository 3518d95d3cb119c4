"""Identity exchange proven by what the member lets each caller do, not by the headers sent.

The member authorizes as a kube-apiserver does: the gateway's credential (`member-admin`, in
system:masters) may impersonate anyone, and the impersonated user gets only its own RBAC:

    alice (group devs)   may list pods in team-a (as alice) and team-c (as group devs)
    auditor (auditors)   may list pods in team-b
    bob (group ops)      nothing

So "alice gets team-b" means the request ran as the gateway's credential (no impersonation,
or a privileged rule), and the member's 403 names whom it ran as.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway_apiserver.config import Config
from gateway_apiserver.registry.model import ANNOTATION_PROXY_CONFIGURATION
from gateway_apiserver.security.identity import UserInfo
from tests.fakes.gateway import RunningGateway, write_kubeconfig
from tests.fakes.kube_store import status_object
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.member_rbac import AUTH_GROUP, Rule
from tests.fakes.proxying import PROXY, identity_gateway, proxied, status_of, token_secret

pytestmark = pytest.mark.timeout(30)

USERS = {
    "alice-token": UserInfo("alice", uid="a-1", groups=("devs",), extra={"acme.com/project": ("p1",)}),
    "bob-token": UserInfo("bob", groups=("ops",)),
}
LIST_PODS = Rule(("get", "list", "watch"), resources=("pods",))
HEADER = "apiVersion: cluster.core.oam.dev/v1alpha1\nkind: ClusterGatewayProxyConfiguration\n"


def rules(*lines: str) -> str:
    """A ClusterGatewayProxyConfiguration document with the given one-line YAML rules."""
    return HEADER + "spec:\n  clientIdentityExchanger:\n    rules:\n" + "".join(f"    - {line}\n" for line in lines)


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    async with FakeMemberAPIServer() as server:
        for namespace in ("team-a", "team-b", "team-c"):
            server.add_pod(namespace, f"pod-{namespace}")
        server.rbac.grant(LIST_PODS, users=("alice",), namespace="team-a")
        server.rbac.grant(LIST_PODS, groups=("devs",), namespace="team-c")
        server.rbac.grant(LIST_PODS, groups=("auditors",), namespace="team-b")
        yield server


def gates(penetration: bool) -> dict[str, bool]:
    return {**Config().feature_gates, "ClientIdentityPenetration": penetration}


async def pods(gw: RunningGateway, token: str, namespace: str, cluster: str = "m1", query: str = "") -> tuple[int, Any]:
    """List pods in `namespace` through the proxy as the caller of `token`: (status, names or Status)."""
    path = proxied(cluster, f"/api/v1/namespaces/{namespace}/pods{query}")
    code, body = await status_of(gw, path, headers={"Authorization": f"Bearer {token}"})
    if code == 200:
        assert body["kind"] == "PodList"
        return code, [item["metadata"]["name"] for item in body["items"]]
    return code, body


def forbidden(message: str, **details: str) -> dict[str, Any]:
    """The member's 403 Status, as a kube-apiserver writes it."""
    return status_object(403, "Forbidden", message, dict(details))


def cannot_list(user: str, namespace: str) -> tuple[int, dict[str, Any]]:
    message = f'pods is forbidden: User "{user}" cannot list resource "pods" in API group "" in the namespace "{namespace}"'
    return 403, forbidden(message, kind="pods")


async def test_without_impersonation_every_caller_acts_as_the_gateway(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    # The reference's default, kept for compatibility: whoever may proxy gets the gateway's view.
    async with identity_gateway(tmp_path, token_secret("m1", member), users=USERS) as gw:
        assert await pods(gw, "bob-token", "team-b") == (200, ["pod-team-b"])
        assert await pods(gw, "alice-token", "team-b") == (200, ["pod-team-b"])


async def test_impersonate_query_acts_as_the_caller(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with identity_gateway(tmp_path, token_secret("m1", member), users=USERS) as gw:
        assert await pods(gw, "alice-token", "team-a", query="?impersonate=true") == (200, ["pod-team-a"])
        assert await pods(gw, "alice-token", "team-c", query="?impersonate=true") == (200, ["pod-team-c"])  # by group
        assert await pods(gw, "alice-token", "team-b", query="?impersonate=true") == cannot_list("alice", "team-b")
        # The same caller without the query parameter: the gateway's own view again.
        assert await pods(gw, "alice-token", "team-b") == (200, ["pod-team-b"])


async def test_client_identity_penetration_acts_as_every_caller(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with identity_gateway(tmp_path, token_secret("m1", member), users=USERS, feature_gates=gates(True)) as gw:
        assert await pods(gw, "alice-token", "team-a") == (200, ["pod-team-a"])
        assert await pods(gw, "alice-token", "team-b") == cannot_list("alice", "team-b")
        assert await pods(gw, "bob-token", "team-a") == cannot_list("bob", "team-a")


async def test_a_privileged_rule_gets_the_gateways_view(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(rules("{name: alice-is-admin, type: PrivilegedIdentityExchanger, source: {user: alice}}"))
    async with identity_gateway(
        tmp_path, token_secret("m1", member), users=USERS, feature_gates=gates(True), cluster_gateway_proxy_config=config
    ) as gw:
        assert await pods(gw, "alice-token", "team-b") == (200, ["pod-team-b"])
        assert await pods(gw, "bob-token", "team-b") == cannot_list("bob", "team-b")


async def test_a_static_mapping_acts_as_its_target(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(
        rules(
            "{name: devs-audit, type: StaticMappingIdentityExchanger, source: {group: devs},"
            " target: {user: auditor, groups: [auditors]}}"
        )
    )
    async with identity_gateway(
        tmp_path, token_secret("m1", member), users=USERS, feature_gates=gates(True), cluster_gateway_proxy_config=config
    ) as gw:
        assert await pods(gw, "alice-token", "team-b") == (200, ["pod-team-b"])  # auditors may
        assert await pods(gw, "alice-token", "team-a") == cannot_list("auditor", "team-a")  # alice's own grant is gone
        assert await pods(gw, "bob-token", "team-b") == cannot_list("bob", "team-b")  # no rule: bob as himself


async def test_a_cluster_annotation_applies_to_its_own_cluster_only(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    annotated = token_secret(
        "m1",
        member,
        annotations={
            ANNOTATION_PROXY_CONFIGURATION: rules("{name: devs-admin, type: PrivilegedIdentityExchanger, source: {group: devs}}")
        },
    )
    async with identity_gateway(tmp_path, annotated, token_secret("m2", member), users=USERS, feature_gates=gates(True)) as gw:
        assert await pods(gw, "alice-token", "team-b", cluster="m1") == (200, ["pod-team-b"])
        assert await pods(gw, "alice-token", "team-b", cluster="m2") == cannot_list("alice", "team-b")


async def test_a_credential_that_may_not_impersonate_is_refused_by_the_member(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    member.add_user("limited-token", "limited")  # may list pods everywhere, may impersonate nobody
    member.rbac.grant(LIST_PODS, users=("limited",))
    async with identity_gateway(tmp_path, token_secret("m1", member, token="limited-token"), users=USERS) as gw:
        assert await pods(gw, "alice-token", "team-b") == (200, ["pod-team-b"])
        assert await pods(gw, "alice-token", "team-a", query="?impersonate=true") == (
            403,
            forbidden(
                'users "alice" is forbidden: User "limited" cannot impersonate resource "users" in API group "" '
                "at the cluster scope",
                name="alice",
                kind="users",
            ),
        )


async def test_the_callers_groups_and_extras_are_impersonated_too(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    # A credential that may impersonate users and groups, but no extras: alice's extra is refused,
    # which shows it was sent, under its own (percent-decoded) key.
    member.add_user("impersonator-token", "impersonator")
    member.rbac.grant(Rule(("impersonate",), resources=("users", "groups")), users=("impersonator",))
    async with identity_gateway(tmp_path, token_secret("m1", member, token="impersonator-token"), users=USERS) as gw:
        assert await pods(gw, "alice-token", "team-c", query="?impersonate=true") == (
            403,
            forbidden(
                'userextras.authentication.k8s.io "p1" is forbidden: User "impersonator" cannot impersonate resource '
                '"userextras/acme.com/project" in API group "authentication.k8s.io" at the cluster scope',
                name="p1",
                group=AUTH_GROUP,
                kind="userextras",
            ),
        )
        member.rbac.grant(Rule(("impersonate",), (AUTH_GROUP,), ("userextras/acme.com/project",)), users=("impersonator",))
        # team-c is granted to the group devs only: alice's groups reached the member.
        assert await pods(gw, "alice-token", "team-c", query="?impersonate=true") == (200, ["pod-team-c"])
    # Only the allowed request got as far as acting as someone: alice, with her groups and extra, without her uid.
    acted = [r.acting_as for r in member.requests_to("/api/v1/namespaces/team-c/pods")]
    assert [(a.name, a.groups, a.uid, dict(a.extra)) for a in acted if a is not None] == [
        ("alice", ("devs", "system:authenticated"), "", {"acme.com/project": ("p1",)})
    ]


async def test_the_annotation_is_read_before_the_global_file_and_only_with_the_gate(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(
        rules(
            "{name: everyone-audits, type: StaticMappingIdentityExchanger, source: {userPattern: '.*'}, target: {user: auditor}}"
        )
    )
    annotation = rules("{name: alice-is-admin, type: PrivilegedIdentityExchanger, source: {user: alice}}")
    secret = token_secret("m1", member, annotations={ANNOTATION_PROXY_CONFIGURATION: annotation})
    async with identity_gateway(
        tmp_path, secret, users=USERS, feature_gates=gates(True), cluster_gateway_proxy_config=config
    ) as gw:
        assert await pods(gw, "alice-token", "team-a") == (200, ["pod-team-a"])  # the annotation's privileged rule won
        assert await pods(gw, "bob-token", "team-a") == cannot_list("auditor", "team-a")  # the global rule
    # Without the gate only `?impersonate=true` impersonates, and only the global file counts.
    async with identity_gateway(tmp_path, secret, users=USERS, cluster_gateway_proxy_config=config) as gw:
        assert await pods(gw, "alice-token", "team-a", query="?impersonate=true") == cannot_list("auditor", "team-a")


async def test_a_static_mapping_target_uid_is_impersonated(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(
        rules(
            "{name: bot, type: StaticMappingIdentityExchanger, source: {user: bob},"
            " target: {user: auditor, groups: [auditors], uid: '42'}}"
        )
    )
    async with identity_gateway(
        tmp_path, token_secret("m1", member), users=USERS, feature_gates=gates(True), cluster_gateway_proxy_config=config
    ) as gw:
        assert await pods(gw, "bob-token", "team-b") == (200, ["pod-team-b"])
    [acted] = [r.acting_as for r in member.requests_to("/api/v1/namespaces/team-b/pods")]
    assert acted is not None and (acted.name, acted.groups, acted.uid) == ("auditor", ("auditors", "system:authenticated"), "42")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (.ci/run installs it)")
async def test_kubectl_as_alice_sees_her_pods_and_the_members_refusal(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with identity_gateway(tmp_path, token_secret("m1", member), users=USERS, feature_gates=gates(True)) as gw:
        kubeconfig = write_kubeconfig(tmp_path / "alice.kubeconfig", gw.url + PROXY.format("m1"), gw.ca_file, "alice-token")

        async def kubectl(*args: str) -> tuple[int, str, str]:
            proc = await asyncio.create_subprocess_exec(
                "kubectl",
                f"--kubeconfig={kubeconfig}",
                f"--cache-dir={tmp_path / 'kubectl-cache'}",
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 20)
            return proc.returncode or 0, out.decode(), err.decode()

        assert await kubectl("get", "pods", "-n", "team-a", "-o", "name") == (0, "pod/pod-team-a\n", "")
        code, _, err = await kubectl("get", "pods", "-n", "team-b", "-o", "name")
    assert (code, err.strip()) == (
        1,
        'Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" '
        'in the namespace "team-b"',
    )
