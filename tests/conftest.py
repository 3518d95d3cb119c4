"""Shared pytest fixtures. Keep generic: each fixture serves many test modules."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from kubernetes_asyncio import client
from kubernetes_asyncio.config import load_kube_config

from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.member_apiserver import FakeMemberAPIServer

# Property tests draw the same inputs on every run (CI is reproducible), with no per-example
# deadline (the shared CPU makes timings noisy) and no example database in the repository.
# HYPOTHESIS_PROFILE=explore draws fresh inputs each run, to hunt for new failures locally.
# One server serves every example of a test: a function-scoped fixture is intended there.
_SHARED_SERVER = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("ci", derandomize=True, deadline=None, database=None, suppress_health_check=_SHARED_SERVER)
settings.register_profile("explore", max_examples=2000, deadline=None, database=None, suppress_health_check=_SHARED_SERVER)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    """The tests drive the real kubectl binary: without it the run stops here, it never skips those tests."""
    if shutil.which("kubectl") is None:
        raise pytest.UsageError(
            "kubectl is not on the PATH; the tests drive the real kubectl "
            "(./dev test and .ci/run install it: apt-get install kubernetes-client)"
        )


@pytest.fixture
async def kube_apiserver() -> AsyncIterator[FakeKubeAPIServer]:
    """A started fake hosting-cluster kube-apiserver (TLS on 127.0.0.1, bookmarks every 0.2 s).

    It enforces deploy/rbac.yaml: its kubeconfig (`write_kubeconfig`) carries the gateway's ServiceAccount
    token, so a request the gateway makes and deploy/ does not allow is answered 403 as on a real cluster.
    `server.token` is the cluster admin's, for tests acting as a caller. A test that means the gateway
    to be refused sets `server.refusals_expected`; in any other, a refusal fails the test."""
    server = FakeKubeAPIServer(bookmark_interval=0.2)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    # A refusal the gateway survives quietly still means deploy/ lacks a grant: it fails the test.
    refused = [m for m in server.forbidden if f'User "{server.gateway_user.name}"' in m]
    assert server.refusals_expected or not refused, f"the hosting cluster refused the gateway: {refused}"


@pytest.fixture
async def hosting_admin_client(kube_apiserver: FakeKubeAPIServer, tmp_path: Path) -> AsyncIterator[Any]:
    """A kubernetes-asyncio ApiClient of the fake hosting cluster, as its admin, configured from a kubeconfig."""
    config = client.Configuration()
    kubeconfig = kube_apiserver.write_kubeconfig(tmp_path / "admin.kubeconfig", token=kube_apiserver.token)
    await load_kube_config(str(kubeconfig), client_configuration=config)
    async with client.ApiClient(config) as api_client:
        yield api_client


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    """A member cluster on 127.0.0.1 with its own CA; the gateway's token is `member.token`. Modules
    that need a member set up otherwise (a path prefix, objects, RBAC) define their own."""
    async with FakeMemberAPIServer() as server:
        yield server
