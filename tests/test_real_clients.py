"""Real clients against a running gateway: kubectl, the `kubernetes` and `kubernetes_asyncio` packages."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import kubernetes
import kubernetes_asyncio
import pytest
import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.secrets import cluster_secret

SECRETS = [
    cluster_secret("member-1", 1, labels={"env": "prod"}),
    cluster_secret("member-2", 2, labels={"env": "dev"}, credential_type="Dynamic", endpoint="https://10.1.2.3:6443/prefix"),
]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ManualSecretSource(SECRETS, "3")) as gw:
        yield gw


async def kubectl(gw: RunningGateway, *args: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run kubectl against the gateway without blocking the event loop that serves it."""
    env = {**os.environ, "KUBECONFIG": str(gw.kubeconfig), "HOME": str(gw.kubeconfig.parent)}
    cache = gw.kubeconfig.parent / "kubectl-cache"
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--cache-dir={cache}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_kubectl_get(gateway: RunningGateway) -> None:
    code, out, err = await kubectl(gateway, "get", "clustergateways")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "PROVIDER", "CREDENTIAL-TYPE", "ENDPOINT-TYPE", "HEALTHY", "AGE"]
    assert lines[1].split()[:4] == ["member-1", "ServiceAccountToken", "Const", "false"]
    assert lines[2].split()[:4] == ["member-2", "Dynamic", "Const", "false"]


async def test_kubectl_short_name_wide_and_labels(gateway: RunningGateway) -> None:
    code, out, err = await kubectl(gateway, "get", "cg", "-o", "wide", "-l", "env=dev")
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split()[-1] == "ENDPOINT"
    assert row.split()[0] == "member-2" and row.split()[-1] == "https://10.1.2.3:6443/prefix"


async def test_kubectl_get_yaml(gateway: RunningGateway) -> None:
    code, out, err = await kubectl(gateway, "get", "clustergateway", "member-1", "-o", "yaml")
    assert code == 0, err
    obj = yaml.safe_load(out)
    assert obj["kind"] == "ClusterGateway" and obj["metadata"]["name"] == "member-1"
    assert obj["spec"]["access"]["credential"] == {"type": "ServiceAccountToken"}
    assert "member-token" not in out


async def test_kubectl_not_found_and_read_only(gateway: RunningGateway) -> None:
    code, _, err = await kubectl(gateway, "get", "clustergateway", "nope")
    assert code == 1
    assert 'clustergateways.cluster.core.oam.dev "nope" not found' in err
    code, _, err = await kubectl(gateway, "delete", "clustergateway", "member-1")
    assert code == 1
    assert "read-only" in err


async def test_kubectl_watch(gateway: RunningGateway) -> None:
    env = {**os.environ, "KUBECONFIG": str(gateway.kubeconfig), "HOME": str(gateway.kubeconfig.parent)}
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--cache-dir={gateway.kubeconfig.parent / 'kubectl-cache'}",
        "get",
        "clustergateways",
        "-w",
        "--request-timeout=20s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    try:
        seen = [(await asyncio.wait_for(proc.stdout.readline(), 20)).decode() for _ in range(3)]
        assert seen[0].split()[0] == "NAME"
        assert [line.split()[0] for line in seen[1:]] == ["member-1", "member-2"]
        gateway.registry.apply("ADDED", cluster_secret("member-3", 10))
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line.split()[:2] == ["member-3", "ServiceAccountToken"]
    finally:
        proc.kill()
        await proc.wait()


async def test_kubectl_explain(gateway: RunningGateway) -> None:
    code, out, err = await kubectl(gateway, "explain", "clustergateway.spec.access")
    assert code == 0, err
    assert "KIND:" in out and "ClusterGateway" in out
    assert "endpoint" in out and "credential" in out


async def test_kubernetes_dynamic_client(gateway: RunningGateway) -> None:
    def run() -> tuple[list[str], str]:
        api = kubernetes.config.new_client_from_config(config_file=str(gateway.kubeconfig))
        try:
            client = kubernetes.dynamic.DynamicClient(api)
            resource = client.resources.get(api_version="cluster.core.oam.dev/v1alpha1", kind="ClusterGateway")
            listed = resource.get(label_selector="env=prod")
            one = resource.get(name="member-2")
            return [i.metadata.name for i in listed.items], one.spec.access.credential.type
        finally:
            api.close()

    names, cred = await asyncio.to_thread(run)
    assert names == ["member-1"]
    assert cred == "Dynamic"


async def test_kubernetes_asyncio_list_get_watch(gateway: RunningGateway) -> None:
    async with kubernetes_asyncio.client.ApiClient(await _async_config(gateway)) as api:
        custom = kubernetes_asyncio.client.CustomObjectsApi(api)
        listed = await custom.list_cluster_custom_object("cluster.core.oam.dev", "v1alpha1", "clustergateways")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["member-1", "member-2"]
        one = await custom.get_cluster_custom_object("cluster.core.oam.dev", "v1alpha1", "clustergateways", "member-1")
        assert one["metadata"]["resourceVersion"] == "1"
        with pytest.raises(ApiException) as err:
            await custom.get_cluster_custom_object("cluster.core.oam.dev", "v1alpha1", "clustergateways", "nope")
        assert err.value.status == 404

        watch = kubernetes_asyncio.watch.Watch()
        events: list[tuple[str, str]] = []

        async def consume() -> None:
            async for event in watch.stream(
                custom.list_cluster_custom_object,
                "cluster.core.oam.dev",
                "v1alpha1",
                "clustergateways",
                resource_version=listed["metadata"]["resourceVersion"],
                timeout_seconds=10,
            ):
                events.append((event["type"], event["object"]["metadata"]["name"]))
                if len(events) == 2:
                    watch.stop()

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        gateway.registry.apply("ADDED", cluster_secret("member-3", 4))
        gateway.registry.apply("DELETED", cluster_secret("member-1", 5))
        await asyncio.wait_for(task, 10)
        await watch.close()
        assert events == [("ADDED", "member-3"), ("DELETED", "member-1")]


async def _async_config(gateway: RunningGateway) -> kubernetes_asyncio.client.Configuration:
    configuration = kubernetes_asyncio.client.Configuration()
    await kubernetes_asyncio.config.load_kube_config(config_file=str(gateway.kubeconfig), client_configuration=configuration)
    return configuration
