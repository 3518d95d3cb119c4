"""The ClusterGateway domain model: what the API serves, and the credential it never serves."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KIND = "ClusterGateway"
LIST_KIND = "ClusterGatewayList"

LABEL_CREDENTIAL_TYPE = "cluster.core.oam.dev/cluster-credential-type"
LABEL_ENDPOINT_TYPE = "cluster.core.oam.dev/cluster-endpoint-type"
ANNOTATION_HEALTHY = "status.cluster.core.oam.dev/healthy"
ANNOTATION_HEALTHY_REASON = "status.cluster.core.oam.dev/healthy-reason"
# When a health write was made (RFC 3339): ours add it, so the newer of a write and a probe wins.
ANNOTATION_HEALTHY_TIME = "status.cluster.core.oam.dev/healthy-time"
ANNOTATION_PROXY_CONFIGURATION = "cluster.core.oam.dev/cluster-gateway-proxy-configuration"
ANNOTATION_CLUSTER_ALIAS = "cluster.core.oam.dev/cluster-alias"


class CredentialType(enum.StrEnum):
    """How the gateway authenticates to the member cluster."""

    SERVICE_ACCOUNT_TOKEN = "ServiceAccountToken"
    X509_CERTIFICATE = "X509Certificate"
    DYNAMIC = "Dynamic"


class EndpointType(enum.StrEnum):
    """How the gateway reaches the member cluster."""

    CONST = "Const"
    CLUSTER_PROXY = "ClusterProxy"


@dataclass(frozen=True, slots=True)
class ClusterCredential:
    """Credential material. Held for the proxy; never serialised into any response or log."""

    type: CredentialType
    token: str | None = field(default=None, repr=False)
    client_certificate_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)
    exec_config: Mapping[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ClusterGateway:
    """One member cluster, converted from one Secret.

    `manifest` is the API object (without credentials) and `json` its encoding, both built
    once at conversion so that lists of 10,000 clusters never re-encode anything.
    """

    name: str
    uid: str
    resource_version: str
    creation_timestamp: str | None
    labels: Mapping[str, str]
    provider: str
    endpoint_type: EndpointType
    address: str | None
    ca_bundle: bytes | None
    insecure: bool
    # The full proxy URL, proxy credentials included, for the transport only; served redacted.
    proxy_url: str | None = field(repr=False)
    healthy: bool
    healthy_reason: str
    credential: ClusterCredential = field(repr=False)
    proxy_configuration: str | None = field(default=None, repr=False)
    # The name the member's certificate is checked against (and sent as SNI) instead of the
    # endpoint's host: a kubeconfig's tls-server-name, or the Secret key `tls-server-name`.
    tls_server_name: str | None = None
    # The annotation `cluster.core.oam.dev/cluster-alias`: shown by VirtualCluster, not by ClusterGateway.
    alias: str = ""
    # Facts of the built-in prober (None until it probed): the time of the probe that last changed what is
    # shown (not compared, so a probe that finds nothing new is no change), and the member's gitVersion.
    last_probe_time: str | None = field(default=None, compare=False)
    kubernetes_version: str | None = None
    manifest: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    json: bytes = field(default=b"", repr=False, compare=False)
    # Presentation layers memoise encodings of this immutable object here (e.g. Table row parts).
    render_cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def credential_type(self) -> CredentialType:
        """The credential type: the only credential fact the API shows."""
        return self.credential.type

    def metadata(self) -> dict[str, Any]:
        """The object's metadata, as served."""
        meta: dict[str, Any] = self.manifest["metadata"]
        return meta


@dataclass(frozen=True, slots=True)
class InvalidSecret:
    """A labelled Secret that could not be converted, or is hidden as dangling; GET names why, LIST skips it."""

    name: str
    resource_version: str
    reason: str
    # Hidden by --hide-dangling-cluster-gateways (no ManagedCluster of its name); `reason` is then empty,
    # as why depends on the ManagedCluster cache's state when asked.
    dangling: bool = False


def encode(obj: Any) -> bytes:
    """Compact JSON encoding used for every object we serve."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
