"""Requests the HTTP parser cannot accept get a Kubernetes Status, never the parser's own text.

Threat: aiohttp answered these with plain text quoting part of the request (a header line
can hold a bearer token), and logged the raw bytes with a traceback. Real clients cannot send
them, so raw TLS sockets do. Each answer is a Status with our own message, Content-Type
application/json, `Connection: close`, and the connection is closed after it; each is logged
as one access-log line with the status sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.secrets import cluster_secret

pytestmark = pytest.mark.timeout(60)

SECRET = "Bearer super-secret-token"
BAD_REQUEST = "400 Bad Request"
TOO_LARGE = "431 Request Header Fields Too Large"
CASES = {
    "non-UTF-8 bytes in the path": (
        b"GET /apis/\xff\xfe HTTP/1.1\r\nHost: gw\r\nAuthorization: " + SECRET.encode() + b"\r\n\r\n",
        BAD_REQUEST,
        "BadRequest",
        "the request path is not a valid URL: it holds bytes that are not allowed "
        "(percent-encode non-ASCII and control characters)",
    ),
    "non-UTF-8 bytes in the query": (
        b"GET /apis?labelSelector=\xff HTTP/1.1\r\nHost: gw\r\n\r\n",
        BAD_REQUEST,
        "BadRequest",
        "the request query is not a valid URL: it holds bytes that are not allowed "
        "(percent-encode non-ASCII and control characters)",
    ),
    "a header over 8190 bytes": (
        b"GET /readyz HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + b"t" * 9000 + b"\r\n\r\n",
        TOO_LARGE,
        "RequestHeaderFieldsTooLarge",
        "request header fields too large: the request line or a header field is longer than 8190 bytes",
    ),
    "5000 headers": (
        b"GET /readyz HTTP/1.1\r\nHost: gw\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n",
        TOO_LARGE,
        "RequestHeaderFieldsTooLarge",
        "request header fields too large: the request has more than 1024 header fields",
    ),
    "the method FOO": (
        b"FOO /readyz HTTP/1.1\r\nHost: gw\r\n\r\n",
        "405 Method Not Allowed",
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource: "
        "the method must be one of GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS",
    ),
    "Content-Length with Transfer-Encoding": (
        b"POST /readyz HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        BAD_REQUEST,
        "BadRequest",
        "the request has both Content-Length and Transfer-Encoding headers; send only one",
    ),
    "duplicate Content-Length": (
        b"POST /readyz HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        BAD_REQUEST,
        "BadRequest",
        "the request has more than one Content-Length header",
    ),
    "a malformed header line": (
        b"GET /readyz HTTP/1.1\r\nHost: gw\r\nAuthorization " + SECRET.encode() + b"\r\n\r\n",
        BAD_REQUEST,
        "BadRequest",
        "a request header is malformed",
    ),
    "an unknown HTTP version": (
        b"GET /readyz HTTP/7.1\r\nHost: gw\r\n\r\n",
        BAD_REQUEST,
        "BadRequest",
        "the request line is not valid HTTP/1.1 (method, target and HTTP version)",
    ),
}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ManualSecretSource([cluster_secret("c1")])) as gateway:
        yield gateway


async def exchange(gw: RunningGateway, raw: bytes) -> bytes:
    """Send raw bytes over TLS; everything the server sends until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port, ssl=gw.ssl_context())
    writer.write(raw)
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()  # returns only once the server closed the connection
    writer.close()
    return answer


@pytest.mark.parametrize("case", list(CASES))
async def test_an_unparsable_request_gets_a_status_and_the_connection_closes(
    gw: RunningGateway, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raw, status_line, reason, message = CASES[case]
    answer = await exchange(gw, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == f"HTTP/1.0 {status_line}"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    code = int(status_line.split()[0])
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert int(headers["Content-Length"]) == len(body)
    assert len(headers["Audit-Id"]) == 36
    assert headers["Server"] == "gateway-apiserver"  # no Python or aiohttp version
    assert json.loads(body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway_apiserver.access"]
    assert access == [
        {
            "user": "",
            "verb": "",
            "method": "",
            "path": "",
            "cluster": "",
            "status": code,
            "bytes": len(body),
            "ended": "complete",
            "durationMs": access[0]["durationMs"],
            "auditID": headers["Audit-Id"],
            "remote": "127.0.0.1",
        }
    ]
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert "super-secret-token" not in logged and "ttttt" not in logged and "\\xff" not in logged


async def test_the_server_still_serves_after_rejecting(gw: RunningGateway) -> None:
    for raw, *_ in CASES.values():
        await exchange(gw, raw)
    async with gw.session() as s, s.get("/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1") as r:
        assert r.status == 200
        assert (await r.json())["metadata"]["name"] == "c1"


async def test_a_user_in_hundreds_of_groups_is_not_refused(gw: RunningGateway) -> None:
    # The aggregator sends one X-Remote-Group line per group; 600 of them is a big directory, not an attack.
    groups = b"".join(b"X-Remote-Group: team-%d\r\n" % i for i in range(600))
    answer = await exchange(gw, b"GET /readyz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n" + groups + b"\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert body == b"ok"
