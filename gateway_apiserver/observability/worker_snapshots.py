"""Series a worker reads at scrape time from its own state, shared among --workers processes.

prometheus_client's multiprocess files hold counters and gauges each worker updates as things
happen, and cannot drop a label set. A series computed at scrape time (such as each worker's
connections to each member) is shared instead as one small JSON file per worker and series, in
the same directory: each worker rewrites its file every few seconds, and the worker a scrape
reaches adds the other living workers' latest files to its own live values. A label set a
worker no longer has simply leaves its file, so the series of a removed cluster disappear.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

_SUFFIX = ".snapshot.json"

Values = dict[str, list[float]]  # one label value (a cluster) -> its samples (e.g. idle, active)


def snapshot_file(directory: str, name: str, pid: int) -> Path:
    """Where worker `pid` publishes series `name`."""
    return Path(directory) / f"{name}.{pid}{_SUFFIX}"


def publish(directory: str, name: str, values: Mapping[str, Sequence[float]]) -> None:
    """Replace this worker's file for `name` at once (a reader sees the old file or the new one, never half)."""
    target = snapshot_file(directory, name, os.getpid())
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps({key: list(samples) for key, samples in values.items()}))
    os.replace(partial, target)


def others(directory: str, name: str) -> list[Values]:
    """The latest files of `name` published by every other living worker."""
    found: list[Values] = []
    for path in Path(directory).glob(f"{name}.*{_SUFFIX}"):
        pid_text = path.name.removeprefix(f"{name}.").removesuffix(_SUFFIX)
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or not _alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError, ValueError):  # gone since the listing, or not ours
            values = json.loads(path.read_text())
            if isinstance(values, dict):
                found.append(values)
    return found


def forget(directory: str, pid: int) -> None:
    """Remove every file worker `pid` published (it exited)."""
    for path in Path(directory).glob(f"*.{pid}{_SUFFIX}"):
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: the pid was reused, our workers all run as us
        return False
    return True
