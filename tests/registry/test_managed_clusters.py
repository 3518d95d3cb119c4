"""ManagedCluster model and cache: what VirtualCluster and --ocm-integration read."""

from __future__ import annotations

import base64

from gateway_apiserver.registry.managed_clusters import (
    Availability,
    ClientConfig,
    ManagedClusterCache,
    ManagedClusterChange,
    managed_cluster_from_object,
)


def managed_cluster(name: str, rv: str, url: str | None = "https://10.0.0.1:6443", **spec: object) -> dict[str, object]:
    configs = [{"url": url, "caBundle": base64.b64encode(b"PEM").decode()}] if url else []
    return {
        "apiVersion": "cluster.open-cluster-management.io/v1",
        "kind": "ManagedCluster",
        "metadata": {"name": name, "resourceVersion": rv, "labels": {"env": "prod"}},
        "spec": {"hubAcceptsClient": True, "managedClusterClientConfigs": configs, **spec},
    }


def test_the_first_client_config_gives_url_and_decoded_ca() -> None:
    mc = managed_cluster_from_object(managed_cluster("east", "5"))
    assert mc.client_config == ClientConfig("https://10.0.0.1:6443", b"PEM")
    assert mc.hub_accepts_client is True
    assert mc.labels == {"env": "prod"}


def test_a_ca_bundle_that_is_not_base64_is_named_not_raised() -> None:
    obj = managed_cluster("east", "5")
    obj["spec"]["managedClusterClientConfigs"][0]["caBundle"] = "%%%"  # type: ignore[index]
    config = managed_cluster_from_object(obj).client_config
    assert config is not None and config.ca_bundle is None
    assert config.ca_bundle_problem == "spec.managedClusterClientConfigs[0].caBundle is not valid base64"


def test_the_available_condition_is_read_by_its_status_reason_and_transition_time_only() -> None:
    def available(*conditions: object) -> Availability | None:
        return managed_cluster_from_object({**managed_cluster("east", "5"), "status": {"conditions": list(conditions)}}).available

    joined = {"type": "ManagedClusterJoined", "status": "True", "reason": "ManagedClusterJoined"}
    lost = {"type": "ManagedClusterConditionAvailable", "status": "Unknown", "reason": "ManagedClusterLeaseUpdateStopped"}
    assert available(joined, {**lost, "message": "no lease for 5m", "lastTransitionTime": "2026-12-03T10:00:00Z"}) == (
        Availability("Unknown", "ManagedClusterLeaseUpdateStopped", "2026-12-03T10:00:00Z")
    )
    assert available(joined) is None
    assert available({"type": "ManagedClusterConditionAvailable", "status": 1, "reason": None}) == Availability("Unknown", "")
    assert managed_cluster_from_object({**managed_cluster("east", "5"), "status": "garbage"}).available is None


def test_the_verdict_is_healthy_only_when_true_and_otherwise_names_the_reason_or_the_status() -> None:
    assert Availability("True", "ManagedClusterAvailable").verdict() == (True, "")
    assert Availability("False", "ManagedClusterKubeAPIServerUnavailable").verdict() == (
        False,
        "ManagedClusterKubeAPIServerUnavailable",
    )
    assert Availability("Unknown", "ManagedClusterLeaseUpdateStopped").verdict() == (False, "ManagedClusterLeaseUpdateStopped")
    assert Availability("Unknown", "").verdict() == (False, "ManagedClusterConditionAvailable is Unknown")


def test_no_client_config_and_no_acceptance_read_as_absent() -> None:
    mc = managed_cluster_from_object(managed_cluster("east", "5", url=None, hubAcceptsClient="yes"))
    assert mc.client_config is None
    assert mc.hub_accepts_client is False


def test_the_cache_tells_listeners_of_each_change_and_is_synced_when_the_api_is_absent() -> None:
    cache = ManagedClusterCache()
    seen: list[ManagedClusterChange] = []
    cache.add_listener(seen.append)
    cache.replace([managed_cluster("east", "5"), managed_cluster("west", "6")], "7")
    assert [(c.name, c.old, c.new is not None) for c in seen] == [("east", None, True), ("west", None, True)]
    assert cache.synced.is_set() and cache.available and cache.resource_version == 7
    seen.clear()
    cache.apply("MODIFIED", managed_cluster("east", "9", url="https://10.0.0.2:6443"))
    cache.apply("DELETED", managed_cluster("west", "10"))
    assert [(c.name, c.resource_version) for c in seen] == [("east", 9), ("west", 10)]
    assert cache.get("west") is None
    east = cache.get("east")
    assert east is not None and east.client_config is not None and east.client_config.url == "https://10.0.0.2:6443"
    seen.clear()
    cache.mark_unavailable()
    assert [(c.name, c.new) for c in seen] == [("east", None)]
    assert cache.items() == [] and not cache.available and cache.synced.is_set()
