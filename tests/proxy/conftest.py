"""Every proxy test runs on asyncio and on uvloop: upgrade tunnels reach into the loop's transports."""

from tests.fakes.loops import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]
