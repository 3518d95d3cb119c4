"""ManagedClusterSource against the fake hosting kube-apiserver: discovery first, then list+watch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import Configuration

from gateway_apiserver.registry.informer import load_hosting_config
from gateway_apiserver.registry.managed_cluster_source import DISCOVERY_PATH, ManagedClusterSource, ready_check
from gateway_apiserver.registry.managed_clusters import ManagedClusterCache
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_rbac import with_ocm_component
from tests.fakes.ocm import MANAGED_CLUSTERS_PATH

pytestmark = pytest.mark.timeout(20)
Runner = Callable[..., tuple[ManagedClusterSource, ManagedClusterCache]]


@pytest.fixture
async def run_source(kube_apiserver: FakeKubeAPIServer, tmp_path: Path) -> AsyncIterator[Runner]:
    """Start sources (as the gateway's identity, with the OCM component's RBAC) and stop them at teardown."""
    kube_apiserver.rbac = with_ocm_component()
    config: Configuration = await load_hosting_config(str(kube_apiserver.write_kubeconfig(tmp_path / "kubeconfig")))
    tasks: list[asyncio.Task[None]] = []

    def run(**options: Any) -> tuple[ManagedClusterSource, ManagedClusterCache]:
        source, cache = ManagedClusterSource(config, discovery_interval=0.1, backoff_base=0.05, **options), ManagedClusterCache()
        tasks.append(asyncio.create_task(source.run(cache)))
        return source, cache

    yield run
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    assert predicate()


async def test_without_the_api_it_is_unavailable_at_once_and_asks_discovery_again_and_again(
    kube_apiserver: FakeKubeAPIServer, run_source: Runner
) -> None:
    source, cache = run_source()
    await asyncio.wait_for(cache.synced.wait(), 5)
    assert cache.available is False and cache.items() == []
    await until(lambda: source.discoveries >= 3)
    assert kube_apiserver.list_requests == 0 and kube_apiserver.watch_requests == 0
    kube_apiserver.install_managed_cluster_crd()
    kube_apiserver.create_managed_cluster("east", url="https://east.invalid")
    await until(lambda: cache.get("east") is not None)
    assert cache.available is True


async def test_it_lists_then_follows_the_watch_and_relists_after_a_compaction(
    kube_apiserver: FakeKubeAPIServer, run_source: Runner
) -> None:
    kube_apiserver.install_managed_cluster_crd()
    kube_apiserver.create_managed_cluster("east", url="https://east.invalid")
    source, cache = run_source()
    await until(lambda: cache.get("east") is not None)
    kube_apiserver.update_managed_cluster("east", url="https://moved.invalid")
    await until(
        lambda: (
            (mc := cache.get("east")) is not None
            and mc.client_config is not None
            and mc.client_config.url == "https://moved.invalid"
        )
    )
    assert source.informer.lists == 1  # by watch, not by listing again
    kube_apiserver.compact()
    kube_apiserver.drop_watches()
    kube_apiserver.create_managed_cluster("west", url="https://west.invalid")
    await until(lambda: cache.get("west") is not None)
    assert [mc.name for mc in cache.items()] == ["east", "west"]


async def test_a_failed_discovery_is_retried_and_warned_without_the_body(
    kube_apiserver: FakeKubeAPIServer, run_source: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    kube_apiserver.install_managed_cluster_crd()
    kube_apiserver.create_managed_cluster("east", url="https://east.invalid")
    kube_apiserver.inject_failure(503, count=2, when=lambda request: request.path == DISCOVERY_PATH)
    caplog.set_level(logging.WARNING)
    _, cache = run_source()
    await until(lambda: cache.get("east") is not None)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"cannot discover {DISCOVERY_PATH}: HTTP 503; ManagedClusters are ignored until it answers"] * 2


async def test_with_watch_off_it_lists_every_refresh_interval_and_never_watches(
    kube_apiserver: FakeKubeAPIServer, run_source: Runner
) -> None:
    kube_apiserver.install_managed_cluster_crd()
    _, cache = run_source(watch=False, refresh_interval=0.1)
    await asyncio.wait_for(cache.synced.wait(), 5)
    kube_apiserver.create_managed_cluster("east", url="https://east.invalid")
    await until(lambda: cache.get("east") is not None, timeout=2)
    kube_apiserver.inject_failure(500, when=lambda request: request.path == MANAGED_CLUSTERS_PATH)
    await until(lambda: kube_apiserver.list_requests >= 4, timeout=2)
    assert cache.get("east") is not None  # a failed LIST keeps the last listing
    assert kube_apiserver.watch_requests == 0


async def test_the_ready_check_waits_for_the_first_answer_or_the_timeout() -> None:
    waiting, answered = ManagedClusterCache(), ManagedClusterCache()
    check_waiting, check_answered = ready_check(waiting, 0.2), ready_check(answered, 60)
    assert check_waiting() == check_answered() == "the first list of ManagedClusters has not completed"
    answered.mark_unavailable()  # "not served" is an answer too
    assert check_answered() is None
    await asyncio.sleep(0.25)
    assert check_waiting() is None  # never waited on forever
