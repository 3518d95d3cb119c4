"""One installation pass for a ClusterGatewayConfiguration: everything the gateway needs, created or repaired.

Namespaces, identity and RBAC, the ClusterProxy credential copies, the certificates (see
`certificates`), the Deployment, the Service and the APIService with the trust bundle. It
returns the `ClusterGatewayDeployed` condition and when the certificates next need a look.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from . import render
from .apply import ensure, ensure_namespace
from .certificates import Lifetimes, plan, split_pems
from .kube import Kube, Obj, Ref, describe
from .spec import GatewaySpec

CONDITION = "ClusterGatewayDeployed"  # the reference's condition type

# Asks whether the gateway now serves a certificate signed by this CA (PEM); None when it cannot tell.
ServingProbe = Callable[[GatewaySpec, bytes], Awaitable[bool | None]]


@dataclass
class Installed:
    """The outcome of a pass: the condition to report and when to look at the certificates again."""

    status: str  # "True" or "False"
    reason: str
    message: str
    next_check: dt.datetime | None = None
    events: list[str] = field(default_factory=list)


class InstallError(Exception):
    """A step failed; `reason` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


async def _secret(kube: Kube, namespace: str, name: str) -> Obj | None:
    return await kube.get(Ref("v1", "Secret", namespace, name))


async def _copy_proxy_credentials(kube: Kube, spec: GatewaySpec) -> None:
    proxy = spec.cluster_proxy
    if proxy is None:
        return
    for name in (proxy.ca_secret, proxy.client_secret):
        source = await _secret(kube, proxy.credentials_namespace, name)
        if source is None:
            raise InstallError(
                "ProxyCredentialsMissing",
                f"the ClusterProxy credential Secret {proxy.credentials_namespace}/{name} does not exist",
            )
        await ensure(kube, render.proxy_secret_copy(source, spec.install_namespace))


def _secret_body(namespace: str, name: str, data: dict[str, str], annotations: dict[str, str], type_: str) -> Obj:
    meta = {"name": name, "namespace": namespace, "labels": dict(render.MANAGED_BY), "annotations": annotations}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": type_, "data": data}


async def _certificates(
    kube: Kube, spec: GatewaySpec, now: dt.datetime, lifetimes: Lifetimes, probe: ServingProbe | None
) -> tuple[bytes, dt.datetime, list[str]]:
    ns = spec.install_namespace
    signer = await _secret(kube, ns, render.SIGNER_SECRET) or {}
    serving = await _secret(kube, ns, render.SERVING_SECRET) or {}

    def annotations(obj: Obj) -> dict[str, str]:
        return dict((obj.get("metadata") or {}).get("annotations") or {})

    serves_current: bool | None = None
    trusted = split_pems(base64.b64decode((signer.get("data") or {}).get("ca-bundle.crt", "")))
    if probe is not None and len(trusted) > 1:  # a CA change in progress: which certificate does the gateway serve?
        serves_current = await probe(spec, base64.b64decode((signer.get("data") or {}).get("ca.crt", "")))
    first = plan(
        signer.get("data"),
        annotations(signer),
        serving.get("data"),
        annotations(serving),
        render.service_hosts(spec),
        now,
        lifetimes,
        gateway_serves_current=serves_current,
    )
    # The signer (and so the bundle's new CA) first, then the APIService, then the serving certificate.
    await ensure(kube, _secret_body(ns, render.SIGNER_SECRET, first.signer, first.signer_annotations, "Opaque"))
    await ensure(kube, render.api_service(spec, first.bundle))
    await ensure(kube, _secret_body(ns, render.SERVING_SECRET, first.serving, first.serving_annotations, "kubernetes.io/tls"))
    return first.bundle, first.next_check, first.events


async def install(
    kube: Kube, spec: GatewaySpec, now: dt.datetime, lifetimes: Lifetimes | None = None, probe: ServingProbe | None = None
) -> Installed:
    """Create or repair every object of `spec`'s installation; the condition that results."""
    try:
        for namespace in render.namespaces(spec):
            await ensure_namespace(kube, namespace)
        for obj in render.identity(spec):
            await ensure(kube, obj)
        await _copy_proxy_credentials(kube, spec)
        _, next_check, events = await _certificates(kube, spec, now, lifetimes or Lifetimes(), probe)
        await ensure(kube, render.deployment(spec))
        await ensure(kube, render.service(spec))
    except InstallError as exc:
        return Installed("False", exc.reason, str(exc))
    except Exception as exc:
        return Installed("False", "InstallFailed", f"installing the gateway failed: {describe(exc)}")
    return Installed("True", "Installed", f"the gateway is installed in {spec.install_namespace}", next_check, events)
