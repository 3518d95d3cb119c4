"""Informer event lag: from an object's last write (its newest managedFields time) to the gateway applying the event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway_apiserver.registry.event_lag import EventLag, last_write_time
from tests.fakes.hosting import SECRET_NAMESPACE, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_rbac import with_ocm_component
from tests.fakes.proxying import eventually

pytestmark = pytest.mark.timeout(60)
LAG = "gateway_apiserver_informer_event_lag_seconds"
WATCH_DELAY = 2.0  # seconds the fake holds back every watch event


def entry(manager: str, time: object) -> dict[str, object]:
    return {"manager": manager, "operation": "Update", "apiVersion": "v1", "time": time, "fieldsType": "FieldsV1"}


def test_the_write_time_is_the_newest_managed_fields_time() -> None:
    obj = {"metadata": {"managedFields": [entry("a", "2026-12-03T10:00:05Z"), entry("b", "2026-12-03T10:00:09Z")]}}
    assert last_write_time(obj) == datetime(2026, 12, 3, 10, 0, 9, tzinfo=UTC)
    assert last_write_time({"metadata": {"name": "no-managed-fields"}}) is None
    assert last_write_time({"metadata": {"managedFields": [entry("a", None), entry("b", "not a time")]}}) is None


def test_lags_fill_cumulative_buckets_and_a_clock_behind_the_apiservers_counts_as_zero() -> None:
    lag = EventLag(buckets=(1.0, 2.0))
    written = {"metadata": {"managedFields": [entry("a", "2026-12-03T10:00:00Z")]}}
    at = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
    lag.observe_event(written, at + timedelta(seconds=1.5))
    lag.observe_event(written, at - timedelta(seconds=3))  # the gateway's clock is 3 s behind
    lag.observe_event({"metadata": {}}, at)  # says nothing of its write: not observed
    assert (lag.cumulative(), lag.count, lag.sum) == ([(1.0, 1), (2.0, 2), (float("inf"), 2)], 2, 1.5)


async def test_secret_and_managed_cluster_events_held_back_by_the_apiserver_show_at_least_that_lag(
    kube_apiserver: FakeKubeAPIServer, tmp_path: Path
) -> None:
    """Only watch events count (not the first listing, not deletions), each at least as late as the fake held it."""
    kube_apiserver.rbac = with_ocm_component()  # deploy/components/ocm: the gateway may list and watch ManagedClusters
    kube_apiserver.install_managed_cluster_crd()
    add_cluster(kube_apiserver, "listed", "https://listed.invalid:6443", token="t")
    kube_apiserver.watch_lag = WATCH_DELAY  # set before the gateway's watches open: they send no early bookmark
    async with hosting_gateway(tmp_path, kube_apiserver, always_allow_paths=("/metrics",)) as gw:
        add_cluster(kube_apiserver, "east", "https://east.invalid:6443", token="t")
        updated = kube_apiserver.update_secret(SECRET_NAMESPACE, "east", annotations={"note": "changed"})
        kube_apiserver.create_managed_cluster("mc1", url="https://mc1.invalid:6443")
        kube_apiserver.delete_secret(SECRET_NAMESPACE, "listed")
        registry, managed = gw.server.registry, gw.server.managed_clusters
        await eventually(
            lambda: (
                getattr(registry.lookup("east"), "resource_version", "") == updated["metadata"]["resourceVersion"]
                and registry.lookup("listed") is None
                and managed.get("mc1") is not None
            ),
            timeout=20,
        )
        async with gw.session() as client, client.get("/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == LAG]
    assert family.type == "histogram"
    samples = {(s.name.removeprefix(LAG), s.labels["resource"], s.labels.get("le", "")): s.value for s in family.samples}
    for resource, events in (("secrets", 2.0), ("managedclusters", 1.0)):  # east ADDED and MODIFIED; mc1 ADDED
        assert samples[("_count", resource, "")] == samples[("_bucket", resource, "+Inf")] == events
        # Every event was held back 2 s: none in the buckets up to 2 s, and at least 2 s each on average.
        assert samples[("_bucket", resource, "1.0")] == samples[("_bucket", resource, "2.0")] == 0.0
        assert samples[("_sum", resource, "")] >= WATCH_DELAY * events
