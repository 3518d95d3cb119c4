"""WATCH of clustergateways over real TLS sockets: streaming, selectors, bookmarks, resume and 410."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.secrets import cluster_secret

BASE = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    secrets = [cluster_secret("a", 1, labels={"env": "prod"}), cluster_secret("b", 2, labels={"env": "dev"})]
    async with running_gateway(tmp_path, ManualSecretSource(secrets, "5"), bookmark_interval=0.2) as gw:
        yield gw


class Stream:
    """Reads a watch response one event at a time, with a deadline per event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 3.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.response.content.readline(), timeout)
        assert line, "the watch stream ended"
        event: dict[str, Any] = json.loads(line)
        return event

    async def ended(self, timeout: float = 3.0) -> bool:
        return await asyncio.wait_for(self.response.content.readline(), timeout) == b""


async def open_watch(session: aiohttp.ClientSession, query: str, **headers: str) -> Stream:
    response = await session.get(f"{BASE}?watch=true&{query}", headers=headers)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    return Stream(response)


def summary(event: dict[str, Any]) -> tuple[str, str, str]:
    meta = event["object"]["metadata"]
    return event["type"], meta.get("name", ""), meta["resourceVersion"]


async def test_events_arrive_while_the_stream_is_open(gateway: RunningGateway) -> None:
    async with gateway.session() as s:
        stream = await open_watch(s, "")
        assert [summary(await stream.next()) for _ in range(2)] == [("ADDED", "a", "1"), ("ADDED", "b", "2")]
        gateway.registry.apply("ADDED", cluster_secret("c", 6))
        assert summary(await stream.next()) == ("ADDED", "c", "6")
        gateway.registry.apply("MODIFIED", cluster_secret("c", 7, labels={"x": "y"}))
        event = await stream.next()
        assert summary(event) == ("MODIFIED", "c", "7")
        assert event["object"]["metadata"]["labels"]["x"] == "y"
        gateway.registry.apply("DELETED", cluster_secret("c", 8))
        assert summary(await stream.next()) == ("DELETED", "c", "8")
        stream.response.close()


async def test_resume_from_a_resource_version(gateway: RunningGateway) -> None:
    gateway.registry.apply("ADDED", cluster_secret("c", 6))
    gateway.registry.apply("ADDED", cluster_secret("d", 7))
    async with gateway.session() as s:
        stream = await open_watch(s, "resourceVersion=6")
        assert summary(await stream.next()) == ("ADDED", "d", "7")
        stream.response.close()


async def test_selectors_apply_and_objects_leaving_the_selection_are_deleted(gateway: RunningGateway) -> None:
    async with gateway.session() as s:
        stream = await open_watch(s, "labelSelector=env%3Dprod&resourceVersion=5")
        gateway.registry.apply("MODIFIED", cluster_secret("b", 6, labels={"env": "prod"}))
        assert summary(await stream.next()) == ("ADDED", "b", "6")
        gateway.registry.apply("MODIFIED", cluster_secret("a", 7, labels={"env": "dev"}))
        deleted = await stream.next()
        assert summary(deleted) == ("DELETED", "a", "7")
        gateway.registry.apply("ADDED", cluster_secret("z", 8, labels={"env": "dev"}))  # never matches
        gateway.registry.apply("MODIFIED", cluster_secret("b", 9, labels={"env": "prod", "more": "1"}))
        assert summary(await stream.next()) == ("MODIFIED", "b", "9")
        stream.response.close()


async def test_bookmarks_when_allowed(gateway: RunningGateway) -> None:
    async with gateway.session() as s:
        stream = await open_watch(s, "resourceVersion=5&allowWatchBookmarks=true")
        event = await stream.next()
        assert event["type"] == "BOOKMARK"
        assert event["object"]["kind"] == "ClusterGateway"
        assert event["object"]["metadata"]["resourceVersion"] == "5"
        gateway.registry.bookmark("40")
        while (event := await stream.next())["type"] == "BOOKMARK" and event["object"]["metadata"]["resourceVersion"] == "5":
            pass
        assert summary(event) == ("BOOKMARK", "", "40")
        stream.response.close()


async def test_no_bookmarks_unless_asked(gateway: RunningGateway) -> None:
    async with gateway.session() as s:
        stream = await open_watch(s, "resourceVersion=5&timeoutSeconds=1")
        gateway.registry.bookmark("40")
        assert await stream.ended(3)


async def test_timeout_seconds_ends_the_stream(gateway: RunningGateway) -> None:
    async with gateway.session() as s:
        stream = await open_watch(s, "timeoutSeconds=1")
        await stream.next()
        await stream.next()
        started = asyncio.get_running_loop().time()
        assert await stream.ended(5)
        assert asyncio.get_running_loop().time() - started < 3  # timeoutSeconds=1 fired; 2 s of margin for a busy CPU


async def test_too_old_resource_version_is_a_410_error_event(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, ManualSecretSource([], "100")) as gw, gw.session() as s:
        stream = await open_watch(s, "resourceVersion=50")
        event = await stream.next()
        assert event["type"] == "ERROR"
        status = event["object"]
        assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
        assert status["message"] == "too old resource version: 50 (100)"
        assert await stream.ended()


async def test_send_initial_events_ends_with_the_marked_bookmark(gateway: RunningGateway) -> None:
    async with gateway.session() as s:
        stream = await open_watch(s, "sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan")
        assert [summary(await stream.next()) for _ in range(2)] == [("ADDED", "a", "1"), ("ADDED", "b", "2")]
        bookmark = await stream.next()
        assert bookmark["type"] == "BOOKMARK"
        assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
        stream.response.close()


async def test_watch_events_as_one_row_tables(gateway: RunningGateway) -> None:
    async with gateway.session() as s:
        stream = await open_watch(s, "", Accept=TABLE_ACCEPT)
        first, second = await stream.next(), await stream.next()
        assert first["object"]["kind"] == "Table"
        assert [c["name"] for c in first["object"]["columnDefinitions"]][:2] == ["Name", "Provider"]
        assert [len(first["object"]["rows"]), len(second["object"]["rows"])] == [1, 1]
        assert second["object"]["rows"][0]["cells"][0] == "b"
        stream.response.close()


async def test_watch_one_object_by_name(gateway: RunningGateway) -> None:
    async with gateway.session() as s:
        response = await s.get(f"{BASE}?watch=1&fieldSelector=metadata.name%3Db")
        stream = Stream(response)
        assert summary(await stream.next()) == ("ADDED", "b", "2")
        gateway.registry.apply("MODIFIED", cluster_secret("a", 6))
        gateway.registry.apply("MODIFIED", cluster_secret("b", 7))
        assert summary(await stream.next()) == ("MODIFIED", "b", "7")
        response.close()


async def test_a_named_get_with_watch_is_a_get_as_in_kube(gateway: RunningGateway) -> None:
    async with gateway.session() as s, s.get(f"{BASE}/b?watch=1") as response:
        body = await response.json()
    assert (response.status, response.content_type) == (200, "application/json")
    assert (body["kind"], body["metadata"]["name"], body["metadata"]["resourceVersion"]) == ("ClusterGateway", "b", "2")


async def test_a_relist_that_changed_things_ends_open_watches(gateway: RunningGateway) -> None:
    async with gateway.session() as s:
        stream = await open_watch(s, "resourceVersion=5")
        gateway.registry.replace([cluster_secret("a", 1, labels={"env": "prod"})], "20")
        assert await stream.ended()


async def test_client_disconnect_unregisters_the_watcher(gateway: RunningGateway) -> None:
    async with gateway.session() as s:
        stream = await open_watch(s, "resourceVersion=5")
        assert gateway.registry.watcher_count == 1
        stream.response.close()
    for _ in range(50):
        if gateway.registry.watcher_count == 0:
            break
        await asyncio.sleep(0.05)
    assert gateway.registry.watcher_count == 0


async def test_watch_parameter_errors(gateway: RunningGateway) -> None:
    async with gateway.session() as s:
        async with s.get(f"{BASE}?watch=true&continue=abc") as resp:
            assert resp.status == 400
        async with s.get(f"{BASE}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan") as resp:
            body = await resp.json()
            assert resp.status == 400 and "allowWatchBookmarks" in body["message"]
