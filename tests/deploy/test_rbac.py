"""deploy/rbac.yaml grants the gateway exactly what it needs, and nothing with a wildcard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"
SUBJECT = {"kind": "ServiceAccount", "name": "gateway-apiserver", "namespace": "vela-system"}


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(RBAC.read_text()) if d]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def test_the_only_own_rule_reads_and_watches_secrets_in_the_secret_namespace() -> None:
    [role] = by_kind("Role")
    assert role["metadata"]["namespace"] == "vela-system"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "patch"]}]
    assert by_kind("ClusterRole") == []


def test_bindings_use_the_builtin_delegation_roles() -> None:
    refs = {
        (b["kind"], b["metadata"].get("namespace"), b["roleRef"]["kind"], b["roleRef"]["name"])
        for b in by_kind("RoleBinding") + by_kind("ClusterRoleBinding")
    }
    assert refs == {
        ("RoleBinding", "vela-system", "Role", "gateway-apiserver:cluster-secrets-reader"),
        ("RoleBinding", "kube-system", "Role", "extension-apiserver-authentication-reader"),
        ("ClusterRoleBinding", None, "ClusterRole", "system:auth-delegator"),
    }
    for binding in by_kind("RoleBinding") + by_kind("ClusterRoleBinding"):
        assert binding["subjects"] == [SUBJECT]


def test_no_wildcards_anywhere() -> None:
    assert "*" not in RBAC.read_text().replace("# ", "")
