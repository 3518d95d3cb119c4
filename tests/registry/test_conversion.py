"""Secret → ClusterGateway conversion: the cluster-gateway Secret format, and what is never served."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from gateway_apiserver.registry.conversion import ConversionError, gateway_uid, secret_to_cluster_gateway
from gateway_apiserver.registry.model import CredentialType, EndpointType
from gateway_apiserver.security.pki import issue_serving_cert, new_ca

CA = new_ca("member-ca")
CLIENT = issue_serving_cert(CA, ["client"])
KEYS = {"ca_crt": "ca.crt", "tls_crt": "tls.crt", "tls_key": "tls.key", "proxy_url": "proxy-url"}
TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.sig"


def b64(value: str | bytes) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def secret(
    name: str = "c1",
    cred: str = "ServiceAccountToken",
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **data: str | bytes,
) -> dict[str, Any]:
    all_labels = {"cluster.core.oam.dev/cluster-credential-type": cred, **(labels or {})}
    return {
        "metadata": {
            "name": name,
            "namespace": "vela-system",
            "uid": "11111111-2222-3333-4444-555555555555",
            "resourceVersion": "42",
            "creationTimestamp": "2026-11-01T10:00:00Z",
            "labels": all_labels,
            "annotations": annotations or {},
        },
        "data": {KEYS.get(k, k): b64(v) for k, v in data.items()},
    }


def token_secret(**kw: Any) -> dict[str, Any]:
    return secret(endpoint="https://10.0.0.1:6443", ca_crt=CA.cert_pem, token=TOKEN, **kw)


def served_text(obj: Any) -> str:
    return json.dumps(obj)


class TestCredentialTypes:
    def test_service_account_token(self) -> None:
        gw = secret_to_cluster_gateway(token_secret())
        assert gw.credential_type is CredentialType.SERVICE_ACCOUNT_TOKEN
        assert gw.credential.token == TOKEN
        assert gw.manifest["spec"]["access"]["credential"] == {"type": "ServiceAccountToken"}

    def test_x509_certificate(self) -> None:
        gw = secret_to_cluster_gateway(
            secret(
                cred="X509Certificate",
                endpoint="https://m:6443",
                ca_crt=CA.cert_pem,
                tls_crt=CLIENT.cert_pem,
                tls_key=CLIENT.key_pem,
            )
        )
        assert gw.credential_type is CredentialType.X509_CERTIFICATE
        assert gw.credential.client_certificate_pem == CLIENT.cert_pem
        assert gw.credential.client_key_pem == CLIENT.key_pem

    def test_dynamic_exec(self) -> None:
        exec_config = {"apiVersion": "client.authentication.k8s.io/v1", "command": "get-token", "args": ["--x"]}
        gw = secret_to_cluster_gateway(
            secret(cred="Dynamic", endpoint="https://m:6443", ca_crt=CA.cert_pem, exec=json.dumps(exec_config))
        )
        assert gw.credential_type is CredentialType.DYNAMIC
        assert gw.credential.exec_config == exec_config

    def test_credential_material_never_appears_in_what_is_served(self) -> None:
        for s in (
            token_secret(),
            secret(cred="X509Certificate", endpoint="https://m", tls_crt=CLIENT.cert_pem, tls_key=CLIENT.key_pem),
            secret(
                cred="Dynamic",
                endpoint="https://m",
                exec=json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "secret-cmd"}),
            ),
        ):
            gw = secret_to_cluster_gateway(s)
            served = gw.json.decode() + served_text(gw.manifest) + repr(gw)
            for needle in (
                TOKEN,
                "PRIVATE KEY",
                CLIENT.cert_pem.decode().splitlines()[1],
                "secret-cmd",
                "serviceAccountToken",
                "x509",
            ):
                assert needle not in served


class TestEndpoint:
    def test_const_endpoint_with_ca_crt(self) -> None:
        gw = secret_to_cluster_gateway(token_secret())
        assert gw.endpoint_type is EndpointType.CONST
        const = gw.manifest["spec"]["access"]["endpoint"]["const"]
        assert const == {"address": "https://10.0.0.1:6443", "caBundle": b64(CA.cert_pem)}

    def test_ca_is_the_fallback_for_ca_crt(self) -> None:
        gw = secret_to_cluster_gateway(secret(endpoint="https://m", ca=CA.cert_pem, token=TOKEN))
        assert gw.ca_bundle == CA.cert_pem and not gw.insecure

    def test_no_ca_means_insecure_and_is_shown(self) -> None:
        gw = secret_to_cluster_gateway(secret(endpoint="https://m", token=TOKEN))
        assert gw.insecure is True
        assert gw.manifest["spec"]["access"]["endpoint"]["const"]["insecure"] is True

    def test_one_trailing_newline_is_trimmed_and_path_prefix_kept(self) -> None:
        gw = secret_to_cluster_gateway(secret(endpoint="https://rancher/k8s/clusters/c-abc\n", token=TOKEN))
        assert gw.address == "https://rancher/k8s/clusters/c-abc"

    def test_proxy_url(self) -> None:
        gw = secret_to_cluster_gateway(secret(endpoint="https://m", token=TOKEN, proxy_url="socks5://127.0.0.1:1080"))
        assert gw.manifest["spec"]["access"]["endpoint"]["const"]["proxy-url"] == "socks5://127.0.0.1:1080"

    def test_cluster_proxy_endpoint_needs_no_address(self) -> None:
        gw = secret_to_cluster_gateway(secret(token=TOKEN, labels={"cluster.core.oam.dev/cluster-endpoint-type": "ClusterProxy"}))
        assert gw.endpoint_type is EndpointType.CLUSTER_PROXY
        assert gw.manifest["spec"]["access"]["endpoint"] == {"type": "ClusterProxy"}


class TestMetadataAndStatus:
    def test_metadata_comes_from_the_secret(self) -> None:
        gw = secret_to_cluster_gateway(token_secret(labels={"env": "prod"}))
        meta = gw.manifest["metadata"]
        assert meta["name"] == "c1"
        assert meta["resourceVersion"] == "42"
        assert meta["creationTimestamp"] == "2026-11-01T10:00:00Z"
        assert meta["labels"]["env"] == "prod"
        assert meta["uid"] == gateway_uid("11111111-2222-3333-4444-555555555555", "vela-system", "c1")
        assert meta["uid"] != "11111111-2222-3333-4444-555555555555"
        assert gw.manifest["apiVersion"] == "cluster.core.oam.dev/v1alpha1" and gw.manifest["kind"] == "ClusterGateway"

    def test_uid_is_deterministic(self) -> None:
        assert secret_to_cluster_gateway(token_secret()).uid == secret_to_cluster_gateway(token_secret()).uid

    def test_health_annotations(self) -> None:
        gw = secret_to_cluster_gateway(
            token_secret(
                annotations={
                    "status.cluster.core.oam.dev/healthy": "true",
                    "status.cluster.core.oam.dev/healthy-reason": "ConnectionTimeout",
                }
            )
        )
        assert gw.manifest["status"] == {"healthy": True, "healthyReason": "ConnectionTimeout"}

    def test_unhealthy_by_default(self) -> None:
        assert secret_to_cluster_gateway(token_secret()).manifest["status"] == {"healthy": False}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (secret(cred="Kerberos", endpoint="https://m", token=TOKEN), "unknown credential type 'Kerberos'"),
        (secret(token=TOKEN), "missing data['endpoint']"),
        (secret(endpoint="not a url", token=TOKEN), "has scheme '(none)'"),
        (secret(endpoint="ftp://m", token=TOKEN), "has scheme 'ftp'"),
        (secret(endpoint="https://m:99999", token=TOKEN), "is not a valid URL"),
        (secret(endpoint="https://m", token=""), "needs a non-empty data['token']"),
        (
            secret(endpoint="https://m", ca_crt=b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", token=TOKEN),
            "data['ca.crt'] is not a valid PEM certificate bundle",
        ),
        (
            secret(cred="X509Certificate", endpoint="https://m", tls_crt=CLIENT.cert_pem, tls_key=b"garbage"),
            "data['tls.key'] is not a valid unencrypted PEM private key",
        ),
        (
            secret(cred="X509Certificate", endpoint="https://m", tls_crt=CLIENT.cert_pem),
            "needs data['tls.crt'] and data['tls.key']",
        ),
        (secret(cred="Dynamic", endpoint="https://m", exec="{not json"), "data['exec'] is not valid JSON"),
        (secret(cred="Dynamic", endpoint="https://m", exec='{"apiVersion": "v9", "command": "x"}'), "apiVersion 'v9'"),
        (secret(endpoint="https://m", token=TOKEN, proxy_url="gopher://p"), "proxy-url 'gopher://p' has scheme"),
        (
            secret(endpoint="https://m", token=TOKEN, labels={"cluster.core.oam.dev/cluster-endpoint-type": "Tunnel"}),
            "unknown endpoint type 'Tunnel'",
        ),
        (token_secret(annotations={"status.cluster.core.oam.dev/healthy": "yes"}), "is not a boolean"),
    ],
)
def test_bad_secrets_fail_with_a_reason(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ConversionError) as err:
        secret_to_cluster_gateway(bad)
    assert message in str(err.value)


def test_bad_base64_is_named() -> None:
    bad = token_secret()
    bad["data"]["token"] = "%%%not-base64"
    with pytest.raises(ConversionError, match=r"data\['token'\] is not valid base64"):
        secret_to_cluster_gateway(bad)
