"""The fast path's pure parts say what the aiohttp path says: attributes, the member's request head, the answer's headers."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from multidict import CIMultiDict, MultiDict, MultiDictProxy
from yarl import URL

from gateway_apiserver.proxy.fast_path import _answer_headers, _Deadline, member_request_head, proxy_request_info
from gateway_apiserver.security.authorization import attributes_of, request_attributes
from gateway_apiserver.security.identity import UserInfo

PREFIX = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
ALICE = UserInfo("alice", groups=("devs",))


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize(
    ("inner", "query"),
    [
        ("", {}),
        ("/api/v1/namespaces/default/pods", {"watch": "true", "fieldSelector": "a=b"}),
        ("/api/v1/namespaces/default/pods/p1/log", {"follow": "true"}),
        ("/apis/apps/v1/deployments", {"labelSelector": "x", "limit": "5"}),
        ("/api/v1/watch/namespaces", {}),
    ],
)
def test_cached_attributes_of_a_proxied_request_equal_those_read_from_its_whole_path_and_query(
    method: str, inner: str, query: dict[str, str]
) -> None:
    path = f"{PREFIX}/member-1/proxy{inner}"
    expected = request_attributes(method, path, MultiDictProxy(MultiDict(query)), ALICE)
    assert attributes_of(proxy_request_info(method, "member-1"), path, ALICE) == expected
    assert (expected.resource, expected.subresource, expected.name) == ("clustergateways", "proxy", "member-1")


def test_the_member_request_head_is_what_aiohttps_client_would_write() -> None:
    headers = CIMultiDict(
        [("Accept", "application/json"), ("Authorization", "Bearer member-token"), ("X-Forwarded-For", "10.0.0.1")]
    )
    head = member_request_head("GET", URL("https://10.1.2.3:6443/k8s/api/v1/pods?limit=5"), headers, b"")
    assert head == (
        b"GET /k8s/api/v1/pods?limit=5 HTTP/1.1\r\nHost: 10.1.2.3:6443\r\nAccept: application/json\r\n"
        b"Authorization: Bearer member-token\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("method", "body", "length"),
    [("POST", b"", b"Content-Length: 0"), ("PATCH", b"{}", b"Content-Length: 2"), ("DELETE", b"", None), ("GET", b"", None)],
)
def test_content_length_is_sent_for_a_body_and_for_post_put_and_patch(method: str, body: bytes, length: bytes | None) -> None:
    head = member_request_head(method, URL("https://member/api"), CIMultiDict(), body)
    lines = head.split(b"\r\n")
    assert lines[1] == b"Host: member"  # the default port is not written
    assert (length in lines) if length is not None else not any(line.startswith(b"Content-Length") for line in lines)


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\0b"])
def test_a_header_value_with_a_line_break_is_never_sent(value: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        member_request_head("GET", URL("https://member/api"), CIMultiDict([("Impersonate-User", value)]), b"")


def test_an_ipv6_member_is_named_in_brackets() -> None:
    head = member_request_head("GET", URL("https://[::1]:6443/api"), CIMultiDict(), b"")
    assert head.split(b"\r\n")[1] == b"Host: [::1]:6443"


def exchange(headers: list[tuple[bytes, bytes]], status: int = 200, content_length: int | None = 5) -> Any:
    """What _answer_headers reads of an UpstreamExchange."""
    return SimpleNamespace(headers=headers, status=status, content_length=content_length)


def test_the_answer_drops_hop_by_hop_headers_those_connection_names_its_length_and_the_members_audit_id() -> None:
    lines = _answer_headers(
        exchange(
            [
                (b"Content-Type", b"application/json"),
                (b"Connection", b"keep-alive, X-Private"),
                (b"X-Private", b"secret-hop"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Content-Length", b"5"),
                (b"Audit-Id", b"members-own"),
                (b"Date", b"Thu, 03 Dec 2026 22:00:00 GMT"),
                (b"Cache-Control", b"no-cache"),
                (b"Content-Encoding", b"gzip"),
            ]
        )
    )
    assert lines == [
        b"Content-Type: application/json",
        b"Date: Thu, 03 Dec 2026 22:00:00 GMT",
        b"Cache-Control: no-cache",
        b"Content-Encoding: gzip",
    ]


def test_a_body_without_a_type_is_octet_stream_and_a_missing_date_is_added_as_aiohttp_does() -> None:
    lines = _answer_headers(exchange([(b"X-Kind", b"raw")], content_length=None))
    assert lines[:2] == [b"X-Kind: raw", b"Content-Type: application/octet-stream"]
    assert lines[2].startswith(b"Date: ") and lines[2].endswith(b" GMT")
    assert _answer_headers(exchange([(b"Date", b"d")], status=204, content_length=0)) == [b"Date: d"]


async def test_the_deadline_turns_its_own_expiry_into_a_timeout_error() -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError), _Deadline(0.05):
        await asyncio.sleep(5)
    assert asyncio.get_running_loop().time() - started < 2
    with _Deadline(None):  # no limit: nothing is scheduled
        await asyncio.sleep(0.01)


async def test_a_cancellation_from_elsewhere_stays_a_cancellation_even_when_the_deadline_passes_too() -> None:
    async def guarded() -> None:
        with _Deadline(0.05):
            await asyncio.sleep(5)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.01)
    task.cancel()  # the client left: that must end the request, not become a 504
    with pytest.raises(asyncio.CancelledError):
        await task
    late = asyncio.create_task(guarded())
    await asyncio.sleep(0.1)  # the deadline fires first ...
    assert late.done()
    with pytest.raises(TimeoutError):
        await late
