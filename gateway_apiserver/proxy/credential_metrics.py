"""`gateway_apiserver_cluster_exec_credential_expiry_timestamp_seconds{cluster}`, read at scrape time.

An exec plugin's credential is known only once the proxy has run the plugin, so this series covers
the Dynamic clusters used since the gateway started, with the expiry of the credential it holds.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .credentials import ExecCredentialProvider
from .transport import TransportPool


class ExecCredentialExpiryCollector(Collector):
    """One sample per cluster whose cached exec credential has an expiry."""

    def __init__(self, pool: TransportPool) -> None:
        self._pool = pool

    def collect(self) -> Iterable[Metric]:
        """The pool's transports at scrape time."""
        expiry = GaugeMetricFamily(
            "gateway_apiserver_cluster_exec_credential_expiry_timestamp_seconds",
            "When the exec plugin credential the gateway holds for a Dynamic cluster expires (Unix time)",
            labels=["cluster"],
        )
        for transport in self._pool.transports():
            provider = transport.credentials
            if isinstance(provider, ExecCredentialProvider) and provider.expires_at is not None:
                expiry.add_metric([transport.name], provider.expires_at.timestamp())
        return [expiry]
