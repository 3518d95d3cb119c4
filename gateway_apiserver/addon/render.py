"""The objects the manager installs for a `GatewaySpec`, as pure functions of it.

Names and arguments follow the reference installer (ServiceAccount and Service `cluster-gateway`,
Deployment `gateway-deployment`, serving Secret `cluster-gateway-tls-cert`, `--ocm-integration`,
the HealthinessCheck and SecretCache gates, the ClusterProxy flags with mounted Secrets); the
mount paths and pod hardening are those of this project's deploy/. RBAC is what the gateway
uses and no more: deploy/rbac.yaml plus the OCM component, bound to this ServiceAccount.
"""

from __future__ import annotations

import base64
from typing import Any

from .spec import ADDON_NAME, GROUP, GatewaySpec

Obj = dict[str, Any]

DEPLOYMENT = "gateway-deployment"
SERVING_SECRET = "cluster-gateway-tls-cert"  # tls.crt / tls.key, mounted by the gateway
SIGNER_SECRET = "cluster-gateway-signer"  # the CA that signs it (and the previous CA during a rotation)
API_SERVICE = "v1alpha1.cluster.core.oam.dev"
MANAGED_BY = {"app.kubernetes.io/managed-by": "cluster-gateway-addon-manager"}
POD_LABELS = {"open-cluster-management.io/addon": ADDON_NAME}
GENERATION_LABEL = f"{GROUP}/configuration-generation"
TLS_DIR = "/etc/gateway-apiserver/tls"
PROXY_CA_DIR = "/etc/gateway-apiserver/proxy-server-ca"
PROXY_CLIENT_DIR = "/etc/gateway-apiserver/proxy-client"
RBAC = "rbac.authorization.k8s.io/v1"
SECRETS_ROLE = "open-cluster-management:cluster-gateway:cluster-secrets-reader"
CLUSTERS_ROLE = "open-cluster-management:cluster-gateway:managedclusters-reader"
AUTH_DELEGATOR_BINDING = "open-cluster-management:cluster-gateway:auth-delegator"
AUTH_READER_BINDING = "open-cluster-management:cluster-gateway:authentication-reader"


def _meta(name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name, "labels": {**MANAGED_BY, **(labels or {})}}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def service_hosts(spec: GatewaySpec) -> list[str]:
    """The names the serving certificate covers: the Service, as the aggregator dials it, and shorter forms."""
    ns = spec.install_namespace
    return [f"{ADDON_NAME}.{ns}.svc", f"{ADDON_NAME}.{ns}", ADDON_NAME]


def namespaces(spec: GatewaySpec) -> list[Obj]:
    """The install and Secret namespaces."""
    names = dict.fromkeys([spec.install_namespace, spec.secret_namespace])
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(n)} for n in names]


def _subject(spec: GatewaySpec) -> list[Obj]:
    return [{"kind": "ServiceAccount", "name": ADDON_NAME, "namespace": spec.install_namespace}]


def _binding(kind: str, name: str, role_kind: str, role: str, spec: GatewaySpec, namespace: str | None = None) -> Obj:
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}
    return {"apiVersion": RBAC, "kind": kind, "metadata": _meta(name, namespace), "roleRef": role_ref, "subjects": _subject(spec)}


def identity(spec: GatewaySpec) -> list[Obj]:
    """The gateway's ServiceAccount and its least-privilege RBAC (no wildcard anywhere)."""
    ns = spec.install_namespace
    secrets_rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "patch"]}
    clusters_rule = {
        "apiGroups": ["cluster.open-cluster-management.io"],
        "resources": ["managedclusters"],
        "verbs": ["get", "list", "watch"],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(ADDON_NAME, ns)},
        # The cluster Secrets: read, watch, and patch the health annotations, in the Secret namespace only.
        {"apiVersion": RBAC, "kind": "Role", "metadata": _meta(SECRETS_ROLE, spec.secret_namespace), "rules": [secrets_rule]},
        _binding("RoleBinding", SECRETS_ROLE, "Role", SECRETS_ROLE, spec, spec.secret_namespace),
        # The front-proxy and client CAs in kube-system/extension-apiserver-authentication.
        _binding("RoleBinding", AUTH_READER_BINDING, "Role", "extension-apiserver-authentication-reader", spec, "kube-system"),
        # TokenReviews and SubjectAccessReviews.
        _binding("ClusterRoleBinding", AUTH_DELEGATOR_BINDING, "ClusterRole", "system:auth-delegator", spec),
        # --ocm-integration reads ManagedClusters.
        {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": _meta(CLUSTERS_ROLE), "rules": [clusters_rule]},
        _binding("ClusterRoleBinding", CLUSTERS_ROLE, "ClusterRole", CLUSTERS_ROLE, spec),
    ]


def gateway_args(spec: GatewaySpec) -> list[str]:
    """The gateway's command line: the reference installer's flags, with this project's mount paths."""
    args = [
        "--secure-port=9443",
        f"--secret-namespace={spec.secret_namespace}",
        "--ocm-integration=true",
        f"--tls-cert-file={TLS_DIR}/tls.crt",
        f"--tls-private-key-file={TLS_DIR}/tls.key",
        "--feature-gates=HealthinessCheck=true,SecretCache=true",
        "--cert-dir=/tmp/certs",
    ]
    if (proxy := spec.cluster_proxy) is not None:
        args += [
            f"--proxy-host={proxy.host}",
            f"--proxy-port={proxy.port}",
            f"--proxy-ca-cert={PROXY_CA_DIR}/ca.crt",
            f"--proxy-cert={PROXY_CLIENT_DIR}/tls.crt",
            f"--proxy-key={PROXY_CLIENT_DIR}/tls.key",
        ]
    return args


def deployment(spec: GatewaySpec) -> Obj:
    """The gateway's Deployment (three replicas, rolling one at a time, as the reference)."""
    mounts: list[Obj] = [{"name": "tls", "mountPath": TLS_DIR, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[Obj] = [
        {"name": "tls", "secret": {"secretName": SERVING_SECRET}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    if (proxy := spec.cluster_proxy) is not None:
        mounts += [
            {"name": "proxy-server-ca", "mountPath": PROXY_CA_DIR, "readOnly": True},
            {"name": "proxy-client", "mountPath": PROXY_CLIENT_DIR, "readOnly": True},
        ]
        volumes += [
            {"name": "proxy-server-ca", "secret": {"secretName": proxy.ca_secret}},
            {"name": "proxy-client", "secret": {"secretName": proxy.client_secret}},
        ]
    probe = {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    container: Obj = {
        "name": "gateway-apiserver",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "args": gateway_args(spec),
        "ports": [{"name": "https", "containerPort": 9443, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": probe, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {**probe, "path": "/livez"}, "periodSeconds": 10, "failureThreshold": 6},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": mounts,
    }
    pod: Obj = {
        "serviceAccountName": ADDON_NAME,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(DEPLOYMENT, spec.install_namespace, {GENERATION_LABEL: str(spec.generation)}),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": dict(POD_LABELS)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
            "template": {"metadata": {"labels": dict(POD_LABELS)}, "spec": pod},
        },
    }


def service(spec: GatewaySpec) -> Obj:
    """The Service the aggregator dials (443 to the pods' 9443)."""
    ports = [{"name": "https", "port": 443, "targetPort": 9443, "protocol": "TCP"}]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(ADDON_NAME, spec.install_namespace),
        "spec": {"selector": dict(POD_LABELS), "ports": ports},
    }


def api_service(spec: GatewaySpec, ca_bundle: bytes) -> Obj:
    """The APIService registering cluster.core.oam.dev/v1alpha1, trusting `ca_bundle` (one or more CA PEMs)."""
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": _meta(API_SERVICE),
        "spec": {
            "group": "cluster.core.oam.dev",
            "version": "v1alpha1",
            "groupPriorityMinimum": 2000,
            "versionPriority": 10,
            "service": {"name": ADDON_NAME, "namespace": spec.install_namespace, "port": 443},
            "insecureSkipTLSVerify": False,
            "caBundle": base64.b64encode(ca_bundle).decode(),
        },
    }


def proxy_secret_copy(source: Obj, namespace: str) -> Obj:
    """A ClusterProxy credential Secret copied into the install namespace (same name, type and data)."""
    meta = source.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(str(meta.get("name", "")), namespace),
        "type": source.get("type", "Opaque"),
        "data": dict(source.get("data") or {}),
    }
