"""What a fan-out answers: a `List` of annotated items with one Status per cluster, or a watch stream.

A list answer is written in three parts as the members answer (never held whole):

    {"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":""},"items":[ <items as they arrive> ],
     "clusters":[ <one v1 Status per selected cluster, sorted by name> ]}

Each item carries the annotation `cluster.core.oam.dev/cluster-name`, and its `kind` and `apiVersion`
(which a member's typed list leaves out of its items). Each `clusters` entry is a v1 Status whose
`details` name the ClusterGateway (`name`, `group`, `kind: clustergateways`): `status: Success` with
how many items the cluster gave, or `status: Failure` with the code, reason and message the cluster's
own proxied request would have answered. On a watch, the same Status objects arrive as BOOKMARK
events (never ERROR, which ends a client's watch): when a cluster's watch starts, fails, ends, or
the cluster stops being selected. Pure functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..base.api_group import GROUP
from ..base.status import StatusError, status_object
from .request import CLUSTER_ANNOTATION

RESOURCE = "clustergateways"
LIST_HEAD = b'{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":""},"items":['
_MESSAGE_LIMIT = 1024  # a member's non-Status error body is quoted up to this many characters


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _details(cluster: str) -> dict[str, str]:
    return {"name": cluster, "group": GROUP, "kind": RESOURCE}


def item_kind(list_kind: str) -> str:
    """The kind of a typed list's items (`PodList` → `Pod`); "" for a kind that is no list."""
    return list_kind.removesuffix("List") if list_kind.endswith("List") and list_kind != "List" else ""


def annotate(obj: Any, cluster: str, kind: str = "", api_version: str = "") -> Any:
    """`obj` with the cluster annotation set, and `kind`/`apiVersion` filled in where it has none."""
    if not isinstance(obj, dict):
        return obj
    if kind and "kind" not in obj:
        obj = {"kind": kind, "apiVersion": api_version, **obj} if api_version else {"kind": kind, **obj}
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        metadata = obj["metadata"] = {}
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict):
        annotations = metadata["annotations"] = {}
    annotations[CLUSTER_ANNOTATION] = cluster
    return obj


def encode_items(items: list[Any], cluster: str, kind: str = "", api_version: str = "") -> bytes:
    """A page of annotated items, encoded as the comma-separated inside of a JSON array ("" for none)."""
    # One encoder call per page, not per item: the encoder's per-call cost dominates small objects.
    return _encode([annotate(item, cluster, kind, api_version) for item in items])[1:-1]


def succeeded(cluster: str, message: str) -> dict[str, Any]:
    """A cluster's Success Status."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "message": f'cluster "{cluster}": {message}',
        "code": 200,
        "details": _details(cluster),
    }


def failed(cluster: str, code: int, message: str, reason: str | None = None) -> dict[str, Any]:
    """A cluster's Failure Status: `message` says what went wrong, prefixed with the cluster unless it names it."""
    text = message if f'"{cluster}"' in message else f'cluster "{cluster}": {message}'
    return status_object(code, text, reason=reason, details=_details(cluster))


def from_error(cluster: str, error: StatusError, suffix: str = "") -> dict[str, Any]:
    """A cluster's Failure Status from the StatusError its proxied request raised."""
    return failed(cluster, error.code, error.message + suffix, error.reason)


def from_answer(cluster: str, http_status: int, body: bytes) -> dict[str, Any]:
    """A cluster's Failure Status from a member's non-200 answer: its own Status when it sent one."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status" and isinstance(doc.get("message"), str):
        code = doc["code"] if isinstance(doc.get("code"), int) else http_status
        reason = doc.get("reason") if isinstance(doc.get("reason"), str) else None
        return failed(cluster, code, f"the member answered {http_status}: {doc['message']}", reason)
    text = body[:_MESSAGE_LIMIT].decode("utf-8", "replace").strip()
    answered = f"the member answered {http_status}"
    return failed(cluster, http_status, f"{answered}: {text}" if text else answered)


def watch_error(cluster: str, obj: Any) -> dict[str, Any]:
    """A cluster's Failure Status from the ERROR event that ended its member watch."""
    status = obj if isinstance(obj, dict) else {}
    code = status["code"] if isinstance(status.get("code"), int) else 500
    reason = status.get("reason") if isinstance(status.get("reason"), str) else None
    message = status.get("message") if isinstance(status.get("message"), str) else "no message"
    return failed(cluster, code, f"the member ended its watch with an error: {message}", reason)


def list_tail(statuses: Iterable[Mapping[str, Any]]) -> bytes:
    """The end of a list answer: the items' closing bracket and the clusters' Statuses, by cluster name."""
    ordered = sorted(statuses, key=lambda s: str(s["details"]["name"]))
    return b'],"clusters":' + _encode(ordered) + b"}"


def watch_line(event_type: str, obj: Any) -> bytes:
    """One watch event, newline-terminated as the kube-apiserver frames them."""
    return _encode({"type": event_type, "object": obj}) + b"\n"


def status_event(status: Mapping[str, Any]) -> bytes:
    """A cluster's Status as a BOOKMARK event."""
    return watch_line("BOOKMARK", status)


def all_failed(statuses: list[dict[str, Any]]) -> StatusError:
    """The error when every selected cluster failed: their shared code (502 when they differ), one cause per cluster."""
    codes = {int(s["code"]) for s in statuses}
    code = codes.pop() if len(codes) == 1 else 502
    ordered = sorted(statuses, key=lambda s: str(s["details"]["name"]))
    causes = [{"reason": s["reason"], "message": s["message"], "field": s["details"]["name"]} for s in ordered]
    message = f"every selected cluster failed ({len(ordered)}): " + "; ".join(s["message"] for s in ordered)
    reason = ordered[0]["reason"] if len({s["reason"] for s in ordered}) == 1 else None
    return StatusError(code, message, reason=reason, details={"group": GROUP, "kind": RESOURCE, "causes": causes})
