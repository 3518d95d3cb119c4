"""Hostile paths after `clustergateways/<name>/proxy`, sent byte for byte, checked on both sides.

Threat: a caller allowed to proxy to one member tries to climb out of the endpoint's path
prefix (`https://rancher/k8s/clusters/c-abc` must never become `https://rancher/k8s/...`)
with dot segments in every spelling: percent-encoded, double-encoded, with `;` parameters,
encoded or raw slashes and backslashes, NUL, `//`, unicode. The client does not normalise
(aiohttp with an already-encoded URL), so the gateway sees exactly what an attacker sends.

The member records every request it gets. For every path, either
  * the member received it, under its prefix, byte for byte as sent, with no `.` or `..`
    segment however often it is decoded, and the caller got the member's own answer; or
  * the member received nothing and the caller got a 400 Status saying the path is invalid.
Never a 500, never a 502.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.secrets import cluster_secret

PROXY = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy"
LEAKS = re.compile(r"Traceback|object has no attribute|codec|Errno|NoneType|Exception")


@pytest.fixture
async def gateway(tmp_path: Path, member: FakeMemberAPIServer) -> AsyncIterator[RunningGateway]:
    secret = cluster_secret("c1", endpoint=member.url, token=member.token, ca_pem=member.ca_pem)
    async with running_gateway(tmp_path, ManualSecretSource([secret])) as gw:
        yield gw


def decoded_forms(raw: str) -> list[str]:
    """The path as the member, and a member behind one more decoding hop, could read it."""
    once = unquote(raw, errors="replace")
    return [raw, once, unquote(once, errors="replace")]


def climbs(path: str) -> bool:
    """Whether any segment is `.` or `..` (also with a `;param`, which some servers drop)."""
    return any(segment.partition(";")[0] in (".", "..") for segment in re.split(r"[/\\]", path))


async def send(gateway: RunningGateway, member: FakeMemberAPIServer, remainder: str) -> bool:
    """One GET with `remainder` as raw bytes; assert the outcome on both sides. True if it was forwarded."""
    seen_before = len(member.requests)
    url = URL(gateway.url + PROXY + remainder, encoded=True)
    async with gateway.session() as session, session.get(url, allow_redirects=False) as resp:
        body = await resp.read()
    forwarded = member.requests[seen_before:]
    assert resp.status not in (500, 502), (remainder, resp.status, body)
    if forwarded:
        [request] = forwarded
        assert request.raw_path == member.prefix + remainder  # byte for byte, under the prefix
        for form in decoded_forms(request.raw_path):
            assert form.startswith(member.prefix), (remainder, form)
            assert not climbs(form), (remainder, form)
        return True
    status = json.loads(body)
    assert resp.status == 400, (remainder, resp.status, status)
    assert {k: status[k] for k in ("kind", "apiVersion", "status", "reason", "code")} == {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "BadRequest",
        "code": 400,
    }
    assert status["message"].startswith("invalid proxy path: "), status["message"]
    assert not LEAKS.search(status["message"]), status["message"]
    return False


# Pieces of a path segment: the ordinary, the dot in every spelling, separators in every
# spelling, NUL and other controls encoded, unicode encoded and broken escapes. Raw bytes that
# HTTP forbids in a request line (space, controls, non-ASCII) are the parser's business and
# are covered by the server's own tests. "%0a" is left out: see test_an_encoded_newline_is_a_400_status.
PIECES = [
    "api", "v1", "echo", "namespaces", "x", "a.b", "~", "-", "_", "!", "$", "&", "'", "(", ")", "*", "+", ",", "=", ":", "@",
    ".", "..", "...", "%2e", "%2E", "%2e%2e", ".%2e", "%2e.", "%252e", "%252e%252e", "%25252e",
    "%2f", "%2F", "%252f", "%252F", "%5c", "%5C", "%255c", "\\", ";", ";x", "..;", "..;x", "%3b", "%3B", "%2e%2e%3b",
    "%00", "%0d", "%09", "%7f", "%20", "%C3%A9", "%E2%80%A8", "%FF", "%C0%AE", "%C0%AF", "%e0%80%ae",
    "%", "%2", "%zz", "%%32%65", "%u002e", "?", "#",
]  # fmt: skip
SEGMENTS = st.lists(st.sampled_from(PIECES), min_size=0, max_size=3).map("".join)
ORDINARY = st.sampled_from(["api", "v1", "echo", "a.b", "...", ".x", "x..", "%2e%2ex", "a%20b", "%C3%A9", "~u", "a;b=c", "%3A"])
REMAINDERS = st.one_of(
    st.lists(ORDINARY, min_size=1, max_size=5).map(lambda segments: "/" + "/".join(segments)),
    st.lists(SEGMENTS, min_size=1, max_size=6).map(lambda segments: "/" + "/".join(segments)),
    st.lists(SEGMENTS, min_size=1, max_size=4).map(lambda segments: "/echo/" + "/".join(segments)),
    st.lists(SEGMENTS, max_size=4).map(lambda segments: "//" + "//".join(segments)),  # doubled slashes
)


@settings(max_examples=300)
@given(remainder=REMAINDERS.filter(lambda r: "?" not in r and "#" not in r))
async def test_no_path_leaves_the_endpoint_prefix(gateway: RunningGateway, member: FakeMemberAPIServer, remainder: str) -> None:
    event("forwarded to the member" if await send(gateway, member, remainder) else "refused with 400")


@pytest.mark.parametrize(
    "remainder",
    [
        "/..", "/../..", "/%2e%2e", "/%2E%2E/%2e%2e/api", "/api/%252e%252e/%252e%252e/x", "/..;/..;/x", "/%2e%2e%3b/x",
        "/a%2f..%2f..%2fx", "/a%5c..%5c..%5cx", "/a\\..\\..\\x", "/%00", "/a%00/..", "//..//..", "/%C0%AE%C0%AE/x",
        "/./.", "/api/./v1",
    ],
)  # fmt: skip
async def test_known_escapes_are_refused_before_the_member(
    gateway: RunningGateway, member: FakeMemberAPIServer, remainder: str
) -> None:
    before = len(member.requests)
    await send(gateway, member, remainder)
    # These are either refused or (overlong UTF-8, which is no dot) passed on without a dot segment.
    assert len(member.requests) == before or not climbs(unquote(member.requests[-1].raw_path))


async def test_ordinary_paths_reach_the_member_byte_for_byte(gateway: RunningGateway, member: FakeMemberAPIServer) -> None:
    for remainder in ("/echo/a%20b/c%3Ad/%C3%A9", "/echo/", "/echo/.hidden/x..y/...", "/echo/%2e%2ex", ""):
        before = len(member.requests)
        await send(gateway, member, remainder)
        assert len(member.requests) == before + 1, remainder
        assert member.requests[-1].raw_path == member.prefix + remainder


@pytest.mark.parametrize("remainder", ["/%0a", "/echo/%0A/x", "/api/%0d%0a"])
async def test_an_encoded_newline_is_a_400_status(gateway: RunningGateway, member: FakeMemberAPIServer, remainder: str) -> None:
    await send(gateway, member, remainder)


@pytest.mark.parametrize("timeout", ["9" * 400 + "s", "99999999999999999999h", "1" * 5000 + "ms"])
async def test_an_absurd_client_timeout_is_forwarded_and_answered(
    gateway: RunningGateway, member: FakeMemberAPIServer, timeout: str
) -> None:
    """kubectl's --request-timeout arrives as `?timeout=`; a huge one must not break the gateway's own timer."""
    async with gateway.session() as session, session.get(f"{PROXY}/echo", params={"timeout": timeout}) as resp:
        body = await resp.json()
    assert resp.status == 200, body
    assert body["query"] == f"timeout={timeout}"


@pytest.mark.parametrize(
    "path",
    [
        "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1%2Fproxy/skipped/echo/x",
        "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1%2fproxy/skipped/echo/x",
        "/apis/cluster.core.oam.dev%2Fv1alpha1/clustergateways/c1/proxy/echo/x",
        "/apis/cluster.core.oam.dev/v1alpha1%2Fclustergateways/c1/proxy/echo/x",
    ],
)
async def test_an_encoded_slash_before_the_remainder_is_no_route(
    gateway: RunningGateway, member: FakeMemberAPIServer, path: str
) -> None:
    """Decoded, `c1%2Fproxy/skipped/echo` reads as cluster c1's proxy to `/skipped/echo`, while split raw its
    remainder is `/echo`: were it routed, the member would get another path than the one authorized. The router
    keeps `%2F` encoded, so no route matches: 404, and the member gets nothing."""
    async with gateway.session() as session, session.get(URL(gateway.url + path, encoded=True)) as resp:
        status = await resp.json()
    assert (resp.status, status["kind"], status["reason"]) == (404, "Status", "NotFound"), status
    assert member.requests == []


@pytest.mark.parametrize("raw", [b"/echo/\xc3\xa9", b"/echo/\xff", b"/echo/..\xc3\xa9"])
async def test_raw_non_ascii_bytes_in_the_path_are_a_400_status(
    gateway: RunningGateway, member: FakeMemberAPIServer, raw: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port, ssl=gateway.ssl_context())
    try:
        writer.write(b"GET " + PROXY.encode() + raw + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    # The parser refuses the request line before it knows the version, so the answer is HTTP/1.0.
    assert head.split(b"\r\n")[0] == b"HTTP/1.0 400 Bad Request", head
    assert json.loads(body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the request path is not a valid URL: it holds bytes that are not allowed "
        "(percent-encode non-ASCII and control characters)",
        "reason": "BadRequest",
        "code": 400,
    }
    assert member.requests == []
