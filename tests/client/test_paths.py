"""The client package is cheap to import, and builds proxy URLs only from names that cannot bend the path."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway_apiserver.client import InvalidClusterName, member_proxy_path, member_proxy_url


def test_importing_the_client_loads_neither_the_server_nor_a_kubernetes_package() -> None:
    heavy = "{'aiohttp', 'kubernetes', 'kubernetes_asyncio', 'grpc'}"
    server_side = "('gateway_apiserver.server', 'gateway_apiserver.registry', 'gateway_apiserver.proxy', 'gateway_apiserver.api')"
    probe = (
        "import sys, gateway_apiserver.client; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy} or m.startswith({server_side})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=30).stdout
    assert out.strip() == "[]"


def test_the_proxy_path_of_a_cluster() -> None:
    assert member_proxy_path("prod.eu-1") == "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/prod.eu-1/proxy"
    assert member_proxy_url("https://hub.invalid:6443/", "m1") == (
        "https://hub.invalid:6443/apis/cluster.core.oam.dev/v1alpha1/clustergateways/m1/proxy"
    )


@pytest.mark.parametrize("name", ["m1/..", "..", ".", "m1%2f", "m1\\x", "-m1", "m1-", "m 1", "\uff2d1"])
def test_names_that_are_not_object_names_are_refused_with_kubes_reason(name: str) -> None:
    with pytest.raises(InvalidClusterName) as refused:
        member_proxy_path(name)
    assert str(refused.value) == (
        f"invalid cluster name {name!r}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
        "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
