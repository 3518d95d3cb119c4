"""Fail fast (feature gate HealthinessCheck): a cluster known to be unhealthy is answered 503 at once.

A cluster is known unhealthy when the observation that decides its health (the built-in prober's,
a `health` write or, with --ocm-integration, its ManagedCluster's condition: the newest) says so;
a cluster nobody has judged is let through. Each cluster is a circuit breaker: open while known
unhealthy, except that one trial request is let through per cool-down. A trial the member answers
(below 500) closes it until a newer observation; a trial that fails waits another cool-down.
Watches and exec tunnels pass the same gate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..base.status import StatusError
from ..registry.observed_health import Observation, format_time

ObservationOf = Callable[[str], Observation | None]


@dataclass(slots=True)
class _Breaker:
    """One cluster's state, for one unhealthy observation."""

    observed_at: datetime
    next_trial: float  # monotonic time from which one trial may pass
    closed: bool = False  # a trial was answered: traffic flows until a newer observation


@dataclass(frozen=True, slots=True)
class Trial:
    """A request let through an open breaker; its outcome is reported with `FailFast.settle`."""

    cluster: str
    observed_at: datetime


class FailFast:
    """Per-cluster circuit breakers over the registry's health observations."""

    def __init__(self, observation_of: ObservationOf, cool_down: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._observation_of = observation_of
        self.cool_down = cool_down
        self._clock = clock
        self._breakers: dict[str, _Breaker] = {}

    def admit(self, cluster: str) -> Trial | None:
        """None for a request that may pass; a Trial for the one let through an open breaker.

        Raises a 503 StatusError naming the reason and the observation's time otherwise.
        """
        observation = self._observation_of(cluster)
        if observation is None or observation.healthy:
            self._breakers.pop(cluster, None)
            return None
        now = self._clock()
        breaker = self._breakers.get(cluster)
        if breaker is None or breaker.observed_at != observation.at:
            breaker = _Breaker(observation.at, now + self.cool_down)
            self._breakers[cluster] = breaker
        if breaker.closed:
            return None
        if now >= breaker.next_trial:
            breaker.next_trial = now + self.cool_down
            return Trial(cluster, observation.at)
        raise _unhealthy(cluster, observation, breaker.next_trial - now)

    def settle(self, trial: Trial | None, answered: bool) -> None:
        """The outcome of a trial: answered by the member (closes the breaker) or not (waits a cool-down)."""
        if trial is None:
            return
        breaker = self._breakers.get(trial.cluster)
        if breaker is None or breaker.observed_at != trial.observed_at:
            return  # a newer observation decides now
        if answered:
            breaker.closed = True
        else:
            breaker.next_trial = self._clock() + self.cool_down


def _unhealthy(cluster: str, observation: Observation, retry_in: float) -> StatusError:
    by = {
        "probe": "last probed",
        "write": "reported through its health subresource",
        "managed-cluster": "reported by its ManagedCluster's ManagedClusterConditionAvailable condition",
    }[observation.source]
    reason = observation.reason or "no reason given"
    seconds = max(1, math.ceil(retry_in))
    return StatusError(
        503,
        f'cluster "{cluster}" is unhealthy ({reason}; {by} at {format_time(observation.at)}): '
        f"the HealthinessCheck feature gate refuses requests to it; a trial request is let through in {seconds}s",
        headers={"Retry-After": str(seconds)},
    )
