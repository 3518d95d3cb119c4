"""The access log runs on both loops: its durations must be precise on uvloop too (its loop.time() ticks in whole ms)."""

from tests.fakes.loops import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]
