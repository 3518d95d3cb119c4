"""The fake member serves CustomResourceDefinitions and their objects as a kube-apiserver 1.32 does, in kube's words."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fakes.kube_store import status_object
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import client_ssl_context

pytestmark = pytest.mark.timeout(30)

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
APPROVAL = "api-approved.kubernetes.io"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


def crd(
    group: str = "example.com", *, plural: str = "widgets", kind: str = "Widget", scope: str = "Namespaced", **annotations: str
) -> dict[str, Any]:
    """A CRD with one served, stored version `v1` and a status subresource."""
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "schema": {"openAPIV3Schema": {"type": "object"}},
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", **({"annotations": annotations} if annotations else {})},
        "spec": {"group": group, "names": {"plural": plural, "kind": kind}, "scope": scope, "versions": [version]},
    }


def invalid(name: str, *causes: tuple[str, str, str]) -> dict[str, Any]:
    """Kube's 422 for a CRD: one cause per (reason, field, message)."""
    errors = [f"{field}: {message}" for _, field, message in causes]
    joined = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: {joined}',
        "reason": "Invalid",
        "details": {
            "name": name,
            "group": "apiextensions.k8s.io",
            "kind": "CustomResourceDefinition",
            "causes": [{"reason": r, "message": m, "field": f} for r, f, m in causes],
        },
        "code": 422,
    }


REQUIRED = (
    'Required value: protected groups must have approval annotation "api-approved.kubernetes.io", '
    "see https://github.com/kubernetes/enhancements/pull/1111"
)


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    async with FakeMemberAPIServer() as server:
        yield server


@pytest.fixture
async def http(member: FakeMemberAPIServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A session to the member with its admin token."""
    connector = aiohttp.TCPConnector(ssl=client_ssl_context(member.ca_pem))
    headers = {"Authorization": f"Bearer {member.token}"}
    async with aiohttp.ClientSession(base_url=member.url, connector=connector, headers=headers) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    data = None if body is None else (yaml.safe_dump(body) if content_type == APPLY else json.dumps(body))
    async with http.request(method, path, data=data, headers={"Content-Type": content_type}) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def widgets(http: aiohttp.ClientSession) -> None:
    """The Widget CRD (example.com/v1, namespaced) is installed."""
    code, _ = await call(http, "POST", CRDS, crd())
    assert code == 201


# --- API approval ----------------------------------------------------------------------------------


async def test_a_crd_in_a_k8s_io_group_without_approval_is_refused_in_kubes_words(http: aiohttp.ClientSession) -> None:
    name = "gateways.gateway.networking.k8s.io"
    code, body = await call(http, "POST", CRDS, crd("gateway.networking.k8s.io", plural="gateways", kind="Gateway"))
    assert (code, body) == (422, invalid(name, ("FieldValueRequired", f"metadata.annotations[{APPROVAL}]", REQUIRED)))
    assert (await call(http, "GET", f"{CRDS}/{name}"))[0] == 404


async def test_an_approval_that_is_neither_a_url_nor_unapproved_is_invalid(http: aiohttp.ClientSession) -> None:
    body = crd("things.kubernetes.io", plural="things", kind="Thing", **{APPROVAL: "yes please"})
    code, answer = await call(http, "POST", CRDS, body)
    message = (
        'Invalid value: "yes please": protected groups must have approval annotation "api-approved.kubernetes.io" with '
        'either a URL or a reason starting with "unapproved", see https://github.com/kubernetes/enhancements/pull/1111'
    )
    assert (code, answer) == (
        422,
        invalid("things.things.kubernetes.io", ("FieldValueInvalid", f"metadata.annotations[{APPROVAL}]", message)),
    )


@pytest.mark.parametrize(
    ("group", "annotations"),
    [
        ("gateway.networking.k8s.io", {APPROVAL: "https://github.com/kubernetes-sigs/gateway-api/pull/2466"}),
        ("k8s.io", {APPROVAL: "unapproved, experimental"}),
        ("multicluster.x-k8s.io", {}),  # x-k8s.io is not a subdomain of k8s.io: unprotected
        ("example.com", {}),
    ],
)
async def test_approved_or_unprotected_groups_are_accepted(
    http: aiohttp.ClientSession, group: str, annotations: dict[str, str]
) -> None:
    code, body = await call(http, "POST", CRDS, crd(group, **annotations))
    assert code == 201, body
    assert {c["type"]: c["status"] for c in body["status"]["conditions"]} == {"NamesAccepted": "True", "Established": "True"}


async def test_a_name_other_than_plural_dot_group_is_invalid_alongside_the_approval(http: aiohttp.ClientSession) -> None:
    body = crd("sigs.k8s.io")
    body["metadata"]["name"] = "widgets.example.com"
    code, answer = await call(http, "POST", CRDS, body)
    causes = [
        ("FieldValueInvalid", "metadata.name", 'Invalid value: "widgets.example.com": must be spec.names.plural+"."+spec.group'),
        ("FieldValueRequired", f"metadata.annotations[{APPROVAL}]", REQUIRED),
    ]
    assert (code, answer) == (422, invalid("widgets.example.com", *causes))


async def test_kubectl_reports_the_refusal_as_kube_words_it(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    manifest = yaml.safe_dump(crd("gateway.networking.k8s.io", plural="gateways", kind="Gateway"))
    code, _, err = await kubectl(member, tmp_path, "apply", "--server-side", "-f", "-", stdin=manifest)
    invalid_crd = 'The CustomResourceDefinition "gateways.gateway.networking.k8s.io" is invalid'
    assert (code, err.strip()) == (1, f"{invalid_crd}: metadata.annotations[{APPROVAL}]: {REQUIRED}")


# --- discovery ---------------------------------------------------------------------------------------


async def test_discovery_lists_a_group_once_its_crd_exists_and_forgets_it_after(http: aiohttp.ClientSession) -> None:
    code, groups = await call(http, "GET", "/apis")
    assert (code, [g["name"] for g in groups["groups"]]) == (200, ["apiextensions.k8s.io"])
    assert (await call(http, "GET", "/apis/example.com/v1"))[0] == 404

    await call(http, "POST", CRDS, crd(scope="Cluster"))
    _, groups = await call(http, "GET", "/apis")
    version = {"groupVersion": "example.com/v1", "version": "v1"}
    assert groups["groups"][1] == {"name": "example.com", "versions": [version], "preferredVersion": version}
    code, resources = await call(http, "GET", "/apis/example.com/v1")
    assert (code, resources["resources"]) == (
        200,
        [{"name": "widgets", "singularName": "widget", "namespaced": False, "kind": "Widget", "verbs": [
            "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"
        ]}],
    )  # fmt: skip

    assert (await call(http, "DELETE", f"{CRDS}/widgets.example.com"))[0] == 200
    assert [g["name"] for g in (await call(http, "GET", "/apis"))[1]["groups"]] == ["apiextensions.k8s.io"]
    assert (await call(http, "GET", "/apis/example.com/v1/widgets"))[0] == 404


# --- objects -------------------------------------------------------------------------------------------


async def test_objects_get_uid_resource_version_creation_time_and_generation(http: aiohttp.ClientSession, widgets: None) -> None:
    code, created = await call(
        http,
        "POST",
        WIDGETS,
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 1},
            "status": {"ready": True},
        },
    )
    meta = created["metadata"]
    assert (code, created["kind"], created["apiVersion"], meta["namespace"], meta["generation"]) == (
        201,
        "Widget",
        "example.com/v1",
        "default",
        1,
    )
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert "status" not in created  # with a status subresource, the main resource does not write status

    _, relabelled = await call(http, "PATCH", f"{WIDGETS}/w", {"metadata": {"labels": {"a": "b"}}}, MERGE)
    assert (relabelled["metadata"]["generation"], relabelled["metadata"]["labels"]) == (1, {"a": "b"})
    assert int(relabelled["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    _, resized = await call(http, "PATCH", f"{WIDGETS}/w", {"spec": {"size": 2}}, MERGE)
    assert (resized["metadata"]["generation"], resized["spec"], resized["metadata"]["uid"]) == (2, {"size": 2}, meta["uid"])

    code, listed = await call(http, "GET", "/apis/example.com/v1/widgets")  # across namespaces
    assert (code, listed["kind"], [i["metadata"]["name"] for i in listed["items"]]) == (200, "WidgetList", ["w"])


async def test_the_scope_of_the_path_must_match_the_crd(http: aiohttp.ClientSession, widgets: None) -> None:
    body = {"metadata": {"name": "w"}}
    not_found = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server could not find the requested resource",
        "reason": "NotFound",
        "code": 404,
    }
    assert await call(http, "POST", "/apis/example.com/v1/widgets", body) == (404, not_found)
    assert await call(http, "GET", "/apis/example.com/v2/namespaces/default/widgets") == (404, not_found)
    assert await call(http, "GET", f"{WIDGETS}/missing") == (
        404,
        {
            **not_found,
            "message": 'widgets.example.com "missing" not found',
            "details": {"name": "missing", "group": "example.com", "kind": "widgets"},
        },
    )


async def test_custom_resources_refuse_strategic_merge_patches(http: aiohttp.ClientSession, widgets: None) -> None:
    await call(http, "POST", WIDGETS, {"metadata": {"name": "w"}})
    code, body = await call(http, "PATCH", f"{WIDGETS}/w", {"spec": {}}, "application/strategic-merge-patch+json")
    message = (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )
    assert (code, body["reason"], body["message"]) == (415, "UnsupportedMediaType", message)


async def test_dry_run_writes_nothing(member: FakeMemberAPIServer, http: aiohttp.ClientSession, widgets: None) -> None:
    rv = member.store.rv
    code, body = await call(http, "POST", f"{WIDGETS}?dryRun=All", {"metadata": {"name": "w"}})
    assert (code, body["metadata"]["name"]) == (201, "w")
    assert member.store.rv == rv
    assert (await call(http, "GET", f"{WIDGETS}/w"))[0] == 404


# --- server-side apply -----------------------------------------------------------------------------------


def applied(name: str, spec: dict[str, Any], **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"annotations": annotations} if annotations else {})}
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta, "spec": spec}


async def test_apply_creates_then_updates_and_a_repeat_changes_nothing(http: aiohttp.ClientSession, widgets: None) -> None:
    code, first = await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=alice", applied("w", {"size": 1}, a="1"), APPLY)
    assert (code, first["spec"], first["metadata"]["annotations"]) == (201, {"size": 1}, {"a": "1"})
    assert [(e["manager"], e["operation"], e["apiVersion"], e["fieldsV1"]) for e in first["metadata"]["managedFields"]] == [
        ("alice", "Apply", "example.com/v1", {"f:metadata": {"f:annotations": {"f:a": {}}}, "f:spec": {"f:size": {}}})
    ]
    code, again = await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=alice", applied("w", {"size": 1}, a="1"), APPLY)
    assert (code, again) == (200, first)


async def test_apply_removes_what_the_manager_stopped_applying_but_keeps_other_managers_fields(
    http: aiohttp.ClientSession, widgets: None
) -> None:
    await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=alice", applied("w", {"size": 1, "color": "red"}, a="1"), APPLY)
    await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=bob", applied("w", {"owner": "bob"}), APPLY)

    code, body = await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=alice", applied("w", {"size": 2}), APPLY)

    assert (code, body["spec"], "annotations" in body["metadata"]) == (200, {"size": 2, "owner": "bob"}, False)
    assert body["metadata"]["generation"] == 3
    assert [e["manager"] for e in body["metadata"]["managedFields"]] == ["alice", "bob"]


def conflict(message: str, *causes: tuple[str, str]) -> dict[str, Any]:
    """Kube's 409 for an apply conflict: one cause per (manager as kube names it, field)."""
    details = {"causes": [{"reason": "FieldManagerConflict", "message": f"conflict with {m}", "field": f} for m, f in causes]}
    return status_object(409, "Conflict", message, details)


async def test_applying_another_value_to_a_field_another_manager_owns_is_a_conflict(
    member: FakeMemberAPIServer, http: aiohttp.ClientSession, widgets: None
) -> None:
    await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=alice", applied("w", {"size": 1, "color": "red"}), APPLY)
    rv = member.store.rv

    code, body = await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=bob", applied("w", {"size": 2}), APPLY)

    message = 'Apply failed with 1 conflict: conflict with "alice": .spec.size'
    assert (code, body) == (409, conflict(message, ('"alice"', ".spec.size")))
    assert (member.store.rv, member.store.get("widgets.example.com", "default", "w")["spec"]["size"]) == (rv, 1)


async def test_conflicts_are_listed_per_manager_and_an_updater_is_named_with_its_api_version(
    http: aiohttp.ClientSession, widgets: None
) -> None:
    await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=alice", applied("w", {"size": 1, "color": "red"}), APPLY)
    await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=kubectl-edit", {"spec": {"shape": "round"}}, MERGE)

    new = {"size": 2, "color": "blue", "shape": "square"}
    code, body = await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=bob", applied("w", new), APPLY)

    message = (
        'Apply failed with 3 conflicts: conflicts with "alice":\n- .spec.color\n- .spec.size\n'
        'conflicts with "kubectl-edit" using example.com/v1:\n- .spec.shape'
    )
    causes = [('"alice"', ".spec.color"), ('"alice"', ".spec.size"), ('"kubectl-edit" using example.com/v1', ".spec.shape")]
    assert (code, body) == (409, conflict(message, *causes))


async def test_the_same_value_is_shared_and_force_takes_a_field_over(http: aiohttp.ClientSession, widgets: None) -> None:
    await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=alice", applied("w", {"size": 1, "color": "red"}), APPLY)

    code, shared = await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=bob", applied("w", {"size": 1}), APPLY)
    assert code == 200
    assert {e["manager"]: e["fieldsV1"]["f:spec"] for e in shared["metadata"]["managedFields"]} == {
        "alice": {"f:color": {}, "f:size": {}},
        "bob": {"f:size": {}},
    }

    code, forced = await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=bob&force=true", applied("w", {"color": "blue"}), APPLY)
    assert (code, forced["spec"]) == (200, {"size": 1, "color": "blue"})  # bob gave up size, which alice still owns
    assert {e["manager"]: e["fieldsV1"]["f:spec"] for e in forced["metadata"]["managedFields"]} == {
        "alice": {"f:size": {}},
        "bob": {"f:color": {}},
    }


async def test_an_update_takes_the_fields_it_changes_from_their_applier(http: aiohttp.ClientSession, widgets: None) -> None:
    await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=alice", applied("w", {"size": 1, "color": "red"}), APPLY)

    _, edited = await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=kubectl-edit", {"spec": {"size": 5}}, MERGE)

    owners = {(e["manager"], e["operation"]): e["fieldsV1"]["f:spec"] for e in edited["metadata"]["managedFields"]}
    assert owners == {("alice", "Apply"): {"f:color": {}}, ("kubectl-edit", "Update"): {"f:size": {}}}
    code, _ = await call(http, "PATCH", f"{WIDGETS}/w?fieldManager=alice", applied("w", {"size": 1, "color": "red"}), APPLY)
    assert code == 409


async def test_kubectl_shows_the_conflict_and_force_conflicts_resolves_it(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    await kubectl(member, tmp_path, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(crd()))
    widget = {**applied("w", {"size": 1}), "metadata": {"name": "w", "namespace": "default"}}
    code, _, err = await kubectl(
        member, tmp_path, "apply", "--server-side", "--field-manager=alice", "-f", "-", stdin=yaml.safe_dump(widget)
    )
    assert (code, err) == (0, "")
    widget["spec"] = {"size": 2}

    code, _, err = await kubectl(
        member, tmp_path, "apply", "--server-side", "--field-manager=bob", "-f", "-", stdin=yaml.safe_dump(widget)
    )
    assert (code, err.splitlines()[0]) == (1, 'error: Apply failed with 1 conflict: conflict with "alice": .spec.size')

    args = ("apply", "--server-side", "--field-manager=bob", "--force-conflicts", "-f", "-")
    code, out, err = await kubectl(member, tmp_path, *args, stdin=yaml.safe_dump(widget))
    assert (code, out, err) == (0, "widget.example.com/w serverside-applied\n", "")
    assert member.store.get("widgets.example.com", "default", "w")["spec"] == {"size": 2}


async def test_apply_needs_a_field_manager(http: aiohttp.ClientSession, widgets: None) -> None:
    code, body = await call(http, "PATCH", f"{WIDGETS}/w", applied("w", {}), APPLY)
    assert (code, body["message"]) == (400, "PATCH requests with apply-patch content type require fieldManager")


# --- watch -----------------------------------------------------------------------------------------------------


async def test_a_watch_sees_changes_and_the_crds_deletion_ends_it(http: aiohttp.ClientSession, widgets: None) -> None:
    await call(http, "POST", WIDGETS, {"metadata": {"name": "w1"}})
    events: list[tuple[str, str, str]] = []
    async with http.get(f"{WIDGETS}?watch=true&timeoutSeconds=10") as resp:
        assert resp.status == 200

        async def read() -> None:
            async for line in resp.content:
                event = json.loads(line)
                events.append((event["type"], event["object"]["apiVersion"], event["object"]["metadata"]["name"]))

        reader = asyncio.create_task(read())
        await call(http, "POST", WIDGETS, {"metadata": {"name": "w2"}})
        await call(http, "PATCH", f"{WIDGETS}/w2", {"spec": {"size": 3}}, MERGE)
        await call(http, "DELETE", f"{CRDS}/widgets.example.com")
        async with asyncio.timeout(5):
            await reader  # the stream ends once the CRD is gone
    v1 = "example.com/v1"
    assert events == [
        ("ADDED", v1, "w1"),
        ("ADDED", v1, "w2"),
        ("MODIFIED", v1, "w2"),
        ("DELETED", v1, "w1"),
        ("DELETED", v1, "w2"),
    ]


async def kubectl(member: FakeMemberAPIServer, tmp_path: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """Run the real kubectl against the member as its admin: exit code, stdout, stderr."""
    (tmp_path / "ca.crt").write_bytes(member.ca_pem)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "m", "cluster": {"server": member.url, "certificate-authority": str(tmp_path / "ca.crt")}}],
        "users": [{"name": "u", "user": {"token": member.token}}],
        "contexts": [{"name": "m", "context": {"cluster": "m", "user": "u"}}],
        "current-context": "m",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "kubeconfig")}
    proc = await asyncio.create_subprocess_exec(
        "kubectl", *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    async with asyncio.timeout(20):
        out, err = await proc.communicate(stdin.encode())
    return proc.returncode or 0, out.decode(), err.decode()


async def test_kubectl_applies_custom_resources_server_side_with_its_default_validation(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    manifest = yaml.safe_dump_all([crd(), {**applied("w", {"size": 1}), "metadata": {"name": "w", "namespace": "default"}}])
    code, out, err = await kubectl(member, tmp_path, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(crd()))
    assert (code, out, err) == (0, "customresourcedefinition.apiextensions.k8s.io/widgets.example.com serverside-applied\n", "")
    code, out, err = await kubectl(member, tmp_path, "apply", "--server-side", "-f", "-", stdin=manifest)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com serverside-applied",
        "widget.example.com/w serverside-applied",
    ]
    assert member.store.get("widgets.example.com", "default", "w")["spec"] == {"size": 1}
