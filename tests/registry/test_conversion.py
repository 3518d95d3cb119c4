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
PROXY_SCHEMES = "http, https, socks5, socks5h"


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


def with_data(s: dict[str, Any], values: dict[str, str | bytes]) -> dict[str, Any]:
    s["data"].update({k: b64(v) for k, v in values.items()})
    return s


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

    def test_cluster_proxy_endpoint_is_verified_against_its_ca_crt(self) -> None:
        labels = {"cluster.core.oam.dev/cluster-endpoint-type": "ClusterProxy"}
        gw = secret_to_cluster_gateway(secret(token=TOKEN, ca_crt=CA.cert_pem, labels=labels))
        assert (gw.ca_bundle, gw.insecure) == (CA.cert_pem, False)
        assert gw.manifest["status"] == {"healthy": False}

    def test_cluster_proxy_endpoint_without_ca_is_insecure_and_its_status_says_so(self) -> None:
        labels = {"cluster.core.oam.dev/cluster-endpoint-type": "ClusterProxy"}
        gw = secret_to_cluster_gateway(secret(token=TOKEN, labels=labels))
        assert (gw.ca_bundle, gw.insecure) == (None, True)
        assert gw.manifest["spec"]["access"]["endpoint"] == {"type": "ClusterProxy"}  # as the reference serves it
        assert gw.manifest["status"] == {"healthy": False, "insecure": True}


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
        (secret(endpoint="not-a-url", token=TOKEN), "has scheme '(none)'"),
        (secret(endpoint="ftp://m", token=TOKEN), "has scheme 'ftp'"),
        (secret(endpoint="https://m:99999", token=TOKEN), "is not a valid URL"),
        (secret(endpoint="https://xn--/", token=TOKEN), "endpoint 'https://xn--/' has a host name that is not valid (IDNA)"),
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


class TestPasswordsInUrls:
    """A URL's userinfo is a credential: refused in the endpoint, redacted wherever a proxy-url is served."""

    def test_an_endpoint_with_userinfo_is_refused_without_quoting_the_password(self) -> None:
        for endpoint in ("https://admin:S3cr3tPW@m:6443", "https://S3cr3tPW@m:6443", "admin:S3cr3tPW@m:6443"):
            with pytest.raises(ConversionError) as err:
                secret_to_cluster_gateway(secret(endpoint=endpoint, token=TOKEN))
            assert str(err.value) == (
                "data['endpoint'] carries credentials in its URL (user:password@host), which are not supported; "
                "put the credential in data['token'], or data['tls.crt'] and data['tls.key']"
            )

    def test_a_proxy_url_keeps_its_credentials_for_the_transport_and_is_served_redacted(self) -> None:
        gw = secret_to_cluster_gateway(secret(endpoint="https://m", token=TOKEN, proxy_url="http://proxyuser:S3cr3tPW@p:3128"))
        assert gw.proxy_url == "http://proxyuser:S3cr3tPW@p:3128"
        assert gw.manifest["spec"]["access"]["endpoint"]["const"]["proxy-url"] == "http://REDACTED@p:3128"
        assert "S3cr3tPW" not in gw.json.decode() + repr(gw)
        assert "proxyuser" not in gw.json.decode() + repr(gw)

    def test_a_password_with_an_at_sign_is_redacted_whole(self) -> None:
        gw = secret_to_cluster_gateway(secret(endpoint="https://m", token=TOKEN, proxy_url="socks5://u:p@ss@p:1080"))
        assert gw.manifest["spec"]["access"]["endpoint"]["const"]["proxy-url"] == "socks5://REDACTED@p:1080"

    @pytest.mark.parametrize(
        ("proxy_url", "message"),
        [
            ("gopher://u:S3cr3tPW@p", f"proxy-url 'gopher://REDACTED@p' has scheme 'gopher', want one of {PROXY_SCHEMES}"),
            ("u:S3cr3tPW@p:3128", f"proxy-url 'REDACTED@p:3128' has scheme '(none)', want one of {PROXY_SCHEMES}"),
            ("http://u:S3c/r3tPW@p:3128", "proxy-url (not shown: it holds an '@') is not a valid URL"),
            ("http://p:3128/?key=S3cr3tPW", "proxy-url 'http://p:3128/' must not carry a query or fragment"),
        ],
    )
    def test_an_invalid_proxy_url_is_named_without_its_secrets(self, proxy_url: str, message: str) -> None:
        with pytest.raises(ConversionError) as err:
            secret_to_cluster_gateway(secret(endpoint="https://m", token=TOKEN, proxy_url=proxy_url))
        assert str(err.value) == message
        assert "S3cr3tPW" not in str(err.value) and "S3c" not in str(err.value)


class TestControlCharacters:
    """Values that end up in a request line or header are refused if they could split or bend it."""

    @pytest.mark.parametrize("token", ["T\r\nX-Injected: yes", "T\nX", "a b", "T\x00", "T\x7f", "tökén", "T\u200bX"])
    def test_a_token_with_control_whitespace_or_non_ascii_inside_is_refused(self, token: str) -> None:
        with pytest.raises(ConversionError) as err:
            secret_to_cluster_gateway(secret(endpoint="https://m", token=token))
        assert str(err.value) == (
            "data['token'] contains control, whitespace or non-ASCII characters; "
            "a bearer token is visible ASCII only (it is sent in the Authorization header)"
        )

    @pytest.mark.parametrize("padded", [TOKEN + "\n", TOKEN + "\r\n", f"  {TOKEN}\t\n", f"\n{TOKEN}"])
    def test_surrounding_whitespace_of_a_token_is_trimmed_as_client_go_trims_token_files(self, padded: str) -> None:
        assert secret_to_cluster_gateway(secret(endpoint="https://m", token=padded)).credential.token == TOKEN

    @pytest.mark.parametrize(
        "endpoint",
        ["https://m/echo\r\nX-Injected: 1", "https://m/a b", "https://m\t:6443", "https://m/\x00", "https://m/\u2028x"],
    )
    def test_an_endpoint_with_control_or_whitespace_inside_is_refused(self, endpoint: str) -> None:
        with pytest.raises(ConversionError) as err:
            secret_to_cluster_gateway(secret(endpoint=endpoint, token=TOKEN))
        assert str(err.value) == "data['endpoint'] contains control or whitespace characters; a URL must not"

    def test_a_proxy_url_with_control_characters_is_refused(self) -> None:
        with pytest.raises(ConversionError) as err:
            secret_to_cluster_gateway(secret(endpoint="https://m", token=TOKEN, proxy_url="http://p:3128\r\nX: y"))
        assert str(err.value) == "data['proxy-url'] contains control or whitespace characters; a URL must not"

    def test_trailing_newlines_of_urls_are_trimmed(self) -> None:
        gw = secret_to_cluster_gateway(secret(endpoint="https://m:6443\r\n", token=TOKEN, proxy_url="http://p:3128\n"))
        assert (gw.address, gw.proxy_url) == ("https://m:6443", "http://p:3128")

    @pytest.mark.parametrize("name", ["m.example\r\nX: y", "a b", "-bad", ""])
    def test_a_bad_tls_server_name_is_refused(self, name: str) -> None:
        with pytest.raises(ConversionError, match=r"^data\['tls-server-name'\] must be a DNS name or an IP address$"):
            secret_to_cluster_gateway(with_data(secret(endpoint="https://m", token=TOKEN), {"tls-server-name": name}))

    def test_a_tls_server_name_is_carried_for_the_transport(self) -> None:
        named = with_data(secret(endpoint="https://10.0.0.1", token=TOKEN), {"tls-server-name": "api.m\n"})
        gw = secret_to_cluster_gateway(named)
        assert gw.tls_server_name == "api.m"


class TestPlainHttp:
    """A credential never crosses the network in clear, and TLS settings are never silently ignored."""

    @pytest.mark.parametrize(
        ("cred", "values"),
        [
            ("ServiceAccountToken", {"token": TOKEN}),
            ("X509Certificate", {"tls_crt": CLIENT.cert_pem, "tls_key": CLIENT.key_pem}),
            ("Dynamic", {"exec": json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "command": "c"})}),
        ],
    )
    def test_every_credential_type_is_refused_over_http(self, cred: str, values: dict[str, Any]) -> None:
        with pytest.raises(ConversionError) as err:
            secret_to_cluster_gateway(secret(cred=cred, endpoint="http://m:8080", **values))
        assert str(err.value) == (
            f"endpoint 'http://m:8080' is plain http: the {cred} credential would cross the network unencrypted; "
            "use an https:// endpoint"
        )

    @pytest.mark.parametrize("key", ["ca.crt", "ca"])
    def test_a_ca_with_an_http_endpoint_is_not_silently_ignored(self, key: str) -> None:
        with pytest.raises(ConversionError) as err:
            secret_to_cluster_gateway(with_data(secret(endpoint="http://m:8080", token=TOKEN), {key: CA.cert_pem}))
        assert str(err.value) == (
            f"endpoint 'http://m:8080' is plain http, so data['{key}'] would be ignored; use an https:// endpoint"
        )
