"""Who a request to the fake member acts as, and whether it may: kube's impersonation filter and RBAC.

Pure functions over the request's method, path, query and headers, restating the kube-apiserver:

* Impersonation (`Impersonate-User`, repeated `Impersonate-Group`, `Impersonate-Uid`,
  `Impersonate-Extra-<key>`): each requested value is checked as verb `impersonate` on
  `users`, `groups`, `uids` (API group `authentication.k8s.io`), `userextras/<key>`
  (`authentication.k8s.io`) or, for `system:serviceaccount:<ns>:<name>`, `serviceaccounts` in
  `<ns>`; the first refused one answers 403 in the impersonator's name. Groups, extras or a uid
  without a user is a 400. The impersonated user gains `system:authenticated`; the extra key
  is lower-cased and percent-decoded.
* RBAC: bindings (a RoleBinding has a namespace, a ClusterRoleBinding none) of subjects to
  rules with verbs, API groups, resources (`res`, `res/sub`, `*`, `*/sub`), resourceNames and
  non-resource URLs (`/path`, `/prefix/*`, `*`). Nothing matches, nothing is allowed.
* A refusal is kube's 403 Status: `<resource> "<name>" is forbidden: User "<u>" cannot <verb>
  resource "<res>" in API group "<g>" in the namespace "<ns>"` (or `at the cluster scope`), and
  `forbidden: User "<u>" cannot <verb> path "<path>"` outside the API.

Request attributes, rule matching and the 403 are the hosting fake's (kube_rbac.py): one reading
of kube's rules for both fakes. This module adds what only a member needs: impersonation and
bindings granted in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from multidict import MultiMapping

from .kube_rbac import RequestAttributes, User, forbidden_status, rule_allows
from .kube_rbac import request_attributes as kube_request_attributes
from .kube_store import StatusError

AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"
AUTH_GROUP = "authentication.k8s.io"
_SA_PREFIX = "system:serviceaccount:"
_EXTRA_PREFIX = "impersonate-extra-"


@dataclass(frozen=True)
class Identity:
    """A user as the member sees it, after authentication or impersonation."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do (kube's authorizer.Attributes): who, and the request's attributes."""

    user: Identity
    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    def request(self) -> RequestAttributes:
        """The attributes without the user, as the hosting fake's RBAC reads them."""
        return RequestAttributes(
            self.verb,
            self.path,
            self.resource_request,
            self.api_group,
            "",
            self.namespace,
            self.resource,
            self.subresource,
            self.name,
        )


@dataclass(frozen=True)
class Rule:
    """One RBAC PolicyRule."""

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ("",)
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    def allows(self, attrs: Attributes) -> bool:
        """Whether this rule covers `attrs` (the same rule matching as the hosting fake's RBAC)."""
        policy_rule = {
            "verbs": list(self.verbs),
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
            "resourceNames": list(self.resource_names),
            "nonResourceURLs": list(self.non_resource_urls),
        }
        return rule_allows(policy_rule, attrs.request())


CLUSTER_ADMIN = (Rule(("*",), ("*",), ("*",)), Rule(("*",), non_resource_urls=("*",)))
DISCOVERY = Rule(("get",), non_resource_urls=("/api", "/api/*", "/apis", "/apis/*", "/version", "/version/", "/healthz"))
# The fake's own test endpoints (echo, upload, slow, gzip, fail) are open to every authenticated user.
TEST_ENDPOINTS = Rule(("*",), non_resource_urls=("/echo", "/echo/*", "/upload", "/slow", "/gzip", "/fail/*"))


@dataclass(frozen=True)
class Binding:
    """A RoleBinding (`namespace` set) or ClusterRoleBinding (`namespace` None) of subjects to rules."""

    rules: tuple[Rule, ...]
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    namespace: str | None = None

    def applies(self, attrs: Attributes) -> bool:
        """Whether the subject and scope of this binding cover `attrs`."""
        user = attrs.user
        if user.name not in self.users and not set(user.groups) & set(self.groups):
            return False
        if self.namespace is not None and (not attrs.resource_request or attrs.namespace != self.namespace):
            return False
        return any(rule.allows(attrs) for rule in self.rules)


@dataclass
class RBAC:
    """The member's bindings: system:masters is cluster-admin; every authenticated user reads discovery."""

    bindings: list[Binding] = field(
        default_factory=lambda: [
            Binding(CLUSTER_ADMIN, groups=(MASTERS,)),
            Binding((DISCOVERY, TEST_ENDPOINTS), groups=(AUTHENTICATED,)),
        ]
    )

    def grant(
        self, *rules: Rule, users: tuple[str, ...] = (), groups: tuple[str, ...] = (), namespace: str | None = None
    ) -> None:
        """Bind `rules` to users/groups, in `namespace` (a RoleBinding) or cluster-wide."""
        self.bindings.append(Binding(tuple(rules), users, groups, namespace))

    def allows(self, attrs: Attributes) -> bool:
        """Whether any binding allows `attrs`."""
        return any(binding.applies(attrs) for binding in self.bindings)

    def authorize(self, attrs: Attributes) -> None:
        """Raise kube's 403 unless `attrs` is allowed."""
        if not self.allows(attrs):
            raise forbidden(attrs)


def forbidden(attrs: Attributes, reason: str = "") -> StatusError:
    """The 403 the kube-apiserver answers for a refused request."""
    status = forbidden_status(User(attrs.user.name, attrs.user.groups), attrs.request(), reason)
    return StatusError(403, "Forbidden", status["message"], status["details"])


def request_attributes(method: str, path: str, query: Mapping[str, str], user: Identity) -> Attributes:
    """The authorization attributes of a request to `path` (the part after any endpoint prefix), as the
    hosting fake computes them (kube's RequestInfoFactory)."""
    a = kube_request_attributes(method, path, query)
    return Attributes(user, a.verb, a.resource_request, a.path, a.api_group, a.namespace, a.resource, a.subresource, a.name)


# --- impersonation --------------------------------------------------------------------------------


def impersonated(requestor: Identity, headers: MultiMapping[str], rbac: RBAC) -> Identity:
    """The identity a request acts as: `requestor`, or whom its Impersonate-* headers name, if allowed.

    Raises 400 for groups, extras or a uid
    without a user, and the impersonator's 403 for the first value it may not impersonate.
    """
    user = headers.get("Impersonate-User", "")
    groups: list[str] = list(headers.getall("Impersonate-Group", []))
    uid = headers.get("Impersonate-Uid", "")
    extras: dict[str, list[str]] = {}
    for key, value in headers.items():
        if key.lower().startswith(_EXTRA_PREFIX):
            extras.setdefault(unquote(key[len(_EXTRA_PREFIX) :].lower()), []).append(value)
    if not (user or groups or uid or extras):
        return requestor
    if not user:
        raise StatusError(400, "BadRequest", "requested impersonation of groups, extras or a uid without impersonating a user")
    checks: list[tuple[str, str, str, str, str]] = []  # (group, resource, subresource, namespace, name)
    name, default_groups = user, []
    if user.startswith(_SA_PREFIX) and len(parts := user[len(_SA_PREFIX) :].split(":")) == 2:
        checks.append(("", "serviceaccounts", "", parts[0], parts[1]))
        default_groups = ["system:serviceaccounts", f"system:serviceaccounts:{parts[0]}"]
    else:
        checks.append(("", "users", "", "", user))
    checks += [("", "groups", "", "", g) for g in groups]
    checks += [(AUTH_GROUP, "userextras", key, "", v) for key, values in extras.items() for v in values]
    if uid:
        checks.append((AUTH_GROUP, "uids", "", "", uid))
    for group, resource, sub, namespace, value in checks:
        rbac.authorize(Attributes(requestor, "impersonate", True, "", group, namespace, resource, sub, value))
    final_groups = groups or default_groups
    if AUTHENTICATED not in final_groups and "system:unauthenticated" not in final_groups:
        final_groups = [*final_groups, AUTHENTICATED]
    return Identity(name, tuple(final_groups), uid, {k: tuple(v) for k, v in extras.items()})
