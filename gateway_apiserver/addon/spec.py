"""`ClusterGatewayConfiguration` (proxy.open-cluster-management.io/v1alpha1): its spec, read and checked.

The schema is the reference's: image, secretNamespace, installNamespace, secretManagement
(Manual | ManagedServiceAccount with managedServiceAccount.name) and egress (Direct |
ClusterProxy with the proxy-server's host, port and the credential Secrets' names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GROUP = "proxy.open-cluster-management.io"
VERSION = "v1alpha1"
RESOURCE = "clustergatewayconfigurations"
KIND = "ClusterGatewayConfiguration"
ADDON_NAME = "cluster-gateway"  # the ClusterManagementAddOn, ManagedClusterAddOns, ServiceAccount and Service


class SpecError(ValueError):
    """The configuration cannot be installed; the message names the field."""


@dataclass(frozen=True)
class ClusterProxy:
    """Where the gateway reaches clusters through OCM cluster-proxy, and the Secrets holding its credentials."""

    host: str
    port: int
    credentials_namespace: str
    client_secret: str  # tls.crt/tls.key: the gateway's client certificate for the proxy-server
    ca_secret: str  # ca.crt: the CA of the proxy-server's serving certificate


@dataclass(frozen=True)
class GatewaySpec:
    """A checked ClusterGatewayConfiguration spec, with the object's name and generation."""

    name: str
    generation: int
    image: str
    install_namespace: str
    secret_namespace: str
    managed_service_account: str | None  # None: Manual secret management
    cluster_proxy: ClusterProxy | None  # None: Direct egress

    @property
    def endpoint_type(self) -> str:
        """The cluster Secrets' endpoint-type label value: `Const` (Direct) or `ClusterProxy`."""
        return "ClusterProxy" if self.cluster_proxy is not None else "Const"


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}.{key}: Required value")
    return value


def parse_spec(obj: dict[str, Any]) -> GatewaySpec:
    """The checked spec of a ClusterGatewayConfiguration object; `SpecError` names the first bad field."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise SpecError("spec: Required value")
    management = spec.get("secretManagement") or {}
    msa: str | None = None
    kind = management.get("type", "ManagedServiceAccount")  # the CRD's defaults: ManagedServiceAccount "cluster-gateway"
    if kind == "ManagedServiceAccount":
        msa = str((management.get("managedServiceAccount") or {}).get("name") or ADDON_NAME)
    elif kind != "Manual":
        raise SpecError(
            f'spec.secretManagement.type: Unsupported value: "{kind}": supported values: "Manual", "ManagedServiceAccount"'
        )
    egress = spec.get("egress") or {}
    proxy: ClusterProxy | None = None
    egress_type = egress.get("type", "Direct")
    if egress_type == "ClusterProxy":
        where = "spec.egress.clusterProxy"
        cp = egress.get("clusterProxy")
        if not isinstance(cp, dict):
            raise SpecError(f"{where}: Required value")
        port = cp.get("proxyServerPort")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise SpecError(f"{where}.proxyServerPort: Invalid value: {port!r}: must be between 1 and 65535")
        creds = cp.get("credentials") or {}
        proxy = ClusterProxy(
            host=_text(cp, "proxyServerHost", where),
            port=port,
            credentials_namespace=_text(creds, "namespace", where + ".credentials"),
            client_secret=_text(creds, "proxyClientSecretName", where + ".credentials"),
            ca_secret=_text(creds, "proxyClientCASecretName", where + ".credentials"),
        )
    elif egress_type != "Direct":
        raise SpecError(f'spec.egress.type: Unsupported value: "{egress_type}": supported values: "Direct", "ClusterProxy"')
    return GatewaySpec(
        name=str(meta.get("name", "")),
        generation=int(meta.get("generation") or 0),
        image=_text(spec, "image", "spec"),
        install_namespace=_text(spec, "installNamespace", "spec"),
        secret_namespace=_text(spec, "secretNamespace", "spec"),
        managed_service_account=msa,
        cluster_proxy=proxy,
    )
