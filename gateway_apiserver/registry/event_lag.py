"""Informer event lag: how long a write in the hosting cluster took to reach the gateway's registry.

The kube-apiserver stamps each change of an object in `metadata.managedFields[].time` (the entry of
the manager that wrote it), in whole seconds. The lag of an ADDED or MODIFIED watch event is the time
the gateway finished applying it minus the newest of those times. Truncation to seconds makes an
observation up to 1 s longer than the true lag, never shorter; a negative difference (the gateway's
clock behind the apiserver's) is counted as 0. Objects without managedFields (standalone files, a
server that does not track them) are not observed, and neither are listings nor deletions.
Counted here as plain numbers (no prometheus_client): a scrape reads them, the watch path only adds.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# Seconds: with whole-second write times, le=2 holds every event that took under 1 s, and no event over 2 s.
EVENT_LAG_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def last_write_time(obj: Mapping[str, Any]) -> datetime | None:
    """The newest `metadata.managedFields[].time` of `obj`, or None when it has none (or none readable)."""
    metadata = obj.get("metadata")
    entries = metadata.get("managedFields") if isinstance(metadata, Mapping) else None
    newest = ""
    for entry in entries if isinstance(entries, list) else ():
        written = entry.get("time") if isinstance(entry, Mapping) else None
        # metav1.Time is always "YYYY-MM-DDTHH:MM:SSZ": such strings order as their times do.
        if isinstance(written, str) and written > newest:
            newest = written
    if not newest:
        return None
    try:
        parsed = datetime.fromisoformat(newest.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class EventLag:
    """A histogram of event lags, in seconds, over `EVENT_LAG_BUCKETS`."""

    def __init__(self, buckets: tuple[float, ...] = EVENT_LAG_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # per bucket (le), the last one +Inf; not cumulative
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        """One event's lag; a negative one (clock skew) counts as 0."""
        seconds = max(0.0, seconds)
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def observe_event(self, obj: Mapping[str, Any], applied_at: datetime) -> None:
        """The lag of an ADDED or MODIFIED event of `obj` applied at `applied_at`, if `obj` says when it was written."""
        written = last_write_time(obj)
        if written is not None:
            self.observe((applied_at - written).total_seconds())

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, events at or under it) for each bucket, ending with (+Inf, count): Prometheus's shape."""
        total, out = 0, []
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out
