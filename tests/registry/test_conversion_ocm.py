"""--ocm-integration's overlay: a cluster's endpoint and CA from the ManagedCluster of the Secret's name."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gateway_apiserver.registry.conversion import ConversionError, secret_to_cluster_gateway
from gateway_apiserver.registry.managed_clusters import ManagedCluster, managed_cluster_from_object
from gateway_apiserver.registry.model import ClusterGateway, EndpointType
from tests.fakes.ocm import client_config, managed_cluster
from tests.fakes.pki import make_ca
from tests.fakes.secrets import ENDPOINT_LABEL, cluster_secret

SECRET_CA = make_ca("secret-ca")
MC_CA = make_ca("managed-cluster-ca")


def mc(name: str = "east", **fields: Any) -> ManagedCluster:
    return managed_cluster_from_object(managed_cluster(name, **fields))


def convert(secret: dict[str, Any], **fields: Any) -> ClusterGateway:
    return secret_to_cluster_gateway(secret, mc(**fields))


def test_the_endpoint_and_ca_come_from_the_first_client_config_and_the_secret_keeps_the_credential() -> None:
    secret = cluster_secret("east", endpoint="https://secret.invalid:6443", ca_pem=SECRET_CA.cert_pem, token="t0k3n")
    configs = [client_config("https://hub-view.invalid:6443", MC_CA.cert_pem), client_config("https://second.invalid")]
    gw = secret_to_cluster_gateway(secret, mc(client_configs=configs))
    assert (gw.address, gw.ca_bundle, gw.insecure) == ("https://hub-view.invalid:6443", MC_CA.cert_pem, False)
    assert gw.credential.token == "t0k3n"
    assert gw.resource_version == "1"  # the Secret's: the registry moves it when a ManagedCluster changes it
    const = gw.manifest["spec"]["access"]["endpoint"]["const"]
    assert const == {"address": "https://hub-view.invalid:6443", "caBundle": base64.b64encode(MC_CA.cert_pem).decode()}


def test_a_secret_without_endpoint_is_valid_when_its_managed_cluster_has_one() -> None:
    secret = cluster_secret("east", endpoint=None)
    with pytest.raises(ConversionError, match=r"missing data\['endpoint'\]"):
        secret_to_cluster_gateway(secret)
    gw = convert(secret, url="https://east.invalid:6443", ca_pem=MC_CA.cert_pem)
    assert gw.address == "https://east.invalid:6443"


def test_a_managed_cluster_without_a_ca_bundle_is_verified_against_the_system_roots() -> None:
    """As the reference: not insecure (a Secret without a CA is), and not the Secret's CA either."""
    gw = convert(cluster_secret("east", ca_pem=SECRET_CA.cert_pem), url="https://east.invalid")
    assert (gw.ca_bundle, gw.insecure) == (None, False)
    assert gw.manifest["spec"]["access"]["endpoint"]["const"] == {"address": "https://east.invalid"}


def test_a_managed_cluster_without_client_config_is_a_conversion_error_naming_it() -> None:
    with pytest.raises(ConversionError) as err:
        convert(cluster_secret("east"))
    assert (
        str(err.value) == "ManagedCluster 'east' has no spec.managedClusterClientConfigs, so it names no endpoint for the cluster"
    )


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (
            {"url": "http://east.invalid"},
            "ManagedCluster 'east' spec.managedClusterClientConfigs[0].url 'http://east.invalid' is plain http: "
            "the ServiceAccountToken credential would cross the network unencrypted; use an https:// URL",
        ),
        (
            {"url": "https://admin:hunter2@east.invalid"},
            "ManagedCluster 'east' spec.managedClusterClientConfigs[0].url carries credentials in its URL "
            "(user:password@host), which are not supported",
        ),
        (
            {"url": "https://east.invalid/\r\nX: y"},
            "ManagedCluster 'east' spec.managedClusterClientConfigs[0].url contains control or whitespace characters; "
            "a URL must not",
        ),
        (
            {"url": "ftp://east.invalid"},
            "ManagedCluster 'east' spec.managedClusterClientConfigs[0].url 'ftp://east.invalid' has scheme 'ftp', "
            "want one of http, https",
        ),
        (
            {"url": "https://east.invalid", "caBundle": "not base64!"},
            "ManagedCluster 'east': spec.managedClusterClientConfigs[0].caBundle is not valid base64",
        ),
    ],
)
def test_a_managed_cluster_endpoint_is_checked_as_a_secret_endpoint_is(config: dict[str, str], reason: str) -> None:
    with pytest.raises(ConversionError) as err:
        convert(cluster_secret("east"), client_configs=[config])
    assert str(err.value) == reason
    assert "hunter2" not in str(err.value)


def test_a_ca_bundle_that_is_not_pem_is_refused() -> None:
    config = {"url": "https://east.invalid", "caBundle": base64.b64encode(b"not a certificate").decode()}
    with pytest.raises(
        ConversionError,
        match=r"^ManagedCluster 'east' spec.managedClusterClientConfigs\[0\].caBundle is not a valid PEM certificate bundle: ",
    ):
        convert(cluster_secret("east"), client_configs=[config])


def test_a_cluster_proxy_secret_takes_nothing_from_its_managed_cluster() -> None:
    secret = cluster_secret("east", endpoint=None, labels={ENDPOINT_LABEL: "ClusterProxy"})
    gw = convert(secret)  # no client config: no error either, the tunnel needs no endpoint
    assert (gw.endpoint_type, gw.address) == (EndpointType.CLUSTER_PROXY, None)


def test_the_secret_proxy_url_still_applies() -> None:
    secret = cluster_secret("east", data={"proxy-url": "socks5://127.0.0.1:1080"})
    gw = convert(secret, url="https://east.invalid", ca_pem=MC_CA.cert_pem)
    assert gw.proxy_url == "socks5://127.0.0.1:1080"
