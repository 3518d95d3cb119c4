"""Where a figure came from: every benchmark result carries the command, the date, the commit and the machine.

The README quotes only files under benchmarks/recorded/ (committed); benchmarks/results/ holds
scratch runs (git-ignored). `benchmarks/readme_tables.py` renders the README's tables from the
recorded files, and tests/test_benchmarks.py checks that the README matches them.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "benchmarks" / "recorded"
# Options that say where the result goes or annotate it; the command that reproduces a figure omits them.
_NOT_PART_OF_THE_COMMAND = ("--json", "--note")
# The code a figure depends on: the product, the benchmarks and the fakes they drive.
_MEASURED = ("gateway_apiserver", "benchmarks", "tests/fakes", "tests/reliability/test_load.py", "pyproject.toml")


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was when the run started."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def reproducing_command(prefix: str, argv: Sequence[str]) -> str:
    """`prefix` followed by the benchmark's own arguments, without --json/--note and their values."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _NOT_PART_OF_THE_COMMAND:
            skip = True
            continue
        if arg.startswith(tuple(flag + "=" for flag in _NOT_PART_OF_THE_COMMAND)):
            continue
        kept.append(arg)
    return " ".join([prefix, *kept])


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *_MEASURED, ":!benchmarks/recorded"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes to the measured code)" if dirty.strip() else "")


def provenance(command: str, note: str | None = None) -> dict[str, Any]:
    """The `run` block of a result file: command, UTC date, commit, machine and a free-text note."""
    run: dict[str, Any] = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": _commit(),
        "machine": machine(),
    }
    if note:
        run["note"] = note
    return run


def write_results(path: Path | None, results: dict[str, Any]) -> None:
    """Write a run's results as indented JSON to `path` (its directory made), when one was asked for."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
