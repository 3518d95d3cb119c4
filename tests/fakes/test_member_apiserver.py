"""The fake member answers lists, watches and impersonation as a kube-apiserver 1.32 does, in kube's words."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.member_rbac import Rule
from tests.fakes.member_store import INCONSISTENT_CONTINUE, LIST_TOO_OLD, decode_continue
from tests.fakes.pki import client_ssl_context

pytestmark = pytest.mark.timeout(20)
CMS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    """A member holding cm-0..cm-4 in `default` (cm-0, cm-2, cm-4 labelled even=true)."""
    async with FakeMemberAPIServer() as server:
        for i in range(5):
            labels = {"even": "true"} if i % 2 == 0 else {}
            server.store.create("configmaps", "default", {"metadata": {"name": f"cm-{i}", "labels": labels}})
        yield server


@pytest.fixture
async def http(member: FakeMemberAPIServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A session to the member with the gateway's (admin) token."""
    connector = aiohttp.TCPConnector(ssl=client_ssl_context(member.ca_pem))
    headers = {"Authorization": f"Bearer {member.token}"}
    async with aiohttp.ClientSession(base_url=member.url, connector=connector, headers=headers) as session:
        yield session


async def get(http: aiohttp.ClientSession, path: str, **headers: str) -> tuple[int, Any]:
    async with http.get(path, headers=headers) as resp:
        return resp.status, await resp.json()


def names(body: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in body["items"]]


def status(code: int, reason: str, message: str, **more: Any) -> dict[str, Any]:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason}
    return {**body, **more, "code": code}


# --- paging --------------------------------------------------------------------------------------


async def test_limit_pages_with_continue_and_remaining_count(member: FakeMemberAPIServer, http: aiohttp.ClientSession) -> None:
    code, first = await get(http, f"{CMS}?limit=2")
    assert (code, names(first), first["metadata"]["remainingItemCount"]) == (200, ["cm-0", "cm-1"], 3)
    rv = first["metadata"]["resourceVersion"]
    assert decode_continue(first["metadata"]["continue"]) == (int(rv), "cm-1\x00")  # kube's token shape
    member.store.create("configmaps", "default", {"metadata": {"name": "cm-3a"}})  # after the snapshot
    code, second = await get(http, f"{CMS}?limit=2&continue={first['metadata']['continue']}")
    assert (code, names(second), second["metadata"]["resourceVersion"]) == (200, ["cm-2", "cm-3"], rv)
    code, last = await get(http, f"{CMS}?limit=2&continue={second['metadata']['continue']}")
    assert (code, names(last), last["metadata"]) == (200, ["cm-4"], {"resourceVersion": rv})


async def test_a_selector_hides_the_remaining_count(http: aiohttp.ClientSession) -> None:
    code, first = await get(http, f"{CMS}?limit=2&labelSelector=even%3Dtrue")
    assert (code, names(first)) == (200, ["cm-0", "cm-2"])
    assert "remainingItemCount" not in first["metadata"] and first["metadata"]["continue"]


async def test_resource_version_0_is_served_whole_from_the_watch_cache(http: aiohttp.ClientSession) -> None:
    code, body = await get(http, f"{CMS}?limit=2&resourceVersion=0")
    assert (code, len(body["items"]), "continue" in body["metadata"]) == (200, 5, False)


async def test_a_continue_from_a_compacted_snapshot_is_410_with_a_fresh_token(
    member: FakeMemberAPIServer, http: aiohttp.ClientSession
) -> None:
    _, first = await get(http, f"{CMS}?limit=2")
    member.store.create("configmaps", "default", {"metadata": {"name": "cm-9"}})
    member.compact()
    code, body = await get(http, f"{CMS}?limit=2&continue={first['metadata']['continue']}")
    fresh = body["metadata"].pop("continue")
    assert (code, body) == (410, status(410, "Expired", INCONSISTENT_CONTINUE))
    assert decode_continue(fresh) == (-1, "cm-1\x00")
    # The fresh token continues at the latest state: an inconsistent list, as kube warns.
    code, rest = await get(http, f"{CMS}?limit=10&continue={fresh}")
    assert (code, names(rest)) == (200, ["cm-2", "cm-3", "cm-4", "cm-9"])


@pytest.mark.parametrize(
    ("query", "code", "reason", "message"),
    [
        ("continue=bm90LWEtdG9rZW4", 400, "BadRequest", "invalid continue token: continue key is not valid"),
        ("resourceVersion=abc", 400, "BadRequest", "invalid resource version: abc"),
        (
            "resourceVersionMatch=Exact",
            422,
            "Invalid",
            'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden '
            "unless resourceVersion is provided",
        ),
        (
            "resourceVersion=0&resourceVersionMatch=Exact",
            422,
            "Invalid",
            'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is '
            'forbidden for resourceVersion "0"',
        ),
        (
            "resourceVersion=3&resourceVersionMatch=Newest",
            422,
            "Invalid",
            'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Unsupported value: "Newest": supported values: '
            '"Exact", "NotOlderThan", ""',
        ),
    ],
)
async def test_bad_list_options_are_refused_in_kubes_words(
    http: aiohttp.ClientSession, query: str, code: int, reason: str, message: str
) -> None:
    got, body = await get(http, f"{CMS}?{query}")
    assert (got, body["kind"], body["reason"], body["message"], body["code"]) == (code, "Status", reason, message, code)


async def test_continue_with_a_resource_version_is_400(http: aiohttp.ClientSession) -> None:
    _, first = await get(http, f"{CMS}?limit=2")
    token = first["metadata"]["continue"]
    code, body = await get(http, f"{CMS}?limit=2&continue={token}&resourceVersion=3")
    assert (code, body) == (400, status(400, "BadRequest", "specifying resource version is not allowed when using continue"))
    code, body = await get(http, f"{CMS}?limit=2&continue={token}&resourceVersionMatch=NotOlderThan&resourceVersion=3")
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["message"].endswith(": Forbidden: resourceVersionMatch is forbidden when continue is provided")
    code, body = await get(http, f"{CMS}?limit=2&continue={token}&resourceVersion=0")  # 0 is tolerated
    assert (code, names(body)) == (200, ["cm-2", "cm-3"])


# --- resourceVersion -----------------------------------------------------------------------------


async def test_exact_serves_the_past_and_refuses_the_compacted_and_the_future(
    member: FakeMemberAPIServer, http: aiohttp.ClientSession
) -> None:
    then = member.store.rv
    member.store.delete("configmaps", "default", "cm-0")
    code, body = await get(http, f"{CMS}?resourceVersion={then}&resourceVersionMatch=Exact")
    assert (code, names(body), body["metadata"]["resourceVersion"]) == (200, [f"cm-{i}" for i in range(5)], str(then))
    code, body = await get(http, f"{CMS}?resourceVersion={then}&limit=2")  # legacy: limit makes it exact
    assert (code, names(body)) == (200, ["cm-0", "cm-1"])
    code, body = await get(http, f"{CMS}?resourceVersion={then}&resourceVersionMatch=NotOlderThan")
    assert (code, names(body)) == (200, [f"cm-{i}" for i in range(1, 5)])
    member.compact()
    for query in (f"resourceVersion={then}&resourceVersionMatch=Exact", f"resourceVersion={then}&limit=2"):
        assert await get(http, f"{CMS}?{query}") == (410, status(410, "Expired", LIST_TOO_OLD))
    future, now = member.store.rv + 10, member.store.rv
    too_large = status(
        504,
        "Timeout",
        f"Too large resource version: {future}, current: {now}",
        details={
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        },
    )
    for match in ("Exact", "NotOlderThan"):
        assert await get(http, f"{CMS}?resourceVersion={future}&resourceVersionMatch={match}") == (504, too_large)


# --- watch ---------------------------------------------------------------------------------------


async def test_a_watch_from_a_compacted_version_is_200_and_one_error_event(
    member: FakeMemberAPIServer, http: aiohttp.ClientSession
) -> None:
    stale = member.store.rv
    member.store.create("configmaps", "default", {"metadata": {"name": "cm-5"}})
    member.compact()
    async with http.get(f"{CMS}?watch=true&resourceVersion={stale}&timeoutSeconds=5") as resp:
        assert resp.status == 200
        lines = (await resp.read()).splitlines()  # the stream ends after the event
    message = f"too old resource version: {stale} ({member.store.rv})"
    assert [json.loads(line) for line in lines] == [{"type": "ERROR", "object": status(410, "Expired", message)}]


async def test_a_watch_from_a_kept_version_replays_what_followed(
    member: FakeMemberAPIServer, http: aiohttp.ClientSession
) -> None:
    since = member.store.rv
    member.store.create("configmaps", "default", {"metadata": {"name": "cm-5"}})
    async with http.get(f"{CMS}?watch=true&resourceVersion={since}") as resp:
        event = json.loads(await resp.content.readline())
    assert (resp.status, event["type"], event["object"]["metadata"]["name"]) == (200, "ADDED", "cm-5")


# --- identity ------------------------------------------------------------------------------------


async def test_impersonation_is_authorized_then_acted_as(member: FakeMemberAPIServer, http: aiohttp.ClientSession) -> None:
    member.rbac.grant(Rule(("list",), resources=("configmaps",)), users=("alice",), namespace="default")
    code, body = await get(http, CMS, **{"Impersonate-User": "alice"})
    assert (code, len(body["items"])) == (200, 5)
    code, body = await get(http, "/api/v1/namespaces/other/configmaps", **{"Impersonate-User": "alice"})
    message = 'configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" in the namespace "other"'
    assert (code, body) == (403, status(403, "Forbidden", message, details={"kind": "configmaps"}))
    code, body = await get(http, "/metrics", **{"Impersonate-User": "alice"})
    assert (code, body) == (403, status(403, "Forbidden", 'forbidden: User "alice" cannot get path "/metrics"', details={}))
    code, body = await get(http, CMS, **{"Impersonate-Group": "devs"})
    message = "requested impersonation of groups, extras or a uid without impersonating a user"
    assert (code, body) == (400, status(400, "BadRequest", message))


async def test_an_impersonator_needs_the_impersonate_verb_on_each_value(
    member: FakeMemberAPIServer, http: aiohttp.ClientSession
) -> None:
    member.add_user("limited-token", "limited")
    member.rbac.grant(Rule(("impersonate",), resources=("users",), resource_names=("alice",)), users=("limited",))
    limited = {"Authorization": "Bearer limited-token"}
    code, body = await get(http, CMS, **limited, **{"Impersonate-User": "alice", "Impersonate-Uid": "a-1"})
    message = 'uids.authentication.k8s.io "a-1" is forbidden: User "limited" cannot impersonate resource "uids" in API group '
    expected = status(403, "Forbidden", message + '"authentication.k8s.io" at the cluster scope')
    assert (code, body) == (403, {**expected, "details": {"name": "a-1", "group": "authentication.k8s.io", "kind": "uids"}})
    code, body = await get(http, CMS, **limited, **{"Impersonate-User": "system:serviceaccount:ci:bot"})
    message = (
        'serviceaccounts "bot" is forbidden: User "limited" cannot impersonate resource "serviceaccounts" in API group "" '
        'in the namespace "ci"'
    )
    assert (code, body) == (403, status(403, "Forbidden", message, details={"name": "bot", "kind": "serviceaccounts"}))
