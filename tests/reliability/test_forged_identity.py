"""Forged identity headers, in hosting mode with delegated authentication, over real TLS.

Threat: a caller writes the identity it wants into the headers a front proxy (the
kube-aggregator) would send, `X-Remote-User`/`-Group`/`-Extra-*`, or into `Impersonate-*`,
hoping the gateway believes them or passes them on to a member cluster that trusts the
gateway's own credential.

The rules, as the kube-apiserver keeps them:
  * `X-Remote-*` counts only on a connection whose client certificate was signed by the
    requestheader CA and whose CN is an allowed name. Otherwise the request is authenticated
    by what else it carries (a client certificate of the client CA, a bearer token), as
    anonymous if nothing, or refused (401) if it presented a certificate that fails.
  * The SubjectAccessReview the hosting cluster receives names the real caller.
  * No caller-sent `X-Remote-*` or `Impersonate-*` header ever reaches a member, on plain
    requests and on upgrades; the only `Impersonate-*` a member sees are the gateway's own
    (`?impersonate=true`, or ClientIdentityPenetration with its exchange rules).
  * Bytes that are not UTF-8 in these headers are read as Go reads them (U+FFFD), never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway_apiserver.config import Config
from gateway_apiserver.server import GatewayServer
from tests.fakes.hosting import add_cluster
from tests.fakes.hosting import hosting_gateway as shared_hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.member_upgrade import FakeUpgradeMember, RecordedRequest
from tests.fakes.pki import CertKey, client_ssl_context, issue_client_cert

CG = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
ALICE = {"username": "alice", "uid": "a-1", "groups": ["devs"], "extra": {"scopes": ["read"]}}
# What an attacker writes in: the aggregator's headers and impersonation, repeated and with extras.
FORGED: list[tuple[str, str]] = [
    ("X-Remote-User", "admin"),
    ("X-Remote-Group", "system:masters"),
    ("X-Remote-Group", "admins"),
    ("X-Remote-Uid", "0"),
    ("X-Remote-Extra-Scopes", "all"),
    ("X-Remote-Extra-Acme.com%2Fproject", "root"),
    ("Impersonate-User", "admin"),
    ("Impersonate-Group", "system:masters"),
    ("Impersonate-Uid", "0"),
    ("Impersonate-Extra-Scopes", "all"),
]
PROXY_ATTRS = {"verb": "get", "group": "cluster.core.oam.dev", "version": "v1alpha1", "resource": "clustergateways"}


@dataclass
class Hosting:
    """The fake hosting cluster, a gateway delegating to it, and two members."""

    api: FakeKubeAPIServer
    gateway: GatewayServer
    url: str
    member: FakeMemberAPIServer
    upgrade_member: FakeUpgradeMember
    front_proxy_ca: CertKey
    client_ca: CertKey

    def context(self, client: CertKey | None = None) -> ssl.SSLContext:
        assert self.gateway.cert is not None
        return client_ssl_context(self.gateway.cert.cert_file.read_bytes(), client)

    async def get(
        self, path: str, headers: list[tuple[str, str]], *, client: CertKey | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One GET on a fresh connection (the client certificate is per connection); the status and JSON body."""
        connector = aiohttp.TCPConnector(ssl=self.context(client))
        async with aiohttp.ClientSession(connector=connector) as session, session.get(self.url + path, headers=headers) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw) if resp.content_type == "application/json" else {"text": raw.decode()}

    def reviews(self) -> list[dict[str, Any]]:
        """The specs of the SubjectAccessReviews the hosting cluster received, in order."""
        return [review["spec"] for review in self.api.access_review_log]


@pytest.fixture
async def hosting(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> AsyncIterator[Hosting]:
    """The gateway with the reference's defaults: no identity penetration, no exchange rules."""
    async with hosting_gateway(tmp_path, kube_apiserver) as setup:
        yield setup


EXCHANGE_RULES = """\
apiVersion: cluster.core.oam.dev/v1alpha1
kind: ClusterGatewayProxyConfiguration
spec:
  clientIdentityExchanger:
    rules:
    - name: alice-is-mapped
      type: StaticMappingIdentityExchanger
      source: {user: alice}
      target: {user: mapped, groups: [team-m]}
    - name: carol-is-privileged
      type: PrivilegedIdentityExchanger
      source: {user: carol}
"""


@pytest.fixture
async def penetrating(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> AsyncIterator[Hosting]:
    """ClientIdentityPenetration on, with a static mapping for alice and a privileged rule for carol."""
    rules = tmp_path / "proxy-config.yaml"
    rules.write_text(EXCHANGE_RULES)
    gates = {**Config().feature_gates, "ClientIdentityPenetration": True}
    async with hosting_gateway(tmp_path, kube_apiserver, feature_gates=gates, cluster_gateway_proxy_config=rules) as setup:
        yield setup


@contextlib.asynccontextmanager
async def hosting_gateway(tmp_path: Path, kube_apiserver: FakeKubeAPIServer, **overrides: Any) -> AsyncIterator[Hosting]:
    """The shared hosting-mode gateway (tests/fakes/hosting.py) with alice, a narrow policy and two members."""
    kube_apiserver.users["alice-token"] = ALICE
    group = ("cluster.core.oam.dev",)
    kube_apiserver.policy = [
        PolicyRule(users=("alice", "carol"), verbs=("get",), api_groups=group, resources=("clustergateways/proxy",)),
        PolicyRule(users=("alice", "carol"), verbs=("list",), api_groups=group, resources=("clustergateways",)),
    ]
    async with FakeMemberAPIServer() as member:
        upgrade_member = FakeUpgradeMember(token="upgrade-member-token")
        await upgrade_member.start()
        try:
            add_cluster(kube_apiserver, "c1", member.url, token=member.token, ca_pem=member.ca_pem)
            add_cluster(kube_apiserver, "u1", str(upgrade_member.url), token=upgrade_member.token, ca_pem=upgrade_member.ca_pem)
            async with shared_hosting_gateway(tmp_path, kube_apiserver, **overrides) as gw:
                yield Hosting(kube_apiserver, gw.server, gw.url, member, upgrade_member, gw.front_proxy_ca, gw.client_ca)
        finally:
            await upgrade_member.stop()


def identity_headers(headers: CIMultiDict[str]) -> list[tuple[str, str]]:
    """The identity-carrying headers among `headers`, in order."""
    return [(k, v) for k, v in headers.items() if k.lower().startswith(("x-remote-", "impersonate-"))]


def spec(user: str, groups: list[str], attrs: dict[str, str], **more: Any) -> dict[str, Any]:
    return {"user": user, "groups": groups, "resourceAttributes": attrs, **more}


# --- who the gateway thinks the caller is ------------------------------------------------------


async def test_forged_headers_without_a_certificate_leave_the_caller_anonymous(hosting: Hosting) -> None:
    status, body = await hosting.get(CG, FORGED)
    assert (status, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        'clustergateways.cluster.core.oam.dev is forbidden: User "system:anonymous" cannot list resource "clustergateways" '
        'in API group "cluster.core.oam.dev" at the cluster scope'
    )
    assert hosting.reviews() == [spec("system:anonymous", ["system:unauthenticated"], {**PROXY_ATTRS, "verb": "list"})]


async def test_forged_headers_with_a_token_are_the_tokens_user(hosting: Hosting) -> None:
    status, body = await hosting.get(f"{CG}/c1/proxy/echo", [*FORGED, ("Authorization", "Bearer alice-token")])
    assert status == 200, body
    assert hosting.reviews() == [
        spec(
            "alice",
            ["devs", "system:authenticated"],
            {**PROXY_ATTRS, "subresource": "proxy", "name": "c1"},
            uid="a-1",
            extra={"scopes": ["read"]},
        )
    ]
    [forwarded] = hosting.member.requests_to("/echo")
    assert identity_headers(forwarded.headers) == []
    assert forwarded.headers.getall("Authorization") == [f"Bearer {hosting.member.token}"]  # the gateway's own


async def test_a_client_ca_certificate_is_its_own_user_whatever_the_headers_say(hosting: Hosting) -> None:
    carol = issue_client_cert(hosting.client_ca, "carol", groups=("team-c",))  # not a front-proxy certificate
    status, body = await hosting.get(f"{CG}/c1/proxy/echo", FORGED, client=carol)
    assert status == 200, body
    assert hosting.reviews() == [
        spec("carol", ["team-c", "system:authenticated"], {**PROXY_ATTRS, "subresource": "proxy", "name": "c1"})
    ]
    [forwarded] = hosting.member.requests_to("/echo")
    assert identity_headers(forwarded.headers) == []


async def test_a_front_proxy_ca_certificate_with_an_unlisted_cn_trusts_no_header(hosting: Hosting) -> None:
    unlisted = issue_client_cert(hosting.front_proxy_ca, "not-the-aggregator")
    # With nothing else, a certificate that fails is a 401, as on the kube-apiserver, and no review is made.
    status, body = await hosting.get(CG, FORGED, client=unlisted)
    assert (status, body) == (
        401,
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
         "reason": "Unauthorized", "code": 401},
    )  # fmt: skip
    assert hosting.reviews() == []
    # With a bearer token as well, the token's user it is.
    status, body = await hosting.get(CG, [*FORGED, ("Authorization", "Bearer alice-token")], client=unlisted)
    assert status == 200, body
    assert [r["user"] for r in hosting.reviews()] == ["alice"]


async def test_the_real_front_proxy_is_believed_and_its_headers_still_stop_at_the_gateway(hosting: Hosting) -> None:
    """The contrast: the aggregator's certificate makes X-Remote-* the identity, yet a member sees none of it."""
    aggregator = issue_client_cert(hosting.front_proxy_ca, "front-proxy-client")
    status, body = await hosting.get(
        f"{CG}/c1/proxy/echo", [("X-Remote-User", "alice"), ("X-Remote-Group", "devs"), *FORGED[6:]], client=aggregator
    )
    assert status == 200, body
    assert hosting.reviews() == [
        spec("alice", ["devs", "system:authenticated"], {**PROXY_ATTRS, "subresource": "proxy", "name": "c1"})
    ]
    [forwarded] = hosting.member.requests_to("/echo")
    assert identity_headers(forwarded.headers) == []


# --- what reaches the member -------------------------------------------------------------------


async def test_only_the_gateways_own_impersonation_reaches_the_member(hosting: Hosting) -> None:
    """With `?impersonate=true` the gateway impersonates the real caller; the forged values are gone."""
    status, body = await hosting.get(f"{CG}/c1/proxy/echo?impersonate=true", [*FORGED, ("Authorization", "Bearer alice-token")])
    assert status == 200, body
    [forwarded] = hosting.member.requests_to("/echo")
    assert forwarded.query_string == ""
    assert identity_headers(forwarded.headers) == [
        ("Impersonate-User", "alice"),
        ("Impersonate-Group", "devs"),
        ("Impersonate-Group", "system:authenticated"),
        ("Impersonate-Extra-scopes", "read"),  # extra keys travel lower-cased
    ]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("alice", [("Impersonate-User", "mapped"), ("Impersonate-Group", "team-m")]),  # her static mapping
        ("carol", []),  # privileged: the gateway's own identity, and nobody else's
    ],
)
async def test_with_identity_penetration_only_the_exchange_rules_decide(
    penetrating: Hosting, who: str, expected: list[tuple[str, str]]
) -> None:
    carol = issue_client_cert(penetrating.client_ca, "carol")
    headers, client = ([*FORGED, ("Authorization", "Bearer alice-token")], None) if who == "alice" else (FORGED, carol)
    status, body = await penetrating.get(f"{CG}/c1/proxy/echo", headers, client=client)
    assert status == 200, body
    [forwarded] = penetrating.member.requests_to("/echo")
    assert identity_headers(forwarded.headers) == expected
    assert forwarded.headers.getall("Authorization") == [f"Bearer {penetrating.member.token}"]


async def test_the_exact_headers_a_member_receives(hosting: Hosting) -> None:
    """Everything the member gets, header by header: neither the forged ones nor the caller's token are among them."""
    headers = [
        *FORGED,
        ("Authorization", "Bearer alice-token"),
        ("Accept", "application/json"),
        ("X-Custom", "kept"),
        ("User-Agent", "kubectl/v1.32.0 (linux/amd64) kubernetes/fake"),
    ]
    status, body = await hosting.get(f"{CG}/c1/proxy/echo", headers)
    assert status == 200, body
    [forwarded] = hosting.member.requests_to("/echo")
    received = [(k.lower(), v) for k, v in forwarded.headers.items()]
    assert received == [
        ("host", f"127.0.0.1:{hosting.member.port}"),
        ("accept", "application/json"),
        ("x-custom", "kept"),
        ("user-agent", "kubectl/v1.32.0 (linux/amd64) kubernetes/fake"),
        ("accept-encoding", "gzip, deflate"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", f"127.0.0.1:{hosting.gateway.port}"),
        ("audit-id", forwarded.headers["Audit-ID"]),  # the gateway's own, a fresh UUID per request
        ("authorization", f"Bearer {hosting.member.token}"),
    ]


WEBSOCKET_HEADERS = [
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Protocol: v5.channel.k8s.io",
]


@pytest.mark.parametrize("upgrade", ["SPDY/3.1", "websocket"])
async def test_forged_headers_do_not_reach_the_member_on_an_upgrade(hosting: Hosting, upgrade: str) -> None:
    """exec's upgrade is proxied by another path than plain requests; it strips the same headers."""
    forwarded = await exec_upgrade(hosting, upgrade)
    assert identity_headers(forwarded.headers) == []
    assert forwarded.headers.getall("Authorization") == ["Bearer upgrade-member-token"]


@pytest.mark.parametrize("upgrade", ["SPDY/3.1", "websocket"])
async def test_an_upgrade_carries_only_the_gateways_impersonation(penetrating: Hosting, upgrade: str) -> None:
    forwarded = await exec_upgrade(penetrating, upgrade)
    assert identity_headers(forwarded.headers) == [("Impersonate-User", "mapped"), ("Impersonate-Group", "team-m")]


async def exec_upgrade(setup: Hosting, upgrade: str) -> RecordedRequest:
    """alice's `exec` upgrade with every forged header, written byte for byte; what the member received."""
    reader, writer = await asyncio.open_connection("127.0.0.1", setup.gateway.port, ssl=setup.context())
    head = [
        f"GET {CG}/u1/proxy/api/v1/namespaces/default/pods/p/exec?command=cat&stdin=1&stdout=1 HTTP/1.1",
        f"Host: 127.0.0.1:{setup.gateway.port}",
        "Authorization: Bearer alice-token",
        "Connection: Upgrade",
        f"Upgrade: {upgrade}",
        *(WEBSOCKET_HEADERS if upgrade == "websocket" else ["X-Stream-Protocol-Version: v4.channel.k8s.io"]),
        *(f"{name}: {value}" for name, value in FORGED),
    ]
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        status_line = await asyncio.wait_for(reader.readline(), 10)
        assert status_line.startswith(b"HTTP/1.1 101"), status_line
    finally:
        writer.close()
    [forwarded] = [r for r in setup.upgrade_member.requests if "/exec" in r.target]
    return forwarded


# --- bytes that are not UTF-8 --------------------------------------------------------------------


async def raw_get(hosting: Hosting, path: str, header_lines: list[bytes], *, client: CertKey | None = None) -> tuple[int, Any]:
    """A GET written byte for byte (no client library would send these headers), on a fresh TLS connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", hosting.gateway.port, ssl=hosting.context(client))
    try:
        host = f"Host: 127.0.0.1:{hosting.gateway.port}".encode()
        head = [f"GET {path} HTTP/1.1".encode(), host, b"Connection: close", *header_lines]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body)


UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
                "reason": "Unauthorized", "code": 401}  # fmt: skip


@pytest.mark.parametrize("token", [b"\xff\xfe", b"alice-token\x80", b"\xc3\x28abc"])
async def test_a_bearer_token_that_is_not_utf8_is_401(hosting: Hosting, token: bytes) -> None:
    """No real token has such bytes; anyone can send them, before any authentication."""
    status, body = await raw_get(hosting, CG, [b"Authorization: Bearer " + token])
    assert (status, body) == (401, UNAUTHORIZED)
    assert hosting.reviews() == []


async def test_front_proxy_headers_that_are_not_utf8_are_read_as_go_reads_them(hosting: Hosting) -> None:
    """Go's JSON encoder turns invalid UTF-8 into U+FFFD; the SubjectAccessReview says so, and nothing breaks."""
    aggregator = issue_client_cert(hosting.front_proxy_ca, "front-proxy-client")
    headers = [b"X-Remote-User: al\xffice", b"X-Remote-Group: d\xfeevs", b"X-Remote-Extra-Scopes: r\xffead"]
    status, body = await raw_get(hosting, CG, headers, client=aggregator)
    assert (status, body["reason"]) == (403, "Forbidden")
    assert body["message"].startswith('clustergateways.cluster.core.oam.dev is forbidden: User "al\ufffdice" cannot list')
    list_attrs = {**PROXY_ATTRS, "verb": "list"}
    assert hosting.reviews() == [
        spec("al\ufffdice", ["d\ufffdevs", "system:authenticated"], list_attrs, extra={"scopes": ["r\ufffdead"]})
    ]


# --- any spelling ---------------------------------------------------------------------------------

IDENTITY_PREFIX = st.sampled_from(["X-Remote-", "Impersonate-"]).flatmap(
    lambda prefix: st.lists(st.booleans(), min_size=len(prefix), max_size=len(prefix)).map(
        lambda upper: "".join(c.upper() if u else c.lower() for c, u in zip(prefix, upper, strict=True))
    )
)
HEADER_SUFFIX = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.%!#$&'*+^`|~", min_size=1, max_size=20)
HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@settings(max_examples=60)
@given(forged=st.lists(st.tuples(st.tuples(IDENTITY_PREFIX, HEADER_SUFFIX).map("".join), HEADER_VALUE), min_size=1, max_size=6))
async def test_no_spelling_of_an_identity_header_reaches_the_member(hosting: Hosting, forged: list[tuple[str, str]]) -> None:
    before = len(hosting.member.requests)
    status, body = await hosting.get(f"{CG}/c1/proxy/echo", [*forged, ("Authorization", "Bearer alice-token")])
    assert status == 200, body
    [forwarded] = hosting.member.requests[before:]
    assert identity_headers(forwarded.headers) == []
    assert {review["user"] for review in hosting.reviews()} == {"alice"}
