"""The add-on manager installs the gateway from a ClusterGatewayConfiguration and keeps it installed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography import x509

from gateway_apiserver.addon.certificates import split_pems
from gateway_apiserver.addon.kube import Kube
from gateway_apiserver.addon.manager import AddonManager, ManagerSettings
from tests.addon.conftest import INSTALL_NS, SECRET_NS, Hub
from tests.fakes.ocm_addon import (
    CLUSTER_GATEWAY_CONFIGURATIONS,
    cluster_gateway_configuration,
    cluster_proxy_egress,
)
from tests.fakes.proxying import eventually

CONFIGS = CLUSTER_GATEWAY_CONFIGURATIONS.resource


def stored(hub: Hub, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The object as the hub stores it, or None."""
    return hub.api.store.objects[resource].get((namespace, name))


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    assert obj is not None
    [found] = [c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_]
    return {k: found[k] for k in ("type", "status", "reason", "message")}


@contextlib.asynccontextmanager
async def running(hub: Hub, kube: Kube, **settings: Any) -> AsyncIterator[AddonManager]:
    """The manager's loop running (watches on), stopped on exit."""
    manager = AddonManager(kube, None, ManagerSettings(**{"resync": 0.2, **settings}))
    task = asyncio.create_task(manager.run(await hub.config()))
    try:
        yield manager
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_pass_from_nothing_installs_the_gateway_as_the_configuration_says(hub: Hub, manager_kube: Kube) -> None:
    hub.api.store.create(CONFIGS, "", cluster_gateway_configuration())
    await AddonManager(manager_kube, None, ManagerSettings()).reconcile()

    cma = stored(hub, "clustermanagementaddons", "", "cluster-gateway")
    assert cma is not None and cma["spec"]["addOnConfiguration"] == {
        "crdName": "clustergatewayconfigurations.proxy.open-cluster-management.io",
        "crName": "cluster-gateway",
    }
    for ns in (INSTALL_NS, SECRET_NS):
        assert stored(hub, "namespaces", "", ns) is not None
    deployment = stored(hub, "deployments", INSTALL_NS, "gateway-deployment")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "cluster-gateway"
    assert pod["containers"][0]["image"] == "ghcr.io/gateway-apiserver/gateway-apiserver:0.1.0"
    assert pod["containers"][0]["args"] == [
        "--secure-port=9443",
        f"--secret-namespace={SECRET_NS}",
        "--ocm-integration=true",
        "--tls-cert-file=/etc/gateway-apiserver/tls/tls.crt",
        "--tls-private-key-file=/etc/gateway-apiserver/tls/tls.key",
        "--feature-gates=HealthinessCheck=true,SecretCache=true",
        "--cert-dir=/tmp/certs",
    ]
    assert {"name": "tls", "secret": {"secretName": "cluster-gateway-tls-cert"}} in pod["volumes"]
    service = stored(hub, "services", INSTALL_NS, "cluster-gateway")
    assert service is not None and service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": 9443, "protocol": "TCP"}
    ]
    assert stored(hub, "serviceaccounts", INSTALL_NS, "cluster-gateway") is not None
    role = stored(hub, "roles", SECRET_NS, "open-cluster-management:cluster-gateway:cluster-secrets-reader")
    assert role is not None and role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "patch"]}
    ]
    delegator = stored(hub, "clusterrolebindings", "", "open-cluster-management:cluster-gateway:auth-delegator")
    assert delegator is not None and delegator["roleRef"]["name"] == "system:auth-delegator"
    assert delegator["subjects"] == [{"kind": "ServiceAccount", "name": "cluster-gateway", "namespace": INSTALL_NS}]

    signer = stored(hub, "secrets", INSTALL_NS, "cluster-gateway-signer")
    serving = stored(hub, "secrets", INSTALL_NS, "cluster-gateway-tls-cert")
    assert signer is not None and serving is not None and serving["type"] == "kubernetes.io/tls"
    api_service = stored(hub, "apiservices", "", "v1alpha1.cluster.core.oam.dev")
    assert api_service is not None
    assert api_service["spec"]["service"] == {"name": "cluster-gateway", "namespace": INSTALL_NS, "port": 443}
    bundle = base64.b64decode(api_service["spec"]["caBundle"])
    assert split_pems(bundle) == [base64.b64decode(signer["data"]["ca.crt"])]

    config = stored(hub, CONFIGS, "", "cluster-gateway")
    assert condition(config, "ClusterGatewayDeployed") == {
        "type": "ClusterGatewayDeployed",
        "status": "True",
        "reason": "Installed",
        "message": f"the gateway is installed in {INSTALL_NS}",
    }
    assert config is not None and config["status"]["lastObservedGeneration"] == 1


async def test_a_second_pass_writes_nothing(hub: Hub, manager_kube: Kube) -> None:
    hub.api.store.create(CONFIGS, "", cluster_gateway_configuration())
    manager = AddonManager(manager_kube, None, ManagerSettings())
    await manager.reconcile()
    before = hub.api.resource_version
    await manager.reconcile()
    assert hub.api.resource_version == before


async def test_a_deleted_deployment_and_a_changed_apiservice_come_back(hub: Hub, manager_kube: Kube) -> None:
    hub.api.store.create(CONFIGS, "", cluster_gateway_configuration())
    async with running(hub, manager_kube):
        await eventually(lambda: stored(hub, "deployments", INSTALL_NS, "gateway-deployment") is not None)
        wanted = stored(hub, "apiservices", "", "v1alpha1.cluster.core.oam.dev")
        assert wanted is not None
        hub.api.store.delete("deployments", INSTALL_NS, "gateway-deployment")
        changed = {**wanted, "spec": {**wanted["spec"], "service": {"name": "elsewhere", "namespace": "default", "port": 443}}}
        hub.api.store.update("apiservices", "", wanted["metadata"]["name"], changed)
        await eventually(lambda: stored(hub, "deployments", INSTALL_NS, "gateway-deployment") is not None)
        await eventually(
            lambda: (stored(hub, "apiservices", "", "v1alpha1.cluster.core.oam.dev") or {})["spec"] == wanted["spec"]
        )


async def test_egress_switched_to_cluster_proxy_adds_the_proxy_flags_and_mounted_credentials(
    hub: Hub, manager_kube: Kube
) -> None:
    hub.api.store.create(CONFIGS, "", cluster_gateway_configuration())
    manager = AddonManager(manager_kube, None, ManagerSettings())
    await manager.reconcile()
    proxy_ns = "open-cluster-management-cluster-proxy"
    hub.api.create_secret(proxy_ns, "proxy-server-ca", data={"ca.crt": b"proxy CA"})
    hub.api.create_secret(
        proxy_ns, "proxy-client", data={"tls.crt": b"client cert", "tls.key": b"client key"}, type="kubernetes.io/tls"
    )
    config = hub.api.store.get(CONFIGS, "", "cluster-gateway")
    hub.api.store.update(CONFIGS, "", "cluster-gateway", {**config, "spec": {**config["spec"], "egress": cluster_proxy_egress()}})
    await manager.reconcile()

    deployment = stored(hub, "deployments", INSTALL_NS, "gateway-deployment")
    assert deployment is not None
    assert deployment["metadata"]["labels"]["proxy.open-cluster-management.io/configuration-generation"] == "2"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-5:] == [
        "--proxy-host=proxy-entrypoint.open-cluster-management-cluster-proxy",
        "--proxy-port=8090",
        "--proxy-ca-cert=/etc/gateway-apiserver/proxy-server-ca/ca.crt",
        "--proxy-cert=/etc/gateway-apiserver/proxy-client/tls.crt",
        "--proxy-key=/etc/gateway-apiserver/proxy-client/tls.key",
    ]
    assert container["volumeMounts"][-2:] == [
        {"name": "proxy-server-ca", "mountPath": "/etc/gateway-apiserver/proxy-server-ca", "readOnly": True},
        {"name": "proxy-client", "mountPath": "/etc/gateway-apiserver/proxy-client", "readOnly": True},
    ]
    copied = stored(hub, "secrets", INSTALL_NS, "proxy-client")
    assert copied is not None and copied["type"] == "kubernetes.io/tls"
    assert base64.b64decode(copied["data"]["tls.key"]) == b"client key"
    assert stored(hub, "secrets", INSTALL_NS, "proxy-server-ca") is not None


async def test_missing_cluster_proxy_credentials_are_reported_in_the_status(hub: Hub, manager_kube: Kube) -> None:
    hub.api.store.create(CONFIGS, "", cluster_gateway_configuration(egress=cluster_proxy_egress()))
    await AddonManager(manager_kube, None, ManagerSettings()).reconcile()
    assert condition(stored(hub, CONFIGS, "", "cluster-gateway"), "ClusterGatewayDeployed") == {
        "type": "ClusterGatewayDeployed",
        "status": "False",
        "reason": "ProxyCredentialsMissing",
        "message": "the ClusterProxy credential Secret open-cluster-management-cluster-proxy/proxy-server-ca does not exist",
    }


async def test_an_invalid_configuration_is_reported_and_nothing_installed(hub: Hub, manager_kube: Kube) -> None:
    body = cluster_gateway_configuration()
    body["spec"]["egress"] = {"type": "Tunnel"}
    hub.api.store.create(CONFIGS, "", body)
    await AddonManager(manager_kube, None, ManagerSettings()).reconcile()
    assert condition(stored(hub, CONFIGS, "", "cluster-gateway"), "ClusterGatewayDeployed") == {
        "type": "ClusterGatewayDeployed",
        "status": "False",
        "reason": "InvalidConfiguration",
        "message": 'spec.egress.type: Unsupported value: "Tunnel": supported values: "Direct", "ClusterProxy"',
    }
    assert stored(hub, "deployments", INSTALL_NS, "gateway-deployment") is None


@pytest.mark.parametrize("cut_after", [3, 12, 25])
async def test_a_manager_restarted_mid_pass_converges_without_a_second_ca(hub: Hub, manager_kube: Kube, cut_after: int) -> None:
    hub.api.store.create(CONFIGS, "", cluster_gateway_configuration())
    first = AddonManager(manager_kube, None, ManagerSettings())
    writes = len([r for r in hub.api.requests if not r.startswith("GET")])
    task = asyncio.create_task(first.reconcile())
    await eventually(lambda: len([r for r in hub.api.requests if not r.startswith("GET")]) >= writes + cut_after or task.done())
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    signer = stored(hub, "secrets", INSTALL_NS, "cluster-gateway-signer")
    second = AddonManager(manager_kube, None, ManagerSettings())
    await second.reconcile()
    after = stored(hub, "secrets", INSTALL_NS, "cluster-gateway-signer")
    assert after is not None
    if signer is not None:  # a CA written before the cut is the one kept
        assert after["data"]["ca.crt"] == signer["data"]["ca.crt"]
    assert stored(hub, "deployments", INSTALL_NS, "gateway-deployment") is not None
    before = hub.api.resource_version
    await second.reconcile()
    assert hub.api.resource_version == before


async def test_the_loop_stops_when_cancelled_as_a_wake_up_arrives(hub: Hub, manager_kube: Kube) -> None:
    # On Python 3.11 asyncio.wait_for could swallow a cancel racing its inner wait: the loop never stopped.
    manager = AddonManager(manager_kube, None, ManagerSettings(resync=30.0))

    async def quick_pass() -> None:
        return None

    manager.reconcile = quick_pass  # type: ignore[method-assign]
    for _ in range(200):
        task = asyncio.create_task(manager.run(None))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        manager.wake.set()
        task.cancel()
        async with asyncio.timeout(2):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_ca_change_waits_for_propagation_across_passes(hub: Hub, manager_kube: Kube) -> None:
    hub.api.store.create(CONFIGS, "", cluster_gateway_configuration())
    now = [dt.datetime(2027, 1, 1, tzinfo=dt.UTC)]
    manager = AddonManager(manager_kube, None, ManagerSettings(clock=lambda: now[0]))

    def serving_issuer() -> str:
        serving = stored(hub, "secrets", INSTALL_NS, "cluster-gateway-tls-cert")
        assert serving is not None
        return x509.load_pem_x509_certificate(base64.b64decode(serving["data"]["tls.crt"])).issuer.rfc4514_string()

    def signer_ca() -> bytes:
        signer = stored(hub, "secrets", INSTALL_NS, "cluster-gateway-signer")
        assert signer is not None
        return base64.b64decode(signer["data"]["ca.crt"])

    def trusted() -> list[bytes]:
        api_service = stored(hub, "apiservices", "", "v1alpha1.cluster.core.oam.dev")
        assert api_service is not None
        return split_pems(base64.b64decode(api_service["spec"]["caBundle"]))

    await manager.reconcile()
    now[0] += dt.timedelta(days=121)
    await manager.reconcile()  # the serving certificate renewed at two thirds, by the same CA
    old_ca, old_serving = signer_ca(), stored(hub, "secrets", INSTALL_NS, "cluster-gateway-tls-cert")
    now[0] += dt.timedelta(days=123)  # day 244: the CA is past two thirds of its 365 days
    await manager.reconcile()
    assert signer_ca() != old_ca
    assert len(trusted()) == 2
    now[0] += dt.timedelta(seconds=10)
    await manager.reconcile()  # 10 s later: the new bundle may not have reached the aggregator yet
    assert stored(hub, "secrets", INSTALL_NS, "cluster-gateway-tls-cert") == old_serving
    now[0] += dt.timedelta(seconds=21)
    await manager.reconcile()
    assert stored(hub, "secrets", INSTALL_NS, "cluster-gateway-tls-cert") != old_serving
    assert serving_issuer() == "CN=cluster-gateway-signer"
    now[0] += dt.timedelta(minutes=5)
    await manager.reconcile()  # within the 10-minute overlap the old CA stays trusted
    assert len(trusted()) == 2
    now[0] += dt.timedelta(minutes=6)
    await manager.reconcile()
    assert trusted() == [signer_ca()]
