"""deploy/ renders with kustomize once certs/out/ holds the certificate material, and its pieces agree with each other."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.deploy.rendering import REPO, Rendered, render_deploy


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return render_deploy()


def test_everything_is_there(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert set(rendered) >= {
        ("Namespace", "vela-system"),
        ("ServiceAccount", "gateway-apiserver"),
        ("Deployment", "gateway-apiserver"),
        ("PodDisruptionBudget", "gateway-apiserver"),
        ("Service", "gateway-apiserver"),
        ("APIService", "v1alpha1.cluster.core.oam.dev"),
        ("Secret", "gateway-apiserver-tls"),
        ("ClusterRoleBinding", "gateway-apiserver:system:auth-delegator"),
    }


def test_apiservice_points_at_the_service_with_a_real_ca_bundle(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    api = rendered[("APIService", "v1alpha1.cluster.core.oam.dev")]["spec"]
    service = rendered[("Service", "gateway-apiserver")]
    assert (api["group"], api["version"]) == ("cluster.core.oam.dev", "v1alpha1")
    assert api["service"] == {"name": service["metadata"]["name"], "namespace": service["metadata"]["namespace"], "port": 443}
    assert api["insecureSkipTLSVerify"] is False  # explicit, so applying over cluster-gateway's `true` turns it off
    secret = rendered[("Secret", "gateway-apiserver-tls")]
    assert (secret["type"], secret["metadata"]["namespace"]) == ("kubernetes.io/tls", "vela-system")
    assert base64.b64decode(api["caBundle"]) == base64.b64decode(secret["data"]["ca.crt"])
    ca = x509.load_pem_x509_certificate(base64.b64decode(api["caBundle"]))
    serving = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    serving.verify_directly_issued_by(ca)  # the CA in caBundle signed the serving certificate


def test_deployment_matches_the_service_and_is_hardened(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = rendered[("Deployment", "gateway-apiserver")]["spec"]
    pod = deployment["template"]["spec"]
    [container] = pod["containers"]
    service = rendered[("Service", "gateway-apiserver")]["spec"]
    [port] = service["ports"]
    assert port["port"] == 443
    assert port["targetPort"] == container["ports"][0]["containerPort"] == 9443
    assert "--secure-port=9443" in container["args"]
    assert service["selector"] == deployment["selector"]["matchLabels"] == deployment["template"]["metadata"]["labels"]
    assert deployment["replicas"] == 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["medium"] == "Memory"
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
    assert pod["affinity"]["podAntiAffinity"]
    assert pod["serviceAccountName"] == "gateway-apiserver"
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "gateway-apiserver-tls"
    pdb = rendered[("PodDisruptionBudget", "gateway-apiserver")]["spec"]
    assert pdb["selector"]["matchLabels"] == deployment["selector"]["matchLabels"]


def test_deployment_args_are_valid_gateway_flags(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    from gateway_apiserver.config import build_parser

    [container] = rendered[("Deployment", "gateway-apiserver")]["spec"]["template"]["spec"]["containers"]
    namespace = build_parser().parse_args(container["args"])
    assert namespace.secret_namespace == "vela-system"


def test_the_pod_is_given_time_for_a_graceful_shutdown(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The kubelet kills the pod after terminationGracePeriodSeconds: the gateway's delay and grace must fit in it."""
    from gateway_apiserver.config import build_parser

    pod = rendered[("Deployment", "gateway-apiserver")]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    config = build_parser().parse_args(container["args"])
    probe_period = container["readinessProbe"]["periodSeconds"]
    assert config.shutdown_delay_duration >= 2 * probe_period  # unready long enough for the Service to notice
    assert pod["terminationGracePeriodSeconds"] > config.shutdown_delay_duration + config.shutdown_grace_period


def test_certificate_keys_are_never_committed() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "certs/out/tls.key", "certs/out/ca.crt", "deploy/server.key"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert ignored == ["certs/out/tls.key", "certs/out/ca.crt", "deploy/server.key"]
    tracked = subprocess.run(["git", "ls-files", "certs", "deploy"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "certs/out/" not in tracked and ".key" not in tracked


def test_the_rbac_kustomize_applies_is_deploy_rbac_yaml_as_written(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    # The fake hosting kube-apiserver enforces deploy/rbac.yaml as written; kustomize must not change it.
    written = [d for d in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()) if d]
    assert [rendered[(d["kind"], d["metadata"]["name"])] for d in written] == written


def test_the_cert_manager_component_replaces_certs_out(tmp_path: Path) -> None:
    """certs/README.md: swap the component and cert-manager issues the Secret and injects the caBundle."""
    shutil.copytree(REPO / "deploy", tmp_path / "deploy")
    shutil.copytree(REPO / "certs", tmp_path / "certs", ignore=shutil.ignore_patterns("out"))
    kustomization = tmp_path / "deploy" / "kustomization.yaml"
    lines = kustomization.read_text().splitlines()
    [component] = [i for i, line in enumerate(lines) if line.strip().startswith("- ../certs")]
    lines[component] = "  - ../certs/cert-manager"
    kustomization.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / "deploy")], capture_output=True, text=True, timeout=60, check=True
    )
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout) if d}
    assert ("Secret", "gateway-apiserver-tls") not in docs  # cert-manager writes it
    certificate = docs[("Certificate", "gateway-apiserver-tls")]
    volumes = docs[("Deployment", "gateway-apiserver")]["spec"]["template"]["spec"]["volumes"]
    assert certificate["spec"]["secretName"] == next(v for v in volumes if v["name"] == "tls")["secret"]["secretName"]
    service = docs[("Service", "gateway-apiserver")]["metadata"]
    assert f"{service['name']}.{service['namespace']}.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": "gateway-apiserver-ca"}
    assert (
        docs[("Issuer", "gateway-apiserver-ca")]["spec"]["ca"]["secretName"]
        == docs[("Certificate", "gateway-apiserver-ca")]["spec"]["secretName"]
    )
    api = docs[("APIService", "v1alpha1.cluster.core.oam.dev")]
    namespace = certificate["metadata"]["namespace"]
    assert api["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": f"{namespace}/gateway-apiserver-tls"}
    assert "caBundle" not in api["spec"] and api["spec"]["insecureSkipTLSVerify"] is False
