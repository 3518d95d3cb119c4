"""How many cores this process may use: the container's CPU quota (cgroup v2 or v1), else its CPU affinity.

`--workers auto` starts one worker per usable core. A container limited to 2 CPUs on a 64-core
node must start 2 workers, not 64: `os.cpu_count()` sees the node, the cgroup quota is the limit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cores_from_quota(quota_us: int | None, period_us: int | None, affinity: int) -> int:
    """Whole cores a quota of `quota_us` per `period_us` allows (rounded down, as Go's automaxprocs does,
    so workers are not throttled), never more than the CPUs the process may run on, never fewer than 1."""
    if quota_us is None or period_us is None or quota_us <= 0 or period_us <= 0:
        return max(1, affinity)
    return max(1, min(affinity, math.floor(quota_us / period_us)))


def parse_cpu_max(text: str) -> tuple[int | None, int | None]:
    """cgroup v2 `cpu.max`: `<quota> <period>`, where quota `max` means no limit."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None, None
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return None, None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def available_cores(root: Path = CGROUP_ROOT) -> int:
    """The cores this process may use: the cgroup v2 quota, else the v1 CFS quota, else the affinity mask."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpu_max = _read(root / "cpu.max")
    if cpu_max is not None:
        return cores_from_quota(*parse_cpu_max(cpu_max), affinity)
    v1 = root / "cpu"
    if not v1.is_dir():
        v1 = root / "cpu,cpuacct"
    return cores_from_quota(_read_int(v1 / "cpu.cfs_quota_us"), _read_int(v1 / "cpu.cfs_period_us"), affinity)
