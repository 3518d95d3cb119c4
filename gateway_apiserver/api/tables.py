"""meta.k8s.io Table and PartialObjectMetadata renderings of ClusterGateways (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..base.status import bad_request
from ..registry.model import ClusterGateway, EndpointType, encode

INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")

COLUMN_DEFINITIONS: list[dict[str, Any]] = [
    {
        "name": "Name",
        "type": "string",
        "format": "name",
        "priority": 0,
        "description": "Name must be unique within a namespace. The name of the cluster (its Secret's name).",
    },
    {"name": "Provider", "type": "string", "format": "", "priority": 0, "description": "The cluster provider."},
    {
        "name": "Credential-Type",
        "type": "string",
        "format": "",
        "priority": 0,
        "description": "How the gateway authenticates to the cluster.",
    },
    {
        "name": "Endpoint-Type",
        "type": "string",
        "format": "",
        "priority": 0,
        "description": "How the gateway reaches the cluster: Const or ClusterProxy.",
    },
    {
        "name": "Healthy",
        "type": "string",
        "format": "",
        "priority": 0,
        "description": 'The last health status written through the health subresource: "true" or "false".',
    },
    {
        "name": "Age",
        "type": "string",
        "format": "",
        "priority": 0,
        "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
    },
    {"name": "Endpoint", "type": "string", "format": "", "priority": 1, "description": "The cluster's API server address."},
]


def parse_include_object(value: str | None) -> str:
    """Validate `includeObject`; the default is Metadata, as in the kube-apiserver."""
    if value is None or value == "":
        return "Metadata"
    if value not in INCLUDE_OBJECT_VALUES:
        raise bad_request(f'includeObject: Unsupported value: "{value}": supported values: "None", "Metadata", "Object"')
    return value


def human_duration(seconds: float) -> str:
    """Kubernetes' `duration.HumanDuration`, as kubectl shows ages."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m{rem}s" if rem else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rem = minutes % 60
        return f"{hours}h{rem}m" if rem else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d{rem}h" if rem else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _created_at(timestamp: str | None) -> datetime | None:
    if not timestamp:
        return None
    try:
        created = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return created if created.tzinfo is not None else created.replace(tzinfo=UTC)


def age(timestamp: str | None, now: datetime) -> str:
    """The AGE cell for an RFC 3339 creationTimestamp."""
    created = _created_at(timestamp)
    return "<unknown>" if created is None else human_duration((now - created).total_seconds())


def partial_object_metadata(gw: ClusterGateway, version: str = "v1") -> dict[str, Any]:
    """The PartialObjectMetadata form of one cluster (metadata-only clients, the GC)."""
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}", "metadata": gw.metadata()}


def _row_parts(gw: ClusterGateway) -> tuple[bytes, bytes, datetime | None, bytes]:
    """The encoded cells before and after AGE, the creation time, and the metadata object: once per object."""
    parts: tuple[bytes, bytes, datetime | None, bytes] | None = gw.render_cache.get("table-row")
    if parts is None:
        endpoint = gw.address if gw.endpoint_type is EndpointType.CONST else f"https://{gw.name}"
        head = encode(
            [gw.name, gw.provider, gw.credential_type.value, gw.endpoint_type.value, "true" if gw.healthy else "false"]
        )[:-1]
        tail = encode([endpoint])[1:]
        parts = (head, tail, _created_at(gw.creation_timestamp), encode(partial_object_metadata(gw)))
        gw.render_cache["table-row"] = parts
    return parts


def row(gw: ClusterGateway, include_object: str, now: datetime) -> bytes:
    """One encoded Table row: NAME, PROVIDER, CREDENTIAL-TYPE, ENDPOINT-TYPE, HEALTHY, AGE, ENDPOINT."""
    head, tail, created, metadata = _row_parts(gw)
    age_cell = "<unknown>" if created is None else human_duration((now - created).total_seconds())
    out = b'{"cells":' + head + b',"' + age_cell.encode() + b'",' + tail
    if include_object == "Object":
        out += b',"object":' + gw.json
    elif include_object == "Metadata":
        out += b',"object":' + metadata
    return out + b"}"


def table(
    items: Sequence[ClusterGateway],
    include_object: str,
    *,
    version: str = "v1",
    resource_version: str | None = None,
    continue_token: str | None = None,
    remaining: int | None = None,
    with_columns: bool = True,
    now: datetime | None = None,
) -> bytes:
    """An encoded Table of `items`, with the list metadata of the listing it renders."""
    when = now or datetime.now(UTC)
    metadata: dict[str, Any] = {}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    if remaining is not None:
        metadata["remainingItemCount"] = remaining
    columns = _COLUMNS_JSON if with_columns else b"null"
    return (
        b'{"kind":"Table","apiVersion":"meta.k8s.io/'
        + version.encode()
        + b'","metadata":'
        + encode(metadata)
        + b',"columnDefinitions":'
        + columns
        + b',"rows":['
        + b",".join(row(gw, include_object, when) for gw in items)
        + b"]}"
    )


_COLUMNS_JSON = encode(COLUMN_DEFINITIONS)
