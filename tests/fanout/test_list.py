"""Fan-out lists: every selected cluster's items in one List, and one Status per cluster, failures included."""

from __future__ import annotations

import asyncio
import json
import time
from asyncio.subprocess import PIPE
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.config import load_kube_config

from tests.fakes.kube_store import PolicyRule
from tests.fanout.conftest import FANOUT, GROUP, MEMBER_TIMEOUT, Fleet, cluster_status, forbidden_message, pod

PODS = FANOUT + "/api/v1/namespaces/shop/pods"


def by_cluster_and_name(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items sorted by (cluster, name): members answer concurrently, so their pages interleave."""
    return sorted(items, key=lambda i: (i["metadata"]["annotations"][f"{GROUP}/cluster-name"], i["metadata"]["name"]))


def expected_prod_list(fleet: Fleet) -> dict[str, Any]:
    """The answer for Pods in `shop` across `env=prod`: two members answer, one is down, one forbidden."""
    return {
        "kind": "List",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": ""},
        "items": [pod(fleet.east, "web-1", "east"), pod(fleet.east, "web-2", "east"), pod(fleet.west, "api-1", "west")],
        "clusters": [
            cluster_status(
                "down",
                f'cluster "down" unreachable: connecting to 127.0.0.1:{fleet.down_port} failed: connection refused',
                503,
                "ServiceUnavailable",
            ),
            cluster_status("east", "2 items"),
            cluster_status("secret", forbidden_message("secret"), 403, "Forbidden"),
            cluster_status("west", "1 item"),
        ],
    }


async def get(fleet: Fleet, path: str) -> tuple[int, Any]:
    async with fleet.gateway.session() as session, session.get(path, headers=fleet.headers()) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_one_member_down_and_one_forbidden_are_reported_beside_the_others_items(fleet: Fleet) -> None:
    status, body = await get(fleet, PODS + "?clusterSelector=env%3Dprod")
    assert status == 200
    assert {**body, "items": by_cluster_and_name(body["items"])} == expected_prod_list(fleet)


async def kubectl_raw(fleet: Fleet, path: str) -> tuple[int, str, str]:
    """`kubectl get --raw PATH` as alice: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(fleet.kubeconfig()), "get", "--raw", path, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_kubectl_get_raw_prints_the_same_list(fleet: Fleet) -> None:
    code, out, err = await kubectl_raw(fleet, PODS + "?clusterSelector=env%3Dprod")
    assert (code, err) == (0, "")
    body = json.loads(out)
    assert {**body, "items": by_cluster_and_name(body["items"])} == expected_prod_list(fleet)


async def test_the_python_client_reads_the_list(fleet: Fleet) -> None:
    config = client.Configuration()
    await load_kube_config(str(fleet.kubeconfig()), client_configuration=config)
    async with client.ApiClient(config) as api:
        body, status, _ = await api.call_api(  # the generic call the typed APIs make, for a path they do not know
            PODS,
            "GET",
            query_params=[("clusterSelector", "env=prod")],
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
        )
    assert status == 200
    assert {**body, "items": by_cluster_and_name(body["items"])} == expected_prod_list(fleet)


async def test_each_member_is_paged_and_asked_for_json_only(fleet: Fleet) -> None:
    await get(fleet, PODS + "?clusterSelector=env%3Dprod&labelSelector=app")
    pages = [(r.query_string, r.headers["Accept"]) for r in fleet.east.requests_to("/api/v1/namespaces/shop/pods")]
    assert pages[0] == ("labelSelector=app&limit=1", "application/json")
    assert [query.split("&continue=")[0] for query, _ in pages] == ["labelSelector=app&limit=1"] * 2  # one Pod a page
    assert all("clusterSelector" not in query for query, _ in pages)


async def test_a_slow_member_is_cut_at_the_per_cluster_timeout(fleet: Fleet) -> None:
    fleet.east.hang()
    started = time.monotonic()
    try:
        status, body = await get(fleet, PODS + "?clusterSelector=env%3Dprod%2Ctier%21%3Dbroken")
    finally:
        fleet.east.recover()
    elapsed = time.monotonic() - started
    assert status == 200
    assert body == {
        "kind": "List",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": ""},
        "items": [pod(fleet.west, "api-1", "west")],
        "clusters": [
            cluster_status("east", f'cluster "east" did not answer within {MEMBER_TIMEOUT:g}s', 504, "Timeout"),
            cluster_status("west", "1 item"),
        ],
    }
    assert MEMBER_TIMEOUT <= elapsed < MEMBER_TIMEOUT + 3


async def test_when_every_selected_cluster_fails_the_answer_is_an_error_with_one_cause_per_cluster(fleet: Fleet) -> None:
    status, body = await get(fleet, PODS + "?clusterSelector=tier%3Dbroken")
    down = f'cluster "down" unreachable: connecting to 127.0.0.1:{fleet.down_port} failed: connection refused'
    assert (status, body) == (
        502,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"every selected cluster failed (2): {down}; {forbidden_message('secret')}",
            "reason": "BadGateway",
            "code": 502,
            "details": {
                "group": GROUP,
                "kind": "clustergateways",
                "causes": [
                    {"reason": "ServiceUnavailable", "message": down, "field": "down"},
                    {"reason": "Forbidden", "message": forbidden_message("secret"), "field": "secret"},
                ],
            },
        },
    )


async def test_no_selected_cluster_is_an_empty_list(fleet: Fleet) -> None:
    status, body = await get(fleet, PODS + "?clusterSelector=env%3Dnowhere")
    assert (status, body) == (
        200,
        {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": ""}, "items": [], "clusters": []},
    )


async def test_getting_one_object_everywhere_reports_the_members_own_not_found(fleet: Fleet) -> None:
    status, body = await get(fleet, PODS + "/web-1?clusterSelector=env%3Dprod%2Ctier%21%3Dbroken")
    assert status == 200
    assert body == {
        "kind": "List",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": ""},
        "items": [pod(fleet.east, "web-1", "east")],
        "clusters": [
            cluster_status("east", "1 item"),
            cluster_status("west", 'cluster "west": the member answered 404: pods "web-1" not found', 404, "NotFound"),
        ],
    }


async def test_impersonation_applies_to_each_member_as_to_a_proxied_request(fleet: Fleet) -> None:
    status, body = await get(fleet, PODS + "?clusterSelector=env%3Dprod%2Ctier%21%3Dbroken&impersonate=true")
    assert status == 403  # both members refuse alice, whom the gateway impersonates: she has no right there
    assert [cause["field"] for cause in body["details"]["causes"]] == ["east", "west"]
    assert body["details"]["causes"][0]["reason"] == "Forbidden"
    (request,) = fleet.east.requests_to("/api/v1/namespaces/shop/pods")
    assert (request.headers.getall("Impersonate-User"), request.headers.getall("Impersonate-Group")) == (
        ["alice"],
        ["devs", "system:authenticated"],
    )
    assert "impersonate" not in request.query_string


async def test_a_caller_who_may_not_list_clustergateways_is_refused_whole(fleet: Fleet) -> None:
    token = "bob-token"
    fleet.api.users[token] = {"username": "bob", "uid": "b-1", "groups": []}
    # bob may use the fan-out's proxy name, but not list the clusters it would name.
    fleet.api.policy.append(PolicyRule(users=("bob",), verbs=("get",), api_groups=(GROUP,), resources=("clustergateways/proxy",)))
    async with fleet.gateway.session() as session, session.get(PODS, headers={"Authorization": f"Bearer {token}"}) as resp:
        status, body = resp.status, await resp.json()
    assert (status, body) == (
        403,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'clustergateways.cluster.core.oam.dev is forbidden: User "bob" cannot list resource "clustergateways" '
            'in API group "cluster.core.oam.dev" at the cluster scope',
            "reason": "Forbidden",
            "code": 403,
            "details": {"group": GROUP, "kind": "clustergateways"},
        },
    )


async def test_requests_a_fan_out_cannot_answer_honestly_are_refused(fleet: Fleet) -> None:
    cases = {
        PODS + "?limit=10": "limit is not supported on a fan-out: limit and continue page one cluster's list; "
        "the fan-out answers whole lists, paging each member itself",
        PODS + "?resourceVersion=42": 'resourceVersion "42" is not supported on a fan-out: resourceVersions differ '
        'from cluster to cluster (only "" and "0" are)',
        FANOUT + "/healthz": "a fan-out reads resources only (list, watch, or get of one object without a subresource); "
        "/healthz is not one",
        PODS + "/web-1/log": "a fan-out reads resources only (list, watch, or get of one object without a subresource); "
        "/api/v1/namespaces/shop/pods/web-1/log is not one",
        PODS + "?clusterSelector=env%3D%3D%3D": "invalid clusterSelector: ",
    }
    for path, message in cases.items():
        status, body = await get(fleet, path)
        assert (status, body["kind"], body["reason"], body["code"]) == (400, "Status", "BadRequest", 400), path
        assert body["message"].startswith(message), (path, body["message"])
    async with fleet.gateway.session() as session, session.post(PODS, headers=fleet.headers(), data=b"{}") as resp:
        assert (resp.status, json.loads(await resp.read())["message"]) == (
            405,
            "the server does not allow this method on the requested resource: POST is not supported on "
            "a fan-out (clustergateways/-/proxy), which only reads",
        )


async def test_kubectl_get_raw_fails_when_every_selected_cluster_fails(fleet: Fleet) -> None:
    code, out, err = await kubectl_raw(fleet, PODS + "?clusterSelector=tier%3Dbroken")
    down = f'cluster "down" unreachable: connecting to 127.0.0.1:{fleet.down_port} failed: connection refused'
    assert (code, out, err) == (
        1,
        "",
        f"Error from server (BadGateway): every selected cluster failed (2): {down}; {forbidden_message('secret')}\n",
    )
