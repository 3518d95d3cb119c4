"""Which health a ClusterGateway shows: the newer of the built-in prober's result and a `health` write.

The prober's results reach the registry through `record_probe`; a write arrives as the Secret's
annotations (with the write's time when our gateway made it). A change of what clients see is a
MODIFIED event at a resourceVersion above every one served; a probe that finds nothing new is none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway_apiserver.registry.cache import ClusterRegistry
from gateway_apiserver.registry.observed_health import Observation, ProbeResult, newest
from tests.fakes.secrets import cluster_secret

T0 = datetime(2026, 12, 3, 17, 0, 0, tzinfo=UTC)
HEALTHY = "status.cluster.core.oam.dev/healthy"
REASON = "status.cluster.core.oam.dev/healthy-reason"
WRITTEN_AT = "status.cluster.core.oam.dev/healthy-time"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def written(healthy: bool, reason: str, when: datetime | None) -> dict[str, str]:
    annotations = {HEALTHY: "true" if healthy else "false", REASON: reason}
    if when is not None:
        annotations[WRITTEN_AT] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return annotations


def registry_with(*secrets: dict[str, Any], now: datetime = T0) -> ClusterRegistry:
    registry = ClusterRegistry("vela-system")
    registry.clock = lambda: now
    registry.replace(list(secrets), "10")
    return registry


def status(registry: ClusterRegistry, name: str = "c1") -> Any:
    return registry.get(name).manifest["status"]


def test_the_newer_observation_decides_and_a_tie_goes_to_the_write() -> None:
    write = Observation(True, "Probed", at(10), "write")
    older_probe, newer_probe = Observation(False, "X", at(5), "probe"), Observation(False, "X", at(15), "probe")
    assert newest(write, older_probe) is write
    assert newest(write, newer_probe) is newer_probe
    assert newest(write, Observation(False, "X", at(10), "probe")) is write
    assert newest(None, older_probe) is older_probe
    assert newest(write, None) is write
    assert newest(None, None) is None


async def test_a_probe_result_shows_in_status_with_its_time_and_the_members_version() -> None:
    registry = registry_with(cluster_secret("c1", 3))
    assert status(registry) == {"healthy": False}
    registry.record_probe("c1", ProbeResult(True, "", at(1), "v1.32.0"))
    assert status(registry) == {"healthy": True, "lastProbeTime": "2026-12-03T17:00:01Z", "kubernetesVersion": "v1.32.0"}
    registry.record_probe("c1", ProbeResult(False, "ConnectionTimeout", at(2)))
    # Unreachable: the version last learnt stays.
    assert status(registry) == {
        "healthy": False,
        "healthyReason": "ConnectionTimeout",
        "lastProbeTime": "2026-12-03T17:00:02Z",
        "kubernetesVersion": "v1.32.0",
    }


async def test_a_change_is_a_modified_event_and_a_probe_finding_nothing_new_is_none() -> None:
    registry = registry_with(cluster_secret("c1", 3))
    watcher = registry.watch(10)
    registry.record_probe("c1", ProbeResult(True, "", at(1), "v1.32.0"))
    registry.record_probe("c1", ProbeResult(True, "", at(2), "v1.32.0"))  # nothing new: no event
    registry.record_probe("c1", ProbeResult(False, "ConnectionTimeout", at(3), None))
    registry.record_probe("c1", ProbeResult(True, "", at(4), "v1.32.0"))
    events = watcher.drain()
    assert [(e.type, e.resource_version, e.object.healthy if e.object else None) for e in events] == [
        ("MODIFIED", 11, True),
        ("MODIFIED", 12, False),
        ("MODIFIED", 13, True),
    ]
    # Each object carries its event's version, and the time of the probe that changed it.
    assert [e.object.resource_version for e in events if e.object] == ["11", "12", "13"]
    assert [e.object.manifest["status"]["lastProbeTime"] for e in events if e.object] == [
        "2026-12-03T17:00:01Z",
        "2026-12-03T17:00:03Z",
        "2026-12-03T17:00:04Z",
    ]
    assert registry.resource_version == 13


async def test_a_later_secret_event_with_an_older_revision_still_gets_a_newer_version() -> None:
    registry = registry_with(cluster_secret("c1", 3))
    watcher = registry.watch(10)
    registry.record_probe("c1", ProbeResult(True, "", at(1), "v1.32.0"))
    registry.apply("MODIFIED", cluster_secret("c1", 11, labels={"env": "prod"}))  # the informer's revision 11
    events = watcher.drain()
    assert [(e.type, e.resource_version) for e in events] == [("MODIFIED", 11), ("MODIFIED", 12)]
    assert events[1].object is not None and events[1].object.healthy  # the probe's verdict survives the Secret's change


async def test_a_write_newer_than_the_last_probe_wins_until_a_newer_probe() -> None:
    registry = registry_with(cluster_secret("c1", 3))
    registry.record_probe("c1", ProbeResult(False, "ConnectionTimeout", at(1)))
    registry.apply("MODIFIED", cluster_secret("c1", 11, annotations=written(True, "Probed", at(5))))
    assert status(registry) == {"healthy": True, "healthyReason": "Probed", "lastProbeTime": "2026-12-03T17:00:01Z"}
    assert registry.health_observation("c1") == Observation(True, "Probed", at(5), "write")
    registry.record_probe("c1", ProbeResult(False, "ConnectionTimeout", at(4)))  # taken before the write: it loses
    assert status(registry)["healthy"] is True
    registry.record_probe("c1", ProbeResult(False, "ConnectionTimeout", at(6)))
    assert status(registry) == {"healthy": False, "healthyReason": "ConnectionTimeout", "lastProbeTime": "2026-12-03T17:00:06Z"}
    assert registry.health_observation("c1") == Observation(False, "ConnectionTimeout", at(6), "probe")


async def test_a_write_without_a_time_counts_from_when_the_gateway_first_saw_it() -> None:
    registry = registry_with(cluster_secret("c1", 3, annotations=written(False, "ClusterGatewayNotRegistered", None)))
    assert registry.health_observation("c1") == Observation(False, "ClusterGatewayNotRegistered", T0, "write")
    registry.record_probe("c1", ProbeResult(True, "", at(1), "v1"))
    assert status(registry)["healthy"] is True
    # The same write delivered again (another Secret change) keeps its first-seen time: the probe still wins.
    registry.clock = lambda: at(9)
    registry.apply("MODIFIED", cluster_secret("c1", 12, annotations=written(False, "ClusterGatewayNotRegistered", None)))
    assert status(registry)["healthy"] is True
    # A different write is new: seen at 9, after the probe at 1.
    registry.apply("MODIFIED", cluster_secret("c1", 13, annotations=written(False, "ConnectionTimeout", None)))
    assert registry.health_observation("c1") == Observation(False, "ConnectionTimeout", at(9), "write")
    assert status(registry)["healthy"] is False


async def test_results_of_deleted_clusters_are_dropped_and_not_recorded() -> None:
    registry = registry_with(cluster_secret("c1", 3))
    registry.record_probe("c1", ProbeResult(True, "", at(1), "v1"))
    registry.apply("DELETED", cluster_secret("c1", 11))
    registry.record_probe("c1", ProbeResult(True, "", at(2), "v1"))  # a probe that was in flight
    assert registry.health_observation("c1") is None
    registry.apply("ADDED", cluster_secret("c1", 12))
    assert status(registry) == {"healthy": False}
