"""Shared set-up of the reliability suite: a deterministic hypothesis profile and a member cluster.

Fuzz tests run a bounded, derandomized number of examples (the same inputs on every run, so CI
is reproducible), with no per-example deadline (the shared CPU makes timings noisy) and no
example database written into the repository. `HYPOTHESIS_PROFILE=explore` draws fresh random
examples on each run instead (same counts), to hunt for new failures locally.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, settings

from tests.fakes.member_apiserver import FakeMemberAPIServer

# One server serves every example of a test: a function-scoped fixture is intended here.
_SHARED_SERVER = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("ci", derandomize=True, deadline=None, database=None, suppress_health_check=_SHARED_SERVER)
settings.register_profile("explore", max_examples=2000, deadline=None, database=None, suppress_health_check=_SHARED_SERVER)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

MEMBER_PREFIX = "/k8s/clusters/c-abc"


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    """A member cluster served under a Rancher-style path prefix, recording every request."""
    async with FakeMemberAPIServer(prefix=MEMBER_PREFIX) as server:
        yield server
