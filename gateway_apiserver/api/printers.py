"""The Table columns of each resource (what `kubectl get` prints), as `TablePrinter`s.

Cells that do not depend on the time are encoded once per object and kept in its
`render_cache`, so a list of 10,000 clusters renders without re-encoding anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..registry.model import ClusterGateway, EndpointType, encode
from ..registry.virtual_clusters import VirtualCluster
from .tables import created_at, human_duration


def _column(name: str, type_: str, description: str, *, priority: int = 0, format_: str = "") -> dict[str, Any]:
    return {"name": name, "type": type_, "format": format_, "description": description, "priority": priority}


class ClusterGatewayPrinter:
    """NAME, PROVIDER, CREDENTIAL-TYPE, ENDPOINT-TYPE, HEALTHY, AGE, and ENDPOINT in wide output."""

    columns_json = encode(
        [
            _column(
                "Name",
                "string",
                "Name must be unique within a namespace. The name of the cluster (its Secret's name).",
                format_="name",
            ),
            _column("Provider", "string", "The cluster provider."),
            _column("Credential-Type", "string", "How the gateway authenticates to the cluster."),
            _column("Endpoint-Type", "string", "How the gateway reaches the cluster: Const or ClusterProxy."),
            # A string, as in the reference: clients compare the cell with "true".
            _column("Healthy", "string", 'The observed health (the newer of a probe and a health write): "true" or "false".'),
            _column(
                "Age",
                "string",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
            _column("Endpoint", "string", "The cluster's API server address.", priority=1),
        ]
    )

    def cells(self, obj: Any, now: datetime) -> bytes:
        """The row's cells; AGE is computed per call, the rest once per object."""
        gw: ClusterGateway = obj
        parts: tuple[bytes, bytes, datetime | None] | None = gw.render_cache.get("table-cells")
        if parts is None:
            endpoint = gw.address if gw.endpoint_type is EndpointType.CONST else f"https://{gw.name}"
            head = encode(
                [gw.name, gw.provider, gw.credential_type.value, gw.endpoint_type.value, "true" if gw.healthy else "false"]
            )[:-1]
            parts = (head, encode([endpoint])[1:], created_at(gw.creation_timestamp))
            gw.render_cache["table-cells"] = parts
        head, tail, created = parts
        age = "<unknown>" if created is None else human_duration((now - created).total_seconds())
        return head + b',"' + age.encode() + b'",' + tail


class VirtualClusterPrinter:
    """The reference's columns and types: NAME, ALIAS, CREDENTIAL_TYPE, ENDPOINT, ACCEPTED, and in
    wide output LABELS and CREATION_TIMESTAMP (the reference shows LABELS by default)."""

    columns_json = encode(
        [
            _column("Name", "string", "The name of the cluster.", format_="name"),
            _column("Alias", "string", "The cluster's alias, from the annotation cluster.core.oam.dev/cluster-alias."),
            _column("Credential_Type", "string", "Internal (local), the Secret's credential type, or ManagedCluster."),
            _column("Endpoint", "string", "The cluster's API server URL, or - when the gateway does not proxy to it."),
            _column("Accepted", "boolean", "Whether the hub accepts the cluster."),
            _column("Labels", "string", "The cluster's labels.", priority=10),
            _column("Creation_Timestamp", "dateTime", "When the cluster's source object was created.", priority=10),
        ]
    )

    def cells(self, obj: Any, now: datetime) -> bytes:
        """The row's cells, encoded once per object."""
        vc: VirtualCluster = obj
        cells: bytes | None = vc.render_cache.get("table-cells")
        if cells is None:
            labels = ",".join(f"{key}={value}" for key, value in sorted(vc.labels.items()))
            cells = encode([vc.name, vc.alias, vc.credential_type, vc.endpoint, vc.accepted, labels, vc.creation_timestamp])
            vc.render_cache["table-cells"] = cells
        return cells
