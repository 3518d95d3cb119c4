"""The fake hosting kube-apiserver's authorizer follows kube's RequestInfoFactory and RBAC rules."""

from __future__ import annotations

from typing import Any

import pytest
from yarl import URL

from tests.fakes.kube_rbac import (
    Rbac,
    RequestAttributes,
    User,
    deploy_documents,
    deploy_rbac,
    forbidden_status,
    gateway_service_account,
    request_attributes,
    service_account_user,
)


def resource(verb: str, group: str, namespace: str, res: str, sub: str = "", name: str = "") -> RequestAttributes:
    """The attributes of a resource request (the path does not matter to RBAC for those)."""
    return RequestAttributes(verb, "", True, group, "v1", namespace, res, sub, name)


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("GET", "/api/v1/namespaces/ns/secrets", ("list", "", "ns", "secrets", "", "")),
        ("GET", "/api/v1/namespaces/ns/secrets?watch=1", ("watch", "", "ns", "secrets", "", "")),
        ("GET", "/api/v1/namespaces/ns/secrets?watch=false", ("list", "", "ns", "secrets", "", "")),
        ("GET", "/api/v1/namespaces/ns/secrets/s", ("get", "", "ns", "secrets", "", "s")),
        ("GET", "/api/v1/namespaces/ns/secrets/s?watch=1", ("get", "", "ns", "secrets", "", "s")),
        ("GET", "/api/v1/secrets", ("list", "", "", "secrets", "", "")),
        ("GET", "/api/v1/watch/namespaces/ns/secrets", ("watch", "", "ns", "secrets", "", "")),
        ("GET", "/api/v1/namespaces/ns/cm?fieldSelector=metadata.name%3Dx", ("list", "", "ns", "cm", "", "x")),
        (
            "GET",
            "/api/v1/namespaces/ns/cm?watch=true&fieldSelector=metadata.name%3D%3Dx,a%3Db",
            ("watch", "", "ns", "cm", "", "x"),
        ),
        ("GET", "/api/v1/namespaces/ns/cm?fieldSelector=metadata.name!%3Dx", ("list", "", "ns", "cm", "", "")),
        ("GET", "/api/v1/namespaces/ns/pods/p/log", ("get", "", "ns", "pods", "log", "p")),
        ("GET", "/api/v1/namespaces/ns", ("get", "", "ns", "namespaces", "", "ns")),
        ("PUT", "/api/v1/namespaces/ns/status", ("update", "", "ns", "namespaces", "status", "ns")),
        ("DELETE", "/api/v1/namespaces/ns/secrets/s", ("delete", "", "ns", "secrets", "", "s")),
        ("DELETE", "/api/v1/namespaces/ns/secrets", ("deletecollection", "", "ns", "secrets", "", "")),
        ("POST", "/apis/authentication.k8s.io/v1/tokenreviews", ("create", "authentication.k8s.io", "", "tokenreviews", "", "")),
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d/scale", ("patch", "apps", "ns", "deployments", "scale", "d")),
    ],
)
def test_resource_requests_get_kubes_attributes(method: str, url: str, expected: tuple[str, ...]) -> None:
    parsed = URL(url)
    attrs = request_attributes(method, parsed.path, parsed.query)
    got = (attrs.verb, attrs.api_group, attrs.namespace, attrs.resource, attrs.subresource, attrs.name)
    assert (attrs.resource_request, got) == (True, expected)


@pytest.mark.parametrize("path", ["/", "/api", "/api/v1", "/apis", "/apis/apps/v1", "/healthz", "/metrics"])
def test_paths_without_a_resource_are_non_resource_requests(path: str) -> None:
    assert request_attributes("GET", path, {}) == RequestAttributes("get", path, False)


def policy(*documents: dict[str, Any]) -> Rbac:
    return Rbac.from_documents(documents)


def role(kind: str, name: str, rules: list[dict[str, Any]], namespace: str = "") -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "rules": rules}


def bind(kind: str, role_kind: str, name: str, subject: dict[str, Any], namespace: str = "") -> dict[str, Any]:
    meta = {"name": f"{name}-binding", **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "roleRef": {"kind": role_kind, "name": name}, "subjects": [subject]}


BOB = User("bob", ("devs", "system:authenticated"))
AS_BOB = {"kind": "User", "name": "bob"}


def allowed(rbac: Rbac, attrs: RequestAttributes, user: User = BOB) -> bool:
    return rbac.authorize(user, attrs)[0]


def test_verbs_and_groups_match_exactly_or_by_wildcard() -> None:
    rbac = policy(
        role("ClusterRole", "r", [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}]),
        role("ClusterRole", "any", [{"apiGroups": ["*"], "resources": ["widgets"], "verbs": ["*"]}]),
        bind("ClusterRoleBinding", "ClusterRole", "r", AS_BOB),
        bind("ClusterRoleBinding", "ClusterRole", "any", {"kind": "Group", "name": "devs"}),
    )
    assert allowed(rbac, resource("list", "apps", "ns", "deployments"))
    assert not allowed(rbac, resource("watch", "apps", "ns", "deployments"))
    assert not allowed(rbac, resource("get", "", "ns", "deployments"))
    assert allowed(rbac, resource("deletecollection", "example.com", "", "widgets"))


def test_subresources_are_granted_by_their_full_name_or_star_slash() -> None:
    rbac = policy(
        role("ClusterRole", "logs", [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]),
        role("ClusterRole", "status", [{"apiGroups": [""], "resources": ["*/status"], "verbs": ["get"]}]),
        bind("ClusterRoleBinding", "ClusterRole", "logs", AS_BOB),
        bind("ClusterRoleBinding", "ClusterRole", "status", AS_BOB),
    )
    assert allowed(rbac, resource("get", "", "ns", "pods", "log", "p"))
    assert not allowed(rbac, resource("get", "", "ns", "pods", "", "p"))  # the subresource is not the resource
    assert not allowed(rbac, resource("get", "", "ns", "pods", "exec", "p"))
    assert allowed(rbac, resource("get", "", "ns", "nodes", "status", "n"))


def test_resource_names_cover_only_requests_that_name_the_object() -> None:
    rule = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["trust"], "verbs": ["get", "list", "watch"]}
    rbac = policy(role("ClusterRole", "r", [rule]), bind("ClusterRoleBinding", "ClusterRole", "r", AS_BOB))
    assert allowed(rbac, resource("get", "", "ns", "configmaps", name="trust"))
    assert allowed(rbac, resource("watch", "", "ns", "configmaps", name="trust"))  # from fieldSelector=metadata.name=trust
    assert not allowed(rbac, resource("watch", "", "ns", "configmaps"))
    assert not allowed(rbac, resource("get", "", "ns", "configmaps", name="other"))


def test_a_role_binding_grants_only_in_its_own_namespace() -> None:
    rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}
    rbac = policy(
        role("Role", "r", [rule], namespace="a"),
        role("ClusterRole", "c", [{**rule, "verbs": ["watch"]}]),
        bind("RoleBinding", "Role", "r", AS_BOB, namespace="a"),
        bind("RoleBinding", "ClusterRole", "c", AS_BOB, namespace="a"),  # a ClusterRole, scoped by the binding
    )
    assert allowed(rbac, resource("list", "", "a", "secrets"))
    assert allowed(rbac, resource("watch", "", "a", "secrets"))
    assert not allowed(rbac, resource("list", "", "b", "secrets"))
    assert not allowed(rbac, resource("watch", "", "", "secrets"))  # nor cluster-wide


def test_service_account_subjects_default_to_the_binding_namespace() -> None:
    rbac = policy(
        role("Role", "r", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}], namespace="a"),
        bind("RoleBinding", "Role", "r", {"kind": "ServiceAccount", "name": "robot"}, namespace="a"),
    )
    assert allowed(rbac, resource("get", "", "a", "secrets", name="s"), service_account_user("a", "robot"))
    assert not allowed(rbac, resource("get", "", "a", "secrets", name="s"), service_account_user("b", "robot"))


def test_non_resource_urls_match_exactly_or_by_prefix_star() -> None:
    rbac = policy(
        role("ClusterRole", "r", [{"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]}]),
        bind("ClusterRoleBinding", "ClusterRole", "r", AS_BOB),
    )
    assert allowed(rbac, RequestAttributes("get", "/metrics", False))
    assert allowed(rbac, RequestAttributes("get", "/debug/pprof/heap", False))
    assert not allowed(rbac, RequestAttributes("get", "/metrics/extra", False))
    assert not allowed(rbac, RequestAttributes("post", "/metrics", False))


def test_a_binding_to_a_missing_role_is_named_in_the_reason() -> None:
    rbac = policy(bind("ClusterRoleBinding", "ClusterRole", "ghost", AS_BOB))
    attrs = resource("list", "", "ns", "secrets")
    assert rbac.authorize(BOB, attrs) == (False, 'RBAC: clusterrole.rbac.authorization.k8s.io "ghost" not found')
    assert forbidden_status(BOB, attrs, rbac.authorize(BOB, attrs)[1])["message"] == (
        'secrets is forbidden: User "bob" cannot list resource "secrets" in API group "" in the namespace "ns": '
        'RBAC: clusterrole.rbac.authorization.k8s.io "ghost" not found'
    )


def test_a_grouped_resource_is_qualified_in_the_forbidden_message() -> None:
    attrs = resource("create", "authentication.k8s.io", "", "tokenreviews")
    assert forbidden_status(BOB, attrs) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'tokenreviews.authentication.k8s.io is forbidden: User "bob" cannot create resource "tokenreviews" '
        'in API group "authentication.k8s.io" at the cluster scope',
        "reason": "Forbidden",
        "details": {"group": "authentication.k8s.io", "kind": "tokenreviews"},
        "code": 403,
    }


def test_the_gateway_is_the_service_account_deploy_creates_with_its_bindings_resolved() -> None:
    gateway = gateway_service_account()
    assert gateway == User(
        "system:serviceaccount:vela-system:gateway-apiserver",
        ("system:serviceaccounts", "system:serviceaccounts:vela-system", "system:authenticated"),
    )
    # Denied with no reason: every role a binding of the gateway refers to exists (else RBAC names it).
    assert deploy_rbac().authorize(gateway, resource("list", "", "other", "secrets")) == (False, "")
    broken = [d for d in deploy_documents() if d["kind"] != "Role"]
    assert deploy_rbac(broken).authorize(gateway, resource("list", "", "vela-system", "secrets")) == (
        False,
        'RBAC: role.rbac.authorization.k8s.io "gateway-apiserver:cluster-secrets-reader" not found',
    )
