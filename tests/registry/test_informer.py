"""SecretInformer against the fake kube-apiserver: sync, live events, 410, restarts, stalls, scale."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from gateway_apiserver.registry.informer import (
    CREDENTIAL_TYPE_LABEL,
    HostingConfigError,
    SecretInformer,
    load_hosting_config,
)
from gateway_apiserver.registry.source import Secret, WatchEventType
from tests.fakes.kube_apiserver import FakeKubeAPIServer

NS = "vela-system"
CLUSTER = {CREDENTIAL_TYPE_LABEL: "ServiceAccountToken"}
pytestmark = pytest.mark.timeout(30)


class RecordingSink:
    """A SecretSink that records every call and mirrors the state it implies."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.state: dict[str, Secret] = {}
        self.replaces: list[str] = []
        self.bookmarks: list[str] = []
        self._changed = asyncio.Event()

    def replace(self, secrets: Sequence[Secret], resource_version: str) -> None:
        self.calls.append(("replace", resource_version))
        self.replaces.append(resource_version)
        self.state = {s["metadata"]["name"]: s for s in secrets}
        self._changed.set()

    def apply(self, event_type: WatchEventType, secret: Secret) -> None:
        assert self.replaces, "apply before the first replace"
        name = secret["metadata"]["name"]
        self.calls.append((event_type, name))
        if event_type == "DELETED":
            self.state.pop(name, None)
        else:
            self.state[name] = secret
        self._changed.set()

    def bookmark(self, resource_version: str) -> None:
        self.calls.append(("BOOKMARK", resource_version))
        self.bookmarks.append(resource_version)
        self._changed.set()

    def names(self) -> list[str]:
        return sorted(self.state)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds: re-checked on every sink call, and every 20 ms."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.02)


@pytest.fixture
async def hosting(kube_apiserver: FakeKubeAPIServer, tmp_path: Path) -> Configuration:
    """The hosting-cluster configuration, loaded the way the gateway loads it."""
    return await load_hosting_config(str(kube_apiserver.write_kubeconfig(tmp_path / "kubeconfig")))


Runner = Callable[..., Any]


@pytest.fixture
async def run_informer(hosting: Configuration) -> AsyncIterator[Runner]:
    """Start informers with short timings; all are cancelled (and must end) at teardown."""
    tasks: list[asyncio.Task[None]] = []

    def start(sink: RecordingSink, **knobs: Any) -> SecretInformer:
        options: dict[str, Any] = {"watch_timeout": 30.0, "backoff_base": 0.05, "backoff_cap": 0.3, **knobs}
        informer = SecretInformer(options.pop("client", hosting), NS, **options)
        tasks.append(asyncio.create_task(informer.run(sink)))
        return informer

    yield start
    for task in tasks:
        task.cancel()
    async with asyncio.timeout(2):
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_list_then_live_events_and_bookmarks(
    kube_apiserver: FakeKubeAPIServer, run_informer: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kube_apiserver.create_secret(NS, "c1", labels=CLUSTER, data={"token": "t1-very-secret"})
    kube_apiserver.create_secret(NS, "plain")  # no credential-type label: not a cluster
    kube_apiserver.create_secret("elsewhere", "c9", labels=CLUSTER)
    sink = RecordingSink()
    run_informer(sink)
    await sink.wait_for(lambda: bool(sink.replaces))
    assert sink.calls[0] == ("replace", str(kube_apiserver.resource_version))
    assert sink.names() == ["c1"]
    kube_apiserver.create_secret(NS, "c2", labels=CLUSTER)
    kube_apiserver.update_secret(NS, "c1", data={"token": "t2-very-secret"})
    kube_apiserver.update_secret(NS, "plain", labels=CLUSTER)  # starts matching: ADDED
    kube_apiserver.delete_secret(NS, "c2")
    await sink.wait_for(lambda: len([c for c in sink.calls if c[0] != "BOOKMARK"]) == 5)
    assert [c for c in sink.calls if c[0] != "BOOKMARK"][1:] == [
        ("ADDED", "c2"),
        ("MODIFIED", "c1"),
        ("ADDED", "plain"),
        ("DELETED", "c2"),
    ]
    assert sink.state["c1"]["data"]["token"] == base64.b64encode(b"t2-very-secret").decode()
    await sink.wait_for(lambda: str(kube_apiserver.resource_version) in sink.bookmarks)
    assert kube_apiserver.list_requests == 1
    assert "very-secret" not in caplog.text and "dmVyeS1zZWNyZXQ" not in caplog.text


async def test_watch_end_rewatches_without_relist(kube_apiserver: FakeKubeAPIServer, run_informer: Runner) -> None:
    sink = RecordingSink()
    informer = run_informer(sink, watch_timeout=1.0)  # timeoutSeconds of 1 s
    await sink.wait_for(lambda: bool(sink.replaces))
    await sink.wait_for(lambda: informer.watches >= 3, timeout=6)  # each watch ends after 1-1.2 s
    kube_apiserver.create_secret(NS, "late", labels=CLUSTER)
    await sink.wait_for(lambda: "late" in sink.state)
    assert kube_apiserver.list_requests == 1
    watch_queries = [parse_qs(urlsplit(r.split(" ", 1)[1]).query) for r in kube_apiserver.requests if "watch=" in r]
    rvs = [int(q["resourceVersion"][0]) for q in watch_queries]  # always resumed from a real RV
    assert len(rvs) >= 3 and rvs == sorted(rvs) and rvs[0] > 0
    assert all(q["allowWatchBookmarks"] == ["True"] and q["timeoutSeconds"] == ["1"] for q in watch_queries)


async def test_compaction_and_drop_relists(kube_apiserver: FakeKubeAPIServer, run_informer: Runner) -> None:
    kube_apiserver.create_secret(NS, "old", labels=CLUSTER)
    sink = RecordingSink()
    run_informer(sink)
    await sink.wait_for(lambda: bool(sink.replaces))
    # All synchronous: the informer resumes from an RV that is already compacted away.
    kube_apiserver.drop_watches()
    kube_apiserver.delete_secret(NS, "old")
    kube_apiserver.create_secret(NS, "new", labels=CLUSTER)
    kube_apiserver.compact()
    await sink.wait_for(lambda: len(sink.replaces) == 2)
    assert sink.names() == ["new"]
    assert sink.replaces[1] == str(kube_apiserver.resource_version)
    assert kube_apiserver.list_requests == 2
    kube_apiserver.create_secret(NS, "after", labels=CLUSTER)
    await sink.wait_for(lambda: "after" in sink.state)


async def test_restart_catches_up_by_watch(
    kube_apiserver: FakeKubeAPIServer, run_informer: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    kube_apiserver.create_secret(NS, "a", labels=CLUSTER)
    kube_apiserver.create_secret(NS, "b", labels=CLUSTER)
    sink = RecordingSink()
    informer = run_informer(sink)
    await sink.wait_for(lambda: bool(sink.replaces))
    await kube_apiserver.stop()
    kube_apiserver.delete_secret(NS, "a")
    kube_apiserver.update_secret(NS, "b", annotations={"x": "y"})
    kube_apiserver.create_secret(NS, "c", labels=CLUSTER)
    await asyncio.sleep(0.3)  # the informer meets refused connections meanwhile
    await kube_apiserver.start()
    await sink.wait_for(lambda: sink.names() == ["b", "c"])
    assert sink.state["b"]["metadata"]["annotations"] == {"x": "y"}
    assert kube_apiserver.list_requests == 1 and len(sink.replaces) == 1  # resumed, no relist
    assert informer.resource_version == str(kube_apiserver.resource_version)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.endswith("informer")]
    assert warnings and all("\n" not in r.getMessage() for r in warnings)


async def test_restart_with_lost_history_relists(kube_apiserver: FakeKubeAPIServer, run_informer: Runner) -> None:
    kube_apiserver.create_secret(NS, "a", labels=CLUSTER)
    sink = RecordingSink()
    run_informer(sink)
    await sink.wait_for(lambda: bool(sink.replaces))
    await kube_apiserver.stop()
    kube_apiserver.delete_secret(NS, "a")
    kube_apiserver.create_secret(NS, "b", labels=CLUSTER)
    await kube_apiserver.restart(compact=True)
    await sink.wait_for(lambda: len(sink.replaces) == 2)
    assert sink.names() == ["b"]


async def test_server_errors_back_off_then_resume(kube_apiserver: FakeKubeAPIServer, run_informer: Runner) -> None:
    sink = RecordingSink()
    informer = run_informer(sink)
    await sink.wait_for(lambda: bool(sink.bookmarks))  # the first watch is streaming
    kube_apiserver.inject_failure(500, count=3, when=FakeKubeAPIServer.is_watch)
    kube_apiserver.drop_watches()
    kube_apiserver.create_secret(NS, "during", labels=CLUSTER)
    await sink.wait_for(lambda: "during" in sink.state)
    assert informer.watches == 5 and kube_apiserver.list_requests == 1


async def test_error_event_backs_off_and_resumes(
    kube_apiserver: FakeKubeAPIServer, run_informer: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    informer = run_informer(sink)
    await sink.wait_for(lambda: bool(sink.bookmarks))
    kube_apiserver.inject_watch_error(500, "InternalError", "etcd watch failed")
    kube_apiserver.drop_watches()
    kube_apiserver.create_secret(NS, "after", labels=CLUSTER)
    await sink.wait_for(lambda: "after" in sink.state)
    assert informer.watches == 3 and kube_apiserver.list_requests == 1  # resumed from its RV, no relist
    assert any("etcd watch failed" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_expired_continue_token_restarts_the_list(kube_apiserver: FakeKubeAPIServer, run_informer: Runner) -> None:
    for i in range(5):
        kube_apiserver.create_secret(NS, f"c{i}", labels=CLUSTER)
    compacted = False

    def compact_once(request: Any) -> bool:
        # Between the first and second page: a write, then a compaction past the list's snapshot.
        nonlocal compacted
        if "continue" in request.query and not compacted:
            compacted = True
            kube_apiserver.create_secret(NS, "c5", labels=CLUSTER)
            kube_apiserver.compact()
        return False

    kube_apiserver.inject_failure(when=compact_once)
    sink = RecordingSink()
    run_informer(sink, page_size=2)
    await sink.wait_for(lambda: bool(sink.replaces))
    assert compacted and len(sink.replaces) == 1
    assert sink.names() == [f"c{i}" for i in range(6)]
    assert kube_apiserver.list_requests == 2 + 3  # two pages, 410, then a full list of three pages


async def test_inactivity_timeout_reconnects(
    kube_apiserver: FakeKubeAPIServer, run_informer: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    informer = run_informer(sink, inactivity_timeout=0.6)
    await sink.wait_for(lambda: bool(sink.replaces))
    await asyncio.sleep(0.8)  # bookmarks every 0.2 s keep a healthy stream alive
    assert informer.watches == 1
    kube_apiserver.hang_watches = True  # answer nothing at all, not even headers
    kube_apiserver.drop_watches()
    await sink.wait_for(lambda: informer.watches >= 3, timeout=4)
    kube_apiserver.hang_watches = False
    kube_apiserver.bookmark_interval = None  # headers sent, then silence
    kube_apiserver.drop_watches()
    watches = informer.watches
    await sink.wait_for(lambda: informer.watches >= watches + 2, timeout=4)
    assert any("no watch events" in r.getMessage() for r in caplog.records)
    kube_apiserver.create_secret(NS, "x", labels=CLUSTER)
    await sink.wait_for(lambda: "x" in sink.state)
    assert kube_apiserver.list_requests == 1


async def test_ten_thousand_secrets_paginated(kube_apiserver: FakeKubeAPIServer, run_informer: Runner) -> None:
    for i in range(10_000):
        kube_apiserver.create_secret(NS, f"cluster-{i:05d}", labels=CLUSTER, data={"endpoint": "https://x"})
    kube_apiserver.create_secret(NS, "not-a-cluster")
    sink = RecordingSink()
    run_informer(sink)
    await sink.wait_for(lambda: bool(sink.replaces), timeout=20)
    assert len(sink.state) == 10_000 and "not-a-cluster" not in sink.state
    assert kube_apiserver.list_requests == 20  # pages of 500
    assert sum("limit=500" in r for r in kube_apiserver.requests) == 20


async def test_cancellation_closes_everything(kube_apiserver: FakeKubeAPIServer, hosting: Configuration) -> None:
    clients: list[ApiClient] = []

    def factory() -> ApiClient:
        clients.append(ApiClient(hosting))
        return clients[-1]

    sink = RecordingSink()
    task = asyncio.create_task(SecretInformer(factory, NS).run(sink))
    await sink.wait_for(lambda: bool(sink.replaces))
    await sink.wait_for(lambda: kube_apiserver.open_watches == 1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2.0  # at once, not after the open watch's server timeout (300 s)
    assert len(clients) == 1 and clients[0].rest_client.pool_manager.closed
    # The connection really closed: the server's watch handler ends, and then nothing is left running.
    await sink.wait_for(lambda: kube_apiserver.open_watches == 0, timeout=2)
    await asyncio.sleep(0.05)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []


async def test_cancellation_during_backoff(kube_apiserver: FakeKubeAPIServer, hosting: Configuration) -> None:
    await kube_apiserver.stop()
    sink = RecordingSink()
    task = asyncio.create_task(SecretInformer(hosting, NS, backoff_base=10, backoff_cap=10).run(sink))
    await asyncio.sleep(0.3)
    task.cancel()
    async with asyncio.timeout(1):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sink.calls == []


async def test_load_hosting_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(HostingConfigError) as err:
        await load_hosting_config(None)
    assert "\n" not in str(err.value) and "--kubeconfig" in str(err.value)
    with pytest.raises(HostingConfigError) as err:
        await load_hosting_config(str(tmp_path / "missing"))
    assert "\n" not in str(err.value) and "missing" in str(err.value)
