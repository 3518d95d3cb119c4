"""Fan-out watches: every selected cluster's events, each carrying its cluster, while clusters come and go.

A cluster's state (watching, failed, no longer selected) arrives as a BOOKMARK event whose object is
a v1 Status naming the ClusterGateway, never as an ERROR event, which would end a client's watch.
"""

from __future__ import annotations

import asyncio
import json
from asyncio.subprocess import PIPE
from collections.abc import Callable
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.config import load_kube_config

from tests.fakes.hosting import SECRET_NAMESPACE
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fanout.conftest import (
    FANOUT,
    GROUP,
    MEMBER_TIMEOUT,
    Fleet,
    add_labelled_cluster,
    cluster_status,
    forbidden_message,
    pod,
)

PODS = FANOUT + "/api/v1/namespaces/shop/pods"
Event = dict[str, Any]


def cluster_of(event: Event) -> str:
    """The cluster an event is about: a Status names it in details, an object in its annotation."""
    obj = event["object"]
    if obj.get("kind") == "Status":
        return str(obj["details"]["name"])
    return str(obj["metadata"]["annotations"][f"{GROUP}/cluster-name"])


def per_cluster(events: list[Event]) -> dict[str, list[Event]]:
    """Events grouped by cluster, each cluster's in the order they arrived (clusters interleave freely)."""
    grouped: dict[str, list[Event]] = {}
    for event in events:
        grouped.setdefault(cluster_of(event), []).append(event)
    return grouped


def watching(cluster: str) -> Event:
    return {"type": "BOOKMARK", "object": cluster_status(cluster, "watching")}


def added(member: FakeMemberAPIServer, name: str, cluster: str) -> Event:
    return {"type": "ADDED", "object": pod(member, name, cluster)}


async def read_until(resp: aiohttp.ClientResponse, events: list[Event], done: Callable[[list[Event]], bool]) -> None:
    """Append events from the stream to `events` until `done(events)`; 10 s at most."""
    async with asyncio.timeout(10):
        while not done(events):
            line = await resp.content.readline()
            assert line, f"the watch ended early after {events}"
            events.append(json.loads(line))


def count(cluster: str, n: int) -> Callable[[list[Event]], bool]:
    return lambda events: len(per_cluster(events).get(cluster, [])) >= n


async def test_a_watch_across_three_members_follows_a_member_added_and_removed(fleet: Fleet) -> None:
    events: list[Event] = []
    async with FakeMemberAPIServer() as north:
        north.add_pod("shop", "north-1")
        url = PODS + "?watch=true&timeoutSeconds=30&clusterSelector=env%3Dprod%2Ctier%21%3Dbroken"
        async with fleet.gateway.session() as session, session.get(url, headers=fleet.headers()) as resp:
            assert (resp.status, resp.headers["Content-Type"]) == (200, "application/json")
            await read_until(resp, events, lambda e: count("east", 3)(e) and count("west", 2)(e))

            add_labelled_cluster(fleet.api, "late", north, env="prod")  # a third member joins
            await read_until(resp, events, count("late", 2))
            fleet.east.add_pod("shop", "web-3")
            await read_until(resp, events, count("east", 4))

            fleet.api.delete_secret(SECRET_NAMESPACE, "late")  # and leaves
            await read_until(resp, events, count("late", 3))
            north.add_pod("shop", "north-2")  # never reaches the watch: its member watch is closed
            fleet.west.add_pod("shop", "api-2")
            await read_until(resp, events, count("west", 3))
            async with asyncio.timeout(5):
                while north.open_streams:  # noqa: ASYNC110 - a count the fake member keeps, with no event
                    await asyncio.sleep(0.05)

        assert per_cluster(events) == {
            "east": [
                watching("east"),
                added(fleet.east, "web-1", "east"),
                added(fleet.east, "web-2", "east"),
                added(fleet.east, "web-3", "east"),
            ],
            "west": [watching("west"), added(fleet.west, "api-1", "west"), added(fleet.west, "api-2", "west")],
            "late": [
                watching("late"),
                added(north, "north-1", "late"),
                {
                    "type": "BOOKMARK",
                    "object": cluster_status(
                        "late",
                        'cluster "late": the cluster was deleted: its objects are no longer watched (no DELETED events follow)',
                        404,
                        "NotFound",
                    ),
                },
            ],
        }


async def test_kubectl_get_raw_streams_a_bounded_watch_with_every_clusters_state(fleet: Fleet) -> None:
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        str(fleet.kubeconfig()),
        "get",
        "--raw",
        PODS + "?watch=true&timeoutSeconds=2&clusterSelector=env%3Dprod",
        stdout=PIPE,
        stderr=PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert (proc.returncode, err) == (0, b"")
    down = f'cluster "down" unreachable: connecting to 127.0.0.1:{fleet.down_port} failed: connection refused'
    assert per_cluster([json.loads(line) for line in out.splitlines()]) == {
        "east": [watching("east"), added(fleet.east, "web-1", "east"), added(fleet.east, "web-2", "east")],
        "west": [watching("west"), added(fleet.west, "api-1", "west")],
        "down": [{"type": "BOOKMARK", "object": cluster_status("down", down, 503, "ServiceUnavailable")}],
        "secret": [{"type": "BOOKMARK", "object": cluster_status("secret", forbidden_message("secret"), 403, "Forbidden")}],
    }


async def test_a_member_whose_watch_breaks_off_is_reported_and_the_others_go_on(fleet: Fleet) -> None:
    url = PODS + "?watch=true&timeoutSeconds=30&clusterSelector=env%3Dprod%2Ctier%21%3Dbroken"
    events: list[Event] = []
    async with fleet.gateway.session() as session, session.get(url, headers=fleet.headers()) as resp:
        await read_until(resp, events, lambda e: count("east", 3)(e) and count("west", 2)(e))
        assert fleet.east.abort_streams() == 1  # the member's connection breaks off mid-watch
        await read_until(resp, events, count("east", 4))
        fleet.west.add_pod("shop", "api-2")
        await read_until(resp, events, count("west", 3))
    east = per_cluster(events)["east"]
    assert east[3] == {
        "type": "BOOKMARK",
        "object": cluster_status("east", 'cluster "east": the member\'s watch broke off: ClientPayloadError', 502, "BadGateway"),
    }


async def test_a_member_that_does_not_answer_its_watch_is_cut_at_the_per_cluster_timeout(fleet: Fleet) -> None:
    fleet.east.hang()
    events: list[Event] = []
    url = PODS + "?watch=true&timeoutSeconds=30&clusterSelector=env%3Dprod%2Ctier%21%3Dbroken"
    try:
        async with fleet.gateway.session() as session, session.get(url, headers=fleet.headers()) as resp:
            await read_until(resp, events, lambda e: count("east", 1)(e) and count("west", 2)(e))
    finally:
        fleet.east.recover()
    assert per_cluster(events) == {
        "east": [
            {
                "type": "BOOKMARK",
                "object": cluster_status("east", f'cluster "east" did not answer within {MEMBER_TIMEOUT:g}s', 504, "Timeout"),
            }
        ],
        "west": [watching("west"), added(fleet.west, "api-1", "west")],
    }


async def test_the_python_client_reads_the_watch_line_by_line(fleet: Fleet) -> None:
    config = client.Configuration()
    await load_kube_config(str(fleet.kubeconfig()), client_configuration=config)
    events: list[Event] = []
    async with client.ApiClient(config) as api:
        resp = await api.call_api(
            PODS,
            "GET",
            query_params=[("watch", "true"), ("timeoutSeconds", "1"), ("clusterSelector", "env=prod,tier!=broken")],
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
        async with resp:
            async for line in resp.content:
                events.append(json.loads(line))
    assert per_cluster(events) == {
        "east": [watching("east"), added(fleet.east, "web-1", "east"), added(fleet.east, "web-2", "east")],
        "west": [watching("west"), added(fleet.west, "api-1", "west")],
    }
