"""The reference's Secret → ClusterGateway cases (pkg/apis/cluster/v1alpha1/clustergateway_types_secret_test.go),
restated as what a client reads from our server (GET and LIST of `clustergateways`) and what the
member sees through the proxy.

Two deliberate differences run through these cases:
* the reference's fixtures hold placeholder strings ("caData", "certData") where PEM belongs, and
  the reference accepts them; we refuse invalid PEM at conversion (issue 13 item 4), so the cases
  are restated with real PEM, and `test_service_account_token_conversion` shows the refusal;
* the reference serves the token, key and certificate it converted; we serve only the credential
  type (README, Compared with cluster-gateway: "No credential is ever returned"), so the
  credential is shown to reach the member instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway_apiserver.config import Config
from tests.compat.conftest import ADMIN, add_managed_cluster
from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.hosting import CLUSTERGATEWAYS, SECRET_NAMESPACE, HostingGateway, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import make_ca
from tests.fakes.proxying import proxied
from tests.fakes.secrets import CREDENTIAL_LABEL, ENDPOINT_LABEL, b64, cluster_secret

pytestmark = pytest.mark.timeout(30)

NAME = "bar"
ENDPOINT = "https://localhost:443"  # the reference's; converted, never dialled
EXEC_V1BETA1 = "client.authentication.k8s.io/v1beta1"


def secret(labels: dict[str, str], data: dict[str, str | bytes], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """Cluster Secret `bar` with exactly these labels and data (the reference's fixtures' shape)."""
    obj = cluster_secret(NAME, labels=labels, annotations=annotations, endpoint=None, credential_type="", data=data)
    obj["metadata"]["labels"] = dict(labels)  # cluster_secret always sets the credential label; these fixtures may not
    return obj


def echo_exec(api_version: str, credential: dict[str, str], *, kind: str | None = "ExecCredential") -> str:
    """An exec config running `echo` to print an ExecCredential holding `credential`, as the reference's fixtures do."""
    output: dict[str, Any] = {"apiVersion": api_version, "status": credential}
    if kind is not None:
        output["kind"] = kind
    return json.dumps({"apiVersion": api_version, "kind": "ExecConfig", "command": "echo", "args": [json.dumps(output)]})


async def get(gw: RunningGateway | HostingGateway, path: str, **headers: str) -> tuple[int, Any]:
    async with gw.session() as client, client.get(path, headers=headers) as resp:
        return resp.status, await resp.json()


def not_found(name: str, reason: str) -> dict[str, Any]:
    """Our 404 for a Secret that cannot be converted, naming the reason."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": (
            f'clustergateways.cluster.core.oam.dev "{name}" not found: Secret vela-system/{name} cannot be converted: {reason}'
        ),
        "reason": "NotFound",
        "details": {"name": name, "group": "cluster.core.oam.dev", "kind": "clustergateways"},
        "code": 404,
    }


def const(address: str, ca_pem: bytes | None = None) -> dict[str, Any]:
    """spec.access.endpoint of a Const endpoint (no CA: insecure, as the reference converts it)."""
    value: dict[str, Any] = {"address": address}
    if ca_pem is not None:
        value["caBundle"] = b64(ca_pem)
    else:
        value["insecure"] = True
    return {"type": "Const", "const": value}


def spec(endpoint: dict[str, Any], credential_type: str) -> dict[str, Any]:
    return {"provider": "", "access": {"endpoint": endpoint, "credential": {"type": credential_type}}}


async def served(tmp_path: Path, *secrets: dict[str, Any], **config: Any) -> tuple[int, Any]:
    """GET clustergateway `bar` from a gateway serving `secrets`."""
    async with running_gateway(tmp_path, ManualSecretSource(list(secrets)), **config) as gw:
        return await get(gw, f"{CLUSTERGATEWAYS}/{NAME}")


# --- TestConvertSecretToGateway ----------------------------------------------------------------


async def test_missing_credential_type_label_should_fail(tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go, TestConvertSecretToGateway/"missing credential type label should fail"."""
    status, body = await served(tmp_path, secret({}, {}))
    assert (status, body) == (404, not_found(NAME, f"missing label {CREDENTIAL_LABEL}"))


async def test_service_account_token_conversion(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go, TestConvertSecretToGateway/"service-account token conversion".

    Endpoint and CA become `spec.access.endpoint.const`; the credential type is served and the token
    is not (deliberate difference: no credential is ever returned). The reference's placeholder CA
    ("caData") is refused here (deliberate difference: invalid PEM is refused at conversion)."""
    labels = {CREDENTIAL_LABEL: "ServiceAccountToken"}
    data: dict[str, str | bytes] = {"ca.crt": member.ca_pem, "token": "token", "endpoint": ENDPOINT}
    status, body = await served(tmp_path, secret(labels, data))
    assert status == 200
    assert (body["spec"], body["status"]) == (spec(const(ENDPOINT, member.ca_pem), "ServiceAccountToken"), {"healthy": False})
    assert "token" not in json.dumps(body).replace("ServiceAccountToken", "")

    status, body = await served(tmp_path, secret(labels, {**data, "ca.crt": "caData"}))
    # The rest of the message is the PEM parser's own explanation.
    refusal = not_found(NAME, "data['ca.crt'] is not a valid PEM certificate bundle: ")
    assert (status, {**body, "message": body["message"][: len(refusal["message"])]}) == (404, refusal)


async def test_x509_certificate_conversion(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go, TestConvertSecretToGateway/"x509 certificate conversion".

    The served object says X509Certificate and holds neither certificate nor key; the pair is what
    the member is shown."""
    pair = member.client_cert("gateway-x509")
    labels = {CREDENTIAL_LABEL: "X509Certificate"}
    data: dict[str, str | bytes] = {
        "ca.crt": member.ca_pem,
        "tls.crt": pair.cert_pem,
        "tls.key": pair.key_pem,
        "endpoint": member.url,
    }
    async with running_gateway(tmp_path, ManualSecretSource([secret(labels, data)])) as gw:
        status, body = await get(gw, f"{CLUSTERGATEWAYS}/{NAME}")
        assert status == 200
        assert body["spec"] == spec(const(member.url, member.ca_pem), "X509Certificate")
        assert "BEGIN" not in json.dumps(body)
        assert (await get(gw, proxied(NAME, "/version")))[0] == 200
    assert member.requests[-1].user == "cert:gateway-x509"


async def test_cluster_proxy_egress_conversion(tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go, TestConvertSecretToGateway/"cluster proxy egress conversion".

    A ClusterProxy endpoint needs no `endpoint` key and is served with no `const`."""
    pair = make_ca("member-client-ca")
    labels = {CREDENTIAL_LABEL: "X509Certificate", ENDPOINT_LABEL: "ClusterProxy"}
    data: dict[str, str | bytes] = {"ca.crt": pair.cert_pem, "tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
    status, body = await served(tmp_path, secret(labels, data))
    assert status == 200
    assert body["spec"] == spec({"type": "ClusterProxy"}, "X509Certificate")


async def test_insecure_conversion(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go, TestConvertSecretToGateway/"insecure conversion".

    No `ca.crt` (nor `ca`): the endpoint is served as `insecure: true`, and the member is reached
    without verifying its certificate."""
    pair = member.client_cert("gateway-x509")
    labels = {CREDENTIAL_LABEL: "X509Certificate"}
    data: dict[str, str | bytes] = {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "endpoint": member.url}
    async with running_gateway(tmp_path, ManualSecretSource([secret(labels, data)])) as gw:
        status, body = await get(gw, f"{CLUSTERGATEWAYS}/{NAME}")
        assert status == 200
        assert body["spec"] == spec(const(member.url), "X509Certificate")
        assert (await get(gw, proxied(NAME, "/version")))[0] == 200


async def test_healthiness_conversion_x509(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go, TestConvertSecretToGateway/"healthiness conversion (x509)".

    With HealthinessCheck on, the annotations `healthy: "True"` and `healthy-reason: MyReason` are
    the status. (We read them whatever the gate says: README, Compared with cluster-gateway.)"""
    pair = member.client_cert("gateway-x509")
    labels = {CREDENTIAL_LABEL: "X509Certificate"}
    data: dict[str, str | bytes] = {
        "ca.crt": member.ca_pem,
        "tls.crt": pair.cert_pem,
        "tls.key": pair.key_pem,
        "endpoint": ENDPOINT,
    }
    annotations = {"status.cluster.core.oam.dev/healthy": "True", "status.cluster.core.oam.dev/healthy-reason": "MyReason"}
    gates = {**Config().feature_gates, "HealthinessCheck": True}
    status, body = await served(tmp_path, secret(labels, data, annotations), feature_gates=gates)
    assert status == 200
    assert (body["spec"], body["status"]) == (
        spec(const(ENDPOINT, member.ca_pem), "X509Certificate"),
        {"healthy": True, "healthyReason": "MyReason"},
    )


async def test_dynamic_service_account_token_issued_from_external_command(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go,
    TestConvertSecretToGateway/"dynamic service account token issued from external command".

    The exec config runs `echo` printing a v1beta1 ExecCredential with token `token`. The reference
    runs it while converting and serves the token; we serve type Dynamic only (deliberate
    difference: no credential is ever returned) and the member receives the token."""
    member.tokens["token"] = "member-admin"
    labels = {CREDENTIAL_LABEL: "Dynamic"}
    exec_config = echo_exec(EXEC_V1BETA1, {"token": "token"})
    data: dict[str, str | bytes] = {"endpoint": member.url, "ca.crt": member.ca_pem, "exec": exec_config}
    async with running_gateway(tmp_path, ManualSecretSource([secret(labels, data)])) as gw:
        status, body = await get(gw, f"{CLUSTERGATEWAYS}/{NAME}")
        assert (status, body["spec"]) == (200, spec(const(member.url, member.ca_pem), "Dynamic"))
        assert (await get(gw, proxied(NAME, "/version")))[0] == 200
    assert member.requests[-1].headers.getall("Authorization") == ["Bearer token"]


async def test_dynamic_x509_cert_key_pair_issued_from_external_command(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go,
    TestConvertSecretToGateway/"dynamic x509 cert-key pair issued from external command".

    `echo` prints a v1beta1 ExecCredential with a client certificate and key (real PEM here: the
    reference's placeholders are refused, see the module docstring); the member sees that certificate."""
    pair = member.client_cert("exec-x509")
    labels = {CREDENTIAL_LABEL: "Dynamic"}
    credential = {"clientCertificateData": pair.cert_pem.decode(), "clientKeyData": pair.key_pem.decode()}
    data: dict[str, str | bytes] = {"endpoint": member.url, "ca.crt": member.ca_pem, "exec": echo_exec(EXEC_V1BETA1, credential)}
    async with running_gateway(tmp_path, ManualSecretSource([secret(labels, data)])) as gw:
        status, body = await get(gw, f"{CLUSTERGATEWAYS}/{NAME}")
        assert (status, body["spec"]) == (200, spec(const(member.url, member.ca_pem), "Dynamic"))
        assert (await get(gw, proxied(NAME, "/version")))[0] == 200
    assert member.requests[-1].user == "cert:exec-x509"
    assert "Authorization" not in member.requests[-1].headers


async def test_failed_to_fetch_cluster_credential_from_dynamic_auth_mode(tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go,
    TestConvertSecretToGateway/"failed to fetch cluster credential from dynamic auth mode"."""
    labels = {CREDENTIAL_LABEL: "Dynamic"}
    data: dict[str, str | bytes] = {"endpoint": ENDPOINT, "exec": "invalid exec config format"}
    status, body = await served(tmp_path, secret(labels, data))
    reason = "data['exec'] is not valid JSON: Expecting value: line 1 column 1 (char 0)"
    assert (status, body) == (404, not_found(NAME, reason))


# --- TestConvertSecretAndClusterToGateway (--ocm-integration) -----------------------------------


async def test_ocm_x509_certificate_conversion(ocm_hub: FakeKubeAPIServer, member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go, TestConvertSecretAndClusterToGateway/"x509 certificate conversion".

    With --ocm-integration, a Secret holding only the client certificate and key takes its endpoint
    and CA from the ManagedCluster of its name (`spec.managedClusterClientConfigs[0]`)."""
    pair = member.client_cert("ocm-x509")
    add_managed_cluster(ocm_hub, NAME, url=member.url, ca_pem=member.ca_pem)
    ocm_hub.create_secret(
        SECRET_NAMESPACE,
        NAME,
        labels={CREDENTIAL_LABEL: "X509Certificate"},
        data={"tls.crt": pair.cert_pem, "tls.key": pair.key_pem},
    )
    async with hosting_gateway(tmp_path, ocm_hub, ocm_integration=True) as gw:
        status, body = await get(gw, f"{CLUSTERGATEWAYS}/{NAME}", Authorization=f"Bearer {ADMIN}")
        assert (status, body["spec"]) == (200, spec(const(member.url, member.ca_pem), "X509Certificate"))
        assert (await get(gw, proxied(NAME, "/version"), Authorization=f"Bearer {ADMIN}"))[0] == 200
    assert member.requests[-1].user == "cert:ocm-x509"


async def test_ocm_service_account_token_conversion(
    ocm_hub: FakeKubeAPIServer, member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    """reference: clustergateway_types_secret_test.go, TestConvertSecretAndClusterToGateway/"service-account token conversion".

    The ManagedCluster's CA overrides the Secret's own `ca.crt`: here the Secret's CA did not sign
    the member's certificate, so reaching the member proves the override."""
    add_managed_cluster(ocm_hub, NAME, url=member.url, ca_pem=member.ca_pem)
    overridden = make_ca("should-be-overridden").cert_pem
    ocm_hub.create_secret(
        SECRET_NAMESPACE,
        NAME,
        labels={CREDENTIAL_LABEL: "ServiceAccountToken"},
        data={"token": member.token, "ca.crt": overridden},
    )
    async with hosting_gateway(tmp_path, ocm_hub, ocm_integration=True) as gw:
        status, body = await get(gw, f"{CLUSTERGATEWAYS}/{NAME}", Authorization=f"Bearer {ADMIN}")
        assert (status, body["spec"]) == (200, spec(const(member.url, member.ca_pem), "ServiceAccountToken"))
        assert (await get(gw, proxied(NAME, "/version"), Authorization=f"Bearer {ADMIN}"))[0] == 200
    assert member.requests[-1].headers.getall("Authorization") == [f"Bearer {member.token}"]


# --- Get and List against the hosting cluster's Secrets ----------------------------------------


async def test_get_cluster_gateway(hub: FakeKubeAPIServer, member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go, TestGetClusterGateway.

    Without OCM, GET reads the cluster Secret of that name in the Secret namespace and answers its conversion."""
    hub.create_secret(
        SECRET_NAMESPACE,
        NAME,
        labels={CREDENTIAL_LABEL: "ServiceAccountToken"},
        data={"ca.crt": member.ca_pem, "token": "token", "endpoint": ENDPOINT},
    )
    async with hosting_gateway(tmp_path, hub) as gw:
        status, body = await get(gw, f"{CLUSTERGATEWAYS}/{NAME}", Authorization=f"Bearer {ADMIN}")
    assert status == 200
    assert (body["kind"], body["metadata"]["name"]) == ("ClusterGateway", NAME)
    assert body["spec"] == spec(const(ENDPOINT, member.ca_pem), "ServiceAccountToken")


async def test_list_cluster_gateway(hub: FakeKubeAPIServer, member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go, TestListClusterGateway.

    LIST holds the one cluster Secret's conversion, the same object GET answers."""
    pair = member.client_cert("x")
    hub.create_secret(
        SECRET_NAMESPACE,
        NAME,
        labels={CREDENTIAL_LABEL: "X509Certificate"},
        data={"ca.crt": member.ca_pem, "tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "endpoint": ENDPOINT},
    )
    async with hosting_gateway(tmp_path, hub) as gw:
        status, listed = await get(gw, CLUSTERGATEWAYS, Authorization=f"Bearer {ADMIN}")
        _, one = await get(gw, f"{CLUSTERGATEWAYS}/{NAME}", Authorization=f"Bearer {ADMIN}")
    assert (status, listed["kind"]) == (200, "ClusterGatewayList")
    assert listed["items"] == [
        {key: one[key] for key in ("metadata", "spec", "status")} | {"apiVersion": one["apiVersion"], "kind": one["kind"]}
    ]
    assert one["spec"] == spec(const(ENDPOINT, member.ca_pem), "X509Certificate")


async def test_list_hybrid_cluster_gateway(hub: FakeKubeAPIServer, member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go, TestListHybridClusterGateway.

    Two cluster Secrets and one Secret without the credential-type label in the Secret namespace:
    the list holds the two clusters. (The reference names one "no cluster connected", which is not
    a valid Kubernetes name; it is `no-cluster-connected` here.)"""
    pair = member.client_cert("x")
    data: dict[str, str | bytes] = {
        "ca.crt": member.ca_pem,
        "tls.crt": pair.cert_pem,
        "tls.key": pair.key_pem,
        "endpoint": ENDPOINT,
    }
    for name in (NAME, "no-cluster-connected"):
        hub.create_secret(SECRET_NAMESPACE, name, labels={CREDENTIAL_LABEL: "X509Certificate"}, data=data)
    hub.create_secret(SECRET_NAMESPACE, "dummy")
    async with hosting_gateway(tmp_path, hub) as gw:
        status, listed = await get(gw, CLUSTERGATEWAYS, Authorization=f"Bearer {ADMIN}")
    assert status == 200
    assert sorted(item["metadata"]["name"] for item in listed["items"]) == [NAME, "no-cluster-connected"]


# --- TestBuildCredentialFromExecConfig ---------------------------------------------------------


async def test_missing_exec_config(tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go, TestBuildCredentialFromExecConfig/"missing exec config".

    Both refuse a Dynamic Secret without `exec`; the reference says "missing secret data key: exec"."""
    status, body = await served(tmp_path, secret({CREDENTIAL_LABEL: "Dynamic"}, {"endpoint": ENDPOINT}))
    assert (status, body) == (404, not_found(NAME, "Dynamic credential needs data['exec'] (a client-go ExecConfig as JSON)"))


async def test_invalid_exec_config_format(tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go, TestBuildCredentialFromExecConfig/"invalid exec config format".

    Both refuse `exec` that is not JSON, and say so (the reference quotes its JSON decoder's words)."""
    status, body = await served(
        tmp_path, secret({CREDENTIAL_LABEL: "Dynamic"}, {"endpoint": ENDPOINT, "exec": "some invalid exec config"})
    )
    assert (status, body) == (404, not_found(NAME, "data['exec'] is not valid JSON: Expecting value: line 1 column 1 (char 0)"))


async def test_returns_successfully_a_service_account_token(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go,
    TestBuildCredentialFromExecConfig/"returns successfully a service account token".

    A v1 exec config whose plugin prints an ExecCredential without `kind` (client-go fills it in from
    `apiVersion`): its token reaches the member."""
    member.tokens["token"] = "member-admin"
    exec_config = json.dumps(
        {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "echo",
            "args": [json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "status": {"token": "token"}})],
        }
    )
    data: dict[str, str | bytes] = {"endpoint": member.url, "ca.crt": member.ca_pem, "exec": exec_config}
    async with running_gateway(tmp_path, ManualSecretSource([secret({CREDENTIAL_LABEL: "Dynamic"}, data)])) as gw:
        assert (await get(gw, proxied(NAME, "/version")))[0] == 200
    assert member.requests[-1].headers.getall("Authorization") == ["Bearer token"]


async def test_returns_successfully_a_x509_client_certificate(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    """reference: clustergateway_types_secret_test.go,
    TestBuildCredentialFromExecConfig/"returns successfully a X509 client certificate".

    The plugin prints, without `kind`, a client certificate and key (real PEM: see the module docstring)."""
    pair = member.client_cert("exec-no-kind")
    credential = {"clientCertificateData": pair.cert_pem.decode(), "clientKeyData": pair.key_pem.decode()}
    exec_config = echo_exec("client.authentication.k8s.io/v1", credential, kind=None)
    data: dict[str, str | bytes] = {"endpoint": member.url, "ca.crt": member.ca_pem, "exec": exec_config}
    async with running_gateway(tmp_path, ManualSecretSource([secret({CREDENTIAL_LABEL: "Dynamic"}, data)])) as gw:
        assert (await get(gw, proxied(NAME, "/version")))[0] == 200
    assert member.requests[-1].user == "cert:exec-no-kind"
