"""The fan-out's answer shapes: annotated items, per-cluster Statuses, and the error when every cluster fails."""

from __future__ import annotations

import json

from gateway_apiserver.base.status import StatusError
from gateway_apiserver.fanout import shape

DETAILS = {"group": "cluster.core.oam.dev", "kind": "clustergateways"}


def test_items_of_a_typed_list_get_their_kind_and_the_cluster_annotation() -> None:
    items = [{"metadata": {"name": "a", "annotations": {"keep": "me"}}}, {"metadata": {"name": "b"}}]
    encoded = shape.encode_items(items, "east", shape.item_kind("ConfigMapList"), "v1")
    cluster = {"cluster.core.oam.dev/cluster-name": "east"}
    assert json.loads(b"[" + encoded + b"]") == [
        {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a", "annotations": {"keep": "me", **cluster}}},
        {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "b", "annotations": cluster}},
    ]
    assert shape.encode_items([], "east") == b""
    assert shape.item_kind("List") == "" and shape.item_kind("Pod") == ""


def test_a_members_own_status_keeps_its_code_and_reason() -> None:
    body = json.dumps({"kind": "Status", "code": 404, "reason": "NotFound", "message": 'pods "x" not found'}).encode()
    assert shape.from_answer("west", 404, body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'cluster "west": the member answered 404: pods "x" not found',
        "reason": "NotFound",
        "code": 404,
        "details": {"name": "west", **DETAILS},
    }
    assert shape.from_answer("west", 502, b"<html>bad gateway</html>")["message"] == (
        'cluster "west": the member answered 502: <html>bad gateway</html>'
    )


def test_an_error_event_that_ends_a_member_watch_becomes_its_status() -> None:
    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version: 1 (5)"}
    status = shape.watch_error("east", gone)
    assert (status["code"], status["reason"], status["message"]) == (
        410,
        "Expired",
        'cluster "east": the member ended its watch with an error: too old resource version: 1 (5)',
    )
    assert json.loads(shape.status_event(status)) == {"type": "BOOKMARK", "object": status}


def test_when_every_cluster_fails_alike_their_code_is_the_answers() -> None:
    error = shape.all_failed([shape.failed("b", 403, "no", "Forbidden"), shape.failed("a", 403, "no", "Forbidden")])
    assert isinstance(error, StatusError)
    assert error.to_status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'every selected cluster failed (2): cluster "a": no; cluster "b": no',
        "reason": "Forbidden",
        "code": 403,
        "details": {
            **DETAILS,
            "causes": [
                {"reason": "Forbidden", "message": 'cluster "a": no', "field": "a"},
                {"reason": "Forbidden", "message": 'cluster "b": no', "field": "b"},
            ],
        },
    }


def test_when_clusters_fail_differently_the_answer_is_a_bad_gateway() -> None:
    error = shape.all_failed([shape.failed("a", 403, "no", "Forbidden"), shape.failed("b", 504, "slow", "Timeout")])
    assert (error.code, error.reason) == (502, "BadGateway")
