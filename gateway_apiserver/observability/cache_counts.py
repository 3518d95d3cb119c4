"""Hit and miss counts a cache keeps as plain integers; /metrics reads them at scrape time (no cost on the hot path)."""

from __future__ import annotations


class CacheCounts:
    """Hits and misses of one cache, counted by its owner."""

    __slots__ = ("hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
