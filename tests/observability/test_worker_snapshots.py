"""Per-worker snapshots of scrape-time series (--workers): a worker reads the other living workers' latest files.

Other workers are stood in for by real processes: the test's parent (alive) and a child that has exited (dead).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gateway_apiserver.observability import worker_snapshots


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_a_worker_reads_the_other_living_workers_files_and_not_its_own(tmp_path: Path) -> None:
    directory = str(tmp_path)
    worker_snapshots.publish(directory, "conns", {"a": [1, 0]})  # this process's own: its live values count instead
    living, dead = os.getppid(), dead_pid()
    worker_snapshots.snapshot_file(directory, "conns", living).write_text(json.dumps({"a": [2, 1], "b": [0, 3]}))
    worker_snapshots.snapshot_file(directory, "conns", dead).write_text(json.dumps({"a": [5, 5]}))
    worker_snapshots.snapshot_file(directory, "other-series", living).write_text(json.dumps({"a": [7, 7]}))
    assert worker_snapshots.others(directory, "conns") == [{"a": [2, 1], "b": [0, 3]}]
    assert json.loads(worker_snapshots.snapshot_file(directory, "conns", os.getpid()).read_text()) == {"a": [1, 0]}


def test_publishing_replaces_the_whole_file_so_a_removed_label_disappears(tmp_path: Path) -> None:
    directory = str(tmp_path)
    worker_snapshots.publish(directory, "conns", {"a": [1, 0], "b": [1, 0]})
    worker_snapshots.publish(directory, "conns", {"b": [0, 1]})
    assert json.loads(worker_snapshots.snapshot_file(directory, "conns", os.getpid()).read_text()) == {"b": [0, 1]}
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"conns.{os.getpid()}.snapshot.json"]  # no partial file left


def test_an_exited_workers_files_are_forgotten(tmp_path: Path) -> None:
    directory, pid = str(tmp_path), dead_pid()
    for name in ("conns", "other-series"):
        worker_snapshots.snapshot_file(directory, name, pid).write_text("{}")
    worker_snapshots.snapshot_file(directory, "conns", os.getppid()).write_text("{}")
    worker_snapshots.forget(directory, pid)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"conns.{os.getppid()}.snapshot.json"]
