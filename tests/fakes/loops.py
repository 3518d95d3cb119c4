"""Run a test directory on both event loops the gateway can run on (asyncio and uvloop).

A conftest.py imports `pytest_asyncio_loop_factories` from here; pytest-asyncio then runs
each async test of that directory once per loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, LoopFactory]:
    """Both event loops: production runs uvloop (--event-loop auto) and asyncio without it."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
