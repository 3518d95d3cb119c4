"""GET and LIST of clustergateways over real TLS sockets: shapes, selectors, pagination, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.gateway import ManualSecretSource, RunningGateway, get_json, running_gateway
from tests.fakes.secrets import cluster_secret

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
BASE = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"

SECRETS = [
    cluster_secret("gamma", 3, labels={"env": "prod", "tier": "1"}),
    cluster_secret("alpha", 1, labels={"env": "dev"}, credential_type="Dynamic"),
    cluster_secret("beta", 2, labels={"env": "prod"}, token="s3cr3t-token"),
    cluster_secret("broken", 4, credential_type="Kerberos"),
    cluster_secret("delta", 5, labels={"cluster.core.oam.dev/cluster-endpoint-type": "ClusterProxy"}, endpoint=None),
]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ManualSecretSource(SECRETS, "10")) as gw:
        yield gw


def assert_status(body: dict[str, Any], code: int, reason: str, message: str | None = None) -> None:
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert (body["code"], body["reason"]) == (code, reason)
    if message is not None:
        assert message in body["message"], body["message"]


async def test_list_is_sorted_by_name_skips_bad_secrets_and_carries_a_resource_version(gateway: RunningGateway) -> None:
    body = await get_json(gateway, BASE)
    assert body["kind"] == "ClusterGatewayList"
    assert body["apiVersion"] == "cluster.core.oam.dev/v1alpha1"
    assert body["metadata"] == {"resourceVersion": "10"}
    assert [i["metadata"]["name"] for i in body["items"]] == ["alpha", "beta", "delta", "gamma"]


async def test_no_response_ever_holds_a_credential(gateway: RunningGateway) -> None:
    for path in (BASE, f"{BASE}/beta", f"{BASE}?includeObject=Object"):
        async with gateway.session() as s, s.get(path, headers={"Accept": TABLE_ACCEPT}) as resp:
            text = await resp.text()
        assert "s3cr3t-token" not in text and "member-token" not in text and "get-token" not in text


async def test_get_one(gateway: RunningGateway) -> None:
    body = await get_json(gateway, f"{BASE}/beta")
    assert body["kind"] == "ClusterGateway"
    assert body["metadata"]["name"] == "beta" and body["metadata"]["resourceVersion"] == "2"
    assert body["spec"]["access"] == {
        "endpoint": {"type": "Const", "const": {"address": "https://127.0.0.1:6443", "insecure": True}},
        "credential": {"type": "ServiceAccountToken"},
    }


async def test_unknown_name_is_404(gateway: RunningGateway) -> None:
    body = await get_json(gateway, f"{BASE}/nope", 404)
    assert_status(body, 404, "NotFound", 'clustergateways.cluster.core.oam.dev "nope" not found')
    assert body["details"] == {"name": "nope", "group": "cluster.core.oam.dev", "kind": "clustergateways"}


async def test_unconvertible_secret_is_404_naming_the_reason(gateway: RunningGateway) -> None:
    body = await get_json(gateway, f"{BASE}/broken", 404)
    assert_status(body, 404, "NotFound", "Secret vela-system/broken cannot be converted: unknown credential type 'Kerberos'")


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", BASE), ("PUT", f"{BASE}/beta"), ("PATCH", f"{BASE}/beta"), ("DELETE", f"{BASE}/beta"), ("DELETE", BASE)],
)
async def test_writes_are_405_method_not_allowed(gateway: RunningGateway, method: str, path: str) -> None:
    async with gateway.session() as s, s.request(method, path, json={"kind": "ClusterGateway"}) as resp:
        body = await resp.json()
        assert resp.status == 405
        assert "GET" in resp.headers["Allow"]
    assert_status(body, 405, "MethodNotAllowed", "ClusterGateways are read-only")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("labelSelector=env%20in%20(prod", "unable to parse labelSelector"),
        ("labelSelector=-bad-=x", "unable to parse labelSelector"),
        ("fieldSelector=spec.provider%3Dx", "field label not supported: spec.provider"),
        ("limit=-1", "limit: Invalid value"),
        ("limit=ten", "limit: Invalid value"),
        ("continue=garbage", "continue key is not valid"),
        ("includeObject=Everything", 'includeObject: Unsupported value: "Everything"'),
        ("resourceVersion=abc", "resourceVersion: Invalid value"),
        ("resourceVersionMatch=Exact", "resourceVersionMatch is forbidden unless resourceVersion is provided"),
    ],
)
async def test_bad_parameters_are_400_bad_request(gateway: RunningGateway, query: str, message: str) -> None:
    assert_status(await get_json(gateway, f"{BASE}?{query}", 400), 400, "BadRequest", message)


async def test_label_selectors(gateway: RunningGateway) -> None:
    async def names(selector: str) -> list[str]:
        body = await get_json(gateway, f"{BASE}?labelSelector={selector}")
        return [i["metadata"]["name"] for i in body["items"]]

    assert await names("env=prod") == ["beta", "gamma"]
    assert await names("env==prod,tier") == ["gamma"]
    assert await names("env!=prod") == ["alpha", "delta"]
    assert await names("env in (dev,prod)") == ["alpha", "beta", "gamma"]
    assert await names("env notin (prod)") == ["alpha", "delta"]
    assert await names("!env") == ["delta"]
    assert await names("tier") == ["gamma"]


async def test_field_selector_on_name(gateway: RunningGateway) -> None:
    body = await get_json(gateway, f"{BASE}?fieldSelector=metadata.name%3Dbeta")
    assert [i["metadata"]["name"] for i in body["items"]] == ["beta"]
    body = await get_json(gateway, f"{BASE}?fieldSelector=metadata.name!%3Dbeta")
    assert [i["metadata"]["name"] for i in body["items"]] == ["alpha", "delta", "gamma"]


async def test_pagination_is_consistent_across_changes(gateway: RunningGateway) -> None:
    first = await get_json(gateway, f"{BASE}?limit=2")
    assert [i["metadata"]["name"] for i in first["items"]] == ["alpha", "beta"]
    assert first["metadata"]["remainingItemCount"] == 2
    token = first["metadata"]["continue"]
    gateway.registry.apply("ADDED", cluster_secret("bravo", 11))  # after the first page's snapshot
    second = await get_json(gateway, f"{BASE}?limit=2&continue={token}")
    assert [i["metadata"]["name"] for i in second["items"]] == ["delta", "gamma"]
    assert second["metadata"]["resourceVersion"] == "10"
    assert "continue" not in second["metadata"]
    fresh = await get_json(gateway, BASE)
    assert fresh["metadata"]["resourceVersion"] == "11"
    assert "bravo" in [i["metadata"]["name"] for i in fresh["items"]]


async def test_expired_continue_token_is_410(gateway: RunningGateway) -> None:
    from gateway_apiserver.api.listing import ContinueToken

    token = ContinueToken(3, "alpha").encode()
    assert_status(
        await get_json(gateway, f"{BASE}?limit=1&continue={token}", 410), 410, "Expired", "continue parameter is too old"
    )


async def test_table_output(gateway: RunningGateway) -> None:
    body = await get_json(gateway, f"{BASE}?labelSelector=env%3Dprod", Accept=TABLE_ACCEPT)
    assert body["kind"] == "Table" and body["apiVersion"] == "meta.k8s.io/v1"
    columns = [(c["name"], c["type"], c["priority"]) for c in body["columnDefinitions"]]
    assert columns == [
        ("Name", "string", 0),
        ("Provider", "string", 0),
        ("Credential-Type", "string", 0),
        ("Endpoint-Type", "string", 0),
        ("Healthy", "string", 0),  # the reference's type: a string cell, "true" or "false"
        ("Age", "string", 0),
        ("Endpoint", "string", 1),
    ]
    assert body["metadata"]["resourceVersion"] == "10"
    first = body["rows"][0]
    assert first["cells"][:5] == ["beta", "", "ServiceAccountToken", "Const", "false"]
    assert first["cells"][6] == "https://127.0.0.1:6443"
    assert first["object"]["kind"] == "PartialObjectMetadata"  # includeObject defaults to Metadata
    assert first["object"]["metadata"]["labels"]["env"] == "prod"


async def test_table_healthy_cell_is_the_string_true_or_false_as_in_the_reference(tmp_path: Path) -> None:
    healthy = {"status.cluster.core.oam.dev/healthy": "true"}
    secrets = [cluster_secret("up", 1, annotations=healthy), cluster_secret("down", 2)]
    async with running_gateway(tmp_path, ManualSecretSource(secrets, "2")) as gw:
        body = await get_json(gw, BASE, Accept=TABLE_ACCEPT)
    assert [(r["cells"][0], r["cells"][4]) for r in body["rows"]] == [("down", "false"), ("up", "true")]


@pytest.mark.parametrize(
    ("include", "expected"), [("None", None), ("Metadata", "PartialObjectMetadata"), ("Object", "ClusterGateway")]
)
async def test_table_include_object(gateway: RunningGateway, include: str, expected: str | None) -> None:
    body = await get_json(gateway, f"{BASE}/beta?includeObject={include}", Accept=TABLE_ACCEPT)
    row = body["rows"][0]
    assert (row.get("object") or {}).get("kind") == expected


async def test_table_v1beta1_when_asked_first(gateway: RunningGateway) -> None:
    body = await get_json(gateway, BASE, Accept="application/json;as=Table;v=v1beta1;g=meta.k8s.io")
    assert body["apiVersion"] == "meta.k8s.io/v1beta1"


async def test_partial_object_metadata_list(gateway: RunningGateway) -> None:
    accept = (
        "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    )
    body = await get_json(gateway, BASE, Accept=accept)
    assert body["kind"] == "PartialObjectMetadataList"
    assert [i["metadata"]["name"] for i in body["items"]] == ["alpha", "beta", "delta", "gamma"]
    assert all("spec" not in i for i in body["items"])


async def test_unsupported_accept_is_406_and_json_in_the_list_wins(gateway: RunningGateway) -> None:
    assert_status(await get_json(gateway, BASE, 406, Accept="application/yaml"), 406, "NotAcceptable")
    assert_status(await get_json(gateway, BASE, 406, Accept="application/vnd.kubernetes.protobuf"), 406, "NotAcceptable")
    body = await get_json(gateway, BASE, Accept="application/vnd.kubernetes.protobuf, application/json")
    assert body["kind"] == "ClusterGatewayList"


async def test_unknown_paths_are_404_status(gateway: RunningGateway) -> None:
    assert_status(await get_json(gateway, "/apis/nothing/v1/here", 404), 404, "NotFound", "could not find the requested resource")


async def test_health_subresource_get(gateway: RunningGateway) -> None:
    body = await get_json(gateway, f"{BASE}/gamma/health")
    assert body["kind"] == "ClusterGateway" and body["metadata"]["name"] == "gamma"


async def test_a_missing_cluster_on_health_says_no_such_cluster_and_on_the_object_the_kube_wording(
    gateway: RunningGateway,
) -> None:
    """The health subresource words a missing cluster as the reference (and the proxy) do; GET of the object as kube."""
    details = {"name": "nope", "group": "cluster.core.oam.dev", "kind": "clustergateways"}
    kube_words = 'clustergateways.cluster.core.oam.dev "nope" not found'
    expected = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound"}
    assert await get_json(gateway, f"{BASE}/nope/health", 404) == {
        **expected,
        "message": f"no such cluster nope: {kube_words}",
        "details": details,
        "code": 404,
    }
    assert await get_json(gateway, f"{BASE}/nope", 404) == {**expected, "message": kube_words, "details": details, "code": 404}


async def test_resource_version_match_exact(gateway: RunningGateway) -> None:
    body = await get_json(gateway, f"{BASE}?resourceVersion=10&resourceVersionMatch=Exact")
    assert body["metadata"]["resourceVersion"] == "10"
    assert_status(await get_json(gateway, f"{BASE}?resourceVersion=5&resourceVersionMatch=Exact", 410), 410, "Expired")


async def test_list_json_is_valid_and_compact(gateway: RunningGateway) -> None:
    async with gateway.session() as s, s.get(BASE) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Type"].startswith("application/json")
    assert json.loads(raw)["kind"] == "ClusterGatewayList"
