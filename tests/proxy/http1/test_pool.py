"""The pooled HTTP/1.1 client against a member API server (aiohttp, TLS on loopback): keep-alive reuse,
Content-Length bodies both ways, a chunked watch relayed event by event, and the pool's counts."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.proxying import eventually
from tests.proxy.http1.helpers import body_of, fetch, pool_to, request

pytestmark = pytest.mark.timeout(30)
CM = "/api/v1/namespaces/default/configmaps"


async def test_sequential_requests_reuse_one_connection(member: FakeMemberAPIServer) -> None:
    with pool_to(member.port, member.ca_pem) as pool:
        answers = [await fetch(pool, request("GET", CM, port=member.port, token=member.token)) for _ in range(5)]
        assert (pool.idle, pool.active) == (1, 0)
    assert [status for status, _ in answers] == [200] * 5
    assert [json.loads(body)["kind"] for _, body in answers] == ["ConfigMapList"] * 5
    assert len(member.connections) == 1  # one TCP+TLS handshake for all five
    assert len(member.requests_to(CM)) == 5


async def test_a_content_length_body_goes_up_and_the_answer_states_its_length(member: FakeMemberAPIServer) -> None:
    created = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}, "data": {"k": "v"}}).encode()
    with pool_to(member.port, member.ca_pem) as pool:
        post = await pool.send(request("POST", CM, port=member.port, token=member.token, body=created), created, idempotent=False)
        posted = await body_of(post)
        get = await pool.send(request("GET", f"{CM}/cm1", port=member.port, token=member.token), idempotent=True)
        got = await body_of(get)
    assert (post.status, post.reason) == (201, "Created")
    assert post.content_length == len(posted)
    assert (b"Content-Length", str(len(posted)).encode()) in post.headers
    assert (get.status, json.loads(got)["data"]) == (200, {"k": "v"})
    assert len(member.connections) == 1


async def test_a_watch_reaches_the_sink_event_by_event(member: FakeMemberAPIServer) -> None:
    events: list[dict[str, object]] = []
    arrived = asyncio.Event()

    def sink(chunk: bytes) -> None:
        events.extend(json.loads(line) for line in chunk.splitlines())
        arrived.set()

    with pool_to(member.port, member.ca_pem) as pool:
        watch = await pool.send(request("GET", f"{CM}?watch=true", port=member.port, token=member.token), idempotent=True)
        relayed = asyncio.ensure_future(watch.relay(sink))
        assert (watch.status, watch.content_length, pool.active) == (200, None, 1)
        assert (b"Transfer-Encoding", b"chunked") in watch.headers
        member.store.create("configmaps", "default", {"metadata": {"name": "first"}})
        await asyncio.wait_for(arrived.wait(), 5)
        first = [(e["type"], e["object"]["metadata"]["name"]) for e in events]  # type: ignore[index]
        arrived.clear()
        member.store.create("configmaps", "default", {"metadata": {"name": "second"}})
        await asyncio.wait_for(arrived.wait(), 5)
        both = [(e["type"], e["object"]["metadata"]["name"]) for e in events]  # type: ignore[index]
        watch.close()
        with pytest.raises(ConnectionAbortedError):
            await relayed
        assert (pool.idle, pool.active) == (0, 0)  # an abandoned stream is never reused
        await eventually(lambda: member.open_streams == 0)
    assert first == [("ADDED", "first")]  # delivered before the member wrote the second event
    assert both == [("ADDED", "first"), ("ADDED", "second")]


async def test_a_held_watch_is_active_and_a_request_beside_it_dials_its_own_connection(member: FakeMemberAPIServer) -> None:
    with pool_to(member.port, member.ca_pem) as pool:
        watch = await pool.send(request("GET", f"{CM}?watch=true", port=member.port, token=member.token), idempotent=True)
        relayed = watch.relay(lambda chunk: None)
        counts_during = (pool.idle, pool.active)
        status, _ = await fetch(pool, request("GET", CM, port=member.port, token=member.token))
        counts_beside = (pool.idle, pool.active)
        watch.close()
        with pytest.raises(ConnectionAbortedError):
            await relayed
        counts_after = (pool.idle, pool.active)
    assert status == 200
    assert counts_during == (0, 1)
    assert counts_beside == (1, 1)
    assert counts_after == (1, 0)
    assert len(member.connections) == 2
