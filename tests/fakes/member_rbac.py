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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from multidict import MultiMapping

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
    """What a request asks to do (kube's authorizer.Attributes)."""

    user: Identity
    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def _wild(allowed: Iterable[str], value: str) -> bool:
    allowed = tuple(allowed)
    return "*" in allowed or value in allowed


@dataclass(frozen=True)
class Rule:
    """One RBAC PolicyRule."""

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ("",)
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    def allows(self, attrs: Attributes) -> bool:
        """Whether this rule covers `attrs`."""
        if not _wild(self.verbs, attrs.verb):
            return False
        if not attrs.resource_request:
            path = attrs.path
            return any(u in ("*", path) or (u.endswith("*") and path.startswith(u[:-1])) for u in self.non_resource_urls)
        full = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        resource_ok = any(r in ("*", full) or (attrs.subresource and r == f"*/{attrs.subresource}") for r in self.resources)
        names_ok = not self.resource_names or attrs.name in self.resource_names
        return resource_ok and names_ok and _wild(self.api_groups, attrs.api_group)


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
    user = attrs.user.name
    if not attrs.resource_request:
        message = f'forbidden: User "{user}" cannot {attrs.verb} path "{attrs.path}"'
        return StatusError(403, "Forbidden", message + (f": {reason}" if reason else ""), {})
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    why = f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}" {scope}'
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    details = {k: v for k, v in (("name", attrs.name), ("group", attrs.api_group), ("kind", attrs.resource)) if v}
    return StatusError(403, "Forbidden", f"{subject} is forbidden: {why}" + (f": {reason}" if reason else ""), details)


# --- request attributes (kube's RequestInfoFactory, for the paths this fake serves) ---------------

_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "GET": "get", "HEAD": "get"}


def request_attributes(method: str, path: str, query: Mapping[str, str], user: Identity) -> Attributes:
    """The authorization attributes of a request to `path` (the part after any endpoint prefix)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return Attributes(user, method.lower(), False, path=path)  # kube: the lower-cased method, even "head"
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:
        namespace = rest[1]  # the namespace object itself lives in its own namespace
    resource, name, subresource = rest[0], (rest[1] if len(rest) > 1 else ""), (rest[2] if len(rest) > 2 else "")
    verb = _VERBS.get(method, method.lower())
    if not name and verb == "get":
        verb = "watch" if query.get("watch", "").lower() in ("1", "t", "true") else "list"
        name = _name_from_field_selector(query.get("fieldSelector", ""))
    elif not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(user, verb, True, path, group, namespace, resource, subresource, name)


def _name_from_field_selector(selector: str) -> str:
    for term in selector.split(","):
        key, op, value = term.partition("=")
        if op and key.strip() == "metadata.name" and not key.endswith("!"):
            return value.lstrip("=").strip()
    return ""


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
