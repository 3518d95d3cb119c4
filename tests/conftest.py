"""Shared pytest fixtures. Keep generic: each fixture serves many test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.kube_apiserver import FakeKubeAPIServer


@pytest.fixture
async def kube_apiserver() -> AsyncIterator[FakeKubeAPIServer]:
    """A started fake hosting-cluster kube-apiserver (TLS on 127.0.0.1, bookmarks every 0.2 s)."""
    server = FakeKubeAPIServer(bookmark_interval=0.2)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
