"""meta.k8s.io Table and PartialObjectMetadata renderings of ClusterGateways (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..registry.model import ClusterGateway, EndpointType
from .status import bad_request

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
        "type": "boolean",
        "format": "",
        "priority": 0,
        "description": "The last health status written through the health subresource.",
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


def age(timestamp: str | None, now: datetime) -> str:
    """The AGE cell for an RFC 3339 creationTimestamp."""
    if not timestamp:
        return "<unknown>"
    try:
        created = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return human_duration((now - created).total_seconds())


def partial_object_metadata(gw: ClusterGateway, version: str = "v1") -> dict[str, Any]:
    """The PartialObjectMetadata form of one cluster (metadata-only clients, the GC)."""
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}", "metadata": gw.metadata()}


def row(gw: ClusterGateway, include_object: str, now: datetime) -> dict[str, Any]:
    """One Table row."""
    endpoint = gw.address if gw.endpoint_type is EndpointType.CONST else f"https://{gw.name}"
    cells: list[Any] = [
        gw.name,
        gw.provider,
        gw.credential_type.value,
        gw.endpoint_type.value,
        gw.healthy,
        age(gw.creation_timestamp, now),
        endpoint,
    ]
    result: dict[str, Any] = {"cells": cells}
    if include_object == "Object":
        result["object"] = gw.manifest
    elif include_object == "Metadata":
        result["object"] = partial_object_metadata(gw)
    return result


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
) -> dict[str, Any]:
    """A Table of `items`, with the list metadata of the listing it renders."""
    when = now or datetime.now(UTC)
    metadata: dict[str, Any] = {}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    if remaining is not None:
        metadata["remainingItemCount"] = remaining
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": metadata,
        "columnDefinitions": COLUMN_DEFINITIONS if with_columns else None,
        "rows": [row(gw, include_object, when) for gw in items],
    }
