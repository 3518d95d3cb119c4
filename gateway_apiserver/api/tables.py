"""meta.k8s.io Table and PartialObjectMetadata renderings of any stored object (pure functions).

What the columns are is each resource's `TablePrinter` (api/printers.py); this module
assembles rows and Tables around them, encoding straight to bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from ..base.status import bad_request
from ..registry.model import encode
from ..registry.store import StoredObject

INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")


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


def created_at(timestamp: str | None) -> datetime | None:
    if not timestamp:
        return None
    try:
        created = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return created if created.tzinfo is not None else created.replace(tzinfo=UTC)


def age(timestamp: str | None, now: datetime) -> str:
    """The AGE cell for an RFC 3339 creationTimestamp."""
    created = created_at(timestamp)
    return "<unknown>" if created is None else human_duration((now - created).total_seconds())


def partial_object_metadata(obj: StoredObject, version: str = "v1") -> dict[str, Any]:
    """The PartialObjectMetadata form of one object (metadata-only clients, the GC)."""
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}", "metadata": obj.metadata()}


class TablePrinter(Protocol):
    """A resource's Table columns: their definitions, and one object's encoded cells."""

    @property
    def columns_json(self) -> bytes:
        """The encoded `columnDefinitions` array."""

    def cells(self, obj: Any, now: datetime) -> bytes:
        """The encoded `cells` array of `obj`'s row; `now` is for age columns."""


def row(obj: StoredObject, printer: TablePrinter, include_object: str, now: datetime) -> bytes:
    """One encoded Table row, with the object as `includeObject` asks."""
    out = b'{"cells":' + printer.cells(obj, now)
    if include_object == "Object":
        out += b',"object":' + obj.json
    elif include_object == "Metadata":
        metadata: bytes | None = obj.render_cache.get("partial-metadata")
        if metadata is None:
            metadata = obj.render_cache["partial-metadata"] = encode(partial_object_metadata(obj))
        out += b',"object":' + metadata
    return out + b"}"


def table(
    items: Sequence[StoredObject],
    printer: TablePrinter,
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
    columns = printer.columns_json if with_columns else b"null"
    return (
        b'{"kind":"Table","apiVersion":"meta.k8s.io/'
        + version.encode()
        + b'","metadata":'
        + encode(metadata)
        + b',"columnDefinitions":'
        + columns
        + b',"rows":['
        + b",".join(row(obj, printer, include_object, when) for obj in items)
        + b"]}"
    )
