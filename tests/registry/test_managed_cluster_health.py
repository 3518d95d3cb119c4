"""With --ocm-integration, the ManagedCluster's `ManagedClusterConditionAvailable` is a third health observer.

The rule stays one line: the newest observation wins. The condition's time is its lastTransitionTime
(when OCM last changed its mind, not its lease renewals), never later than when the gateway first saw
it; on a tie a write wins over the condition, and the condition over a probe. So a condition that
disagrees with the gateway's own probes shows until the next probe, and then never again until OCM
changes its mind: the shown health cannot alternate while no observer changes its verdict.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway_apiserver.registry.cache import ChangeEvent, ClusterRegistry
from gateway_apiserver.registry.managed_clusters import Availability, ManagedClusterCache
from gateway_apiserver.registry.model import ClusterGateway
from gateway_apiserver.registry.observed_health import Observation, ProbeResult, condition_observation, newest
from tests.fakes.ocm import managed_cluster
from tests.fakes.secrets import cluster_secret

T0 = datetime(2026, 12, 3, 17, 0, 0, tzinfo=UTC)
LEASE_STOPPED = "ManagedClusterLeaseUpdateStopped"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def mc(rv: int, status: str | None, reason: str = "", since: datetime | None = T0, **extra: Any) -> dict[str, Any]:
    """ManagedCluster c1 with its Available condition (none when `status` is None) and any other status fields."""
    conditions = []
    if status is not None:
        condition = {"type": "ManagedClusterConditionAvailable", "status": status, "reason": reason, "message": "m"}
        if since is not None:
            condition["lastTransitionTime"] = rfc3339(since)
        conditions.append(condition)
    obj = managed_cluster("c1", url="https://c1.invalid", status={"conditions": conditions, **extra})
    obj["metadata"]["resourceVersion"] = str(rv)
    return obj


def ocm_registry(now: datetime = T0) -> tuple[ClusterRegistry, ManagedClusterCache, list[ChangeEvent[ClusterGateway]]]:
    """A registry with --ocm-integration over Secret c1, its ManagedCluster cache listed empty, and its events."""
    registry, managed = ClusterRegistry("vela-system"), ManagedClusterCache()
    registry.clock = lambda: now
    registry.use_managed_clusters(managed)
    registry.replace([cluster_secret("c1", 3)], "10")
    managed.replace([], "10")
    events: list[ChangeEvent[ClusterGateway]] = []
    registry.add_listener(events.append)
    return registry, managed, events


def status(registry: ClusterRegistry) -> Any:
    return registry.get("c1").manifest["status"]


def shown(events: list[ChangeEvent[ClusterGateway]]) -> list[tuple[str, bool, str]]:
    return [(e.type, e.object.healthy, e.object.healthy_reason) for e in events if e.object is not None]


# --- the pure rule ---------------------------------------------------------------------------------


def test_the_newest_of_three_decides_and_a_tie_goes_to_the_write_then_the_condition() -> None:
    write, condition, probe = (Observation(True, "", at(5), kind) for kind in ("write", "managed-cluster", "probe"))
    assert newest(probe, condition, write) is write
    assert newest(probe, condition) is condition
    later_probe, later_condition = Observation(False, "X", at(6), "probe"), Observation(False, "X", at(6), "managed-cluster")
    assert newest(later_probe, condition, write) is later_probe
    assert newest(later_condition, write) is later_condition
    assert newest(None, None, None) is None


def test_the_conditions_time_is_its_last_transition_time_but_never_after_it_was_first_seen() -> None:
    lost = Availability("Unknown", LEASE_STOPPED, rfc3339(at(10)))
    assert condition_observation(lost, first_seen=at(12)) == Observation(False, LEASE_STOPPED, at(10), "managed-cluster")
    # A member or hub clock ahead: the condition counts from when this gateway first saw it.
    assert condition_observation(lost, first_seen=at(7)).at == at(7)
    assert condition_observation(Availability("True", "ManagedClusterAvailable"), first_seen=at(3)) == (
        Observation(True, "", at(3), "managed-cluster")
    )
    assert condition_observation(Availability("False", "", "not a time"), first_seen=at(4)) == (
        Observation(False, "ManagedClusterConditionAvailable is False", at(4), "managed-cluster")
    )


@given(
    condition_healthy=st.booleans(),
    transition=st.integers(min_value=0, max_value=100),
    probe_healthy=st.booleans(),
    first_probe=st.integers(min_value=0, max_value=100),
    probes=st.integers(min_value=1, max_value=20),
)
def test_while_no_observer_changes_its_verdict_the_shown_health_changes_at_most_once(
    condition_healthy: bool, transition: int, probe_healthy: bool, first_probe: int, probes: int
) -> None:
    """A condition that stays as it is and a prober repeating one verdict every 15 s: whatever the order,
    the decided verdict settles on the first probe not older than the condition and stays there."""
    condition = condition_observation(
        Availability("True" if condition_healthy else "False", "R", rfc3339(at(transition))), at(200)
    )
    verdicts = [newest(condition, ProbeResult(probe_healthy, "", at(first_probe + 15 * i)).observation()) for i in range(probes)]
    decided = [(v.healthy, v.source) for v in verdicts if v is not None]
    changes = sum(1 for before, after in itertools.pairwise(decided) if before != after)
    assert changes <= 1
    assert decided[-1] == (
        (probe_healthy, "probe") if first_probe + 15 * (probes - 1) > transition else (condition_healthy, "managed-cluster")
    )


# --- in the registry -------------------------------------------------------------------------------


def test_without_probes_the_condition_decides_and_each_transition_is_one_modified_event() -> None:
    registry, managed, events = ocm_registry(now=at(60))
    managed.apply("ADDED", mc(11, "True", "ManagedClusterAvailable", since=at(1)))
    assert status(registry) == {"healthy": True}
    managed.apply("MODIFIED", mc(12, "Unknown", LEASE_STOPPED, since=at(50)))
    assert status(registry) == {"healthy": False, "healthyReason": LEASE_STOPPED}
    assert registry.health_observation("c1") == Observation(False, LEASE_STOPPED, at(50), "managed-cluster")
    # The same verdict again, with other status fields changed (version, message): no event.
    managed.apply("MODIFIED", mc(13, "Unknown", LEASE_STOPPED, since=at(50), version={"kubernetes": "v1.32"}))
    assert shown(events) == [("MODIFIED", True, ""), ("MODIFIED", False, LEASE_STOPPED)]
    assert [e.resource_version for e in events] == [11, 12]


def test_the_gateways_own_newer_probe_wins_and_a_later_transition_wins_until_the_next_probe() -> None:
    registry, managed, events = ocm_registry(now=at(100))
    managed.apply("ADDED", mc(11, "False", "ManagedClusterKubeAPIServerUnavailable", since=at(10)))
    registry.record_probe("c1", ProbeResult(True, "", at(20), "v1.32.0"))  # the gateway reaches it
    registry.record_probe("c1", ProbeResult(True, "", at(35), "v1.32.0"))  # nothing new: no event
    assert status(registry) == {"healthy": True, "lastProbeTime": "2026-12-03T17:00:20Z", "kubernetesVersion": "v1.32.0"}
    managed.apply("MODIFIED", mc(12, "Unknown", LEASE_STOPPED, since=at(40)))  # OCM changes its mind after the probe
    assert status(registry)["healthyReason"] == LEASE_STOPPED
    registry.record_probe("c1", ProbeResult(True, "", at(50), "v1.32.0"))
    assert status(registry)["healthy"] is True
    assert shown(events) == [
        ("MODIFIED", False, "ManagedClusterKubeAPIServerUnavailable"),
        ("MODIFIED", True, ""),
        ("MODIFIED", False, LEASE_STOPPED),
        ("MODIFIED", True, ""),
    ]


def test_a_write_newer_than_the_condition_wins_and_the_condition_leaving_hands_back_to_the_write() -> None:
    registry, managed, _ = ocm_registry(now=at(100))
    managed.apply("ADDED", mc(11, "Unknown", LEASE_STOPPED, since=at(10)))
    write = {
        "status.cluster.core.oam.dev/healthy": "true",
        "status.cluster.core.oam.dev/healthy-reason": "SuccessfullyProbedHealthz",
        "status.cluster.core.oam.dev/healthy-time": at(20).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    registry.apply("MODIFIED", cluster_secret("c1", 12, annotations=write))
    assert status(registry) == {"healthy": True, "healthyReason": "SuccessfullyProbedHealthz"}
    managed.apply("MODIFIED", mc(13, "Unknown", LEASE_STOPPED, since=at(30)))
    assert status(registry) == {"healthy": False, "healthyReason": LEASE_STOPPED}
    managed.apply("MODIFIED", mc(14, None))  # the hub dropped the condition: the write is all there is
    assert status(registry) == {"healthy": True, "healthyReason": "SuccessfullyProbedHealthz"}
    assert registry.health_observation("c1") == Observation(True, "SuccessfullyProbedHealthz", at(20), "write")


def test_a_condition_from_a_clock_ahead_loses_to_the_next_probe() -> None:
    registry, managed, _ = ocm_registry(now=at(10))
    managed.apply("ADDED", mc(11, "False", "ManagedClusterKubeAPIServerUnavailable", since=at(3600)))  # an hour ahead
    assert registry.health_observation("c1") == Observation(
        False, "ManagedClusterKubeAPIServerUnavailable", at(10), "managed-cluster"
    )
    registry.clock = lambda: at(30)  # the same condition delivered again later keeps its first-seen time
    managed.apply("MODIFIED", mc(12, "False", "ManagedClusterKubeAPIServerUnavailable", since=at(3600), version={}))
    registry.record_probe("c1", ProbeResult(True, "", at(20)))
    assert status(registry)["healthy"] is True


def test_without_ocm_integration_the_condition_is_not_read() -> None:
    registry = ClusterRegistry("vela-system")
    registry.replace([cluster_secret("c1", 3)], "10")
    managed = ManagedClusterCache()  # VirtualCluster's cache: the registry does not follow it
    managed.replace([mc(11, "True", "ManagedClusterAvailable")], "11")
    assert status(registry) == {"healthy": False}
    assert registry.health_observation("c1") is None


def test_a_deleted_cluster_forgets_its_condition() -> None:
    registry, managed, _ = ocm_registry(now=at(100))
    managed.apply("ADDED", mc(11, "True", "ManagedClusterAvailable", since=at(10)))
    registry.apply("DELETED", cluster_secret("c1", 12))
    assert registry.health_observation("c1") is None
