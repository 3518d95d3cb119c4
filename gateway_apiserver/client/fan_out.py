"""One call across many member clusters, concurrently and bounded, with every cluster's own outcome.

A failing, slow or refused cluster never hides the others and is never hidden itself: the result holds
one outcome per cluster, a value or an error, in the order the clusters were given.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .paths import check_cluster_name

if TYPE_CHECKING:
    import kubernetes_asyncio.client

T = TypeVar("T")
DEFAULT_CONCURRENCY = 16  # clusters called at once
DEFAULT_TIMEOUT = 30.0  # seconds each cluster's call may take, counted from its start


class ClusterTimeout(TimeoutError):
    """A cluster's call did not finish within the per-cluster timeout."""


@dataclass(frozen=True)
class ClusterOutcome(Generic[T]):
    """What one cluster answered: `value` when `error` is None."""

    cluster: str
    value: T | None
    error: Exception | None
    seconds: float  # how long the call ran (0 when it never started: an invalid name)

    @property
    def ok(self) -> bool:
        """True when the call returned."""
        return self.error is None

    @property
    def error_message(self) -> str:
        """The error in one line: an API error's code and Status message, or the exception's text."""
        return "" if self.error is None else describe_error(self.error)


class FanOutError(Exception):
    """Raised by FanOutResult.raise_for_errors: names each failed cluster and why."""

    def __init__(self, failed: list[ClusterOutcome[Any]]) -> None:
        super().__init__("; ".join(f"{o.cluster}: {o.error_message}" for o in failed))
        self.failed = failed


@dataclass(frozen=True)
class FanOutResult(Generic[T]):
    """Every cluster's outcome, in the order the clusters were given."""

    outcomes: tuple[ClusterOutcome[T], ...]

    @property
    def values(self) -> dict[str, T]:
        """The clusters that answered, and their values."""
        return {o.cluster: o.value for o in self.outcomes if o.error is None}  # type: ignore[misc]

    @property
    def errors(self) -> dict[str, Exception]:
        """The clusters that failed, and their errors."""
        return {o.cluster: o.error for o in self.outcomes if o.error is not None}

    @property
    def complete(self) -> bool:
        """True when every cluster answered."""
        return not self.errors

    def raise_for_errors(self) -> None:
        """FanOutError when any cluster failed: for callers that need every cluster or none."""
        failed = [o for o in self.outcomes if o.error is not None]
        if failed:
            raise FanOutError(failed)


async def fan_out_calls(
    clusters: Iterable[str],
    call: Callable[[str], Awaitable[T]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
) -> FanOutResult[T]:
    """`await call(cluster)` for each cluster (duplicates once), at most `concurrency` at a time, each within `timeout` s."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout}")
    names = list(dict.fromkeys(clusters))
    slots = asyncio.Semaphore(concurrency)

    async def one(cluster: str) -> ClusterOutcome[T]:
        try:
            check_cluster_name(cluster)
        except ValueError as exc:
            return ClusterOutcome(cluster, None, exc, 0.0)
        async with slots:
            started = time.monotonic()
            try:
                async with asyncio.timeout(timeout):
                    value = await call(cluster)
            except TimeoutError:
                error = ClusterTimeout(f"cluster {cluster!r} did not answer within {timeout:g} s")
                return ClusterOutcome(cluster, None, error, time.monotonic() - started)
            except Exception as exc:  # each cluster's failure is its outcome; cancellation still propagates
                return ClusterOutcome(cluster, None, exc, time.monotonic() - started)
            return ClusterOutcome(cluster, value, None, time.monotonic() - started)

    return FanOutResult(tuple(await asyncio.gather(*(one(name) for name in names))))


async def fan_out(
    hub: kubernetes_asyncio.client.Configuration,
    call: Callable[[kubernetes_asyncio.client.ApiClient], Awaitable[T]],
    *,
    clusters: Iterable[str] | None = None,
    label_selector: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
) -> FanOutResult[T]:
    """`await call(member_api_client)` on each member cluster through the hub, with kubernetes_asyncio.

    The clusters are `clusters` by name, or the hub's ClusterGateways matching `label_selector`
    (every ClusterGateway when both are None; giving both is an error). Listing them is one hub call
    whose failure raises; after that each cluster's failure is its own outcome."""
    import kubernetes_asyncio.client

    from .configuration import member_configuration_asyncio
    from .hub_asyncio import list_cluster_gateways_asyncio

    if clusters is not None and label_selector is not None:
        raise ValueError("give clusters or label_selector, not both")
    if clusters is None:
        async with kubernetes_asyncio.client.ApiClient(hub) as hub_api:
            clusters = [gw.name for gw in await list_cluster_gateways_asyncio(hub_api, label_selector=label_selector or "")]

    async def on_member(cluster: str) -> T:
        async with kubernetes_asyncio.client.ApiClient(member_configuration_asyncio(hub, cluster)) as api:
            return await call(api)

    return await fan_out_calls(clusters, on_member, concurrency=concurrency, timeout=timeout)


def describe_error(error: Exception) -> str:
    """One line for a cluster's error: `<code> <reason>: <Status message>` for an API error, else its text."""
    status = getattr(error, "status", None)
    if isinstance(status, int):
        message = _status_message(getattr(error, "body", None)) or str(getattr(error, "reason", "") or "")
        return f"{status}: {message}" if message else str(status)
    return str(error) or type(error).__name__


def _status_message(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return ""
    try:
        obj = json.loads(body)
    except ValueError:
        return ""
    return str(obj.get("message") or "") if isinstance(obj, dict) else ""
