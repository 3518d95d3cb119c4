"""/metrics: scraped over TLS after real proxied traffic, read with prometheus-client's own parser.

client --TLS--> gateway (in-process) --TLS--> FakeMemberAPIServer; then GET /metrics and count.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.gateway import RunningGateway
from tests.fakes.hosting import HostingGateway, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.proxying import exec_secret, gateway, proxied, token_secret

pytestmark = pytest.mark.timeout(60)
CM = "/api/v1/namespaces/default/configmaps"
BY_RESOURCE = "ocm_proxy_proxied_resource_requests_by_resource_total"
BY_CLUSTER = "ocm_proxy_proxied_requests_by_cluster_total"
DURATION = "ocm_proxy_proxied_request_duration_seconds"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(gw: RunningGateway) -> tuple[str, Samples]:
    """GET /metrics; its Content-Type and every sample, keyed by name and sorted labels."""
    async with gw.session() as s, s.get("/metrics") as resp:
        assert resp.status == 200, await resp.text()
        text = await resp.text()
        content_type = resp.headers["Content-Type"]
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return content_type, samples


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one series name, by labels."""
    return {labels: value for (n, labels), value in samples.items() if n == name}


async def send(gw: RunningGateway, method: str, cluster: str, path: str, **kwargs: object) -> int:
    async with gw.session() as s, s.request(method, proxied(cluster, path), **kwargs) as resp:  # type: ignore[arg-type]
        await resp.read()
        return resp.status


async def test_proxied_requests_are_counted_by_resource_verb_cluster_and_code(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    """The reference's three series, with its labels: `resource` from the inner path, `verb` the outer request's."""
    async with gateway(tmp_path, token_secret("east", member), token_secret("west", member)) as gw:
        statuses = [
            await send(gw, "GET", "east", CM),
            await send(gw, "GET", "east", CM),
            await send(gw, "GET", "west", CM),
            await send(gw, "GET", "east", CM + "/missing"),
            await send(gw, "POST", "west", CM, json={"metadata": {"name": "made"}, "data": {"k": "v"}}),
            await send(gw, "GET", "west", "/version"),
            await send(gw, "GET", "absent", CM),  # no such cluster: not counted, its name never a label
        ]
        assert statuses == [200, 200, 200, 404, 201, 200, 404]
        content_type, samples = await scrape(gw)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert series(samples, BY_RESOURCE) == {
        (("code", "200"), ("resource", "configmaps"), ("verb", "get")): 3,
        (("code", "404"), ("resource", "configmaps"), ("verb", "get")): 1,
        (("code", "201"), ("resource", "configmaps"), ("verb", "create")): 1,
        (("code", "200"), ("resource", ""), ("verb", "get")): 1,
    }
    assert series(samples, BY_CLUSTER) == {
        (("cluster", "east"), ("code", "200")): 2,
        (("cluster", "east"), ("code", "404")): 1,
        (("cluster", "west"), ("code", "200")): 2,
        (("cluster", "west"), ("code", "201")): 1,
    }
    counts = series(samples, DURATION + "_count")
    assert counts == {
        (("cluster", "east"), ("code", "200"), ("resource", "configmaps"), ("verb", "get")): 2,
        (("cluster", "east"), ("code", "404"), ("resource", "configmaps"), ("verb", "get")): 1,
        (("cluster", "west"), ("code", "200"), ("resource", "configmaps"), ("verb", "get")): 1,
        (("cluster", "west"), ("code", "201"), ("resource", "configmaps"), ("verb", "create")): 1,
        (("cluster", "west"), ("code", "200"), ("resource", ""), ("verb", "get")): 1,
    }
    east_lists = (("cluster", "east"), ("code", "200"), ("resource", "configmaps"), ("verb", "get"))
    buckets = {dict(labels)["le"] for labels in series(samples, DURATION + "_bucket") if labels[:2] + labels[3:] == east_lists}
    # The reference's buckets, +Inf added by the format.
    assert sorted(buckets, key=float) == [
        "0.0", "0.005", "0.02", "0.05", "0.1", "0.2", "0.5", "1.0", "2.0", "5.0", "10.0", "30.0", "+Inf"
    ]  # fmt: skip
    assert not [key for key in samples if key[0].endswith("_created")]  # as the reference: no _created series


async def test_bytes_each_way_and_in_flight_return_to_zero(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("east", member)) as gw:
        body = b'{"metadata": {"name": "sized"}, "data": {"k": "' + b"x" * 1000 + b'"}}'
        headers = {"Content-Type": "application/json"}
        assert await send(gw, "POST", "east", CM, data=body, headers=headers) == 201
        _, samples = await scrape(gw)
    assert series(samples, "gateway_apiserver_proxy_request_body_bytes_total") == {(("cluster", "east"),): len(body)}
    (sent,) = series(samples, "gateway_apiserver_proxy_response_bytes_total").values()
    assert sent > 1000  # the created object echoes the 1,000-byte value back, with its head
    assert samples[("gateway_apiserver_proxy_requests_in_flight", ())] == 0


async def test_an_open_watch_is_a_gauge_and_counts_its_code_when_the_client_leaves(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    """A watch is counted once it ends: the client leaving keeps the 200 it had (no 499)."""
    watching = (("cluster", "east"),)
    async with gateway(tmp_path, token_secret("east", member)) as gw:
        async with gw.session() as s, s.get(proxied("east", CM), params={"watch": "true"}) as resp:
            assert resp.status == 200
            _, during = await scrape(gw)
        for _ in range(100):  # the gateway sees the client leave a moment later
            _, after = await scrape(gw)
            if series(after, BY_CLUSTER):
                break
            await asyncio.sleep(0.05)
    assert series(during, "gateway_apiserver_proxy_open_watches") == {watching: 1}
    assert series(during, BY_CLUSTER) == {}
    assert series(after, "gateway_apiserver_proxy_open_watches") == {watching: 0}
    assert series(after, BY_CLUSTER) == {(("cluster", "east"), ("code", "200")): 1}
    assert series(after, BY_RESOURCE) == {(("code", "200"), ("resource", "configmaps"), ("verb", "get")): 1}


async def test_each_gateway_counts_only_its_own_traffic(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with (
        gateway(tmp_path / "a", token_secret("east", member)) as one,
        gateway(tmp_path / "b", token_secret("east", member)) as other,
    ):
        assert await send(one, "GET", "east", CM) == 200
        _, samples = await scrape(other)
    assert series(samples, BY_CLUSTER) == {}


# --- authorization in hosting-cluster mode, as the kube-apiserver's ----------------------------------------------

SCRAPER_TOKEN, VIEWER_TOKEN = "scraper-token", "viewer-token"


def add_callers(api: FakeKubeAPIServer) -> None:
    """`scraper` may get the non-resource URL /metrics (as deploy/components/monitoring grants); `viewer` may not."""
    api.users[SCRAPER_TOKEN] = {"username": "scraper", "uid": "s-1", "groups": ["scrapers"]}
    api.users[VIEWER_TOKEN] = {"username": "viewer", "uid": "v-1", "groups": ["viewers"]}
    api.policy = [PolicyRule(users=("scraper",), verbs=("get",), non_resource_urls=("/metrics",))]


async def get_metrics(gw: HostingGateway, token: str | None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with gw.session() as s, s.get("/metrics", headers=headers) as resp:
        return resp.status, resp.headers["Content-Type"], await resp.text()


async def test_hosting_mode_authorizes_get_on_the_non_resource_url_by_subject_access_review(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer
) -> None:
    add_callers(kube_apiserver)
    async with hosting_gateway(tmp_path, kube_apiserver) as gw:
        allowed = await get_metrics(gw, SCRAPER_TOKEN)
        denied = await get_metrics(gw, VIEWER_TOKEN)
        reviews = [(r["user"], r.get("nonResourceAttributes")) for r in gw.reviews()]
    assert allowed[:2] == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert "# TYPE ocm_proxy_proxied_requests_by_cluster_total counter" in allowed[2]
    assert (denied[0], json.loads(denied[2])) == (
        403,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'forbidden: User "viewer" cannot get path "/metrics"',
            "reason": "Forbidden",
            "details": {},
            "code": 403,
        },
    )
    assert reviews == [("scraper", {"path": "/metrics", "verb": "get"}), ("viewer", {"path": "/metrics", "verb": "get"})]


async def test_always_allow_paths_serve_metrics_without_a_review(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> None:
    """--authorization-always-allow-paths=/metrics: any authenticated caller (anonymous included) scrapes unreviewed."""
    add_callers(kube_apiserver)
    async with hosting_gateway(tmp_path, kube_apiserver, always_allow_paths=("/healthz", "/metrics")) as gw:
        answers = [(await get_metrics(gw, token))[0] for token in (VIEWER_TOKEN, None)]
        reviews = gw.reviews()
    assert (answers, reviews) == ([200, 200], [])


async def test_the_review_caches_hits_and_misses_are_counted(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> None:
    """The first request with a token is reviewed twice (TokenReview, SubjectAccessReview: two misses);
    the next one within the caches' TTLs is answered from both (two hits)."""
    add_callers(kube_apiserver)
    async with hosting_gateway(tmp_path, kube_apiserver) as gw:
        first = (await get_metrics(gw, SCRAPER_TOKEN))[2]
        second = (await get_metrics(gw, SCRAPER_TOKEN))[2]

    def cache_counts(text: str, cache: str) -> dict[str, float]:
        samples = {
            s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if s.labels == {"cache": cache}
        }
        return samples

    hits, misses = "gateway_apiserver_auth_cache_hits_total", "gateway_apiserver_auth_cache_misses_total"
    for cache in ("token_review", "subject_access_review"):
        assert cache_counts(first, cache) == {hits: 0, misses: 1}, cache
        assert cache_counts(second, cache) == {hits: 1, misses: 1}, cache


async def test_each_clusters_health_and_certificate_expiry_are_read_at_scrape_time(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    pair = member.client_cert("gateway-x509")
    not_after = x509.load_pem_x509_certificate(pair.cert_pem).not_valid_after_utc.timestamp()
    x509_cluster = token_secret(
        "x", member, credential_type="X509Certificate", data={"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
    )
    healthy = token_secret("t", member)
    healthy["metadata"]["annotations"] = {"status.cluster.core.oam.dev/healthy": "true"}
    async with gateway(tmp_path, x509_cluster, healthy) as gw:
        _, samples = await scrape(gw)
    assert series(samples, "gateway_apiserver_cluster_healthy") == {(("cluster", "t"),): 1.0, (("cluster", "x"),): 0.0}
    assert series(samples, "gateway_apiserver_cluster_certificate_expiry_timestamp_seconds") == {(("cluster", "x"),): not_after}


async def test_relists_of_the_cluster_secrets_are_counted(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("t", member)) as gw:
        _, before = await scrape(gw)
        gw.registry.replace([token_secret("t", member)], "20")  # what a source sends after a 410 Gone
        _, after = await scrape(gw)
    assert series(before, "gateway_apiserver_secret_relists_total") == {(): 0.0}
    assert series(after, "gateway_apiserver_secret_relists_total") == {(): 1.0}


async def test_an_exec_credentials_expiry_is_shown_once_the_proxy_has_run_the_plugin(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    expires = "2099-01-02T03:04:05Z"
    credential = json.dumps(
        {
            "kind": "ExecCredential",
            "apiVersion": "client.authentication.k8s.io/v1",
            "status": {"token": member.token, "expirationTimestamp": expires},
        }
    )
    secrets = [
        exec_secret(tmp_path, member, "dyn", f"print({credential!r})"),
        exec_secret(tmp_path, member, "idle", "sys.exit(1)"),
    ]
    name = "gateway_apiserver_cluster_exec_credential_expiry_timestamp_seconds"
    async with gateway(tmp_path, *secrets) as gw:
        _, before = await scrape(gw)
        assert await send(gw, "GET", "dyn", CM) == 200
        _, after = await scrape(gw)
    assert series(before, name) == {}
    assert series(after, name) == {(("cluster", "dyn"),): datetime.fromisoformat(expires).timestamp()}
