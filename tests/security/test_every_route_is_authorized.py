"""Nothing bypasses authorization: every route answers 403 to a denied user, except the always-allowed ones."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from multidict import MultiDict

from gateway_apiserver.base.status import StatusError
from gateway_apiserver.security.authentication import strip_identity_headers
from gateway_apiserver.security.authorization import (
    Decision,
    RequestAttributes,
    SubjectAccessReviewer,
    always_allowed,
    forbidden,
    request_attributes,
    review_spec,
)
from gateway_apiserver.security.identity import UserInfo
from tests.fakes.gateway import ManualSecretSource, running_gateway
from tests.fakes.secrets import cluster_secret

MALLORY = UserInfo("mallory", groups=("system:authenticated",))
PLACEHOLDERS = {"name": "c1", "path": "api/v1/pods", "check": "ping", "tail": "x"}


class FixedUser:
    async def authenticate(self, *, headers: Mapping[str, str], peer_certificate: x509.Certificate | None) -> UserInfo:
        return MALLORY

    def strip_identity_headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        return strip_identity_headers(headers)


class Recording:
    """Denies everything through the real reviewer, and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

        async def post(body: dict[str, Any]) -> dict[str, Any]:
            self.asked.append(body["spec"])
            return {"status": {"allowed": False, "reason": "test policy denies everything"}}

        self.reviewer = SubjectAccessReviewer(post)

    async def authorize(self, attrs: RequestAttributes) -> Decision:
        return await self.reviewer.authorize(attrs)


def concrete(pattern: str) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: PLACEHOLDERS.get(m.group(1), "x"), pattern)


async def test_every_route_goes_through_authorization(tmp_path: Path) -> None:
    authorizer = Recording()
    source = ManualSecretSource([cluster_secret("c1")])
    expected_reviews: list[dict[str, Any]] = []
    open_answers: dict[tuple[str, str], int] = {}
    async with running_gateway(tmp_path, source, authenticator=FixedUser(), authorizer=authorizer) as gw:
        app_routes = {
            (route.method, route.resource.canonical)
            for route in gw.server.app.router.routes()  # type: ignore[union-attr]
            if route.resource is not None
        }
        assert len(app_routes) > 20
        checked = 0
        async with gw.session() as s:
            for method, pattern in sorted(app_routes):
                path = concrete(pattern)
                for verb in ["GET", "POST", "PUT", "PATCH", "DELETE"] if method == "*" else [method]:
                    async with s.request(verb, path) as resp:
                        body = await resp.read()
                    if always_allowed(path):
                        open_answers[(verb, path)] = resp.status
                        continue
                    assert resp.status == 403, (verb, path, resp.status, body[:200])
                    if verb != "HEAD":  # a HEAD answer has no body
                        status = json.loads(body)
                        assert (status["kind"], status["code"], status["reason"]) == ("Status", 403, "Forbidden")
                        assert status["message"] == forbidden(attributes(verb, path), "test policy denies everything").message
                    spec = review_spec(attributes(verb, path))
                    if spec not in expected_reviews:  # a denial is cached, so the same question is asked once
                        expected_reviews.append(spec)
                    checked += 1
        assert checked > 30
        assert authorizer.asked == expected_reviews
    # Probes, version, discovery and OpenAPI answer anyone: 200, or 404 for an OpenAPI document that does not exist.
    assert len(open_answers) == 36
    assert {key: status for key, status in open_answers.items() if status != 200} == {
        ("GET", "/openapi/v3/api/v1/pods"): 404,
        ("HEAD", "/openapi/v3/api/v1/pods"): 404,
    }


def attributes(verb: str, path: str) -> RequestAttributes:
    return request_attributes(verb, path, MultiDict(), MALLORY)


async def test_an_allowed_user_gets_through(tmp_path: Path) -> None:
    class AllowAll:
        async def authorize(self, attrs: RequestAttributes) -> Decision:
            return Decision(True)

    async with (
        running_gateway(
            tmp_path, ManualSecretSource([cluster_secret("c1")]), authenticator=FixedUser(), authorizer=AllowAll()
        ) as gw,
        gw.session() as s,
        s.get("/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1") as resp,
    ):
        body = await resp.json()
        assert (resp.status, body["kind"], body["metadata"]["name"]) == (200, "ClusterGateway", "c1")
        assert resp.headers["Audit-Id"]


async def test_an_authorizer_failure_is_a_500_status_not_a_pass(tmp_path: Path) -> None:
    class Broken:
        async def authorize(self, attrs: RequestAttributes) -> Decision:
            raise StatusError(500, "authorization failed: the SubjectAccessReview could not be made: OSError")

    async with (
        running_gateway(
            tmp_path, ManualSecretSource([cluster_secret("c1")]), authenticator=FixedUser(), authorizer=Broken()
        ) as gw,
        gw.session() as s,
    ):
        async with s.get("/apis/cluster.core.oam.dev/v1alpha1/clustergateways") as resp:
            body = await resp.json()
        assert (resp.status, body["kind"], body["reason"], body["message"]) == (
            500,
            "Status",
            "InternalError",
            "authorization failed: the SubjectAccessReview could not be made: OSError",
        )
