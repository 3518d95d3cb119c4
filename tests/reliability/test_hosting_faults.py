"""Faults of the hosting cluster's API server, seen by clients of a hosting-mode gateway.

The gateway holds every cluster in memory; the hosting API only feeds changes. So while that
API is down, restarting, or answering 410 Gone, the clusters already known stay served, and
the gateway catches up by itself when the API is back. Before the first listing it is not ready.

Real pieces throughout: the fake hosting kube-apiserver over TLS, the Secret informer, the
gateway's HTTPS listener with delegated authentication (TokenReview) and authorization
(SubjectAccessReview), and an aiohttp client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gateway_apiserver.config import Config
from gateway_apiserver.registry.informer import SecretInformer, load_hosting_config
from gateway_apiserver.server import GatewayServer
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule

pytestmark = pytest.mark.timeout(60)
NS = "vela-system"
CRED = "cluster.core.oam.dev/cluster-credential-type"
BASE = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"


@dataclass
class Hosted:
    hosting: FakeKubeAPIServer
    gateway: GatewayServer
    informer: SecretInformer
    url: str

    def session(self, *, token: bool = True) -> aiohttp.ClientSession:
        """A client of the gateway, as the hosting cluster's admin (or anonymous)."""
        assert self.gateway.cert is not None
        ctx = ssl.create_default_context(cafile=str(self.gateway.cert.cert_file))
        headers = {"Authorization": f"Bearer {self.hosting.token}"} if token else {}
        return aiohttp.ClientSession(base_url=self.url, connector=aiohttp.TCPConnector(ssl=ctx), headers=headers)


def add_cluster(hosting: FakeKubeAPIServer, name: str) -> None:
    hosting.create_secret(
        NS,
        name,
        labels={CRED: "ServiceAccountToken"},
        data={"endpoint": f"https://{name}.example:6443", "token": f"token-of-{name}"},
    )


@asynccontextmanager
async def hosted_gateway(tmp_path: Path, hosting: FakeKubeAPIServer, *, wait_synced: bool = True) -> AsyncIterator[Hosted]:
    """A hosting-mode gateway fed by `hosting` (which may be down), with a quick informer backoff."""
    hosting.policy = [PolicyRule(groups=("system:masters",))]
    kubeconfig = hosting.write_kubeconfig(tmp_path / "hosting.kubeconfig")
    informer = SecretInformer(
        await load_hosting_config(str(kubeconfig)),
        NS,
        watch_timeout=5,
        request_timeout=2,
        backoff_base=0.05,
        backoff_cap=0.4,
    )
    # These tests are about the registry: callers' reviews stay cached through the outages even on a
    # slow machine (past the 10 s default a review fails while the API is down: 401/500, as in kube).
    config = Config(
        secure_port=0,
        bind_address="127.0.0.1",
        cert_dir=tmp_path / "certs",
        secret_namespace=NS,
        kubeconfig=kubeconfig,
        token_cache_ttl=300.0,
        authorized_cache_ttl=300.0,
        health_probe_interval=0,  # no member is reachable here: no prober
    )
    gateway = GatewayServer(config, source=informer)
    await gateway.start()
    try:
        if wait_synced:
            await asyncio.wait_for(gateway.registry.synced.wait(), 10)
        yield Hosted(hosting, gateway, informer, f"https://127.0.0.1:{gateway.port}")
    finally:
        await gateway.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


class Poller:
    """GETs every named cluster in a loop and records every status code, until stopped."""

    def __init__(self, hosted: Hosted, names: list[str]) -> None:
        self.hosted, self.names = hosted, names
        self.codes: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with self.hosted.session() as client:
            while True:
                for name in self.names:
                    async with client.get(f"{BASE}/{name}") as resp:
                        await resp.read()
                        self.codes[resp.status] = self.codes.get(resp.status, 0) + 1
                await asyncio.sleep(0.02)

    async def __aenter__(self) -> Poller:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_hosting_api_down_at_start_up_means_not_ready_then_retries_with_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hosting = FakeKubeAPIServer(bookmark_interval=0.2)
    await hosting.start()  # takes a port, then goes down before the gateway starts
    add_cluster(hosting, "east")
    await hosting.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="gateway_apiserver.registry.informer"):
            async with hosted_gateway(tmp_path, hosting, wait_synced=False) as hosted, hosted.session(token=False) as anon:
                await asyncio.sleep(1.5)
                async with anon.get("/readyz?verbose") as resp:
                    assert resp.status == 500
                    assert "[-]cluster-registry-synced failed: the first list of cluster Secrets has not completed" in (
                        await resp.text()
                    )
                retries = [r for r in caplog.records if r.getMessage().startswith(f"secret informer: secrets in {NS}: ")]
                # Full-jitter backoff from 50 ms, capped at 400 ms: a handful of tries in 1.5 s, not a hot loop.
                assert 2 <= len(retries) <= 40, len(retries)
                assert hosted.informer.lists == 0

                await hosting.start()  # the hosting API is back
                await asyncio.wait_for(hosted.gateway.registry.synced.wait(), 10)

                async def ready() -> bool:
                    async with anon.get("/readyz") as resp:
                        return resp.status == 200 and await resp.text() == "ok"

                await eventually(ready)
                async with hosted.session() as client, client.get(f"{BASE}/east") as resp:
                    assert resp.status == 200
                    assert (await resp.json())["metadata"]["name"] == "east"
    finally:
        await hosting.stop()


async def test_a_hosting_api_restart_is_invisible_and_the_watch_resumes(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer
) -> None:
    add_cluster(kube_apiserver, "east")
    add_cluster(kube_apiserver, "west")
    async with hosted_gateway(tmp_path, kube_apiserver) as hosted:
        lists_before = hosted.informer.lists
        async with Poller(hosted, ["east", "west"]) as poller:
            await asyncio.sleep(0.3)  # the caller's token and access are reviewed (and cached) while the API is up
            await kube_apiserver.stop()
            await asyncio.sleep(1.5)  # an outage: the informer's watch is cut and its retries fail
            during = dict(poller.codes)
            await kube_apiserver.start()
            add_cluster(kube_apiserver, "north")  # a change made after the restart

            async def sees_north() -> bool:
                async with hosted.session() as client, client.get(f"{BASE}/north") as resp:
                    return resp.status == 200

            await eventually(sees_north)
        assert set(poller.codes) == {200}, poller.codes  # every GET, before, during and after the outage
        assert during[200] > 20
        # The history survived the restart: the informer resumed its watch instead of relisting.
        assert hosted.informer.lists == lists_before


async def test_410_gone_relists_without_dropping_a_cluster(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> None:
    add_cluster(kube_apiserver, "east")
    add_cluster(kube_apiserver, "west")
    async with hosted_gateway(tmp_path, kube_apiserver) as hosted, hosted.session() as client:
        async with client.get(BASE) as resp:
            rv = (await resp.json())["metadata"]["resourceVersion"]
        watch = await client.get(f"{BASE}?watch=1&resourceVersion={rv}&allowWatchBookmarks=false")
        assert watch.status == 200
        lists_before = hosted.informer.lists
        async with Poller(hosted, ["east", "west"]) as poller:
            # History lost past the informer's resourceVersion (a restart with a fresh watch
            # cache): its next watch gets 410 Gone and it relists. No cluster changed.
            await kube_apiserver.stop()
            kube_apiserver.create_secret(NS, "not-a-cluster", data={"x": "y"})  # moves the resourceVersion on
            kube_apiserver.compact()
            await kube_apiserver.start()
            await eventually(lambda: _at_least(hosted.informer.lists, lists_before + 1))
            assert hosted.gateway.registry.watcher_count == 1  # nothing changed: the client's watch goes on
            # The same, with a cluster created during the gap: the relist brings it.
            await kube_apiserver.stop()
            add_cluster(kube_apiserver, "late")
            kube_apiserver.compact()
            await kube_apiserver.start()
            await eventually(lambda: _at_least(hosted.informer.lists, lists_before + 2))
        assert set(poller.codes) == {200}, poller.codes
        events = []
        while line := await asyncio.wait_for(watch.content.readline(), 5):
            events.append(json.loads(line))
        watch.close()
        # A relist that changed something ends the client's watch (as the kube-apiserver's watch
        # cache does when it relists), so the client relists too; it never saw a DELETED.
        assert [e for e in events if e["type"] == "DELETED"] == []
        async with client.get(BASE) as resp:
            assert [i["metadata"]["name"] for i in (await resp.json())["items"]] == ["east", "late", "west"]


async def _at_least(value: int, minimum: int) -> bool:
    return value >= minimum
