"""--authorization-always-allow-paths in hosting mode: listed non-resource paths skip SubjectAccessReview, not authentication.

As k8s.io/apiserver's path authorizer: exact paths and `*`-terminated prefixes, the leading `/` optional, resource
requests never matched. The KubeVela chart passes `/healthz,/readyz,/livez,/metrics` so Prometheus scrapes
`/metrics` without credentials; each test states the exact reviews the fake hosting cluster received.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fakes.hosting import CLUSTERGATEWAYS, HostingGateway, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import RESOURCE_NOT_FOUND, status_object

VELA_CORE_PATHS = ("/healthz", "/readyz", "/livez", "/metrics")
ANONYMOUS = {"user": "system:anonymous", "groups": ["system:unauthenticated"]}


NOT_FOUND = RESOURCE_NOT_FOUND


async def get(gw: HostingGateway, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with gw.session() as s, s.get(path, headers=headers or {}) as resp:
        return resp.status, await resp.json(content_type=None)


async def scrape(gw: HostingGateway, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET /metrics: its status and Content-Type (the Prometheus text format when served)."""
    async with gw.session() as s, s.get("/metrics", headers=headers or {}) as resp:
        await resp.read()
        return resp.status, resp.headers["Content-Type"]


SCRAPED = (200, "text/plain; version=0.0.4; charset=utf-8")


def path_review(path: str) -> dict[str, Any]:
    return {**ANONYMOUS, "nonResourceAttributes": {"path": path, "verb": "get"}}


def anonymous_forbidden(path: str) -> dict[str, Any]:
    return status_object(403, "Forbidden", f'forbidden: User "system:anonymous" cannot get path "{path}"', {})


async def test_with_the_vela_core_value_an_anonymous_metrics_scrape_is_not_reviewed(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer
) -> None:
    async with hosting_gateway(tmp_path, kube_apiserver, always_allow_paths=VELA_CORE_PATHS) as gw:
        reviews_at_start = len(gw.reviews())
        assert await scrape(gw) == SCRAPED
        async with gw.session() as session, session.get("/healthz") as resp:
            assert (resp.status, await resp.text()) == (200, "ok")
        assert gw.reviews()[reviews_at_start:] == []
        # Exact paths: a path below /metrics is not listed, so it is reviewed (and the policy denies it).
        assert await get(gw, "/metrics/extra") == (403, anonymous_forbidden("/metrics/extra"))
        assert gw.reviews()[reviews_at_start:] == [path_review("/metrics/extra")]


async def test_by_default_metrics_is_reviewed_and_denied_to_anonymous(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> None:
    async with hosting_gateway(tmp_path, kube_apiserver) as gw:
        assert gw.server.config.always_allow_paths == ("/healthz", "/readyz", "/livez")
        reviews_at_start = len(gw.reviews())
        assert await get(gw, "/metrics") == (403, anonymous_forbidden("/metrics"))
        assert gw.reviews()[reviews_at_start:] == [path_review("/metrics")]


async def test_a_trailing_star_is_a_prefix_and_the_leading_slash_is_optional(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer
) -> None:
    async with hosting_gateway(tmp_path, kube_apiserver, always_allow_paths=("debug/*", "/exact")) as gw:
        reviews_at_start = len(gw.reviews())
        for path in ("/debug/", "/debug/pprof/heap", "/exact"):
            assert await get(gw, path) == (404, NOT_FOUND), path
        assert gw.reviews()[reviews_at_start:] == []
        # The prefix is `debug/`, as written: `/debugger` is not under it; `/exact/` is not `/exact`.
        for path in ("/debugger", "/exact/"):
            assert await get(gw, path) == (403, anonymous_forbidden(path))
        assert gw.reviews()[reviews_at_start:] == [path_review("/debugger"), path_review("/exact/")]


async def test_resource_requests_are_authorized_whatever_the_list_says(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> None:
    async with hosting_gateway(tmp_path, kube_apiserver, always_allow_paths=("/apis/*", "*")) as gw:
        reviews_at_start = len(gw.reviews())
        message = (
            'clustergateways.cluster.core.oam.dev is forbidden: User "system:anonymous" cannot list resource '
            '"clustergateways" in API group "cluster.core.oam.dev" at the cluster scope'
        )
        assert await get(gw, CLUSTERGATEWAYS) == (
            403,
            status_object(403, "Forbidden", message, {"group": "cluster.core.oam.dev", "kind": "clustergateways"}),
        )
        resource = {"verb": "list", "group": "cluster.core.oam.dev", "version": "v1alpha1", "resource": "clustergateways"}
        assert gw.reviews()[reviews_at_start:] == [{**ANONYMOUS, "resourceAttributes": resource}]


async def test_authentication_still_applies_to_listed_paths(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> None:
    async with hosting_gateway(tmp_path, kube_apiserver, always_allow_paths=VELA_CORE_PATHS) as gw:
        unauthorized = status_object(401, "Unauthorized", "Unauthorized")
        assert await get(gw, "/metrics", {"Authorization": "Bearer not-a-token"}) == (401, unauthorized)
        assert await scrape(gw, {"Authorization": f"Bearer {kube_apiserver.token}"}) == SCRAPED
        assert gw.reviews() == []  # neither the refused token nor the admin was sent to SubjectAccessReview


async def test_an_empty_entry_allows_the_root_path_only(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> None:
    async with hosting_gateway(tmp_path, kube_apiserver, always_allow_paths=("",)) as gw:
        reviews_at_start = len(gw.reviews())
        assert await get(gw, "/") == (404, NOT_FOUND)
        assert gw.reviews()[reviews_at_start:] == []
        assert await get(gw, "/metrics") == (403, anonymous_forbidden("/metrics"))
