"""The built-in health prober: every interval, GET each member's /readyz (else /healthz) and /version.

It reaches members exactly as the proxy does, through the pooled transport and with the cluster's
own credential, so a probe's verdict is the proxy's. A semaphore bounds the probes in flight: a
thousand clusters never open a thousand connections at once. Results go to the registry, which
shows them as `status.healthy`, `status.healthyReason`, `status.lastProbeTime` and
`status.kubernetesVersion` (a change is a MODIFIED event). Reasons never carry a body or a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from yarl import URL

from ..app_keys import REGISTRY
from ..base.status import StatusError
from ..observability.metrics import METRICS
from ..registry.cache import ClusterRegistry
from ..registry.model import ClusterGateway, EndpointType
from ..registry.observed_health import (
    CERTIFICATE_MISMATCH,
    CONNECTION_TIMEOUT,
    PROBE_FAILED_PREFIX,
    UNAUTHORIZED,
    UNKNOWN_PREFIX,
    ProbeResult,
)
from .credentials import CredentialError
from .handler import TRANSPORT_POOL
from .transport import ClusterTransport, TransportPool
from .upstream_errors import UPSTREAM_ERRORS, describe_failure

log = logging.getLogger(__name__)

READINESS_PATHS = ("/readyz", "/healthz")  # /healthz for members too old (or too locked down) for /readyz
_FALL_BACK_ON = frozenset({403, 404})
_VERSION_LIMIT = 64 * 1024  # /version is a few hundred bytes; a larger answer is not read


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """When and how hard to probe. `interval` 0 turns probing off."""

    interval: float = 15.0
    timeout: float = 5.0
    concurrency: int = 32
    jitter: float = 0.2  # each round starts after interval * (1 +- jitter), so replicas do not probe in step


class HealthProber:
    """Probes every Const-endpoint cluster of the registry (and ClusterProxy ones when the gateway has a
    Konnectivity proxy-server), `settings.concurrency` at a time."""

    def __init__(
        self,
        registry: ClusterRegistry,
        pool: TransportPool,
        settings: ProbeSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        observe: Callable[[float, bool], None] | None = None,
    ) -> None:
        self.registry = registry
        self._observe = observe  # (seconds, healthy) of each probe, for /metrics
        self.pool = pool
        self.settings = settings
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.concurrency)
        self.in_flight = 0
        self.max_in_flight = 0  # the most probes ever in flight at once (tests and metrics)

    async def run(self) -> None:
        """Probe round after round until cancelled; nothing at all when the interval is 0."""
        if self.settings.interval <= 0:
            return
        await self.registry.synced.wait()
        while True:
            await self.probe_all()
            spread = 1 + random.uniform(-self.settings.jitter, self.settings.jitter)
            await asyncio.sleep(self.settings.interval * spread)

    async def probe_all(self) -> None:
        """One round: every cluster probed once (bounded), each result recorded as it arrives."""
        tunnels = self.pool.settings.konnectivity is not None  # ClusterProxy clusters are reachable (--proxy-host)
        clusters = [c for c in self.registry.snapshot().items if c.endpoint_type is EndpointType.CONST or tunnels]
        await asyncio.gather(*(self._probe_and_record(cluster) for cluster in clusters))

    async def _probe_and_record(self, cluster: ClusterGateway) -> None:
        async with self._slots:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            started = time.monotonic()
            try:
                result = await self.probe(cluster)
                if self._observe is not None:
                    self._observe(time.monotonic() - started, result.healthy)
            except Exception:  # a prober bug must not end the rounds; it is logged, the cluster unjudged
                log.exception("probing cluster %s failed", cluster.name)
                return
            finally:
                self.in_flight -= 1
        before = self.registry.lookup(cluster.name)
        self.registry.record_probe(cluster.name, result)
        after = self.registry.lookup(cluster.name)
        if before is not None and after is not None and before.healthy != after.healthy:
            shown = "healthy" if after.healthy else f"unhealthy: {after.healthy_reason}"
            log.info("cluster %s is %s (probed at %s)", cluster.name, shown, after.last_probe_time)

    async def probe(self, cluster: ClusterGateway) -> ProbeResult:
        """Probe one cluster now."""
        try:
            transport = self.pool.get(cluster)
        except StatusError as exc:
            return self._result(False, UNKNOWN_PREFIX + exc.message)
        with transport.track():
            try:
                async with asyncio.timeout(self.settings.timeout):
                    return await self._probe(transport)
            except TimeoutError:
                return self._result(False, CONNECTION_TIMEOUT)

    async def _probe(self, transport: ClusterTransport) -> ProbeResult:
        try:
            credential, ssl_context = await transport.authenticate()
        except CredentialError as exc:
            return self._result(False, f"{UNKNOWN_PREFIX}the cluster has no usable credential: {exc}")
        headers = {"Accept": "application/json, */*", "User-Agent": "gateway-apiserver-health-probe", **credential.headers()}
        status = 0
        try:
            for path in READINESS_PATHS:
                status = await self._status_of(transport, path, headers, ssl_context)
                if status not in _FALL_BACK_ON:
                    break
            if status == 200:
                return self._result(True, "", await self._version(transport, headers, ssl_context))
        except UPSTREAM_ERRORS as exc:
            return self._result(False, _failure_reason(transport, exc))
        if status == 401:
            transport.credentials.invalidate(credential)  # as the proxy does: the next probe gets a fresh one
            return self._result(False, UNAUTHORIZED)
        return self._result(False, f"{PROBE_FAILED_PREFIX}{status}")

    async def _status_of(
        self, transport: ClusterTransport, path: str, headers: dict[str, str], ssl_context: ssl.SSLContext | bool
    ) -> int:
        async with transport.session.get(
            _join(transport, path),
            headers=headers,
            ssl=ssl_context,
            allow_redirects=False,
            proxy=transport.proxy,
            proxy_headers=transport.proxy_headers,
        ) as response:
            await response.content.read(1024)  # the body is never used: a little is drained, the rest is dropped
            return response.status

    async def _version(
        self, transport: ClusterTransport, headers: dict[str, str], ssl_context: ssl.SSLContext | bool
    ) -> str | None:
        """The member's gitVersion, or None when /version does not say (a probe is not failed for it)."""
        with contextlib.suppress(*UPSTREAM_ERRORS, ValueError):
            async with transport.session.get(
                _join(transport, "/version"),
                headers=headers,
                ssl=ssl_context,
                allow_redirects=False,
                proxy=transport.proxy,
                proxy_headers=transport.proxy_headers,
            ) as response:
                if response.status != 200:
                    return None
                body = json.loads(await response.content.read(_VERSION_LIMIT))
                version = body.get("gitVersion") if isinstance(body, dict) else None
                return version[:64] if isinstance(version, str) and version.isprintable() else None
        return None

    def _result(self, healthy: bool, reason: str, version: str | None = None) -> ProbeResult:
        return ProbeResult(healthy, " ".join(reason.split())[:256], self._clock(), version)


def _join(transport: ClusterTransport, path: str) -> URL:
    """`path` under the member's base URL (an endpoint may carry a path prefix)."""
    return transport.base_url.with_path(transport.base_url.path.rstrip("/") + path)


def _failure_reason(transport: ClusterTransport, exc: BaseException) -> str:
    """The reference's reason for a failure to get an answer, else Unknown: and our one-line description."""
    if isinstance(exc, TimeoutError):
        return CONNECTION_TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return CERTIFICATE_MISMATCH
    return UNKNOWN_PREFIX + describe_failure(transport.hop(transport.base_url), exc).message


def add_health_probing(app: web.Application, settings: ProbeSettings) -> None:
    """Run a HealthProber over app[REGISTRY] and app[TRANSPORT_POOL] for the application's lifetime."""

    async def run(app: web.Application) -> AsyncIterator[None]:
        metrics = app.get(METRICS)
        observe = None if metrics is None else metrics.observe_probe
        prober = HealthProber(app[REGISTRY], app[TRANSPORT_POOL], settings, observe=observe)
        app[HEALTH_PROBER] = prober
        task = asyncio.create_task(prober.run(), name="health-prober")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(run)


HEALTH_PROBER = web.AppKey("health_prober", HealthProber)
