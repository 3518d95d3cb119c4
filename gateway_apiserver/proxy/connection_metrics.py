"""`gateway_apiserver_upstream_connections{cluster,state}`: the TCP connections held open to each member, at scrape time.

`state="idle"`: pooled keep-alive connections waiting for the next request. `state="active"`:
pooled connections carrying a request now (a watch holds one for as long as it lasts), plus the
member connection of each upgrade tunnel (exec, attach, port-forward), which bypasses the pool and
is counted from its dial until it closes. Each count sums the aiohttp session's connections and those
of the fast path's raw HTTP/1.1 pools (proxy/http1). Both samples appear for every cluster the gateway
has a transport for (one used since it started, or one still closing after its Secret changed), and
leave with it. Nothing here runs on the request path.

The pool's counts are read from aiohttp's connector, which has no public API for them (the
internals are named in `pooled_connections`, checked against aiohttp 3.14). Should a later aiohttp
lay them out differently, the series is left out (and a warning logged once) rather than failing the scrape.

With --workers N, each worker holds its own connections: it publishes its counts every
PUBLISH_INTERVAL seconds (observability/worker_snapshots.py), and a scrape reports the scraped
worker's live counts plus the other workers' latest published ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiohttp import web
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..observability import worker_snapshots
from .transport import TransportPool

log = logging.getLogger(__name__)

SERIES = "gateway_apiserver_upstream_connections"
PUBLISH_INTERVAL = 5.0  # seconds: how stale another worker's counts may be in a scrape
Counts = dict[str, list[float]]  # cluster -> [idle, active]


def _open(protocol: Any) -> bool:
    # A connection whose socket is still open; aiohttp's placeholder for a connection being dialled has none.
    transport = getattr(protocol, "transport", None)
    return transport is not None and not transport.is_closing()


def pooled_connections(connector: Any) -> tuple[int, int] | None:
    """(idle, active) open connections of an aiohttp TCPConnector; None if its internals are not as expected.

    aiohttp 3.14 keeps idle connections in `_conns` (a dict of deques of (protocol, time) pairs, one per
    host key) and the connections handed to requests in the set `_acquired`.
    """
    try:
        if connector.closed:
            return 0, 0
        idle = sum(1 for pool in connector._conns.values() for protocol, _ in pool if _open(protocol))
        active = sum(1 for protocol in connector._acquired if _open(protocol))
    except (AttributeError, TypeError, ValueError):
        return None
    return idle, active


class UpstreamConnectionsCollector(Collector):
    """Each cluster's idle and active member connections, from the transport pool at scrape time."""

    def __init__(self, pool: TransportPool, workers_directory: str | None = None) -> None:
        self._pool = pool
        self._workers_directory = workers_directory  # set under --workers: add the other workers' counts
        self._unreadable_logged = False

    def counts(self) -> Counts:
        """This process's connections: cluster -> [idle, active]."""
        counts: Counts = {}
        for transport in self._pool.open_transports():
            pooled = pooled_connections(getattr(getattr(transport, "session", None), "connector", None))
            if pooled is None:  # half a count would mislead: the cluster has no series
                if not self._unreadable_logged:
                    self._unreadable_logged = True
                    log.warning("this aiohttp's connection pool cannot be read: upstream connections go unreported")
                continue
            idle, active = pooled
            for fast in transport.http1_pools():  # the fast path's raw HTTP/1.1 connections
                idle += fast.idle
                active += fast.active
            samples = counts.setdefault(transport.name, [0.0, 0.0])
            samples[0] += idle
            samples[1] += active + getattr(transport, "tunnels", 0)
        return counts

    def collect(self) -> Iterable[Metric]:
        """One idle and one active sample per cluster (summed over the workers under --workers)."""
        counts = self.counts()
        if self._workers_directory is not None:
            for other in worker_snapshots.others(self._workers_directory, SERIES):
                for cluster, samples in other.items():
                    mine = counts.setdefault(cluster, [0.0, 0.0])
                    for i, value in enumerate(samples[:2]):
                        mine[i] += value
        family = GaugeMetricFamily(
            SERIES,
            "TCP connections the gateway holds open to each member cluster: idle in the keep-alive pool, "
            "or active (carrying a request, a watch or an exec/attach/port-forward tunnel)",
            labels=["cluster", "state"],
        )
        for cluster in sorted(counts):
            idle, active = counts[cluster]
            family.add_metric([cluster, "idle"], idle)
            family.add_metric([cluster, "active"], active)
        return [family]

    async def publishing(self, app: web.Application) -> AsyncIterator[None]:
        """A cleanup context (under --workers): publish this worker's counts for the others' scrapes while it runs."""
        directory = self._workers_directory
        if directory is None:
            yield
            return

        async def publish_periodically() -> None:
            while True:
                try:
                    worker_snapshots.publish(directory, SERIES, self.counts())
                except OSError as exc:  # a full disk must not stop the worker; the next round tries again
                    log.warning("could not publish upstream connection counts: %s", exc)
                await asyncio.sleep(PUBLISH_INTERVAL)

        task = asyncio.create_task(publish_periodically(), name="publish-upstream-connections")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        worker_snapshots.snapshot_file(directory, SERIES, os.getpid()).unlink(missing_ok=True)
