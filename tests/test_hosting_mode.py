"""Hosting-cluster mode end to end: fake kube-apiserver → Secret informer → registry → API → real clients."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gateway_apiserver.config import Config
from gateway_apiserver.registry.informer import SecretInformer, load_hosting_config
from gateway_apiserver.server import GatewayServer
from tests.fakes.gateway import write_kubeconfig
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_rbac import deploy_documents, deploy_rbac
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
    async with hosted_gateway(tmp_path, kube_apiserver) as hosted:
        yield hosted


@asynccontextmanager
async def hosted_gateway(tmp_path: Path, kube_apiserver: FakeKubeAPIServer, *, wait_synced: bool = True) -> AsyncIterator[Hosted]:
    """A gateway in hosting mode, running as its ServiceAccount on `kube_apiserver`, with two clusters."""
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
        secure_port=0,
        bind_address="127.0.0.1",
        cert_dir=tmp_path / "certs",
        secret_namespace=NS,
        kubeconfig=hosting_kubeconfig,
        health_probe_interval=0,  # the Secrets' endpoints are not reachable: no prober
    )
    gateway = GatewayServer(config, source=source)
    await gateway.start()
    try:
        if wait_synced:
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


# --- deploy/rbac.yaml grants what the gateway needs: take any grant away, and the gateway breaks -------

GATEWAY_SA = "system:serviceaccount:vela-system:gateway-apiserver"


def deploy_without(name: str, verb: str | None = None) -> list[dict[str, object]]:
    """deploy/rbac.yaml without the object `name`, or with `verb` taken out of the rules of role `name`."""
    documents = deploy_documents()
    if verb is None:
        return [d for d in documents if d["metadata"]["name"] != name or d["kind"] in ("Role", "ClusterRole")]
    for doc in documents:
        if doc["kind"] in ("Role", "ClusterRole") and doc["metadata"]["name"] == name:
            for rule in doc["rules"]:
                rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return documents


async def readyz(h: Hosted) -> tuple[int, str]:
    async with h.session() as s, s.get("/readyz?verbose") as resp:
        return resp.status, await resp.text()


def refusal(verb: str, resource: str, namespace: str | None, name: str = "", group: str = "") -> str:
    """The message of the 403 the hosting cluster answers the gateway's ServiceAccount."""
    qualified = f"{resource}.{group}" if group else resource
    subject = f'{qualified} "{name}"' if name else qualified
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return f'{subject} is forbidden: User "{GATEWAY_SA}" cannot {verb} resource "{resource}" in API group "{group}" {where}'


@asynccontextmanager
async def refused_gateway(
    tmp_path: Path, hosting: FakeKubeAPIServer, documents: list[dict[str, object]], refused: str
) -> AsyncIterator[Hosted]:
    """A gateway on a cluster where `documents` replace deploy/rbac.yaml, once the cluster has refused it `refused`."""
    hosting.rbac = deploy_rbac(documents)
    hosting.refusals_expected = True
    async with hosted_gateway(tmp_path, hosting, wait_synced=False) as h:
        async with h.session() as s, s.get(BASE) as resp:  # a client request: the gateway reviews its token
            await resp.read()
        await eventually(lambda: _refused(h, refused))
        yield h


async def _refused(h: Hosted, message: str) -> bool:
    return message in h.hosting.forbidden


async def test_the_gateway_runs_on_exactly_what_deploy_grants(hosted: Hosted) -> None:
    assert await readyz(hosted) == (
        200,
        "[+]ping ok\n[+]cluster-registry-synced ok\n[+]authentication-config-loaded ok\n[+]managed-clusters-synced ok\n"
        "[+]shutdown ok\nreadyz check passed\n",
    )
    assert hosted.hosting.forbidden == []


async def test_without_list_on_secrets_the_registry_never_syncs(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> None:
    documents = deploy_without("gateway-apiserver:cluster-secrets-reader", "list")
    async with refused_gateway(tmp_path, kube_apiserver, documents, refusal("list", "secrets", NS)) as h:
        status, text = await readyz(h)
        assert status == 500
        assert "[-]cluster-registry-synced failed: the first list of cluster Secrets has not completed\n" in text


async def test_without_watch_on_secrets_changes_never_arrive(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> None:
    documents = deploy_without("gateway-apiserver:cluster-secrets-reader", "watch")
    async with refused_gateway(tmp_path, kube_apiserver, documents, refusal("watch", "secrets", NS)) as h:
        add_cluster(h.hosting, "north")
        await asyncio.sleep(1)
        assert await names(h) == ["east", "west"]


async def test_without_the_trust_configmap_reader_the_gateway_is_never_ready(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer
) -> None:
    documents = deploy_without("gateway-apiserver:extension-apiserver-authentication-reader")
    trust = "extension-apiserver-authentication"
    async with refused_gateway(tmp_path, kube_apiserver, documents, refusal("list", "configmaps", "kube-system", trust)) as h:
        status, text = await readyz(h)
        assert status == 500
        assert f"[-]authentication-config-loaded failed: the {trust} ConfigMap has not been read\n" in text


async def test_without_auth_delegator_no_caller_is_authenticated(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> None:
    documents = deploy_without("gateway-apiserver:system:auth-delegator")
    refused = refusal("create", "tokenreviews", None, group="authentication.k8s.io")
    async with refused_gateway(tmp_path, kube_apiserver, documents, refused) as h, h.session() as s, s.get(BASE) as resp:
        assert (resp.status, await resp.json()) == (
            401,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Unauthorized",
                "reason": "Unauthorized",
                "code": 401,
            },
        )
