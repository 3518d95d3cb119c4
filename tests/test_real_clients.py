"""Real clients against a running gateway: kubectl, the `kubernetes` and `kubernetes_asyncio` packages."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import kubernetes
import kubernetes_asyncio
import pytest
import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from tests.fakes.gateway import ManualSecretSource, RunningGateway, run_kubectl, running_gateway, write_kubeconfig
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.proxying import PROXY, token_secret
from tests.fakes.proxying import gateway as proxy_gateway
from tests.fakes.secrets import cluster_secret

SECRETS = [
    cluster_secret("member-1", 1, labels={"env": "prod"}),
    cluster_secret("member-2", 2, labels={"env": "dev"}, credential_type="Dynamic", endpoint="https://10.1.2.3:6443/prefix"),
]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ManualSecretSource(SECRETS, "3")) as gw:
        yield gw


kubectl = run_kubectl


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


# --- through the proxy: paging and stale watches against a member that enforces them -------------


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    """A member cluster holding five ConfigMaps cm-0..cm-4 in `default`."""
    async with FakeMemberAPIServer() as server:
        for i in range(5):
            server.store.create("configmaps", "default", {"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}})
        yield server


def proxy_kubeconfig(gw: RunningGateway, path: Path) -> Path:
    """A kubeconfig whose server is the proxy URL of cluster m1 (as `vela cluster export-config` writes)."""
    return write_kubeconfig(path, gw.url + PROXY.format("m1"), gw.ca_file)


def member_lists(member: FakeMemberAPIServer) -> list[dict[str, str]]:
    """The query of every ConfigMap list the member received, in order."""
    return [dict(parse_qsl(r.query_string)) for r in member.requests_to("/api/v1/namespaces/default/configmaps")]


async def test_kubernetes_client_pages_a_list_through_the_proxy(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with proxy_gateway(tmp_path, token_secret("m1", member)) as gw:
        kubeconfig = proxy_kubeconfig(gw, tmp_path / "m1.kubeconfig")

        def page_through() -> tuple[list[str], set[str]]:
            api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
            try:
                core = kubernetes.client.CoreV1Api(api)
                names: list[str] = []
                versions: set[str] = set()
                token = None
                while True:
                    page: Any = core.list_namespaced_config_map("default", limit=2, _continue=token)
                    names += [item.metadata.name for item in page.items]
                    versions.add(page.metadata.resource_version)
                    if len(names) == 2:  # written between pages: not in this list's snapshot
                        member.store.create("configmaps", "default", {"metadata": {"name": "cm-late"}})
                    token = page.metadata._continue
                    if not token:
                        return names, versions
            finally:
                api.close()

        names, versions = await asyncio.to_thread(page_through)
    assert names == [f"cm-{i}" for i in range(5)]
    assert len(versions) == 1  # every page at the first page's resourceVersion
    queries = member_lists(member)
    assert [(q.get("limit"), "continue" in q) for q in queries] == [("2", False), ("2", True), ("2", True)]


async def test_kubectl_chunk_size_through_the_proxy(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with proxy_gateway(tmp_path, token_secret("m1", member)) as gw:
        kubeconfig = proxy_kubeconfig(gw, tmp_path / "m1.kubeconfig")
        proc = await asyncio.create_subprocess_exec(
            "kubectl",
            f"--kubeconfig={kubeconfig}",
            f"--cache-dir={tmp_path / 'kubectl-cache'}",
            "get",
            "configmaps",
            "--namespace=default",
            "--chunk-size=2",
            "-o",
            "name",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == [f"configmap/cm-{i}" for i in range(5)]
    assert [(q.get("limit"), "continue" in q) for q in member_lists(member)] == [("2", False), ("2", True), ("2", True)]


async def test_kubernetes_asyncio_watch_from_a_stale_version_sees_410_and_relists(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    async with proxy_gateway(tmp_path, token_secret("m1", member)) as gw:
        configuration = kubernetes_asyncio.client.Configuration()
        await kubernetes_asyncio.config.load_kube_config(
            config_file=str(proxy_kubeconfig(gw, tmp_path / "m1.kubeconfig")), client_configuration=configuration
        )
        async with kubernetes_asyncio.client.ApiClient(configuration) as api:
            core = kubernetes_asyncio.client.CoreV1Api(api)
            stale = (await core.list_namespaced_config_map("default")).metadata.resource_version
            member.store.create("configmaps", "default", {"metadata": {"name": "cm-5"}})
            member.compact()  # history up to now is gone, as after an etcd compaction

            path = PROXY.format("m1") + f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={stale}"
            async with gw.session() as raw, raw.get(path) as resp:  # on the wire: 200, one ERROR event, the end
                assert resp.status == 200
                [event] = [json.loads(line) for line in (await resp.read()).splitlines()]
            assert (event["type"], event["object"]["code"], event["object"]["reason"]) == ("ERROR", 410, "Expired")

            watch = kubernetes_asyncio.watch.Watch()
            with pytest.raises(ApiException) as expired:
                async for _ in watch.stream(
                    core.list_namespaced_config_map, "default", resource_version=stale, timeout_seconds=10
                ):
                    pass
            # The client raises the ERROR event's Status as "<reason>: <message>" (the 200 itself is checked in
            # tests/fakes/test_member_apiserver.py: this client words an HTTP 410 with a Status body the same way).
            assert expired.value.status == 410
            assert expired.value.reason == f"Expired: too old resource version: {stale} ({member.store.rv})"

            # The informer's answer: list again, then watch from the fresh list's version.
            fresh = await core.list_namespaced_config_map("default")
            assert [item.metadata.name for item in fresh.items] == [f"cm-{i}" for i in range(6)]
            events: list[tuple[str, str]] = []

            async def consume() -> None:
                async for event in watch.stream(
                    core.list_namespaced_config_map,
                    "default",
                    resource_version=fresh.metadata.resource_version,
                    timeout_seconds=10,
                ):
                    events.append((event["type"], event["object"].metadata.name))
                    watch.stop()

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.3)
            member.store.create("configmaps", "default", {"metadata": {"name": "cm-6"}})
            await asyncio.wait_for(task, 10)
            await watch.close()
    assert events == [("ADDED", "cm-6")]
