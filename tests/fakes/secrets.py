"""Cluster Secrets in the cluster-gateway format, for tests."""

from __future__ import annotations

import base64
import json
from typing import Any

CREDENTIAL_LABEL = "cluster.core.oam.dev/cluster-credential-type"
ENDPOINT_LABEL = "cluster.core.oam.dev/cluster-endpoint-type"


def b64(value: str | bytes) -> str:
    """Base64 as Secret data holds it."""
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def cluster_secret(
    name: str,
    rv: int | str = 1,
    *,
    endpoint: str | None = "https://127.0.0.1:6443",
    credential_type: str = "ServiceAccountToken",
    token: str = "member-token",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    ca_pem: bytes | None = None,
    data: dict[str, str | bytes] | None = None,
    namespace: str = "vela-system",
    created: str = "2026-11-01T10:00:00Z",
) -> dict[str, Any]:
    """A cluster Secret as the hosting API server returns it (data base64-encoded)."""
    values: dict[str, str | bytes] = {}
    if endpoint is not None:
        values["endpoint"] = endpoint
    if credential_type == "ServiceAccountToken":
        values["token"] = token
    elif credential_type == "Dynamic":
        values["exec"] = json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "command": "get-token"})
    if ca_pem is not None:
        values["ca.crt"] = ca_pem
    values.update(data or {})
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "resourceVersion": str(rv),
            "creationTimestamp": created,
            "labels": {CREDENTIAL_LABEL: credential_type, **(labels or {})},
            "annotations": dict(annotations or {}),
        },
        "type": "Opaque",
        "data": {k: b64(v) for k, v in values.items()},
    }
