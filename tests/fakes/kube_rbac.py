"""The authorization half of `FakeKubeAPIServer`: request attributes and RBAC, as the kube-apiserver computes them.

Every request made TO the fake (by the gateway, or by a test acting as some user) is authorized
here, the way a real cluster does: request attributes from the URL (kube's RequestInfoFactory),
then RBAC over Roles, ClusterRoles and their bindings. The policy is the one `deploy/rbac.yaml`
applies, plus the roles every cluster bootstraps (restated below), so a permission the gateway
needs and `deploy/` does not grant fails a test. This is not the callers' policy: the
SubjectAccessReviews the gateway sends about its own callers are answered from `PolicyRule`s.

Pure and synchronous; the HTTP layer lives in `kube_apiserver.py`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .kube_store import Obj, status_object

DEPLOY_RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"
OCM_COMPONENT = DEPLOY_RBAC.parent / "components" / "ocm"  # the optional kustomize component for --ocm-integration
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"

# Verbs kube derives from the HTTP method of a resource request (others have no verb).
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_SPECIAL_VERBS = ("proxy", "watch")  # legacy /api/v1/watch/... and /api/v1/proxy/... prefixes
_NAMESPACE_SUBRESOURCES = ("status", "finalize")  # /namespaces/<ns>/status is the namespace's own subresource
_FALSE = ("0", "f", "false", "n", "no", "off")  # query booleans kube reads as false; any other value is true


def _rule(verbs: Iterable[str], *, groups: Iterable[str] = (), resources: Iterable[str] = (), **more: Any) -> Obj:
    out: Obj = {"verbs": list(verbs)}
    if resources:
        out.update(apiGroups=list(groups), resources=list(resources))
    out.update({key: list(value) for key, value in more.items()})
    return out


def _binding(kind: str, name: str, role_kind: str, subjects: list[Obj], namespace: str = "") -> Obj:
    meta: Obj = {"name": name, **({"namespace": namespace} if namespace else {})}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name}
    return {"kind": kind, "metadata": meta, "roleRef": role_ref, "subjects": subjects}


def _groups(*names: str) -> list[Obj]:
    return [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name} for name in names]


_PUBLIC_URLS = ("/livez", "/readyz", "/healthz", "/version", "/version/")

# The bootstrap policy every kube-apiserver creates (plugin/pkg/auth/authorizer/rbac/bootstrappolicy),
# restated for the roles a gateway or a test can meet: the roles deploy/ binds to, discovery, and admin.
BOOTSTRAP_RBAC: tuple[Obj, ...] = (
    {
        "kind": "ClusterRole",
        "metadata": {"name": "cluster-admin"},
        "rules": [_rule(["*"], groups=["*"], resources=["*"]), _rule(["*"], nonResourceURLs=["*"])],
    },
    _binding("ClusterRoleBinding", "cluster-admin", "ClusterRole", _groups("system:masters")),
    {
        "kind": "ClusterRole",
        "metadata": {"name": "system:discovery"},
        "rules": [
            _rule(["get"], nonResourceURLs=[*_PUBLIC_URLS, "/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"])
        ],
    },
    _binding("ClusterRoleBinding", "system:discovery", "ClusterRole", _groups(AUTHENTICATED)),
    {
        "kind": "ClusterRole",
        "metadata": {"name": "system:public-info-viewer"},
        "rules": [_rule(["get"], nonResourceURLs=_PUBLIC_URLS)],
    },
    _binding("ClusterRoleBinding", "system:public-info-viewer", "ClusterRole", _groups(AUTHENTICATED, UNAUTHENTICATED)),
    {
        "kind": "ClusterRole",
        "metadata": {"name": "system:basic-user"},
        "rules": [
            _rule(["create"], groups=["authorization.k8s.io"], resources=["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
            _rule(["create"], groups=["authentication.k8s.io"], resources=["selfsubjectreviews"]),
        ],
    },
    _binding("ClusterRoleBinding", "system:basic-user", "ClusterRole", _groups(AUTHENTICATED)),
    # Bound by delegating API servers: review tokens and access for their callers.
    {
        "kind": "ClusterRole",
        "metadata": {"name": "system:auth-delegator"},
        "rules": [
            _rule(["create"], groups=["authentication.k8s.io"], resources=["tokenreviews"]),
            _rule(["create"], groups=["authorization.k8s.io"], resources=["subjectaccessreviews"]),
        ],
    },
    # Bound by extension API servers: read the trust ConfigMap, and only that one.
    {
        "kind": "Role",
        "metadata": {"name": "extension-apiserver-authentication-reader", "namespace": "kube-system"},
        "rules": [
            _rule(
                ["get", "list", "watch"],
                groups=[""],
                resources=["configmaps"],
                resourceNames=["extension-apiserver-authentication"],
            )
        ],
    },
)


# --- request attributes (RequestInfoFactory) -------------------------------------------------


@dataclass(frozen=True)
class RequestAttributes:
    """What the authorizer sees of one request (authorizer.Attributes)."""

    verb: str
    path: str
    resource_request: bool
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def query_bool(query: Mapping[str, str], key: str) -> bool:
    """A boolean query parameter as kube decodes it: absent or a false word is False, anything else True."""
    return key in query and query[key].lower() not in _FALSE


def _name_from_field_selector(selector: str) -> str:
    """The name a list or watch is about: `metadata.name=X` (or `==`) among the selector's terms."""
    for term in selector.split(","):
        if m := re.fullmatch(r"\s*metadata\.name\s*(==|=)\s*(.*?)\s*", term):
            name = m.group(2)
            return name if name not in ("", ".", "..") and not re.search(r"[/%]", name) else ""
    return ""


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> RequestAttributes:
    """The attributes kube's RequestInfoFactory computes for `method path?query`."""
    parts = path.strip("/").split("/") if path.strip("/") else []
    non_resource = RequestAttributes(verb=method.lower(), path=path, resource_request=False)
    # A resource request names at least a resource: /api/<version>/<resource>, /apis/<group>/<version>/<resource>.
    if len(parts) < 3 or parts[0] not in ("api", "apis") or (parts[0] == "apis" and len(parts) < 4):
        return non_resource
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    verb = _METHOD_VERBS.get(method.upper(), "")
    if rest and rest[0] in _SPECIAL_VERBS:
        if len(rest) < 2:
            return non_resource
        verb, rest = rest[0], rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    subresource = rest[2] if len(rest) >= 3 and verb != "proxy" else ""
    name = rest[1] if len(rest) >= 2 else ""
    resource = rest[0] if rest else ""
    if not name and verb == "get":
        verb = "watch" if query_bool(query, "watch") else "list"
        name = _name_from_field_selector(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return RequestAttributes(verb, path, True, group, version, namespace, resource, subresource, name)


# --- RBAC ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """An authenticated (or anonymous) user, as the authorizer sees it."""

    name: str
    groups: tuple[str, ...] = ()


def service_account_user(namespace: str, name: str) -> User:
    """The user a ServiceAccount's token authenticates as."""
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED)
    return User(f"system:serviceaccount:{namespace}:{name}", groups)


def _matches(allowed: Iterable[str], value: str) -> bool:
    return any(a in ("*", value) for a in allowed)


def rule_allows(rule: Obj, attrs: RequestAttributes) -> bool:
    """Whether one RBAC PolicyRule covers the request (rbac.RuleAllows)."""
    if not _matches(rule.get("verbs") or [], attrs.verb):
        return False
    if not attrs.resource_request:
        return any(
            url in ("*", attrs.path) or (url.endswith("*") and attrs.path.startswith(url.rstrip("*")))
            for url in rule.get("nonResourceURLs") or []
        )
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resource_ok = any(
        r in ("*", combined) or (attrs.subresource != "" and r == f"*/{attrs.subresource}") for r in rule.get("resources") or []
    )
    names = rule.get("resourceNames") or []
    return (
        resource_ok
        and _matches(rule.get("apiGroups") or [], attrs.api_group)
        and (not names or attrs.name in names)  # a named rule never covers a request without a name
    )


def _applies_to(subject: Obj, user: User, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), str(subject.get("name", ""))
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = str(subject.get("namespace") or binding_namespace)  # defaults to the RoleBinding's
        return bool(namespace) and user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


@dataclass
class Rbac:
    """Roles, ClusterRoles and bindings, and the decision kube's RBAC authorizer makes over them."""

    roles: dict[tuple[str, str], Obj] = field(default_factory=dict)  # (namespace, name) -> Role
    cluster_roles: dict[str, Obj] = field(default_factory=dict)
    role_bindings: list[Obj] = field(default_factory=list)
    cluster_role_bindings: list[Obj] = field(default_factory=list)

    @classmethod
    def from_documents(cls, documents: Iterable[Obj]) -> Rbac:
        """The policy of these manifests (other kinds, such as ServiceAccount, are ignored)."""
        rbac = cls()
        for doc in documents:
            kind, meta = doc.get("kind"), doc.get("metadata") or {}
            if kind == "Role":
                rbac.roles[(meta["namespace"], meta["name"])] = copy.deepcopy(doc)
            elif kind == "ClusterRole":
                rbac.cluster_roles[meta["name"]] = copy.deepcopy(doc)
            elif kind == "RoleBinding":
                rbac.role_bindings.append(copy.deepcopy(doc))
            elif kind == "ClusterRoleBinding":
                rbac.cluster_role_bindings.append(copy.deepcopy(doc))
        return rbac

    def _role_rules(self, role_ref: Obj, namespace: str) -> tuple[list[Obj], str]:
        name = str(role_ref.get("name", ""))
        if role_ref.get("kind") == "ClusterRole":
            cluster_role = self.cluster_roles.get(name)
            if cluster_role is None:
                return [], f'clusterrole.rbac.authorization.k8s.io "{name}" not found'
            return list(cluster_role.get("rules") or []), ""
        role = self.roles.get((namespace, name))
        if role is None:
            return [], f'role.rbac.authorization.k8s.io "{name}" not found'
        return list(role.get("rules") or []), ""

    def authorize(self, user: User, attrs: RequestAttributes) -> tuple[bool, str]:
        """(allowed, reason): ClusterRoleBindings anywhere, RoleBindings only in the request's namespace.

        As kube's RBAC authorizer, a denial's reason names the roles that bindings of this user refer
        to but that do not exist (`RBAC: clusterrole.rbac.authorization.k8s.io "x" not found`), else is empty.
        """
        errors: list[str] = []
        bindings = [(b, "") for b in self.cluster_role_bindings]
        if attrs.namespace:
            bindings += [(b, attrs.namespace) for b in self.role_bindings if b["metadata"].get("namespace") == attrs.namespace]
        for binding, namespace in bindings:
            if not any(_applies_to(s, user, namespace) for s in binding.get("subjects") or []):
                continue
            rules, error = self._role_rules(binding.get("roleRef") or {}, namespace)
            if error and error not in errors:
                errors.append(error)
            if any(rule_allows(rule, attrs) for rule in rules):
                return True, ""
        if not errors:
            return False, ""
        return False, "RBAC: " + (errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")


def forbidden_status(user: User, attrs: RequestAttributes, reason: str = "") -> Obj:
    """The 403 Status the kube-apiserver answers for a request its authorizer did not allow."""
    if not attrs.resource_request:
        denied = f'User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
        denied = f'User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}" {where}'
    if reason:
        denied = f"{denied}: {reason}"
    if not attrs.resource_request:
        return status_object(403, "Forbidden", f"forbidden: {denied}", {})
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    details: Obj = {"name": attrs.name} if attrs.name else {}
    if attrs.api_group:
        details["group"] = attrs.api_group
    details["kind"] = attrs.resource
    return status_object(403, "Forbidden", f"{subject} is forbidden: {denied}", details)


# --- what deploy/ applies ---------------------------------------------------------------------


@cache
def _deploy_documents() -> tuple[Obj, ...]:
    return tuple(d for d in yaml.safe_load_all(DEPLOY_RBAC.read_text()) if d)


def deploy_documents() -> list[Obj]:
    """The manifests of deploy/rbac.yaml (a fresh copy: callers may mutate it)."""
    return copy.deepcopy(list(_deploy_documents()))


def deploy_rbac(documents: Iterable[Obj] | None = None) -> Rbac:
    """The cluster's policy once deploy/ is applied: the bootstrap roles plus `documents` (default: deploy/rbac.yaml)."""
    return Rbac.from_documents([*BOOTSTRAP_RBAC, *(deploy_documents() if documents is None else documents)])


def ocm_component_documents() -> list[Obj]:
    """The RBAC manifests the OCM component adds (every resource its kustomization lists)."""
    kustomization = yaml.safe_load((OCM_COMPONENT / "kustomization.yaml").read_text())
    return [
        d for name in kustomization.get("resources") or [] for d in yaml.safe_load_all((OCM_COMPONENT / name).read_text()) if d
    ]


def with_ocm_component() -> Rbac:
    """The cluster's policy once deploy/ is applied with its OCM component (deploy/components/ocm)."""
    return deploy_rbac([*deploy_documents(), *ocm_component_documents()])


def gateway_service_account() -> User:
    """The user the gateway runs as: the one ServiceAccount deploy/rbac.yaml creates."""
    [account] = [d for d in _deploy_documents() if d.get("kind") == "ServiceAccount"]
    return service_account_user(account["metadata"]["namespace"], account["metadata"]["name"])
