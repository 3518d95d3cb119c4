"""The serving layer runs on asyncio and on uvloop: the fast lane drives the loop's transports directly."""

from __future__ import annotations

from tests.fakes.loops import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]
