"""Shared set-up of the reliability suite: which event loops run it, and a member cluster.

Tests of connection handling (timeouts, parser errors, shutdown, member faults) reach into the
loop's transports, so they run on both loops the gateway can use. The fuzzers and the load
test exercise request semantics, not transports: they run once, on uvloop (the production default).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest

from tests.fakes.loops import LoopFactory
from tests.fakes.loops import pytest_asyncio_loop_factories as both_loops
from tests.fakes.member_apiserver import FakeMemberAPIServer

_TRANSPORT_TESTS = {"test_slowloris", "test_protocol_errors", "test_shutdown", "test_member_faults", "test_http_framing"}
MEMBER_PREFIX = "/k8s/clusters/c-abc"


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, LoopFactory]:
    """Both loops for transport-level tests, uvloop alone for the rest."""
    loops = both_loops(config, item)
    module = getattr(item, "module", None)
    if module is not None and module.__name__.rsplit(".", 1)[-1] in _TRANSPORT_TESTS:
        return loops
    return {"uvloop": loops["uvloop"]}


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    """A member cluster served under a Rancher-style path prefix, recording every request."""
    async with FakeMemberAPIServer(prefix=MEMBER_PREFIX) as server:
        yield server
