"""The argument lists the reference's three installers give cluster-gateway, restated from their sources.

Helm is not available offline, so each chart's `args:` block is restated here as a function of the
chart values it reads, giving what `helm template` renders with the chart's defaults unless a test
passes other values. Sources (read at these commits; re-read them when an installer changes):

- KubeVela's vela-core chart, kubevela/kubevela@5a44b5f10c59f80a4fcd1990f59e024856c78cd8:
  charts/vela-core/templates/cluster-gateway/cluster-gateway.yaml (Deployment args, the proxy-config
  ConfigMap) and charts/vela-core/values.yaml (multicluster.clusterGateway.port 9443,
  secureTLS.enabled true, secureTLS.certPath /etc/k8s-cluster-gateway-certs, authentication.enabled false).
- cluster-gateway's own chart, oam-dev/cluster-gateway@2b04dd452b7a9da6e75de105cd00499a1c6369bd:
  charts/cluster-gateway/templates/cluster-gateway-apiserver.yaml and charts/cluster-gateway/values.yaml
  (secretNamespace open-cluster-management-credentials, ocmIntegration and its clusterProxy off,
  featureGate.healthiness and featureGate.secretCache false).
- The OCM add-on manager, the same commit: pkg/addon/controllers/installer.go
  (newClusterGatewayDeployment builds the args from the ClusterGatewayConfiguration) and
  charts/addon-manager/templates/clustergatewayconfiguration.yaml with charts/addon-manager/values.yaml
  (clusterGateway.secretNamespace open-cluster-management-credentials; egress Direct unless
  konnectivityEgress, then ClusterProxy to proxy-entrypoint.open-cluster-management-addon:8090).
"""

from __future__ import annotations

from pathlib import Path

# The identity-exchange rules of vela-core's `<release>-cluster-gateway-proxy-config` ConfigMap (config.yaml),
# mounted at /etc/proxy-config: callers in the group kubevela:ux reach members with the gateway's own credential.
VELA_CORE_PROXY_CONFIG = """\
apiVersion: cluster.core.oam.dev/v1alpha1
kind: ClusterGatewayProxyConfiguration
spec:
  clientIdentityExchanger:
    rules:
      - name: super-user
        source:
          group: kubevela:ux
        type: PrivilegedIdentityExchanger
"""
VELA_CORE_TLS_DIR = "/etc/k8s-cluster-gateway-certs"  # multicluster.clusterGateway.secureTLS.certPath
VELA_CORE_SERVICE = "kubevela-cluster-gateway-service"  # <release>-cluster-gateway-service, release `kubevela`
REFERENCE_CHART_SECRET_NAMESPACE = "open-cluster-management-credentials"  # both OCM-side installers' default


def vela_core_args(*, namespace: str = "vela-system", authentication: bool = False, secure_tls: bool = True) -> list[str]:
    """vela-core's cluster-gateway container args: `--secret-namespace` is the release namespace, and
    ClientIdentityPenetration follows the chart value `authentication.enabled`."""
    args = [
        "apiserver",
        "--secure-port=9443",
        f"--secret-namespace={namespace}",
        f"--feature-gates=APIPriorityAndFairness=false,ClientIdentityPenetration={str(authentication).lower()}",
        "--cluster-gateway-proxy-config=/etc/proxy-config/config.yaml",
    ]
    if secure_tls:
        args += [f"--tls-cert-file={VELA_CORE_TLS_DIR}/tls.crt", f"--tls-private-key-file={VELA_CORE_TLS_DIR}/tls.key"]
    return [*args, "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics"]


def reference_chart_args(
    *,
    secret_namespace: str = REFERENCE_CHART_SECRET_NAMESPACE,
    ocm_integration: bool = False,
    cluster_proxy: bool = False,
    healthiness: bool = False,
    secret_cache: bool = False,
) -> list[str]:
    """cluster-gateway's own chart. Its template writes each enabled gate followed by a comma, so the
    defaults give an empty `--feature-gates=`; there is no TLS flag (the server signs its own certificate)."""
    args = ["--secure-port=9443", f"--secret-namespace={secret_namespace}"]
    if ocm_integration:
        args.append("--ocm-integration=true")
        if cluster_proxy:
            args += [
                "--proxy-host=proxy-entrypoint.open-cluster-management-cluster-proxy",
                "--proxy-port=8090",
                "--proxy-ca-cert=/etc/ca/ca.crt",
                "--proxy-cert=/etc/tls/tls.crt",
                "--proxy-key=/etc/tls/tls.key",
            ]
    gates = ("HealthinessCheck=true," if healthiness else "") + ("SecretCache=true," if secret_cache else "")
    return [*args, f"--feature-gates={gates}"]


def ocm_addon_args(*, secret_namespace: str = REFERENCE_CHART_SECRET_NAMESPACE, cluster_proxy: bool = False) -> list[str]:
    """The add-on manager's Deployment args: its serving certificate is mounted at /etc/server; with the
    ClusterProxy egress (the chart value konnectivityEgress) the proxy flags follow."""
    args = [
        "--secure-port=9443",
        f"--secret-namespace={secret_namespace}",
        "--ocm-integration=true",
        "--tls-cert-file=/etc/server/tls.crt",
        "--tls-private-key-file=/etc/server/tls.key",
        "--feature-gates=HealthinessCheck=true,SecretCache=true",
    ]
    if cluster_proxy:
        args += [
            "--proxy-host=proxy-entrypoint.open-cluster-management-addon",
            "--proxy-port=8090",
            "--proxy-ca-cert=/etc/ca/ca.crt",
            "--proxy-cert=/etc/tls/tls.crt",
            "--proxy-key=/etc/tls/tls.key",
        ]
    return args


def in_test_pod(args: list[str], root: Path, port: int) -> list[str]:
    """`args` as the test runs them: every /etc/ path under `root` (where the test wrote the mounted
    files), the port a free loopback one. Nothing else is changed; the caller appends the two things
    a pod gets from its environment (the bind address, the hosting cluster's kubeconfig)."""
    out = []
    for arg in args:
        flag, sep, value = arg.partition("=")
        if flag == "--secure-port":
            value = str(port)
        elif value.startswith("/etc/"):
            value = str(root / value.removeprefix("/"))
        out.append(flag + sep + value)
    return out
