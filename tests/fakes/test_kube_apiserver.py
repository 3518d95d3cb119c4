"""The fake kube-apiserver behaves like the real one, checked through real clients."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.fakes.kube_apiserver import FakeKubeAPIServer, kubectl_json
from tests.fakes.kube_store import status_object
from tests.fakes.pki import client_ssl_context

NS = "vela-system"
pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def core(hosting_admin_client: Any) -> Any:
    """A kubernetes-asyncio CoreV1Api configured from the fake's kubeconfig, as the hosting cluster's admin."""
    return client.CoreV1Api(hosting_admin_client)


@pytest.fixture
async def http(kube_apiserver: FakeKubeAPIServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A raw HTTPS session trusting the fake's CA (no credentials)."""
    connector = aiohttp.TCPConnector(ssl=client_ssl_context(kube_apiserver.ca_pem))
    async with aiohttp.ClientSession(connector=connector, base_url=kube_apiserver.url) as session:
        yield session


async def read_events(resp: aiohttp.ClientResponse, count: int, timeout: float = 3.0) -> list[dict[str, Any]]:
    """The next `count` newline-delimited watch events."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            line = await resp.content.readline()
            assert line, f"stream ended after {events}"
            events.append(json.loads(line))
    return events


def error_body(exc: ApiException) -> dict[str, Any]:
    """The Status object a kubernetes-asyncio ApiException carries."""
    body: dict[str, Any] = json.loads(exc.body or b"{}")
    return body


def names(secret_list: Any) -> list[str]:
    return [item.metadata.name for item in secret_list.items]


async def test_list_label_selectors(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    kube_apiserver.create_secret(NS, "a", labels={"tier": "db", "env": "prod"})
    kube_apiserver.create_secret(NS, "b", labels={"tier": "web", "env": "dev"})
    kube_apiserver.create_secret(NS, "c", labels={"env": "prod"})
    kube_apiserver.create_secret("other", "d", labels={"tier": "db"})
    cases = {
        "tier": ["a", "b"],
        "!tier": ["c"],
        "tier=db": ["a"],
        "tier==db": ["a"],
        "tier!=db": ["b", "c"],
        "tier in (db, web)": ["a", "b"],
        "tier notin (db)": ["b", "c"],
        "env=prod,tier": ["a"],
        "env in (prod),tier notin (web,db)": ["c"],
        "": ["a", "b", "c"],
    }
    for sel, expected in cases.items():
        assert names(await core.list_namespaced_secret(NS, label_selector=sel)) == expected, sel
    with pytest.raises(ApiException) as err:
        await core.list_namespaced_secret(NS, label_selector="tier in (db")
    assert err.value.status == 400
    everywhere = await core.list_secret_for_all_namespaces(label_selector="tier=db")
    assert [(s.metadata.namespace, s.metadata.name) for s in everywhere.items] == [("other", "d"), (NS, "a")]


async def test_list_field_selector_and_shape(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    kube_apiserver.create_secret(NS, "x", labels={"k": "v"}, data={"token": "s3cret"}, annotations={"a": "b"})
    kube_apiserver.create_secret(NS, "y")
    assert names(await core.list_namespaced_secret(NS, field_selector="metadata.name=x")) == ["x"]
    assert names(await core.list_namespaced_secret(NS, field_selector="metadata.name!=x")) == ["y"]
    resp = await core.list_namespaced_secret(NS, _preload_content=False)
    body = json.loads(await resp.read())
    assert body["kind"] == "SecretList" and body["apiVersion"] == "v1"
    assert body["metadata"] == {"resourceVersion": str(kube_apiserver.resource_version)}
    item = body["items"][0]
    assert "kind" not in item and "apiVersion" not in item  # as the real server
    meta = item["metadata"]
    assert meta["name"] == "x" and meta["namespace"] == NS and meta["labels"] == {"k": "v"}
    assert meta["annotations"] == {"a": "b"} and len(meta["uid"]) == 36
    assert meta["creationTimestamp"].endswith("Z") and len(meta["creationTimestamp"]) == 20
    assert base64.b64decode(item["data"]["token"]) == b"s3cret" and item["type"] == "Opaque"
    assert int(meta["resourceVersion"]) < int(body["metadata"]["resourceVersion"])


async def test_pagination_is_a_consistent_snapshot(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    for i in range(5):
        kube_apiserver.create_secret(NS, f"s{i}", labels={"l": "1"})
    first = await core.list_namespaced_secret(NS, limit=2)
    assert names(first) == ["s0", "s1"]
    assert first.metadata.remaining_item_count == 3 and first.metadata._continue
    # Changes after the first page must not show up in later pages of the same list.
    kube_apiserver.delete_secret(NS, "s3")
    kube_apiserver.create_secret(NS, "s2a")
    second = await core.list_namespaced_secret(NS, limit=2, _continue=first.metadata._continue)
    third = await core.list_namespaced_secret(NS, limit=2, _continue=second.metadata._continue)
    assert names(second) + names(third) == ["s2", "s3", "s4"]
    assert third.metadata._continue is None
    assert first.metadata.resource_version == second.metadata.resource_version == third.metadata.resource_version
    fresh = await core.list_namespaced_secret(NS)
    assert names(fresh) == ["s0", "s1", "s2", "s2a", "s4"]


async def test_expired_continue_token_is_410(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    for i in range(3):
        kube_apiserver.create_secret(NS, f"s{i}")
    first = await core.list_namespaced_secret(NS, limit=1)
    kube_apiserver.create_secret(NS, "later")
    kube_apiserver.compact()
    with pytest.raises(ApiException) as err:
        await core.list_namespaced_secret(NS, limit=1, _continue=first.metadata._continue)
    assert err.value.status == 410
    assert error_body(err.value)["reason"] == "Expired"


async def test_list_resource_version_semantics(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    kube_apiserver.create_secret(NS, "a")
    at = kube_apiserver.resource_version
    kube_apiserver.create_secret(NS, "b")
    exact = await core.list_namespaced_secret(NS, resource_version=str(at), resource_version_match="Exact")
    assert names(exact) == ["a"] and exact.metadata.resource_version == str(at)
    assert names(await core.list_namespaced_secret(NS, resource_version="0")) == ["a", "b"]
    with pytest.raises(ApiException) as err:
        await core.list_namespaced_secret(NS, resource_version=str(at + 100))
    assert err.value.status == 504
    assert error_body(err.value) == too_large(at + 100, kube_apiserver.resource_version)


def too_large(wanted: int, current: int) -> dict[str, Any]:
    """The kube-apiserver's answer to a list at a resourceVersion it has not reached."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"Too large resource version: {wanted}, current: {current}",
        "reason": "Timeout",
        "details": {
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        },
        "code": 504,
    }


async def test_an_exact_list_at_a_future_resource_version_is_504_too_large(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    kube_apiserver.create_secret(NS, "a")
    future = kube_apiserver.resource_version + 1
    with pytest.raises(ApiException) as err:
        await core.list_namespaced_secret(NS, resource_version=str(future), resource_version_match="Exact")
    assert err.value.status == 504
    assert error_body(err.value) == too_large(future, future - 1)
    kube_apiserver.create_secret(NS, "b")  # once the store reaches it, the same request is served
    exact = await core.list_namespaced_secret(NS, resource_version=str(future), resource_version_match="Exact")
    assert names(exact) == ["a", "b"] and exact.metadata.resource_version == str(future)


async def test_continue_with_a_resource_version_is_400(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    for i in range(3):
        kube_apiserver.create_secret(NS, f"s{i}")
    first = await core.list_namespaced_secret(NS, limit=1)
    token, rv = first.metadata._continue, first.metadata.resource_version
    with pytest.raises(ApiException) as err:
        await core.list_namespaced_secret(NS, limit=1, _continue=token, resource_version=rv)
    assert err.value.status == 400
    assert error_body(err.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "specifying resource version is not allowed when using continue",
        "reason": "BadRequest",
        "code": 400,
    }
    # resourceVersion=0 means "any", which the storage layer lets through with a continue token.
    assert names(await core.list_namespaced_secret(NS, limit=1, _continue=token, resource_version="0")) == ["s1"]


async def test_crud_statuses(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    body = {"metadata": {"name": "n", "labels": {"x": "1"}}, "stringData": {"k": "v"}}
    created = await core.create_namespaced_secret(NS, body)
    assert created.data == {"k": base64.b64encode(b"v").decode()} and created.type == "Opaque"
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_secret(NS, body)
    assert err.value.status == 409
    assert error_body(err.value)["message"] == 'secrets "n" already exists'
    got = await core.read_namespaced_secret("n", NS)
    assert got.metadata.uid == created.metadata.uid
    got.metadata.labels = {"x": "2"}
    updated = await core.replace_namespaced_secret("n", NS, got)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    same = await core.replace_namespaced_secret("n", NS, updated)  # a no-op keeps the RV
    assert same.metadata.resource_version == updated.metadata.resource_version
    got.metadata.labels = {"x": "3"}  # still carries the old RV
    with pytest.raises(ApiException) as err:
        await core.replace_namespaced_secret("n", NS, got)
    assert err.value.status == 409 and "the object has been modified" in error_body(err.value)["message"]
    status = await core.delete_namespaced_secret("n", NS)
    assert status.status == "Success" and status.details.uid == created.metadata.uid
    for call in (core.read_namespaced_secret("n", NS), core.delete_namespaced_secret("n", NS)):
        with pytest.raises(ApiException) as err:
            await call
        assert err.value.status == 404
        assert error_body(err.value)["message"] == 'secrets "n" not found'


async def test_authentication(kube_apiserver: FakeKubeAPIServer, http: aiohttp.ClientSession) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {kube_apiserver.token}"}):
        async with http.get(f"/api/v1/namespaces/{NS}/secrets", headers=headers) as resp:
            assert resp.status == 401
            assert (await resp.json())["reason"] == "Unauthorized"
    async with http.get("/version") as resp:
        assert resp.status == 200 and (await resp.json())["major"] == "1"
    auth = {"Authorization": f"Bearer {kube_apiserver.token}"}
    async with http.get("/api", headers=auth) as resp:
        assert (await resp.json())["versions"] == ["v1"]
    async with http.get("/api/v1/namespaces/x/widgets", headers=auth) as resp:
        assert resp.status == 404 and (await resp.json())["kind"] == "Status"


async def test_watch_initial_live_bookmarks_and_timeout(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    kube_apiserver.create_secret(NS, "a")
    kube_apiserver.create_secret("elsewhere", "z")
    resp = await core.list_namespaced_secret(
        NS, watch=True, allow_watch_bookmarks=True, timeout_seconds=2, _preload_content=False
    )
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    (added,) = await read_events(resp, 1)
    assert added["type"] == "ADDED" and added["object"]["kind"] == "Secret"
    assert added["object"]["metadata"]["name"] == "a"
    kube_apiserver.update_secret(NS, "a", labels={"v": "2"})
    kube_apiserver.delete_secret(NS, "a")
    modified, deleted = await read_events(resp, 2)
    assert modified["type"] == "MODIFIED" and modified["object"]["metadata"]["labels"] == {"v": "2"}
    assert deleted["type"] == "DELETED"
    assert deleted["object"]["metadata"]["resourceVersion"] == str(kube_apiserver.resource_version)
    (bookmark,) = await read_events(resp, 1)
    assert bookmark == {
        "type": "BOOKMARK",
        "object": {"kind": "Secret", "apiVersion": "v1", "metadata": {"resourceVersion": str(kube_apiserver.resource_version)}},
    }
    async with asyncio.timeout(4):  # timeoutSeconds=2: the server ends the stream cleanly
        rest = await resp.content.read()
    lines = rest.splitlines()
    assert lines and all(json.loads(line)["type"] == "BOOKMARK" for line in lines)
    resp.close()


async def test_watch_from_resource_version_replays_history(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    kube_apiserver.create_secret(NS, "a")
    since = kube_apiserver.resource_version
    kube_apiserver.create_secret(NS, "b")
    kube_apiserver.delete_secret(NS, "a")
    resp = await core.list_namespaced_secret(NS, watch=True, resource_version=str(since), _preload_content=False)
    events = await read_events(resp, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b"), ("DELETED", "a")]
    resp.close()


async def test_a_lagging_watch_sends_each_change_late_in_order_and_no_bookmark(
    kube_apiserver: FakeKubeAPIServer, core: Any
) -> None:
    kube_apiserver.watch_lag = 0.3
    resp = await core.list_namespaced_secret(
        NS, watch=True, allow_watch_bookmarks=True, timeout_seconds=2, _preload_content=False
    )
    loop = asyncio.get_running_loop()
    written = loop.time()
    kube_apiserver.create_secret(NS, "a")
    kube_apiserver.delete_secret(NS, "a")
    events = await read_events(resp, 2)
    assert loop.time() - written >= 0.3
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a"), ("DELETED", "a")]
    async with asyncio.timeout(4):  # nothing else until timeoutSeconds: a bookmark would announce unsent versions
        assert await resp.content.read() == b""
    resp.close()


async def test_merge_patch_of_a_secret_is_recorded_bumps_the_rv_and_reaches_watchers(
    kube_apiserver: FakeKubeAPIServer, core: Any
) -> None:
    kube_apiserver.create_secret(NS, "a", annotations={"keep": "1", "drop": "2"})
    since = kube_apiserver.resource_version
    watch = await core.list_namespaced_secret(NS, watch=True, resource_version=str(since), _preload_content=False)
    patch = {"metadata": {"annotations": {"drop": None, "new": "3"}}}
    patched = await core.patch_namespaced_secret("a", NS, patch, _content_type="application/merge-patch+json")
    assert patched.metadata.annotations == {"keep": "1", "new": "3"}
    assert int(patched.metadata.resource_version) == since + 1
    assert kube_apiserver.patches == [(f"/api/v1/namespaces/{NS}/secrets/a", "application/merge-patch+json", patch)]
    [event] = await read_events(watch, 1)
    assert (event["type"], event["object"]["metadata"]["annotations"]) == ("MODIFIED", {"keep": "1", "new": "3"})
    watch.close()
    with pytest.raises(ApiException) as err:  # the only patch type the fake applies
        await core.patch_namespaced_secret("a", NS, [], _content_type="application/json-patch+json")
    assert err.value.status == 415


async def test_watch_too_old_is_error_event(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    kube_apiserver.create_secret(NS, "a")
    old = kube_apiserver.resource_version
    kube_apiserver.create_secret(NS, "b")
    kube_apiserver.compact()
    resp = await core.list_namespaced_secret(NS, watch=True, resource_version=str(old), _preload_content=False)
    assert resp.status == 200
    async with asyncio.timeout(3):
        lines = (await resp.content.read()).splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {old} ({kube_apiserver.resource_version})",
                "reason": "Expired",
                "code": 410,
            },
        }
    ]


async def test_watch_selector_transitions(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    kube_apiserver.create_secret(NS, "a", labels={"cluster": "yes"})
    resp = await core.list_namespaced_secret(NS, watch=True, label_selector="cluster", _preload_content=False)
    assert (await read_events(resp, 1))[0]["type"] == "ADDED"
    kube_apiserver.update_secret(NS, "a", labels={})
    kube_apiserver.create_secret(NS, "unrelated")
    kube_apiserver.update_secret(NS, "a", labels={"cluster": "again"})
    gone, back = await read_events(resp, 2)
    assert gone["type"] == "DELETED" and gone["object"]["metadata"]["labels"] == {"cluster": "yes"}
    assert back["type"] == "ADDED" and back["object"]["metadata"]["labels"] == {"cluster": "again"}
    assert int(gone["object"]["metadata"]["resourceVersion"]) < int(back["object"]["metadata"]["resourceVersion"])
    resp.close()


async def test_kubernetes_asyncio_watch_helper(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    kube_apiserver.create_secret(NS, "a")
    seen = []
    w = watch.Watch()
    async with asyncio.timeout(5):
        async for event in w.stream(core.list_namespaced_secret, NS, timeout_seconds=2):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 1:
                kube_apiserver.create_secret(NS, "b")
            else:
                w.stop()
    assert seen == [("ADDED", "a"), ("ADDED", "b")]
    await w.close()


async def test_drop_restart_and_hang(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    resp = await core.list_namespaced_secret(NS, watch=True, _preload_content=False)
    await asyncio.sleep(0.05)
    assert kube_apiserver.open_watches == 1
    kube_apiserver.drop_watches()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with asyncio.timeout(3):
            await resp.content.read()
    resp.close()
    kube_apiserver.create_secret(NS, "kept")
    port = kube_apiserver.port
    await kube_apiserver.restart()
    assert kube_apiserver.port == port
    assert names(await core.list_namespaced_secret(NS)) == ["kept"]
    kube_apiserver.hang_watches = True
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await core.list_namespaced_secret(NS, watch=True, _preload_content=False)
    assert kube_apiserver.watch_requests == 2


async def test_injected_failure(kube_apiserver: FakeKubeAPIServer, core: Any) -> None:
    kube_apiserver.inject_failure(503, when=FakeKubeAPIServer.is_watch)
    assert names(await core.list_namespaced_secret(NS)) == []
    resp = await core.list_namespaced_secret(NS, watch=True, _preload_content=False)
    assert resp.status == 503
    resp.close()


async def test_sync_client_and_kubectl(kube_apiserver: FakeKubeAPIServer, tmp_path: Path) -> None:
    kube_apiserver.create_secret(NS, "a", labels={"cluster.core.oam.dev/cluster-credential-type": "X509Certificate"})
    kubeconfig = kube_apiserver.write_kubeconfig(tmp_path / "kubeconfig")

    def sync_list() -> list[str]:
        from kubernetes import client as sync_client
        from kubernetes import config as sync_config

        api: Any = sync_config.new_client_from_config(str(kubeconfig))
        try:
            return names(sync_client.CoreV1Api(api).list_namespaced_secret(NS))
        finally:
            api.close()

    assert await asyncio.to_thread(sync_list) == ["a"]
    listed = await kubectl_json(kubeconfig, "get", "secrets", "-n", NS, "-l", "cluster.core.oam.dev/cluster-credential-type")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]


# --- the fake's own RBAC: the gateway's ServiceAccount has what deploy/rbac.yaml grants, no more ---------

GATEWAY = "system:serviceaccount:vela-system:gateway-apiserver"
TRUST = "extension-apiserver-authentication"


def forbidden(message: str, **details: str) -> dict[str, Any]:
    """The 403 Status kube's authorizer answers."""
    return status_object(403, "Forbidden", message, dict(details))


async def gateway_get(kube_apiserver: FakeKubeAPIServer, http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    """GET `path` with the gateway's ServiceAccount token: (status, JSON body or first watch line)."""
    async with http.get(path, headers={"Authorization": f"Bearer {kube_apiserver.gateway_token}"}) as resp:
        if resp.status == 200 and "watch=1" in path:
            return resp.status, resp.headers["Transfer-Encoding"]  # a watch stream was opened
        return resp.status, await resp.json()


async def test_the_gateway_reads_secrets_of_its_own_namespace_only(
    kube_apiserver: FakeKubeAPIServer, http: aiohttp.ClientSession
) -> None:
    kube_apiserver.refusals_expected = True
    kube_apiserver.create_secret(NS, "c1")
    kube_apiserver.create_secret("other", "c2")
    status, listed = await gateway_get(kube_apiserver, http, f"/api/v1/namespaces/{NS}/secrets?limit=500")
    assert (status, [i["metadata"]["name"] for i in listed["items"]]) == (200, ["c1"])
    assert await gateway_get(kube_apiserver, http, f"/api/v1/namespaces/{NS}/secrets?watch=1&timeoutSeconds=1") == (
        200,
        "chunked",
    )
    assert await gateway_get(kube_apiserver, http, "/api/v1/namespaces/other/secrets") == (
        403,
        forbidden(
            f'secrets is forbidden: User "{GATEWAY}" cannot list resource "secrets" in API group "" in the namespace "other"',
            kind="secrets",
        ),
    )
    assert await gateway_get(kube_apiserver, http, "/api/v1/namespaces/other/secrets/c2") == (
        403,
        forbidden(
            f'secrets "c2" is forbidden: User "{GATEWAY}" cannot get resource "secrets" in API group "" in the namespace "other"',
            name="c2",
            kind="secrets",
        ),
    )
    assert await gateway_get(kube_apiserver, http, "/api/v1/secrets?watch=1") == (
        403,
        forbidden(
            f'secrets is forbidden: User "{GATEWAY}" cannot watch resource "secrets" in API group "" at the cluster scope',
            kind="secrets",
        ),
    )
    assert len(kube_apiserver.forbidden) == 3  # each refusal is on the fake's record


async def test_the_trust_configmap_is_readable_by_name_only(
    kube_apiserver: FakeKubeAPIServer, http: aiohttp.ClientSession
) -> None:
    kube_apiserver.refusals_expected = True
    kube_apiserver.set_authentication_configmap(client_ca_pem="pem")
    kube_apiserver.put_configmap("kube-system", "other", {"k": "v"})
    by_name = f"fieldSelector=metadata.name%3D{TRUST}"
    status, listed = await gateway_get(kube_apiserver, http, f"/api/v1/namespaces/kube-system/configmaps?{by_name}")
    assert (status, [i["metadata"]["name"] for i in listed["items"]]) == (200, [TRUST])
    watch = f"/api/v1/namespaces/kube-system/configmaps?watch=1&timeoutSeconds=1&{by_name}"
    assert await gateway_get(kube_apiserver, http, watch) == (200, "chunked")
    status, got = await gateway_get(kube_apiserver, http, f"/api/v1/namespaces/kube-system/configmaps/{TRUST}")
    assert (status, got["data"]) == (200, {"client-ca-file": "pem"})
    # Kube takes the name of a list or watch from its field selector: without one, the named rule does not apply.
    assert await gateway_get(kube_apiserver, http, "/api/v1/namespaces/kube-system/configmaps?watch=1") == (
        403,
        forbidden(
            f'configmaps is forbidden: User "{GATEWAY}" cannot watch resource "configmaps" in API group "" '
            'in the namespace "kube-system"',
            kind="configmaps",
        ),
    )
    other = "/api/v1/namespaces/kube-system/configmaps?fieldSelector=metadata.name%3Dother"
    assert await gateway_get(kube_apiserver, http, other) == (
        403,
        forbidden(
            f'configmaps "other" is forbidden: User "{GATEWAY}" cannot list resource "configmaps" in API group "" '
            'in the namespace "kube-system"',
            name="other",
            kind="configmaps",
        ),
    )


async def test_the_gateway_may_review_tokens_and_access_and_discover(
    kube_apiserver: FakeKubeAPIServer, http: aiohttp.ClientSession
) -> None:
    kube_apiserver.refusals_expected = True
    auth = {"Authorization": f"Bearer {kube_apiserver.gateway_token}"}
    review = {"spec": {"token": kube_apiserver.token}}
    async with http.post("/apis/authentication.k8s.io/v1/tokenreviews", json=review, headers=auth) as resp:
        assert (resp.status, (await resp.json())["status"]["user"]["username"]) == (201, "kubernetes-admin")
    access = {"spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "clustergateways"}}}
    async with http.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=access, headers=auth) as resp:
        assert (resp.status, (await resp.json())["status"]) == (201, {"allowed": False})
    status, versions = await gateway_get(kube_apiserver, http, "/api")
    assert (status, versions["versions"]) == (200, ["v1"])
    assert await gateway_get(kube_apiserver, http, "/metrics") == (
        403,
        forbidden(f'forbidden: User "{GATEWAY}" cannot get path "/metrics"'),
    )


async def test_a_user_without_bindings_may_discover_and_nothing_else(
    kube_apiserver: FakeKubeAPIServer, http: aiohttp.ClientSession
) -> None:
    kube_apiserver.users["alice-token"] = {"username": "alice", "groups": ["devs"]}
    auth = {"Authorization": "Bearer alice-token"}
    async with http.get("/apis", headers=auth) as resp:
        assert resp.status == 200
    async with http.get(f"/api/v1/namespaces/{NS}/secrets", headers=auth) as resp:
        assert (resp.status, await resp.json()) == (
            403,
            forbidden(
                'secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" '
                'in the namespace "vela-system"',
                kind="secrets",
            ),
        )


async def test_writes_record_managed_fields_with_manager_and_time_as_kube_does(
    kube_apiserver: FakeKubeAPIServer, core: Any, http: aiohttp.ClientSession
) -> None:
    """Each write is its field manager's (the User-Agent's product, or ?fieldManager=), with the fields it set and
    the time (whole seconds) of its last change; a write that changes nothing keeps them."""
    created = await core.create_namespaced_secret(
        NS, {"metadata": {"name": "m", "labels": {"l": "1"}}, "data": {"a": "YQ=="}}, _preload_content=False
    )
    (entry,) = json.loads(await created.read())["metadata"]["managedFields"]
    assert entry == {
        "manager": "OpenAPI-Generator",  # kubernetes-asyncio's User-Agent is OpenAPI-Generator/<version>/python
        "operation": "Update",
        "apiVersion": "v1",
        "time": entry["time"],
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:l": {}}}, "f:type": {}},
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["time"])

    headers = {"Authorization": f"Bearer {kube_apiserver.token}", "Content-Type": "application/merge-patch+json"}
    patch = {"data": {"a": "Yg==", "b": "Yg=="}}
    path = f"/api/v1/namespaces/{NS}/secrets/m"
    async with http.patch(path, params={"fieldManager": "patcher"}, json=patch, headers=headers) as resp:
        assert resp.status == 200
        patched = await resp.json()
    first, second = patched["metadata"]["managedFields"]
    assert first == {**entry, "fieldsV1": {"f:data": {".": {}}, "f:metadata": {"f:labels": {".": {}, "f:l": {}}}, "f:type": {}}}
    assert (second["manager"], second["operation"], second["fieldsV1"]) == (
        "patcher",
        "Update",
        {"f:data": {"f:a": {}, "f:b": {}}},
    )
    assert second["time"] >= entry["time"]

    async with http.patch(path, params={"fieldManager": "other"}, json=patch, headers=headers) as resp:
        assert (resp.status, await resp.json()) == (200, patched)  # nothing changed: same version, same managers
    (event,) = [
        e for e in kube_apiserver.store.log if e.object["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
    ]
    assert event.object["metadata"]["managedFields"] == patched["metadata"]["managedFields"]  # what watchers receive
