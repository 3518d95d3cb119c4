"""ClusterRegistry with --ocm-integration: a ManagedCluster change converts that one cluster again."""

from __future__ import annotations

from typing import Any

from gateway_apiserver.registry.cache import ChangeEvent, ClusterRegistry
from gateway_apiserver.registry.managed_clusters import ManagedClusterCache
from gateway_apiserver.registry.model import ClusterGateway
from tests.fakes.ocm import managed_cluster
from tests.fakes.secrets import cluster_secret


def mc(name: str, rv: int, url: str | None = None) -> dict[str, Any]:
    obj = managed_cluster(name, url=url)
    obj["metadata"]["resourceVersion"] = str(rv)
    return obj


def follow(registry: ClusterRegistry) -> list[ChangeEvent[ClusterGateway]]:
    events: list[ChangeEvent[ClusterGateway]] = []
    registry.add_listener(events.append)
    return events


def seen(events: list[ChangeEvent[ClusterGateway]]) -> list[tuple[str, str | None, str | None, int]]:
    return [
        (e.type, e.object.address if e.object else None, e.object.resource_version if e.object else None, e.resource_version)
        for e in events
    ]


def setup(*secrets: dict[str, Any]) -> tuple[ClusterRegistry, ManagedClusterCache, list[ChangeEvent[ClusterGateway]]]:
    registry, managed = ClusterRegistry("vela-system"), ManagedClusterCache()
    registry.use_managed_clusters(managed)
    registry.replace(list(secrets), "10")
    return registry, managed, follow(registry)


def test_a_managed_cluster_change_is_one_modified_event_at_a_new_version() -> None:
    registry, managed, events = setup(cluster_secret("c1", 3, endpoint="https://a.invalid"), cluster_secret("c2", 4))
    managed.replace([], "11")
    managed.apply("ADDED", mc("c1", 12, "https://b.invalid"))
    assert seen(events) == [("MODIFIED", "https://b.invalid", "12", 12)]
    assert registry.get("c1").address == "https://b.invalid" and registry.resource_version == 12
    registry.bookmark("20")  # the Secret stream moved on meanwhile, and watchers were told so
    managed.apply("MODIFIED", mc("c1", 15, "https://c.invalid"))
    # After everything served: a client resuming from the bookmark's 20 must still see this change.
    assert seen(events)[1:] == [("MODIFIED", "https://c.invalid", "21", 21)]


def test_a_change_that_changes_nothing_served_is_no_event_and_a_relist_keeps_the_version() -> None:
    registry, managed, events = setup(cluster_secret("c1", 3))
    managed.replace([mc("c1", 12, "https://b.invalid")], "12")
    managed.apply("MODIFIED", {**mc("c1", 13, "https://b.invalid"), "status": {"version": {"kubernetes": "v1.32"}}})
    registry.replace([cluster_secret("c1", 3)], "14")  # a relist of the same Secret
    assert seen(events) == [("MODIFIED", "https://b.invalid", "12", 12)]
    assert registry.get("c1").resource_version == "12"


def test_losing_the_client_config_deletes_the_cluster_and_regaining_it_adds_it() -> None:
    registry, managed, events = setup(cluster_secret("c1", 3))
    managed.replace([mc("c1", 12)], "12")
    managed.apply("MODIFIED", mc("c1", 13, "https://b.invalid"))
    assert [(e.type, e.resource_version) for e in events] == [("DELETED", 12), ("ADDED", 13)]
    assert registry.get("c1").address == "https://b.invalid"


def test_the_managed_cluster_api_going_away_falls_back_to_the_secret() -> None:
    registry, managed, events = setup(cluster_secret("c1", 3, endpoint="https://a.invalid"))
    managed.replace([mc("c1", 12, "https://b.invalid")], "12")
    managed.mark_unavailable()
    assert [e.type for e in events] == ["MODIFIED", "MODIFIED"]
    assert registry.get("c1").address == "https://a.invalid"


def test_a_managed_cluster_without_a_secret_is_no_cluster_here() -> None:
    registry, managed, events = setup()
    managed.replace([mc("lonely", 12, "https://b.invalid")], "12")
    assert events == [] and registry.snapshot().items == ()


def test_a_deleted_secret_is_deleted_as_last_served_with_its_managed_cluster_endpoint() -> None:
    registry, managed, events = setup(cluster_secret("c1", 3, endpoint="https://a.invalid"))
    managed.replace([mc("c1", 12, "https://b.invalid")], "12")
    registry.apply("DELETED", cluster_secret("c1", 14, endpoint="https://a.invalid"))
    assert seen(events)[-1] == ("DELETED", "https://b.invalid", "14", 14)


def test_a_lagging_copy_of_an_unchanged_secret_is_no_event() -> None:
    """The Secret stream delivering, late, the Secret as it already is changes nothing clients see."""
    secret = cluster_secret("c1", 3, endpoint="https://a.invalid")
    registry, managed, events = setup(secret)
    managed.replace([mc("c1", 12, "https://b.invalid")], "12")
    assert seen(events) == [("MODIFIED", "https://b.invalid", "12", 12)]
    registry.apply("MODIFIED", secret)  # resourceVersion 3, content unchanged
    assert seen(events) == [("MODIFIED", "https://b.invalid", "12", 12)]
    assert registry.get("c1").resource_version == "12"
