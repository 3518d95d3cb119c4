"""--hide-dangling-cluster-gateways: with --ocm-integration, a cluster whose ManagedCluster is missing is not served.

Hidden means what a deleted cluster means to clients: left out of lists, a DELETED event for watchers
when its ManagedCluster goes, ADDED when it comes back, and a GET answering 404 with why. While the
ManagedClusters cannot be read (not listed yet, no CRD, no permission), every cluster lacks one.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway_apiserver.base.status import StatusError
from gateway_apiserver.registry.cache import ChangeEvent, ClusterRegistry
from gateway_apiserver.registry.managed_clusters import ManagedClusterCache
from gateway_apiserver.registry.model import ClusterGateway
from gateway_apiserver.registry.virtual_clusters import VirtualClusterRegistry
from tests.fakes.ocm import managed_cluster
from tests.fakes.secrets import cluster_secret

HIDDEN = (
    'clustergateways.cluster.core.oam.dev "c1" not found: there is no ManagedCluster "c1", '
    "and --hide-dangling-cluster-gateways hides a cluster without one"
)


def mc(name: str, rv: int) -> dict[str, Any]:
    obj = managed_cluster(name, url=f"https://{name}.invalid")
    obj["metadata"]["resourceVersion"] = str(rv)
    return obj


def hiding(*, hide: bool = True) -> tuple[ClusterRegistry, ManagedClusterCache, list[ChangeEvent[ClusterGateway]]]:
    """Secrets c1 and c2, ManagedCluster c2 only; the registry's events from then on."""
    registry, managed = ClusterRegistry("vela-system"), ManagedClusterCache()
    registry.use_managed_clusters(managed, hide_dangling=hide)
    registry.replace([cluster_secret("c1", 3), cluster_secret("c2", 4)], "10")
    managed.replace([mc("c2", 11)], "11")
    events: list[ChangeEvent[ClusterGateway]] = []
    registry.add_listener(events.append)
    return registry, managed, events


def not_found_message(registry: ClusterRegistry, name: str = "c1") -> str:
    with pytest.raises(StatusError) as caught:
        registry.get(name)
    assert caught.value.code == 404
    return caught.value.message


def test_a_cluster_without_a_managed_cluster_is_not_listed_and_its_get_says_why() -> None:
    registry, _, _ = hiding()
    assert [gw.name for gw in registry.snapshot().items] == ["c2"]
    assert not_found_message(registry) == HIDDEN


def test_off_by_default_a_cluster_without_a_managed_cluster_is_served_from_its_secret() -> None:
    registry, _, _ = hiding(hide=False)
    assert [gw.name for gw in registry.snapshot().items] == ["c1", "c2"]


def test_its_managed_cluster_arriving_is_added_and_leaving_is_deleted() -> None:
    registry, managed, events = hiding()
    managed.apply("ADDED", mc("c1", 12))
    assert registry.get("c1").address == "https://c1.invalid"
    managed.apply("DELETED", mc("c1", 13))
    assert not_found_message(registry) == HIDDEN
    managed.apply("DELETED", mc("c2", 14))
    assert [(e.type, e.object.name if e.object else None, e.resource_version) for e in events] == [
        ("ADDED", "c1", 12),
        ("DELETED", "c1", 13),
        ("DELETED", "c2", 14),
    ]
    assert registry.snapshot().items == ()


def test_a_secret_change_of_a_hidden_cluster_stays_hidden_and_sends_nothing() -> None:
    registry, _, events = hiding()
    registry.apply("MODIFIED", cluster_secret("c1", 20, labels={"env": "prod"}))
    assert not_found_message(registry) == HIDDEN
    assert events == []


def test_before_the_managed_clusters_are_listed_and_while_they_cannot_be_read_every_cluster_is_hidden() -> None:
    registry, managed = ClusterRegistry("vela-system"), ManagedClusterCache()
    registry.use_managed_clusters(managed, hide_dangling=True)
    registry.replace([cluster_secret("c1", 3)], "10")
    assert registry.snapshot().items == ()
    assert not_found_message(registry) == (
        'clustergateways.cluster.core.oam.dev "c1" not found: the ManagedClusters are not listed yet, '
        "and --hide-dangling-cluster-gateways hides a cluster without one"
    )
    managed.replace([mc("c1", 11)], "11")
    assert registry.get("c1").name == "c1"
    managed.mark_unavailable()  # the CRD deleted, or the permission withdrawn
    assert not_found_message(registry) == (
        'clustergateways.cluster.core.oam.dev "c1" not found: this gateway cannot read ManagedClusters (the hosting '
        "cluster does not serve managedclusters.cluster.open-cluster-management.io, or refuses them to it), "
        "and --hide-dangling-cluster-gateways hides a cluster without one"
    )


async def test_the_virtual_cluster_of_a_hidden_cluster_is_gone_too_and_its_get_says_why() -> None:
    registry, managed, _ = hiding()
    virtual = VirtualClusterRegistry(registry, managed, with_control_plane=False)
    await virtual.start()
    assert [vc.name for vc in virtual.snapshot().items] == ["c2"]
    with pytest.raises(StatusError) as caught:
        virtual.get("c1")
    assert (caught.value.code, caught.value.message) == (
        404,
        'virtualclusters.cluster.core.oam.dev "c1" not found: there is no ManagedCluster "c1", '
        "and --hide-dangling-cluster-gateways hides a cluster without one",
    )
