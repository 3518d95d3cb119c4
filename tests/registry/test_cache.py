"""ClusterRegistry: the cache, its watch history, and how Secret changes become ClusterGateway events."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gateway_apiserver.base.status import StatusError
from gateway_apiserver.registry.cache import ChangeEvent, ClusterRegistry


def secret(
    name: str, rv: int, *, endpoint: str = "https://m:6443", env: str = "prod", cred: str = "ServiceAccountToken"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "vela-system",
            "uid": f"uid-{name}",
            "resourceVersion": str(rv),
            "labels": {"cluster.core.oam.dev/cluster-credential-type": cred, "env": env},
        },
        "data": {"endpoint": base64.b64encode(endpoint.encode()).decode(), "token": base64.b64encode(b"t").decode()},
    }


def names(registry: ClusterRegistry) -> list[str]:
    return [gw.name for gw in registry.snapshot().items]


def kinds(events: list[ChangeEvent[Any]]) -> list[tuple[str, str | None, int]]:
    return [(e.type, e.object.name if e.object else None, e.resource_version) for e in events]


async def test_not_synced_until_the_first_listing() -> None:
    registry = ClusterRegistry("vela-system")
    assert not registry.synced.is_set()
    registry.replace([secret("b", 2), secret("a", 1)], "5")
    assert registry.synced.is_set()
    assert names(registry) == ["a", "b"]
    assert registry.resource_version == 5


async def test_invalid_secret_is_skipped_in_lists_and_named_on_get(caplog: pytest.LogCaptureFixture) -> None:
    registry = ClusterRegistry("vela-system")
    registry.replace([secret("good", 1), secret("bad", 2, cred="Kerberos")], "2")
    assert names(registry) == ["good"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "skipping Secret vela-system/bad: unknown credential type 'Kerberos' in label "
        "cluster.core.oam.dev/cluster-credential-type (want one of ServiceAccountToken, X509Certificate, Dynamic)"
    ]
    with pytest.raises(StatusError) as err:
        registry.get("bad")
    assert (err.value.code, err.value.reason) == (404, "NotFound")
    assert "Secret vela-system/bad cannot be converted: unknown credential type 'Kerberos'" in err.value.message
    with pytest.raises(StatusError) as missing:
        registry.get("nope")
    assert (missing.value.code, missing.value.reason) == (404, "NotFound")
    assert missing.value.message == 'clustergateways.cluster.core.oam.dev "nope" not found'


async def test_live_events_reach_watchers_in_order() -> None:
    registry = ClusterRegistry("vela-system")
    registry.replace([secret("a", 1)], "1")
    watcher = registry.watch(since=1)
    registry.apply("ADDED", secret("b", 2))
    registry.apply("MODIFIED", secret("a", 3, env="dev"))
    registry.apply("DELETED", secret("b", 4))
    events = watcher.drain()
    assert kinds(events) == [("ADDED", "b", 2), ("MODIFIED", "a", 3), ("DELETED", "b", 4)]
    assert events[1].previous is not None and events[1].previous.labels["env"] == "prod"
    assert events[2].object is not None and events[2].object.resource_version == "4"
    assert names(registry) == ["a"]


async def test_watch_from_zero_starts_with_the_current_state() -> None:
    registry = ClusterRegistry("vela-system")
    registry.replace([secret("a", 1), secret("b", 2)], "7")
    assert kinds(registry.watch(since=None).drain()) == [("ADDED", "a", 7), ("ADDED", "b", 7)]


async def test_resume_from_a_resource_version_replays_what_followed() -> None:
    registry = ClusterRegistry("vela-system")
    registry.replace([], "1")
    for rv, name in ((2, "a"), (3, "b"), (4, "c")):
        registry.apply("ADDED", secret(name, rv))
    assert kinds(registry.watch(since=3).drain()) == [("ADDED", "c", 4)]
    assert kinds(registry.watch(since=1).drain()) == [("ADDED", "a", 2), ("ADDED", "b", 3), ("ADDED", "c", 4)]


async def test_too_old_resource_version_is_410_expired() -> None:
    registry = ClusterRegistry("vela-system", history_size=2)
    registry.replace([], "10")
    for rv in (11, 12, 13):
        registry.apply("ADDED", secret(f"c{rv}", rv))
    with pytest.raises(StatusError) as err:
        registry.watch(since=10)
    assert (err.value.code, err.value.reason) == (410, "Expired")
    assert err.value.message == "too old resource version: 10 (11)"
    assert kinds(registry.watch(since=11).drain()) == [("ADDED", "c12", 12), ("ADDED", "c13", 13)]


async def test_secret_turning_invalid_is_deleted_and_back_is_added() -> None:
    registry = ClusterRegistry("vela-system")
    registry.replace([secret("a", 1)], "1")
    watcher = registry.watch(since=1)
    registry.apply("MODIFIED", secret("a", 2, endpoint="ftp://nope"))
    registry.apply("MODIFIED", secret("a", 3))
    assert kinds(watcher.drain()) == [("DELETED", "a", 2), ("ADDED", "a", 3)]


async def test_changes_to_invalid_secrets_are_not_events() -> None:
    registry = ClusterRegistry("vela-system")
    registry.replace([], "1")
    watcher = registry.watch(since=1)
    registry.apply("ADDED", secret("bad", 2, cred="Nope"))
    registry.apply("DELETED", secret("bad", 3, cred="Nope"))
    assert watcher.drain() == []
    assert registry.resource_version == 3


async def test_a_changed_relist_ends_watches_and_old_resource_versions_expire() -> None:
    registry = ClusterRegistry("vela-system")
    registry.replace([secret("a", 1)], "1")
    watcher = registry.watch(since=1)
    registry.replace([secret("a", 1), secret("b", 9)], "10")
    assert watcher.terminated
    assert registry.watcher_count == 0
    with pytest.raises(StatusError) as err:
        registry.watch(since=1)
    assert (err.value.code, err.value.reason) == (410, "Expired")
    assert names(registry) == ["a", "b"]


async def test_an_unchanged_relist_keeps_watches() -> None:
    registry = ClusterRegistry("vela-system")
    registry.replace([secret("a", 1)], "1")
    watcher = registry.watch(since=1)
    registry.replace([secret("a", 1)], "20")
    assert not watcher.terminated
    assert registry.resource_version == 20


async def test_bookmarks_advance_the_resource_version_and_reach_watchers() -> None:
    registry = ClusterRegistry("vela-system")
    registry.replace([], "1")
    watcher = registry.watch(since=1)
    registry.bookmark("50")
    assert registry.resource_version == 50
    assert kinds(watcher.drain()) == [("BOOKMARK", None, 50)]


async def test_a_watcher_that_falls_behind_is_terminated() -> None:
    registry = ClusterRegistry("vela-system", watcher_queue_size=2)
    registry.replace([], "1")
    watcher = registry.watch(since=1)
    for rv in (2, 3, 4):
        registry.apply("ADDED", secret(f"c{rv}", rv))
    assert watcher.terminated
    assert len(watcher.drain()) == 2


async def test_paginated_listings_are_remembered_by_resource_version() -> None:
    registry = ClusterRegistry("vela-system")
    registry.replace([secret("a", 1)], "1")
    first = registry.snapshot()
    registry.remember(first)
    registry.apply("ADDED", secret("b", 2))
    old = registry.snapshot_at(1)
    assert old is not None and [gw.name for gw in old.items] == ["a"]
    assert registry.snapshot_at(999) is None


async def test_listeners_hear_every_change() -> None:
    registry = ClusterRegistry("vela-system")
    heard: list[str] = []
    registry.add_listener(lambda e: heard.append(f"{e.type}:{e.object.name if e.object else ''}"))
    registry.replace([secret("a", 1)], "1")
    registry.apply("DELETED", secret("a", 2))
    assert heard == ["ADDED:a", "DELETED:a"]
