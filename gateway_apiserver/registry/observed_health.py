"""Which health a ClusterGateway shows: the built-in prober's, or the one written through `health`.

Two observers may judge a cluster: the gateway's own prober (proxy/health_probe.py) and any client
writing the `health` subresource (the OCM add-on), stored as Secret annotations. They must not
fight, so the rule is one line: the newer observation wins. A write's time is the annotation
`ANNOTATION_HEALTHY_TIME` that our health writes add; a write without it (made by another
gateway, or by hand) counts from the moment this gateway first saw it. Pure functions only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .model import ClusterGateway

# Reasons in the reference's vocabulary (its HealthyReasonType values) and our own precise ones.
CONNECTION_TIMEOUT = "ConnectionTimeout"
CERTIFICATE_MISMATCH = "CertificateMismatch"
UNAUTHORIZED = "Unauthorized"
PROBE_FAILED_PREFIX = "ProbeFailed:"  # followed by the HTTP status code of /readyz (or /healthz)
UNKNOWN_PREFIX = "Unknown:"  # followed by a one-line description, never a body or a credential


@dataclass(frozen=True, slots=True)
class Observation:
    """One judgement of a cluster's health, at a time, by the prober or a health write."""

    healthy: bool
    reason: str
    at: datetime
    source: Literal["probe", "write"]


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


def newest(written: Observation | None, probed: Observation | None) -> Observation | None:
    """The observation that decides: the newer one; the write on a tie (a client said it on purpose)."""
    if written is None or probed is None:
        return written or probed
    return probed if probed.at > written.at else written


def with_observed_health(gateway: ClusterGateway, written: Observation | None, probe: ProbeResult | None) -> ClusterGateway:
    """`gateway` (as converted from its Secret) showing the deciding observation and the probe's facts."""
    if probe is None:
        return gateway
    decided = newest(written, probe.observation())
    healthy, reason = (decided.healthy, decided.reason) if decided is not None else (gateway.healthy, gateway.healthy_reason)
    return dataclasses.replace(
        gateway,
        healthy=healthy,
        healthy_reason=reason,
        last_probe_time=format_time(probe.at),
        kubernetes_version=probe.kubernetes_version,
    )
