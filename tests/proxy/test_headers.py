"""Header rewriting: hop-by-hop removal, caller identity stripped, forwarding headers, Audit-ID."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from gateway_apiserver.proxy.headers import is_upgrade, request_headers, response_headers, set_headers


def _incoming(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


def _out(incoming: CIMultiDict[str], **kwargs: object) -> CIMultiDict[str]:
    args: dict[str, object] = {"client_ip": "10.1.2.3", "scheme": "https", "audit_id": "audit-1"}
    args.update(kwargs)
    return request_headers(incoming, **args)  # type: ignore[arg-type]


def test_hop_by_hop_and_connection_named_headers_are_dropped() -> None:
    out = _out(
        _incoming(
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("Connection", "Foo"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-T"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic eA=="),
            ("X-Secret-Hop", "1"),
            ("Foo", "2"),
            ("Host", "gateway:9443"),
            ("Content-Length", "10"),
            ("Expect", "100-continue"),
            ("Accept", "application/json"),
            ("Content-Type", "application/apply-patch+yaml"),
            ("Accept-Encoding", "gzip"),
        )
    )
    # Tokens separated by commas alone are still separate tokens.
    assert "X-A" not in _out(_incoming(("Connection", "X-A,X-B"), ("X-A", "1"), ("X-B", "2"), ("X-C", "3")))
    assert set(out.keys()) == {
        "Accept",
        "Content-Type",
        "Accept-Encoding",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "Audit-ID",
    }


def test_caller_identity_never_reaches_the_member() -> None:
    out = _out(
        _incoming(
            ("Authorization", "Bearer caller-token"),
            ("authorization", "Basic x"),
            ("Impersonate-User", "admin"),
            ("Impersonate-Group", "system:masters"),
            ("Impersonate-Extra-Scopes", "x"),
            ("Impersonate-Uid", "u"),
            ("X-Remote-User", "admin"),
            ("X-Remote-Group", "system:masters"),
            ("X-Remote-Extra-Foo", "bar"),
            ("X-Custom-User", "admin"),
            ("X-Custom-Extra-Foo", "bar"),
            ("X-Keep", "yes"),
        ),
        identity_headers=["X-Custom-User"],
        identity_prefixes=["X-Custom-Extra-"],
    )
    assert [k for k in out if k.lower().startswith(("authorization", "impersonate", "x-remote", "x-custom"))] == []
    assert out["X-Keep"] == "yes"


def test_forwarding_headers() -> None:
    out = _out(_incoming(("Host", "gw.example:9443"), ("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-Proto", "http")))
    assert list(out.items()) == [
        ("X-Forwarded-For", "1.1.1.1, 10.1.2.3"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "gw.example:9443"),
        ("Audit-ID", "audit-1"),
    ]
    out = _out(_incoming(), client_ip=None)
    assert list(out.items()) == [("X-Forwarded-Proto", "https"), ("Audit-ID", "audit-1")]


@pytest.mark.parametrize(
    ("prior", "client_ip", "forwarded_for"),
    [
        ([], "10.1.2.3", "10.1.2.3"),
        (["1.1.1.1", " 2.2.2.2 ", ""], "10.1.2.3", "1.1.1.1, 2.2.2.2, 10.1.2.3"),  # every hop so far, in order
        (["1.1.1.1", "2.2.2.2"], None, "1.1.1.1, 2.2.2.2"),
    ],
)
def test_x_forwarded_for_appends_the_client(prior: list[str], client_ip: str | None, forwarded_for: str) -> None:
    out = _out(_incoming(*(("X-Forwarded-For", v) for v in prior)), client_ip=client_ip)
    assert list(out.items()) == [("X-Forwarded-For", forwarded_for), ("X-Forwarded-Proto", "https"), ("Audit-ID", "audit-1")]


def test_audit_id_is_the_gateways() -> None:
    out = _out(_incoming(("Audit-ID", "forged"), ("audit-id", "again")), audit_id="abc-123")
    assert out.getall("Audit-ID") == ["abc-123"]


def test_upgrade_headers_kept_only_when_asked() -> None:
    incoming = _incoming(("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), ("X-Stream-Protocol-Version", "v4.channel.k8s.io"))
    assert is_upgrade(incoming)
    assert "Upgrade" not in _out(incoming)
    kept = _out(incoming, keep_upgrade=True)
    assert list(kept.items()) == [
        ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ("X-Forwarded-For", "10.1.2.3"),
        ("X-Forwarded-Proto", "https"),
        ("Audit-ID", "audit-1"),
        ("Connection", "Upgrade"),
        ("Upgrade", "SPDY/3.1"),
    ]
    assert is_upgrade(_incoming(("Connection", "keep-alive, Upgrade"), ("Upgrade", "websocket")))
    assert not is_upgrade(_incoming(("Connection", "keep-alive"), ("Upgrade", "x")))
    assert not is_upgrade(_incoming(("Connection", "upgrade")))
    assert not is_upgrade(_incoming(("Upgrade", "websocket")))


def test_set_headers_replaces_and_repeats() -> None:
    headers = CIMultiDict([("Authorization", "Bearer old"), ("Impersonate-Group", "x")])
    set_headers(headers, {"authorization": "Bearer new", "Impersonate-Group": ["a", "b"]})
    assert headers.getall("Authorization") == ["Bearer new"]
    assert headers.getall("Impersonate-Group") == ["a", "b"]
    set_headers(headers, [("Impersonate-User", "u"), ("Impersonate-Group", "g1"), ("Impersonate-Group", "g2")])
    assert headers.getall("Impersonate-Group") == ["g1", "g2"]
    assert headers["Impersonate-User"] == "u"


def test_response_headers() -> None:
    upstream = _incoming(
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
        ("Content-Length", "12"),
        ("Transfer-Encoding", "chunked"),
        ("Connection", "close, X-Hop"),
        ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Audit-Id", "member-id"),
        ("Warning", '299 - "a"'),
        ("Warning", '299 - "b"'),
        ("Cache-Control", "no-cache, private"),
    )
    out = response_headers(upstream)
    assert list(out.items()) == [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
        ("Warning", '299 - "a"'),
        ("Warning", '299 - "b"'),
        ("Cache-Control", "no-cache, private"),
    ]
    assert list(response_headers(_incoming(("Content-Type", "text/plain"), ("Content-Length", "1"))).items()) == [
        ("Content-Type", "text/plain")
    ]
