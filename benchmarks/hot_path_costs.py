"""The suite's `costs` section, in-process half: each optional part of the proxy's request path timed around a
handler that does nothing, so the part's own CPU shows without a network or a busy machine's noise.

  metrics      GatewayMetrics.instrument_proxy (every series a proxied GET updates) and the prepare hook that
               remembers the response for its byte count
  log_context  the request_context middleware (sets and resets the context variable log lines read)
  fail_fast    FailFast.admit for a cluster the prober found healthy (HealthinessCheck=true)

Bare and wrapped calls alternate in rounds; each part's cost is the median of its rounds minus the median of
the bare handler's, in CPU microseconds per request.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gateway_apiserver.observability import metrics
from gateway_apiserver.observability.logs import request_context
from gateway_apiserver.proxy.fail_fast import FailFast
from gateway_apiserver.registry.cache import ClusterRegistry
from gateway_apiserver.registry.observed_health import ProbeResult
from tests.fakes.secrets import cluster_secret

PROXIED = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/m1/proxy/api/v1/namespaces/default"
Call = Callable[[], Awaitable[object]]


async def _cpu_us(call: Call, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        await call()
    return (time.process_time() - start) / n * 1e6


async def measure(n: int = 20_000, rounds: int = 7) -> dict[str, float]:
    """CPU µs per request that each part adds to a bare handler."""
    answer = web.Response()
    request = make_mocked_request("GET", PROXIED, match_info={"name": "m1", "path": "api/v1/namespaces/default"})

    async def bare(request: web.Request) -> web.StreamResponse:
        return answer

    async def answered(request: web.Request) -> web.StreamResponse:
        await metrics._remember_prepared(request, answer)  # what aiohttp's prepare hook does when metrics are on
        return answer

    instrumented = metrics.GatewayMetrics().instrument_proxy(answered, lambda request: "m1")
    registry = ClusterRegistry("vela-system")
    registry.replace([cluster_secret("m1")], "1")
    registry.record_probe("m1", ProbeResult(True, "", datetime.now(UTC)))
    fail_fast = FailFast(registry.health_observation, 10.0)

    async def gated() -> web.StreamResponse:
        fail_fast.admit("m1")
        return await bare(request)

    calls: dict[str, Call] = {
        "bare": lambda: bare(request),
        "metrics": lambda: instrumented(request),
        "log_context": lambda: request_context(request, bare),
        "fail_fast": gated,
    }
    for call in calls.values():  # warm up: caches, labelled series
        await _cpu_us(call, 1000)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            times[name].append(await _cpu_us(call, n))
    base = statistics.median(times["bare"])
    return {name: round(statistics.median(t) - base, 2) for name, t in times.items() if name != "bare"}


if __name__ == "__main__":
    print(asyncio.run(measure()))
