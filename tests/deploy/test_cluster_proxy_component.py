"""deploy/components/cluster-proxy: an optional kustomize component for OCM cluster-proxy (Konnectivity) egress."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_apiserver.config import build_parser
from tests.deploy.rendering import Rendered, render_deploy

CA_DIR = "/etc/gateway-apiserver/proxy-server-ca"
CLIENT_DIR = "/etc/gateway-apiserver/proxy-client"


@pytest.fixture(scope="module")
def with_cluster_proxy() -> Rendered:
    return render_deploy(["deploy/components/ocm", "deploy/components/cluster-proxy"])


@pytest.fixture(scope="module")
def with_ocm() -> Rendered:
    return render_deploy(["deploy/components/ocm"])


def pod_spec(rendered: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = rendered[("Deployment", "gateway-apiserver")]["spec"]["template"]["spec"]
    return spec


def test_the_component_sets_the_reference_flags_with_cluster_proxys_default_entry_point(
    with_cluster_proxy: Rendered, with_ocm: Rendered
) -> None:
    [container], [base_container] = pod_spec(with_cluster_proxy)["containers"], pod_spec(with_ocm)["containers"]
    assert container["args"] == [
        *base_container["args"],
        "--proxy-host=proxy-entrypoint.open-cluster-management-cluster-proxy",
        "--proxy-port=8090",
        f"--proxy-ca-cert={CA_DIR}/ca.crt",
        f"--proxy-cert={CLIENT_DIR}/tls.crt",
        f"--proxy-key={CLIENT_DIR}/tls.key",
    ]
    parsed = build_parser().parse_args(container["args"])  # flags the gateway accepts
    assert (parsed.proxy_host, parsed.proxy_port) == ("proxy-entrypoint.open-cluster-management-cluster-proxy", 8090)


def test_the_component_mounts_ocms_two_secrets_read_only_where_the_flags_point(
    with_cluster_proxy: Rendered, with_ocm: Rendered
) -> None:
    spec, base = pod_spec(with_cluster_proxy), pod_spec(with_ocm)
    assert spec["volumes"] == [
        *base["volumes"],
        {"name": "proxy-server-ca", "secret": {"secretName": "proxy-server-ca"}},
        {"name": "proxy-client", "secret": {"secretName": "proxy-client"}},
    ]
    assert spec["containers"][0]["volumeMounts"] == [
        *base["containers"][0]["volumeMounts"],
        {"name": "proxy-server-ca", "mountPath": CA_DIR, "readOnly": True},
        {"name": "proxy-client", "mountPath": CLIENT_DIR, "readOnly": True},
    ]


def test_the_component_adds_no_other_object_and_changes_nothing_else(with_cluster_proxy: Rendered, with_ocm: Rendered) -> None:
    assert set(with_cluster_proxy) == set(with_ocm)
    # Each render mints its own certificates: the TLS Secret and the APIService's caBundle differ by design.
    minted = {"Deployment", "Secret", "APIService"}
    for key in with_ocm:
        if key[0] not in minted:
            assert with_cluster_proxy[key] == with_ocm[key]
