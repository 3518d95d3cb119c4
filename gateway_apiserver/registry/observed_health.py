"""Which health a ClusterGateway shows: the prober's, a `health` write's, or its ManagedCluster's.

Up to three observers judge a cluster: the gateway's own prober (proxy/health_probe.py), any client
writing the `health` subresource (the OCM add-on), stored as Secret annotations, and, with
`--ocm-integration`, OCM itself through the ManagedCluster's `ManagedClusterConditionAvailable`
condition. They must not fight, so the rule is one line: the newer observation wins.

- A write's time is the annotation `ANNOTATION_HEALTHY_TIME` that our health writes add; a write
  without it (made by another gateway, or by hand) counts from the moment this gateway first saw it.
- The condition's time is its `lastTransitionTime`: when OCM last changed its mind, not when its
  lease was last renewed. A verdict that stays the same therefore keeps its time, and the next probe
  (15 s later by default) is newer: a cluster that the gateway reaches while OCM disagrees shows the
  condition for at most one probe interval after each transition, never alternating between the two.
  A lastTransitionTime later than the moment this gateway first saw the verdict (a clock ahead), or
  none, counts from that moment, so a skewed clock cannot make the condition outlive later probes.
- On a tie, a write wins over the condition, and the condition over a probe.

Pure functions only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .managed_clusters import Availability
from .model import ClusterGateway

# Reasons in the reference's vocabulary (its HealthyReasonType values) and our own precise ones.
CONNECTION_TIMEOUT = "ConnectionTimeout"
CERTIFICATE_MISMATCH = "CertificateMismatch"
UNAUTHORIZED = "Unauthorized"
PROBE_FAILED_PREFIX = "ProbeFailed:"  # followed by the HTTP status code of /readyz (or /healthz)
UNKNOWN_PREFIX = "Unknown:"  # followed by a one-line description, never a body or a credential


ObserverKind = Literal["probe", "write", "managed-cluster"]
# Who wins a tie: a client said it on purpose, OCM judged from the hub, the prober from here.
_TIE_RANK: dict[ObserverKind, int] = {"probe": 0, "managed-cluster": 1, "write": 2}


@dataclass(frozen=True, slots=True)
class Observation:
    """One judgement of a cluster's health, at a time, by the prober, a health write or the ManagedCluster."""

    healthy: bool
    reason: str
    at: datetime
    source: ObserverKind


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe round found: the health, and the member's version when it answered /version."""

    healthy: bool
    reason: str
    at: datetime
    kubernetes_version: str | None = None

    def observation(self) -> Observation:
        """This probe as an observation."""
        return Observation(self.healthy, self.reason, self.at, "probe")


def format_time(at: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes serialises metav1.Time."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise_time(at: datetime) -> str:
    """RFC 3339 in UTC with microseconds (the write-time annotation: two writes in a second stay ordered)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime | None:
    """An RFC 3339 time (with or without fraction), or None when it is not one."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def newest(*observations: Observation | None) -> Observation | None:
    """The observation that decides: the newest; on a tie a write, then the ManagedCluster's condition."""
    present = [o for o in observations if o is not None]
    return max(present, key=lambda o: (o.at, _TIE_RANK[o.source]), default=None)


def condition_observation(available: Availability, first_seen: datetime) -> Observation:
    """The ManagedCluster's `ManagedClusterConditionAvailable` as an observation: at its lastTransitionTime,
    but never later than `first_seen`, when this gateway first saw the condition as it is now."""
    healthy, reason = available.verdict()
    since = parse_time(available.last_transition_time or "")
    return Observation(healthy, reason, first_seen if since is None else min(since, first_seen), "managed-cluster")


def with_observed_health(
    gateway: ClusterGateway,
    written: Observation | None,
    probe: ProbeResult | None,
    condition: Observation | None = None,
) -> ClusterGateway:
    """`gateway` (as converted from its Secret) showing the deciding observation and the probe's facts.

    Without a probe or a condition, the Secret's own annotations (the write) are shown as converted."""
    if probe is None and condition is None:
        return gateway
    decided = newest(written, condition, probe.observation() if probe is not None else None)
    assert decided is not None  # a probe or a condition is there
    return dataclasses.replace(
        gateway,
        healthy=decided.healthy,
        healthy_reason=decided.reason,
        last_probe_time=format_time(probe.at) if probe is not None else gateway.last_probe_time,
        kubernetes_version=probe.kubernetes_version if probe is not None else gateway.kubernetes_version,
    )
