"""The garbage collector's settings for a serving process (the `gateway-apiserver` command, each worker).

Measured under proxied GETs (benchmarks/suite.py, `costs`): with CPython's defaults about a tenth of the
gateway's CPU went to cyclic collection, though the request path leaves almost no cyclic garbage. Young
collections ran every 700 allocations, and every full one walked all the objects built at start-up
(modules, the app, the registry), a pause of tens of milliseconds each.
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


def freeze_startup_objects() -> None:
    """Move every object alive now (after start-up) out of the collector's reach: full collections stop
    walking them. They are still freed by reference counting; objects created later are collected as usual."""
    gc.collect()  # the start-up's own cyclic garbage first: frozen, it would never be freed
    gc.freeze()
