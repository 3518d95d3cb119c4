"""Reliability tests run on both event loops: timeouts and shutdown reach into the loop's transports."""

from tests.fakes.loops import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]
