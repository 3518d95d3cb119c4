"""The authenticator chain with real certificates and the fake hosting cluster's TokenReview.

Certificates are handed in as `x509.Certificate` objects, as the TLS layer would after its
handshake; the handshake itself is tested with the serving code.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict, CIMultiDictProxy

from gateway_apiserver.base.status import StatusError
from gateway_apiserver.registry.informer import load_hosting_config
from gateway_apiserver.security.authentication import (
    STANDALONE_USER,
    Authenticator,
    StandaloneAuthenticator,
    bearer_token,
    decode_extra_key,
    strip_identity_headers,
)
from gateway_apiserver.security.identity import ANONYMOUS, AUTHENTICATED, UserInfo
from gateway_apiserver.security.requestheader import RequestHeaderConfig
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.pki import CertKey, issue_client_cert, issue_server_cert, make_ca

pytestmark = pytest.mark.timeout(30)

FRONT_PROXY_CA = make_ca("front-proxy-ca")
CLIENT_CA = make_ca("kubernetes-ca")
WRONG_CA = make_ca("wrong-ca")
# Same subject as the front-proxy CA, different key: only a signature check tells them apart.
FORGED_CA = make_ca("front-proxy-ca")

CONFIG = RequestHeaderConfig(
    ca_pem=FRONT_PROXY_CA.cert_pem,
    allowed_names=("front-proxy-client",),
    username_headers=("X-Remote-User",),
    group_headers=("X-Remote-Group",),
    extra_prefixes=("X-Remote-Extra-",),
    client_ca_pem=CLIENT_CA.cert_pem,
)


def cert(ca: CertKey, cn: str, groups: tuple[str, ...] = (), **kw: Any) -> x509.Certificate:
    return issue_client_cert(ca, cn, groups, **kw).cert


FRONT_PROXY = cert(FRONT_PROXY_CA, "front-proxy-client")
UNLISTED_PROXY = cert(FRONT_PROXY_CA, "some-other-proxy")


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


AGGREGATOR_HEADERS = headers(
    ("X-Remote-User", "alice"),
    ("X-Remote-Group", "devs"),
    ("X-Remote-Group", "ops"),
    ("X-Remote-Extra-Acme.com%2Fproject", "p1"),
    ("X-Remote-Extra-Scopes", "read"),
    ("X-Remote-Extra-Scopes", "write"),
)


async def auth(authenticator: Authenticator, hdrs: CIMultiDictProxy[str], peer: x509.Certificate | None) -> UserInfo:
    return await authenticator.authenticate(headers=hdrs, peer_certificate=peer)


async def assert_401(authenticator: Authenticator, hdrs: CIMultiDictProxy[str], peer: x509.Certificate | None) -> None:
    with pytest.raises(StatusError) as info:
        await auth(authenticator, hdrs, peer)
    assert (info.value.code, info.value.message, info.value.reason) == (401, "Unauthorized", "Unauthorized")


# --- front proxy ----------------------------------------------------------------------------


async def test_front_proxy_gives_the_user_groups_and_decoded_extras() -> None:
    user = await auth(Authenticator(CONFIG), AGGREGATOR_HEADERS, FRONT_PROXY)
    assert user == UserInfo(
        "alice",
        groups=("devs", "ops", AUTHENTICATED),
        extra={"acme.com/project": ("p1",), "scopes": ("read", "write")},
    )


async def test_front_proxy_header_names_uid_and_order_follow_the_config() -> None:
    config = RequestHeaderConfig(
        ca_pem=FRONT_PROXY_CA.cert_pem,
        username_headers=("X-Proxy-User", "X-Remote-User"),
        uid_headers=("X-Remote-Uid",),
        group_headers=("X-Remote-Group", "X-Proxy-Group"),
        extra_prefixes=("X-Proxy-Extra-",),
    )
    hdrs = headers(
        ("X-Proxy-User", ""),  # empty: the next configured header is used, as kube
        ("X-Remote-User", "bob"),
        ("X-Remote-Uid", "uid-1"),
        ("X-Proxy-Group", "second"),
        ("X-Remote-Group", "first"),
        ("X-Remote-Group", ""),
        ("x-proxy-extra-Foo", "bar"),
        ("X-Remote-Extra-Ignored", "x"),  # not a configured prefix
    )
    # allowed_names empty: any CN signed by the requestheader CA.
    user = await auth(Authenticator(config), hdrs, UNLISTED_PROXY)
    assert user == UserInfo("bob", "uid-1", ("first", "second", AUTHENTICATED), {"foo": ("bar",)})


async def test_unlisted_cn_is_refused() -> None:
    await assert_401(Authenticator(CONFIG), AGGREGATOR_HEADERS, UNLISTED_PROXY)


@pytest.mark.parametrize(
    "peer",
    [
        pytest.param(cert(WRONG_CA, "front-proxy-client"), id="wrong-ca"),
        pytest.param(cert(FORGED_CA, "front-proxy-client"), id="forged-issuer-name"),
        pytest.param(cert(FRONT_PROXY_CA, "front-proxy-client", expired=True), id="expired"),
        pytest.param(issue_server_cert(FRONT_PROXY_CA, cn="front-proxy-client").cert, id="server-auth-only"),
    ],
)
async def test_untrusted_front_proxy_certificates_are_refused(peer: x509.Certificate) -> None:
    # As kube's union authenticator: a certificate that fails verification is a 401, never admin.
    await assert_401(Authenticator(CONFIG), headers(("X-Remote-User", "admin")), peer)


async def test_identity_headers_without_a_certificate_are_ignored() -> None:
    hdrs = headers(("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters"))
    assert await auth(Authenticator(CONFIG), hdrs, None) == ANONYMOUS
    # Nor without any trust configured.
    assert await auth(Authenticator(), hdrs, FRONT_PROXY) == ANONYMOUS


async def test_front_proxy_without_username_header_falls_through() -> None:
    # Not authenticated by the front-proxy step; the client-CA step then fails on this cert: 401.
    await assert_401(Authenticator(CONFIG), headers(("X-Remote-Group", "devs")), FRONT_PROXY)
    # With no client CA configured there is nothing else to try: anonymous.
    no_client_ca = RequestHeaderConfig(ca_pem=FRONT_PROXY_CA.cert_pem, username_headers=("X-Remote-User",))
    assert await auth(Authenticator(no_client_ca), headers(("X-Remote-Group", "devs")), FRONT_PROXY) == ANONYMOUS


async def test_update_swaps_the_trusted_ca() -> None:
    authenticator = Authenticator(CONFIG)
    new_ca = make_ca("front-proxy-ca-2")
    authenticator.update(RequestHeaderConfig(ca_pem=new_ca.cert_pem, username_headers=("X-Remote-User",)))
    assert (await auth(authenticator, AGGREGATOR_HEADERS, cert(new_ca, "anything"))).name == "alice"
    await assert_401(authenticator, AGGREGATOR_HEADERS, FRONT_PROXY)


def test_extra_keys_decode_as_kube() -> None:
    assert decode_extra_key("Acme.com%2Fproject") == "acme.com/project"
    assert decode_extra_key("Scopes") == "scopes"
    assert decode_extra_key("a%zzb") == "a%zzb"  # malformed: kept raw
    assert decode_extra_key("%E2%9C%93") == "\u2713"


# --- client certificates --------------------------------------------------------------------


async def test_client_ca_certificate_gives_cn_and_organizations() -> None:
    peer = cert(CLIENT_CA, "carol", ("team-a", "team-b"))
    # Identity headers mean nothing on a plain client certificate.
    user = await auth(Authenticator(CONFIG), headers(("X-Remote-User", "admin")), peer)
    assert user == UserInfo("carol", groups=("team-a", "team-b", AUTHENTICATED))


def without_cn(ca: CertKey) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "team-a")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca.key, hashes.SHA256())
    )


async def test_client_certificate_without_cn_is_not_a_user() -> None:
    # As kube's CommonNameUserConversion: not authenticated, and not an error...
    client_ca_only = RequestHeaderConfig(client_ca_pem=CLIENT_CA.cert_pem)
    assert await auth(Authenticator(client_ca_only), headers(), without_cn(CLIENT_CA)) == ANONYMOUS
    # ...but the front-proxy step's verification failure is, so with a front proxy configured: 401.
    await assert_401(Authenticator(CONFIG), headers(), without_cn(CLIENT_CA))


# --- bearer tokens --------------------------------------------------------------------------


def test_bearer_token_parsing() -> None:
    assert bearer_token(headers(("Authorization", "Bearer abc"))) == "abc"
    assert bearer_token(headers(("authorization", "bearer abc extra"))) == "abc"
    assert bearer_token(headers(("Authorization", "Basic abc"))) is None
    assert bearer_token(headers(("Authorization", "Bearer  abc"))) is None  # as Go's SplitN
    assert bearer_token(headers()) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def make_authenticator(kube_apiserver: FakeKubeAPIServer, tmp_path: Path) -> AsyncIterator[Callable[..., Authenticator]]:
    hosting = await load_hosting_config(str(kube_apiserver.write_kubeconfig(tmp_path / "kubeconfig")))
    made: list[Authenticator] = []

    def make(**kw: Any) -> Authenticator:
        made.append(Authenticator(kw.pop("config", CONFIG), client=hosting, **kw))
        return made[-1]

    yield make
    for authenticator in made:
        await authenticator.close()


def bearer(token: str) -> CIMultiDictProxy[str]:
    return headers(("Authorization", f"Bearer {token}"))


GOOD = "alice-token-0123456789"
BAD = "not-a-token-9876543210"


@pytest.fixture(autouse=True)
def alice_token(kube_apiserver: FakeKubeAPIServer) -> None:
    kube_apiserver.users[GOOD] = {"username": "alice", "uid": "u-1", "groups": ["devs"], "extra": {"scopes": ["s1"]}}


async def test_good_and_bad_tokens(kube_apiserver: FakeKubeAPIServer, make_authenticator: Callable[..., Authenticator]) -> None:
    authenticator = make_authenticator()
    user = await auth(authenticator, bearer(GOOD), None)
    assert user == UserInfo("alice", "u-1", ("devs", AUTHENTICATED), {"scopes": ("s1",)})
    await assert_401(authenticator, bearer(BAD), None)
    assert kube_apiserver.token_reviews == 2
    # A front-proxy user wins over a token, which is then not even reviewed.
    assert (
        await auth(authenticator, headers(*AGGREGATOR_HEADERS.items(), ("Authorization", f"Bearer {BAD}")), FRONT_PROXY)
    ).name == "alice"
    assert kube_apiserver.token_reviews == 2


async def test_token_results_are_cached_both_ways(
    kube_apiserver: FakeKubeAPIServer, make_authenticator: Callable[..., Authenticator]
) -> None:
    clock = Clock()
    authenticator = make_authenticator(clock=clock, token_cache_ttl=10.0)
    for _ in range(2):
        assert (await auth(authenticator, bearer(GOOD), None)).name == "alice"
        await assert_401(authenticator, bearer(BAD), None)
    assert kube_apiserver.token_reviews == 2
    # The hosting cluster changes its mind; the cache hides it until the TTL ends.
    kube_apiserver.users[BAD] = kube_apiserver.users.pop(GOOD)
    clock.now += 9.9
    assert (await auth(authenticator, bearer(GOOD), None)).name == "alice"
    await assert_401(authenticator, bearer(BAD), None)
    assert kube_apiserver.token_reviews == 2
    clock.now += 0.2
    await assert_401(authenticator, bearer(GOOD), None)
    assert (await auth(authenticator, bearer(BAD), None)).name == "alice"
    assert kube_apiserver.token_reviews == 4


async def test_concurrent_requests_share_one_token_review(
    kube_apiserver: FakeKubeAPIServer, make_authenticator: Callable[..., Authenticator]
) -> None:
    authenticator = make_authenticator()
    users = await asyncio.gather(*(auth(authenticator, bearer(GOOD), None) for _ in range(20)))
    assert {u.name for u in users} == {"alice"}
    assert kube_apiserver.token_reviews == 1


async def test_unreachable_hosting_cluster_gives_401_uncached(
    kube_apiserver: FakeKubeAPIServer, make_authenticator: Callable[..., Authenticator], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    authenticator = make_authenticator(retries=1)
    await kube_apiserver.stop()
    await assert_401(authenticator, bearer(GOOD), None)
    assert "TokenReview failed" in caplog.text
    assert authenticator.token_reviews == 2  # the connection error was retried once
    await kube_apiserver.start()
    kube_apiserver.inject_failure(500, count=2)  # a 5xx is retried, then given up on
    await assert_401(authenticator, bearer(GOOD), None)
    assert authenticator.token_reviews == 4
    # Failures are not cached: the next request reviews again and succeeds.
    assert (await auth(authenticator, bearer(GOOD), None)).name == "alice"
    await assert_401(authenticator, bearer(BAD), None)
    assert GOOD not in caplog.text and BAD not in caplog.text  # never a token in the logs


async def test_forbidden_token_review_is_not_retried(
    kube_apiserver: FakeKubeAPIServer, make_authenticator: Callable[..., Authenticator], caplog: pytest.LogCaptureFixture
) -> None:
    kube_apiserver.inject_failure(403, count=3)
    authenticator = make_authenticator(retries=2)
    await assert_401(authenticator, bearer(GOOD), None)
    assert authenticator.token_reviews == 1
    assert "system:auth-delegator" in caplog.text


async def test_audiences(kube_apiserver: FakeKubeAPIServer, make_authenticator: Callable[..., Authenticator]) -> None:
    kube_apiserver.users["gateway-token-0123"] = {"username": "dave", "audiences": ["gateway"]}
    authenticator = make_authenticator(audiences=["gateway"])
    assert (await auth(authenticator, bearer("gateway-token-0123"), None)).name == "dave"
    await assert_401(authenticator, bearer(GOOD), None)  # valid for the API server's audience only


async def test_without_hosting_client_tokens_are_ignored() -> None:
    assert await auth(Authenticator(CONFIG), bearer(GOOD), None) == ANONYMOUS


# --- anonymous ------------------------------------------------------------------------------


async def test_anonymous() -> None:
    assert await auth(Authenticator(CONFIG), headers(), None) == ANONYMOUS
    await assert_401(Authenticator(CONFIG, anonymous_auth=False), headers(("X-Remote-User", "admin")), None)
    # Disabled anonymous access does not affect real credentials.
    assert (await auth(Authenticator(CONFIG, anonymous_auth=False), AGGREGATOR_HEADERS, FRONT_PROXY)).name == "alice"


# --- header stripping and standalone ---------------------------------------------------------


def test_strip_identity_headers() -> None:
    config = RequestHeaderConfig(
        username_headers=("X-Proxy-User",), group_headers=("X-Proxy-Group",), extra_prefixes=("X-Proxy-Extra-",)
    )
    hdrs = headers(
        ("Accept", "application/json"),
        ("X-Remote-User", "admin"),
        ("x-remote-group", "a"),
        ("X-Remote-Group", "b"),
        ("X-Remote-Extra-Scopes", "s"),
        ("X-Proxy-User", "admin"),
        ("X-Proxy-Group", "g"),
        ("X-Proxy-Extra-Foo", "f"),
        ("Impersonate-User", "admin"),
        ("Impersonate-Extra-Scopes", "s"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-For", "5.6.7.8"),
    )
    stripped = strip_identity_headers(hdrs, config)
    assert list(stripped.items()) == [
        ("Accept", "application/json"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-For", "5.6.7.8"),
    ]
    assert "X-Proxy-User" in strip_identity_headers(hdrs)  # only the default prefixes without a config
    assert "X-Proxy-User" not in Authenticator(config).strip_identity_headers(hdrs)


async def test_standalone_authenticator() -> None:
    standalone = StandaloneAuthenticator()
    user = await standalone.authenticate(headers=headers(("X-Remote-User", "admin")), peer_certificate=None)
    assert user == STANDALONE_USER
    assert user.groups == ("system:masters", AUTHENTICATED)
    standalone.update(CONFIG)  # nothing is delegated
    assert await standalone.authenticate(headers=AGGREGATOR_HEADERS, peer_certificate=FRONT_PROXY) == STANDALONE_USER
    assert list(standalone.strip_identity_headers(AGGREGATOR_HEADERS).items()) == []
    await standalone.close()


# --- the fake's SubjectAccessReview (used by the authorization tests) ---------------------------


async def test_fake_subject_access_review_policy(kube_apiserver: FakeKubeAPIServer, tmp_path: Path) -> None:
    from kubernetes_asyncio.client import ApiClient, AuthorizationV1Api

    hosting = await load_hosting_config(str(kube_apiserver.write_kubeconfig(tmp_path / "kubeconfig")))
    kube_apiserver.policy = [
        PolicyRule(users=("mallory",), deny=True, reason="banned"),
        PolicyRule(users=("alice",), verbs=("get", "list"), api_groups=("cluster.core.oam.dev",), resources=("clustergateways",)),
        PolicyRule(groups=("ops",), verbs=("*",), resources=("clustergateways/proxy",), names=("c1",)),
        PolicyRule(groups=("*",), verbs=("get",), non_resource_urls=("/healthz", "/metrics/*")),
    ]

    async with ApiClient(hosting) as api:
        authz: Any = AuthorizationV1Api(api)

        async def review(user: str, groups: list[str], **attrs: str) -> dict[str, Any]:
            key = "nonResourceAttributes" if "path" in attrs else "resourceAttributes"
            body = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": groups, key: attrs},
            }
            resp = await authz.create_subject_access_review(body, _preload_content=False)
            assert resp.status == 201
            status: dict[str, Any] = (await resp.json())["status"]
            return status

        cg = {"group": "cluster.core.oam.dev", "version": "v1alpha1", "resource": "clustergateways"}
        assert (await review("alice", [], verb="list", **cg))["allowed"] is True
        assert (await review("alice", [], verb="get", name="c1", **cg))["allowed"] is True
        assert (await review("alice", [], verb="get", name="c1", subresource="proxy", **cg)) == {"allowed": False}
        assert (await review("bob", ["ops"], verb="create", name="c1", subresource="proxy", **cg))["allowed"] is True
        assert (await review("bob", ["ops"], verb="create", name="c2", subresource="proxy", **cg))["allowed"] is False
        assert await review("mallory", ["ops"], verb="get", **cg) == {"allowed": False, "denied": True, "reason": "banned"}
        assert (await review("x", ["system:authenticated"], verb="get", path="/metrics/cpu"))["allowed"] is True
        assert (await review("x", ["system:authenticated"], verb="post", path="/healthz"))["allowed"] is False
        assert kube_apiserver.access_reviews == 8
        assert kube_apiserver.access_review_log[2]["spec"]["resourceAttributes"] == {
            **cg,
            "verb": "get",
            "name": "c1",
            "subresource": "proxy",
        }

        bad = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": "a"}}
        resp = await authz.create_subject_access_review(bad, _preload_content=False)
        assert resp.status == 422
        assert "exactly one of nonResourceAttributes or resourceAttributes" in (await resp.json())["message"]
