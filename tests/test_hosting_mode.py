"""Hosting-cluster mode end to end: fake kube-apiserver → Secret informer → registry → API → real clients."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gateway_apiserver.config import Config
from gateway_apiserver.registry.informer import SecretInformer, load_hosting_config
from gateway_apiserver.server import GatewayServer
from tests.fakes.gateway import write_kubeconfig
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule

NS = "vela-system"
CRED = "cluster.core.oam.dev/cluster-credential-type"
BASE = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"


@dataclass
class Hosted:
    hosting: FakeKubeAPIServer
    gateway: GatewayServer
    url: str
    kubeconfig: Path

    def session(self) -> aiohttp.ClientSession:
        """A client authenticated as the hosting cluster's admin (a TokenReview-checked bearer token)."""
        import ssl

        assert self.gateway.cert is not None
        ctx = ssl.create_default_context(cafile=str(self.gateway.cert.cert_file))
        return aiohttp.ClientSession(
            base_url=self.url,
            connector=aiohttp.TCPConnector(ssl=ctx),
            headers={"Authorization": f"Bearer {self.hosting.token}"},
        )


def add_cluster(hosting: FakeKubeAPIServer, name: str, **labels: str) -> None:
    hosting.create_secret(
        NS,
        name,
        labels={CRED: "ServiceAccountToken", **labels},
        data={"endpoint": f"https://{name}.example:6443", "token": f"token-of-{name}"},
    )


@pytest.fixture
async def hosted(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> AsyncIterator[Hosted]:
    add_cluster(kube_apiserver, "east", env="prod")
    add_cluster(kube_apiserver, "west", env="dev")
    kube_apiserver.create_secret(NS, "unrelated", data={"password": "not a cluster"})  # no label: ignored
    kube_apiserver.create_secret(
        "other-namespace", "elsewhere", labels={CRED: "ServiceAccountToken"}, data={"endpoint": "https://x", "token": "t"}
    )
    kube_apiserver.policy = [PolicyRule(groups=("system:masters",))]  # the admin may do anything
    hosting_kubeconfig = kube_apiserver.write_kubeconfig(tmp_path / "hosting.kubeconfig")
    hosting_config = await load_hosting_config(str(hosting_kubeconfig))
    source = SecretInformer(hosting_config, NS, watch_timeout=5, backoff_base=0.05, backoff_cap=0.5)
    config = Config(
        secure_port=0, bind_address="127.0.0.1", cert_dir=tmp_path / "certs", secret_namespace=NS, kubeconfig=hosting_kubeconfig
    )
    gateway = GatewayServer(config, source=source)
    await gateway.start()
    try:
        await asyncio.wait_for(gateway.registry.synced.wait(), 10)
        assert gateway.cert is not None
        url = f"https://127.0.0.1:{gateway.port}"
        kubeconfig = write_kubeconfig(tmp_path / "gw.kubeconfig", url, gateway.cert.cert_file, token=kube_apiserver.token)
        yield Hosted(kube_apiserver, gateway, url, kubeconfig)
    finally:
        await gateway.stop()


async def names(h: Hosted) -> list[str]:
    async with h.session() as s, s.get(BASE) as resp:
        return [i["metadata"]["name"] for i in (await resp.json())["items"]]


async def eventually(check: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            assert await check()  # type: ignore[operator]
            return
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_only_labelled_secrets_of_the_namespace_are_served(hosted: Hosted) -> None:
    assert await names(hosted) == ["east", "west"]
    async with hosted.session() as s, s.get(BASE) as resp:
        text = await resp.text()
    assert "token-of-east" not in text


async def test_secret_changes_reach_a_client_watch(hosted: Hosted) -> None:
    async with hosted.session() as s:
        async with s.get(BASE) as resp:
            rv = (await resp.json())["metadata"]["resourceVersion"]
        response = await s.get(f"{BASE}?watch=1&resourceVersion={rv}")
        add_cluster(hosted.hosting, "north")
        event = json.loads(await asyncio.wait_for(response.content.readline(), 5))
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "north")
        hosted.hosting.update_secret(NS, "north", labels={CRED: "ServiceAccountToken", "env": "prod"})
        event = json.loads(await asyncio.wait_for(response.content.readline(), 5))
        assert (event["type"], event["object"]["metadata"]["labels"]["env"]) == ("MODIFIED", "prod")
        hosted.hosting.delete_secret(NS, "north")
        event = json.loads(await asyncio.wait_for(response.content.readline(), 5))
        assert (event["type"], event["object"]["metadata"]["name"]) == ("DELETED", "north")
        response.close()


async def test_the_gateway_survives_a_hosting_api_server_restart(hosted: Hosted) -> None:
    await hosted.hosting.restart()
    add_cluster(hosted.hosting, "south")
    await eventually(lambda: _contains(hosted, "south"))


async def test_compaction_and_dropped_watches_lead_to_a_relist(hosted: Hosted) -> None:
    hosted.hosting.delete_secret(NS, "west")
    await eventually(lambda: _missing(hosted, "west"))
    add_cluster(hosted.hosting, "late")
    hosted.hosting.compact()
    hosted.hosting.drop_watches()
    add_cluster(hosted.hosting, "later")
    await eventually(lambda: _contains(hosted, "later"))
    assert await names(hosted) == ["east", "late", "later"]


async def _contains(h: Hosted, name: str) -> bool:
    return name in await names(h)


async def _missing(h: Hosted, name: str) -> bool:
    return name not in await names(h)


async def test_kubectl_through_the_hosting_mode_gateway(hosted: Hosted) -> None:
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={hosted.kubeconfig}",
        f"--cache-dir={hosted.kubeconfig.parent / 'cache'}",
        "get",
        "cg",
        "-l",
        "env=prod",
        "-o",
        "custom-columns=NAME:.metadata.name,CRED:.spec.access.credential.type",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(hosted.kubeconfig.parent)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["NAME", "CRED", "east", "ServiceAccountToken"]
