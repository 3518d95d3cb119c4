"""The serving process's garbage-collector settings (serving/gc_policy.py), checked in a child interpreter:
they are process-wide, and the test process must keep CPython's defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs the command's serve() with serve_forever replaced: it reports the GC's thresholds while serving.
_SERVE_PROBE = """
import gc, json, types
import gateway_apiserver.server as server
from gateway_apiserver import cli

seen = {}

async def serve_forever(config, stop=None):
    seen["threshold_while_serving"] = gc.get_threshold()

server.serve_forever = serve_forever
seen["default_threshold"] = gc.get_threshold()
seen["exit_code"] = cli.serve(types.SimpleNamespace(event_loop="asyncio"))
print(json.dumps(seen))
"""

# Cyclic garbage is still collected under the raised threshold.
_COLLECT_PROBE = """
import gc, json, weakref
from gateway_apiserver.serving import gc_policy

class Node:
    pass

gc_policy.collect_less_often()
a, b = Node(), Node()
a.other, b.other = b, a
gone = weakref.ref(a)
del a, b
kept = [[] for _ in range(gc_policy.YOUNG_THRESHOLD + 1)]  # enough live allocations for a young collection
print(json.dumps({"cycle_freed": gone() is None}))
"""


def _run(code: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_command_collects_young_objects_less_often() -> None:
    seen = _run(_SERVE_PROBE)
    assert seen["default_threshold"] == [700, 10, 10]
    assert seen["threshold_while_serving"] == [20_000, 10, 10]
    assert seen["exit_code"] == 0


def test_cycles_are_still_collected_by_the_young_generation() -> None:
    assert _run(_COLLECT_PROBE) == {"cycle_freed": True}
