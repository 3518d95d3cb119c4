"""The garbage collector's settings for a serving process (the `gateway-apiserver` command, each worker).

Measured under proxied GETs (benchmarks/suite.py, `costs`): with CPython's defaults about a tenth of the
gateway's CPU went to cyclic collection, though the request path leaves almost no cyclic garbage: young
collections ran every 700 allocations, and each of them, and each older one, found next to nothing.
"""

from __future__ import annotations

import gc

# Allocations between young collections (CPython's default: 700). The request path's objects mostly die
# by reference counting first, so a young collection finds little; at most this many young objects wait.
YOUNG_THRESHOLD = 20_000


def collect_less_often() -> None:
    """Raise the young generation's threshold, keeping the older generations' ratios."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
