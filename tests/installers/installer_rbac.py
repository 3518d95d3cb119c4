"""The RBAC each installer gives the ServiceAccount its cluster-gateway pod runs as, restated from its sources.

Swapping the image keeps these grants, so our gateway must run on them. Sources (the commits of installer_args.py):

- cluster-gateway's own chart: charts/cluster-gateway/templates/clusterroles.yaml, clusterrolebindings.yaml,
  rolebindings.yaml, secret-roles.yaml, secret-rolebindings.yaml; ServiceAccount `cluster-gateway`.
- KubeVela's vela-core chart: templates/kubevela-controller.yaml. The cluster-gateway pod runs as the
  controller's ServiceAccount (`kubevela.serviceAccountName`, `kubevela-vela-core` for release `kubevela`),
  bound to cluster-admin, or with `authentication.enabled` to the ClusterRole `kubevela-vela-core:manager`.
"""

from __future__ import annotations

from typing import Any

RBAC_GROUP = "rbac.authorization.k8s.io"
READ = ["get", "list", "watch"]
VELA_CORE_ACCOUNT = "kubevela-vela-core"


def _account(name: str, namespace: str) -> list[dict[str, Any]]:
    return [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]


def _cluster_binding(name: str, role: str, subjects: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def reference_chart_rbac(release_namespace: str, secret_namespace: str) -> list[dict[str, Any]]:
    """The chart's RBAC objects, with its values substituted."""
    account = _account("cluster-gateway", release_namespace)
    rbac = RBAC_GROUP
    reader = "open-cluster-management:cluster-gateway:managedcluster-reader"
    admission = ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"]
    admission += ["validatingadmissionpolicies", "validatingadmissionpolicybindings"]
    return [
        {
            "kind": "ClusterRole",
            "metadata": {"name": reader},
            "rules": [
                {"apiGroups": ["cluster.open-cluster-management.io"], "resources": ["managedclusters"], "verbs": READ},
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": READ},
                {"apiGroups": ["admissionregistration.k8s.io"], "resources": admission, "verbs": READ},
                {
                    "apiGroups": ["flowcontrol.apiserver.k8s.io"],
                    "resources": ["prioritylevelconfigurations", "flowschemas"],
                    "verbs": READ,
                },
                {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["*"]},
            ],
        },
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": reader},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": reader},
            "subjects": account,
        },
        {
            "kind": "RoleBinding",
            "metadata": {"name": "system:extension-apiserver-authentication-reader:cluster-gateway", "namespace": "kube-system"},
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "extension-apiserver-authentication-reader"},
            "subjects": account,
        },
        {
            "kind": "Role",
            "metadata": {"name": "cluster-gateway-secret-reader", "namespace": secret_namespace},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}],
        },
        {
            "kind": "RoleBinding",
            "metadata": {"name": "cluster-gateway-secret-reader", "namespace": secret_namespace},
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "cluster-gateway-secret-reader"},
            "subjects": account,
        },
    ]


def vela_core_rbac(namespace: str = "vela-system", *, authentication: bool = False) -> list[dict[str, Any]]:
    """vela-core's grants to its ServiceAccount: cluster-admin, or the manager role with `authentication.enabled`."""
    account = _account(VELA_CORE_ACCOUNT, namespace)
    if not authentication:
        return [_cluster_binding(f"{VELA_CORE_ACCOUNT}:manager-rolebinding", "cluster-admin", account)]
    everything = ["*"]
    manager = f"{VELA_CORE_ACCOUNT}:manager"
    rules = [
        {
            "apiGroups": ["core.oam.dev", "terraform.core.oam.dev", "prism.oam.dev", "standard.oam.dev"],
            "resources": everything,
            "verbs": everything,
        },
        {"apiGroups": ["cluster.open-cluster-management.io"], "resources": ["managedclusters"], "verbs": READ},
        {"apiGroups": [""], "resources": ["users", "groups", "serviceaccounts"], "verbs": ["impersonate"]},
        {"apiGroups": [""], "resources": ["namespaces", "secrets", "services"], "verbs": READ},
        {"apiGroups": [""], "resources": ["configmaps", "events"], "verbs": everything},
        {"apiGroups": ["apps"], "resources": ["controllerrevisions"], "verbs": everything},
        {"apiGroups": ["apiregistration.k8s.io"], "resources": ["apiservices"], "verbs": [*READ, "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": everything},
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
            "verbs": READ,
        },
        {
            "apiGroups": ["flowcontrol.apiserver.k8s.io"],
            "resources": ["prioritylevelconfigurations", "flowschemas"],
            "verbs": READ,
        },
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": everything},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": everything},
    ]
    return [
        {"kind": "ClusterRole", "metadata": {"name": manager}, "rules": rules},
        _cluster_binding(f"{manager}-authentication-rolebinding", manager, account),
    ]
