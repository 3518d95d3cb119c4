"""Which requests shutdown ends at once (long-running) and which it waits for."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from gateway_apiserver.serving.shutdown import is_long_running

G = "/apis/cluster.core.oam.dev/v1alpha1"
UPGRADE = CIMultiDict({"Connection": "Upgrade", "Upgrade": "SPDY/3.1"})


@pytest.mark.parametrize(
    ("path", "query", "long_running"),
    [
        (f"{G}/clustergateways", {}, False),
        (f"{G}/clustergateways", {"watch": "true"}, True),
        (f"{G}/clustergateways/c1", {"watch": "1"}, True),
        (f"{G}/clustergateways", {"watch": ""}, True),  # served as a watch, so ended as one
        (f"{G}/clustergateways", {"watch": "0"}, False),
        (f"{G}/watch/clustergateways", {}, True),
        (f"{G}/clustergateways/c1/proxy/api/v1/pods", {}, False),
        (f"{G}/clustergateways/c1/proxy/api/v1/pods", {"watch": "true"}, True),
        (f"{G}/clustergateways/c1/proxy/api/v1/namespaces/d/pods/p/log", {"follow": "true"}, True),
        (f"{G}/clustergateways/c1/proxy/api/v1/namespaces/d/pods/p/log", {}, False),
        (f"{G}/clustergateways/c1/proxy/api/v1/namespaces/d/pods/p/exec", {}, True),
        (f"{G}/clustergateways/c1/proxy/apis/apps/v1/watch/deployments", {}, True),
        (f"{G}/clustergateways/c1/health", {}, False),
        ("/readyz", {}, False),
    ],
)
def test_watches_follows_and_member_long_running_calls_are_long_running(
    path: str, query: dict[str, str], long_running: bool
) -> None:
    assert is_long_running(path, query, CIMultiDict()) is long_running


def test_any_upgrade_is_long_running() -> None:
    assert is_long_running(f"{G}/clustergateways/c1/proxy/api/v1/namespaces/d/pods/p/portforward", {}, UPGRADE)
    assert not is_long_running("/x", {}, CIMultiDict({"Connection": "keep-alive", "Upgrade": "h2c"}))
