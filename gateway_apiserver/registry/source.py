"""The contract between Secret sources (hosting-cluster informer, standalone files) and the registry.

A source owns the I/O; the registry owns the cache. Secrets travel as plain dicts in the
Kubernetes JSON shape (`{"metadata": {...}, "data": {...}}`, data values base64-encoded),
which is what both the hosting API server and YAML manifests give us, with no model overhead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

Secret = dict[str, Any]
WatchEventType = Literal["ADDED", "MODIFIED", "DELETED"]


class SecretSink(Protocol):
    """Where a source delivers what it observes; implemented by `ClusterRegistry`."""

    def replace(self, secrets: Sequence[Secret], resource_version: str) -> None:
        """A full listing at `resource_version`; the sink diffs it against what it had."""

    def apply(self, event_type: WatchEventType, secret: Secret) -> None:
        """One watch event; the Secret's own metadata.resourceVersion orders it."""

    def bookmark(self, resource_version: str) -> None:
        """The source has seen everything up to `resource_version`."""


class SecretSource(Protocol):
    """A long-running producer of Secret listings and events."""

    async def run(self, sink: SecretSink) -> None:
        """Feed `sink` until cancelled. Must call `sink.replace` once before anything else."""
