"""Series computed at scrape time from the cluster registry: each cluster's health and credential expiry,
relists, and the informers' event lag (counted by the registry and the ManagedCluster cache).

Nothing here runs on the proxy's hot path; a scrape reads the registry's current snapshot. The
certificate's expiry is parsed once per cluster object and kept in its render cache.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..registry.cache import ClusterRegistry
from ..registry.event_lag import EventLag
from ..registry.managed_clusters import ManagedClusterCache
from ..registry.model import ClusterGateway


def certificate_expiry(gw: ClusterGateway) -> float | None:
    """The Unix time the cluster's client certificate expires, for X509Certificate clusters; else None."""
    pem = gw.credential.client_certificate_pem
    if not pem:
        return None
    cached: float | None = gw.render_cache.get("certificate-expiry")
    if cached is None:
        try:
            cached = x509.load_pem_x509_certificate(pem).not_valid_after_utc.timestamp()
        except ValueError:  # conversion checked the PEM; a bad one is simply not reported
            return None
        gw.render_cache["certificate-expiry"] = cached
    return cached


class ClusterStateCollector(Collector):
    """`gateway_apiserver_cluster_healthy{cluster}`,
    `gateway_apiserver_cluster_certificate_expiry_timestamp_seconds{cluster}` and
    `gateway_apiserver_secret_relists_total` and `gateway_apiserver_informer_event_lag_seconds{resource}`."""

    def __init__(self, registry: ClusterRegistry, managed_clusters: ManagedClusterCache | None = None) -> None:
        self._registry = registry
        self._managed_clusters = managed_clusters

    def collect(self) -> Iterable[Metric]:
        """One sample per cluster (the registry's snapshot at scrape time)."""
        healthy = GaugeMetricFamily(
            "gateway_apiserver_cluster_healthy",
            "1 when the cluster's status.healthy is true (probed or written through the health subresource), else 0",
            labels=["cluster"],
        )
        expiry = GaugeMetricFamily(
            "gateway_apiserver_cluster_certificate_expiry_timestamp_seconds",
            "When the client certificate of an X509Certificate cluster expires (Unix time)",
            labels=["cluster"],
        )
        for gw in self._registry.snapshot().items:
            healthy.add_metric([gw.name], 1.0 if gw.healthy else 0.0)
            not_after = certificate_expiry(gw)
            if not_after is not None:
                expiry.add_metric([gw.name], not_after)
        relists = CounterMetricFamily(
            "gateway_apiserver_secret_relists",
            "Full listings of the cluster Secrets after the first (after a 410 Gone or a lost watch)",
            value=self._registry.relists,
        )
        lag = HistogramMetricFamily(
            "gateway_apiserver_informer_event_lag_seconds",
            "Time from an object's last write in the hosting cluster (its newest metadata.managedFields time, whole "
            "seconds: up to 1 s more than the true lag) to the gateway applying its ADDED or MODIFIED watch event "
            "(0 when the gateway's clock is behind), by resource",
            labels=["resource"],
        )
        _add_lag(lag, "secrets", self._registry.event_lag)
        if self._managed_clusters is not None:
            _add_lag(lag, "managedclusters", self._managed_clusters.event_lag)
        return [healthy, expiry, relists, lag]


def _add_lag(family: HistogramMetricFamily, resource: str, lag: EventLag) -> None:
    # `le` as prometheus_client's own histograms write it ("1.0", "+Inf").
    buckets = [("+Inf" if bound == float("inf") else repr(bound), float(count)) for bound, count in lag.cumulative()]
    family.add_metric([resource], buckets, sum_value=lag.sum)
