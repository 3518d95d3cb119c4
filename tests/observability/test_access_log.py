"""One JSON access-log line per request however it ended, with the Audit-ID returned to the client, never a credential."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.secrets import cluster_secret


async def test_each_request_logs_one_structured_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway_apiserver.access")
    async with running_gateway(tmp_path, ManualSecretSource([cluster_secret("c1")])) as gw, gw.session() as s:
        headers = {"Authorization": "Bearer super-secret-token", "Audit-ID": "audit-123", "X-Remote-User": "admin"}
        async with s.get("/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1?secret=query-value", headers=headers) as r:
            await r.read()
            assert r.headers["Audit-Id"] == "audit-123"
            assert r.headers["Server"] == "gateway-apiserver"  # no Python or aiohttp version
        async with s.get("/apis/cluster.core.oam.dev/v1alpha1/clustergateways/nope") as r:
            await r.read()
            generated = r.headers["Audit-Id"]
        for _ in range(50):
            if len([x for x in caplog.records if x.name == "gateway_apiserver.access"]) >= 2:
                break
            await asyncio.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway_apiserver.access"]
    first, second = (json.loads(line) for line in lines[:2])
    assert first["user"] == "standalone" and first["verb"] == "get" and first["method"] == "GET"
    assert first["path"] == "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1"
    assert (first["cluster"], first["status"], first["auditID"]) == ("c1", 200, "audit-123")
    assert first["bytes"] > 0 and first["durationMs"] > 0  # sub-ms precision, on uvloop too
    assert (second["status"], second["auditID"]) == (404, generated)
    assert len(generated) == 36  # a UUID when the client sent none
    everything = "\n".join(lines)
    assert "super-secret-token" not in everything and "query-value" not in everything and "admin" not in everything


PREFIX = "/apis/cluster.core.oam.dev/v1alpha1"


async def access_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[dict[str, Any]]:
    """The first `count` access-log lines, waiting (bounded) for them to be written."""
    for _ in range(250):
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway_apiserver.access"]
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} access-log lines: {lines}")


def expected(line: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """`fields` over the values that vary per run (duration, audit ID, user) taken from `line`."""
    base = {"user": "standalone", "cluster": "", "remote": "127.0.0.1"}
    return {**base, **fields, "durationMs": line["durationMs"], "auditID": line["auditID"]}


async def read_first_line_and_leave(gw: RunningGateway, path: str, params: dict[str, str]) -> bytes:
    """Start a stream, read its first line, and close the connection."""
    async with gw.session() as s, s.get(path, params=params) as r:
        assert r.status == 200
        return await r.content.readline()


class DripMember(FakeMemberAPIServer):
    """A member with `/drip`: a plain (not long-running) GET whose body trickles out, a line every 0.1 s."""

    def _routes(self) -> list[tuple[str, str, Any]]:
        return [*super()._routes(), ("GET", "/drip", self._drip)]

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        for i in range(100):
            await resp.write(f"line {i}\n".encode())
            await asyncio.sleep(0.1)
        await resp.write_eof()
        return resp


def member_secret(name: str, member: FakeMemberAPIServer) -> dict[str, Any]:
    return cluster_secret(name, endpoint=member.url, token=member.token, ca_pem=member.ca_pem)


async def test_a_watch_the_client_abandons_is_logged_with_what_was_sent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway_apiserver.access")
    async with running_gateway(tmp_path, ManualSecretSource([cluster_secret("c1")])) as gw:
        first = await read_first_line_and_leave(gw, f"{PREFIX}/clustergateways", {"watch": "true"})
        assert json.loads(first)["type"] == "ADDED"
        # The client is gone; the gateway notices and logs the watch it was serving.
        (line,) = await access_lines(caplog, 1)
    assert line == expected(
        line,
        verb="watch",
        method="GET",
        path=f"{PREFIX}/clustergateways",
        status=200,
        bytes=len(first),
        ended="client-disconnect",
    )


async def test_a_proxied_stream_the_client_abandons_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway_apiserver.access")
    path = f"{PREFIX}/clustergateways/m/proxy/api/v1/namespaces/default/pods/p/log"
    async with FakeMemberAPIServer(log_interval=10, log_lines=3) as member:
        source = ManualSecretSource([member_secret("m", member)])
        async with running_gateway(tmp_path, source) as gw:
            first = await read_first_line_and_leave(gw, path, {"follow": "true"})  # the next comes 10 s later
            assert first.startswith(b"line 0 at ")
            (line,) = await access_lines(caplog, 1)
            for _ in range(100):
                if member.cancelled:
                    break
                await asyncio.sleep(0.02)
            assert member.cancelled == ["log"]  # and the member's stream was closed too
    assert line == expected(
        line, verb="get", method="GET", path=path, cluster="m", status=200, bytes=len(first), ended="client-disconnect"
    )


async def test_a_stream_cut_by_the_proxy_request_timeout_logs_the_bytes_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway_apiserver.access")
    async with DripMember() as member:
        source = ManualSecretSource([member_secret("m", member)])
        async with running_gateway(tmp_path, source, proxy_request_timeout=0.75) as gw:
            received = b""
            async with gw.session() as s, s.get(f"{PREFIX}/clustergateways/m/proxy/drip") as r:
                assert r.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):  # cut: never a clean end that looks complete
                    async for chunk in r.content.iter_any():
                        received += chunk
            (line,) = await access_lines(caplog, 1)
    assert received.startswith(b"line 0\nline 1\n") and received.endswith(b"\n")
    assert 3 <= received.count(b"\n") <= 10  # about 0.75 s of lines
    assert line == expected(
        line,
        verb="get",
        method="GET",
        path=f"{PREFIX}/clustergateways/m/proxy/drip",
        cluster="m",
        status=200,
        bytes=len(received),
        ended="timeout",
    )
