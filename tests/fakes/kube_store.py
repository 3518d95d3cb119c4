"""The storage half of `FakeKubeAPIServer`: objects, resourceVersions, history, selectors, paging.

Modelled on etcd plus the kube-apiserver registry: one global integer resourceVersion
bumped by every write, an event log with a compaction floor, consistent paginated lists at a
snapshot resourceVersion (continue tokens), and label/field selectors with kube semantics.
Pure and synchronous; the HTTP layer lives in `kube_apiserver.py`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .managed_fields import TEST_MANAGER, managed_fields

Obj = dict[str, Any]
Matcher = Callable[[Obj], bool]


class StatusError(Exception):
    """A failure answered as a kube `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status_object(code, reason, message, details)


def status_object(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A `metav1.Status` failure body, shaped as the kube-apiserver writes it."""
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


# What a kube-apiserver answers for a path it does not serve (a group, version or resource it lacks).
RESOURCE_NOT_FOUND = status_object(404, "NotFound", "the server could not find the requested resource")


@dataclass(frozen=True)
class KindInfo:
    """A resource the fake serves: core/v1 and namespaced unless told otherwise (a CRD's kind)."""

    resource: str
    kind: str
    fields: tuple[str, ...] = ()  # extra field-selector fields beyond metadata.name/namespace
    normalize: Callable[[Obj], None] | None = None  # kind-specific defaulting, in place
    group: str = ""
    version: str = "v1"
    namespaced: bool = True
    # Top-level fields whose changes leave metadata.generation alone (None: no generation, as core kinds).
    generation_ignores: tuple[str, ...] | None = None
    # With a `/status` subresource, writes to the object keep its status and status writes keep the rest.
    status_subresource: bool = False

    @property
    def api_version(self) -> str:
        """`v1` for the core group, `<group>/<version>` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class Event:
    """One committed change. `object` carries the event's RV; `previous` is the state before."""

    rv: int
    resource: str
    type: str
    object: Obj
    previous: Obj | None

    @property
    def namespace(self) -> str:
        return str(self.object["metadata"].get("namespace", ""))  # "" for a cluster-scoped object


def normalize_secret(obj: Obj) -> None:
    """Secret defaulting as the API server does it: fold stringData into data, default the type."""
    string_data = obj.pop("stringData", None) or {}
    data = dict(obj.get("data") or {})
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        obj["data"] = data
    else:
        obj.pop("data", None)
    obj.setdefault("type", "Opaque")


SECRETS = KindInfo("secrets", "Secret", fields=("type",), normalize=normalize_secret)
CONFIGMAPS = KindInfo("configmaps", "ConfigMap")

_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge member by member, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _details(info: KindInfo, name: str) -> Obj:
    """A Status's details as kube gives them: the resource, and the group of a `<plural>.<group>` store key."""
    plural, dot, group = info.resource.partition(".")
    return (
        {"name": name, "group": group, "kind": plural} if dot and group == info.group else {"name": name, "kind": info.resource}
    )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_rv(obj: Obj, rv: int) -> Obj:
    out = dict(obj)
    out["metadata"] = {**obj["metadata"], "resourceVersion": str(rv)}
    return out


class KubeStore:
    """In-memory objects of every registered kind, one global RV, one event log."""

    def __init__(self) -> None:
        self.kinds: dict[str, KindInfo] = {}
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self.rv = 1
        self.floor = 0  # the oldest RV a watch or consistent list may start from
        self.log: list[Event] = []
        self.listeners: list[Callable[[Event], None]] = []

    def register_kind(self, info: KindInfo) -> None:
        """Serve a new resource (e.g. configmaps) from the same store and RV sequence."""
        self.kinds[info.resource] = info
        self.objects.setdefault(info.resource, {})

    def unregister_kind(self, resource: str) -> None:
        """Stop serving `resource` (a CRD deleted); delete its objects first to tell watchers."""
        self.kinds.pop(resource, None)
        self.objects.pop(resource, None)

    def kind(self, resource: str) -> KindInfo:
        """The kind of `resource`, or a 404 as kube answers for unknown resources."""
        info = self.kinds.get(resource)
        if info is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        return info

    # --- writes ---------------------------------------------------------------------------

    def _commit(self, resource: str, type_: str, obj: Obj, previous: Obj | None) -> Obj:
        self.rv += 1
        obj = _with_rv(obj, self.rv)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if type_ == "DELETED":
            self.objects[resource].pop(key, None)
        else:
            self.objects[resource][key] = obj
        event = Event(self.rv, resource, type_, obj, previous)
        self.log.append(event)
        for listener in list(self.listeners):
            listener(event)
        return copy.deepcopy(obj)

    def _sanitize(self, info: KindInfo, body: Obj, namespace: str) -> Obj:
        obj = copy.deepcopy(body)
        obj.pop("kind", None)
        obj.pop("apiVersion", None)
        meta = obj.setdefault("metadata", {})
        for key in _SERVER_METADATA:
            meta.pop(key, None)
        if not info.namespaced:
            meta.pop("namespace", None)  # as kube: a cluster-scoped object has none
        elif meta.get("namespace", namespace) != namespace:
            raise StatusError(
                400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request"
            )
        if info.namespaced:
            meta["namespace"] = namespace
        for key in ("labels", "annotations"):
            if not meta.get(key):
                meta.pop(key, None)
        if info.normalize is not None:
            info.normalize(obj)
        return obj

    def create(self, resource: str, namespace: str, body: Obj, *, manager: str = TEST_MANAGER) -> Obj:
        """Create as field manager `manager`; 409 AlreadyExists if the name is taken."""
        info = self.kind(resource)
        obj = self._sanitize(info, body, namespace)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise StatusError(
                422, "Invalid", f'{info.kind} "" is invalid: metadata.name: Required value: name or generateName is required'
            )
        if (namespace, name) in self.objects[resource]:
            raise StatusError(409, "AlreadyExists", f'{resource} "{name}" already exists', _details(info, name))
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        if info.generation_ignores is not None:
            meta["generation"] = 1
        meta["managedFields"] = managed_fields(None, obj, manager, info.api_version)
        return self._commit(resource, "ADDED", obj, None)

    def update(
        self, resource: str, namespace: str, name: str, body: Obj, *, manager: str = TEST_MANAGER, subresource: str = ""
    ) -> Obj:
        """Replace as field manager `manager`; 404 if missing, 409 Conflict on a stale metadata.resourceVersion.
        No-ops keep the RV (and the managedFields). For a kind with a status subresource, `subresource="status"`
        writes only the status and a plain update leaves the status alone. An object being deleted whose last
        finalizer is removed is deleted."""
        info = self.kind(resource)
        body_meta = body.get("metadata") or {}
        if body_meta.get("name", name) != name:
            raise StatusError(
                400, "BadRequest", f"the name of the object ({body_meta['name']}) does not match the name on the URL ({name})"
            )
        old = self.get(resource, namespace, name)
        wanted_rv = body_meta.get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise StatusError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                _details(info, name),
            )
        obj = self._sanitize(info, body, namespace)
        obj["metadata"]["name"] = name
        for key in ("uid", "creationTimestamp", "resourceVersion", "managedFields", "deletionTimestamp"):
            if key in old["metadata"]:
                obj["metadata"][key] = old["metadata"][key]
        if subresource == "status":
            obj = {**copy.deepcopy(old), "status": obj.get("status")}
            if obj["status"] is None:
                del obj["status"]
        elif info.status_subresource:
            obj.pop("status", None)
            if "status" in old:
                obj["status"] = copy.deepcopy(old["status"])
        if (ignored := info.generation_ignores) is not None:
            changed = any(obj.get(k) != old.get(k) for k in {*obj, *old} if k not in ignored)
            obj["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + changed
        if obj == old:  # as the real registry: a no-op update writes nothing and keeps the RV
            return copy.deepcopy(old)
        obj["metadata"]["managedFields"] = managed_fields(old, obj, manager, info.api_version)
        if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            return self._commit(resource, "DELETED", obj, old)  # the last finalizer is gone: now it goes
        return self._commit(resource, "MODIFIED", obj, old)

    def merge_patch(
        self, resource: str, namespace: str, name: str, patch: Obj, *, manager: str = TEST_MANAGER, subresource: str = ""
    ) -> Obj:
        """Apply an RFC 7386 merge patch as field manager `manager`; 404 if missing. A no-op keeps the RV, as in kube."""
        old = self.get(resource, namespace, name)
        merged = _merge(copy.deepcopy(old), patch)
        if not isinstance(merged, dict):
            raise StatusError(400, "BadRequest", "the patch did not produce an object")
        meta = merged.setdefault("metadata", {})
        for key in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion"):
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
        return self.update(resource, namespace, name, merged, manager=manager, subresource=subresource)

    def delete(self, resource: str, namespace: str, name: str) -> Obj:
        """Delete; 404 if missing. Returns the deleted object at the deletion RV. An object with finalizers
        is only marked (metadata.deletionTimestamp, a MODIFIED event) and returned as it stays, as kube does;
        it goes when an update removes its last finalizer."""
        old = self.get(resource, namespace, name)
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return copy.deepcopy(old)
            marked = copy.deepcopy(old)
            marked["metadata"]["deletionTimestamp"] = _now()
            return self._commit(resource, "MODIFIED", marked, old)
        return self._commit(resource, "DELETED", old, old)

    def compact(self) -> None:
        """Drop all history up to the current RV, as an etcd compaction followed by a cache reset."""
        self.floor = self.rv
        self.log.clear()

    # --- reads ----------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> Obj:
        """The current object (not a copy); 404 with kube wording if missing."""
        info = self.kind(resource)
        obj = self.objects[info.resource].get((namespace, name))
        if obj is None:
            raise StatusError(404, "NotFound", f'{resource} "{name}" not found', _details(info, name))
        return obj

    def state_at(self, resource: str, rv: int) -> dict[tuple[str, str], Obj]:
        """The objects as they were at `rv`, rebuilt by undoing later events; 410 if compacted."""
        if rv < self.floor:
            raise StatusError(410, "Expired", "The resourceVersion for the provided list is too old.")
        state = dict(self.objects[resource])
        for event in reversed(self.log):
            if event.rv <= rv:
                break
            if event.resource != resource:
                continue
            key = (event.namespace, event.object["metadata"]["name"])
            if event.previous is None:
                state.pop(key, None)
            else:
                state[key] = event.previous
        return state

    def events_after(self, rv: int) -> list[Event]:
        """Every event with RV > `rv`; 410 (watch wording) if part of that history was compacted."""
        if rv < self.floor:
            raise StatusError(410, "Expired", f"too old resource version: {rv} ({self.floor})")
        return [e for e in self.log if e.rv > rv]

    def list_page(
        self,
        resource: str,
        namespace: str | None,
        matcher: Matcher,
        *,
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
        resource_version_match: str = "",
    ) -> tuple[list[Obj], int, str, int]:
        """One page of a list: (items, list RV, continue token or "", remaining item count)."""
        start = ""
        if continue_token and resource_version not in ("", "0"):
            # The continue token carries its own snapshot; the storage layer refuses a second one.
            raise StatusError(400, "BadRequest", "specifying resource version is not allowed when using continue")
        if continue_token:
            at, start = decode_continue(continue_token)
            if at < self.floor:
                raise StatusError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start "
                    "a new list without the continue parameter, or use the continue value from the response to avoid "
                    "this error.",
                )
        elif resource_version and resource_version != "0":
            wanted = _parse_rv(resource_version)
            if wanted > self.rv:  # Exact or NotOlderThan: a future revision is not served, not even empty
                raise too_large_resource_version(wanted, self.rv)
            at = wanted if resource_version_match == "Exact" else self.rv
        else:
            at = self.rv
        state = self.state_at(resource, at) if at != self.rv else self.objects[resource]
        # etcd orders by key string ("<namespace>/<name>"), and so do continue tokens.
        keyed = sorted(
            ((f"{ns}/{name}", obj) for (ns, name), obj in state.items() if namespace in (None, ns)),
            key=lambda pair: pair[0],
        )
        matched = [obj for key, obj in keyed if key > start and matcher(obj)]
        if limit <= 0 or len(matched) <= limit:
            return [copy.deepcopy(o) for o in matched], at, "", 0
        page = matched[:limit]
        last = page[-1]["metadata"]
        token = encode_continue(at, f"{last.get('namespace', '')}/{last['name']}")
        return [copy.deepcopy(o) for o in page], at, token, len(matched) - limit


def too_large_resource_version(wanted: int, current: int) -> StatusError:
    """The 504 the kube-apiserver answers for a resourceVersion newer than any it has seen."""
    return StatusError(
        504,
        "Timeout",
        f"Too large resource version: {wanted}, current: {current}",
        {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1},
    )


def _parse_rv(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise StatusError(400, "BadRequest", f'invalid resource version "{value}"') from None


def encode_continue(rv: int, start_after: str) -> str:
    """An opaque continue token in the apiserver's own shape (base64 of a small JSON)."""
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start_after + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_continue(token: str) -> tuple[int, str]:
    """(snapshot RV, key to start after) from a continue token; 400 if malformed."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(raw["rv"]), str(raw["start"]).rstrip("\x00")
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise StatusError(400, "BadRequest", "continue key is not valid: invalid continue token") from None


# --- selectors ------------------------------------------------------------------------------

_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")
_EQUALITY = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*$")
_COMPARE = re.compile(rf"^\s*({_KEY})\s*([<>])\s*(-?\d+)\s*$")


def _split_top_level(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> Callable[[dict[str, str]], bool]:
    if m := _EXISTS.match(text):
        negate, key = m.group(1) == "!", m.group(2)
        return lambda labels: (key in labels) != negate
    if m := _EQUALITY.match(text):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _SET.match(text):
        key, op, raw = m.groups()
        values = {v.strip() for v in raw.split(",")}
        if any(not re.fullmatch(_VALUE, v) for v in values):
            raise ValueError(text)
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _COMPARE.match(text):
        key, op, num = m.group(1), m.group(2), int(m.group(3))

        def compare(labels: dict[str, str]) -> bool:
            try:
                have = int(labels[key])
            except (KeyError, ValueError):
                return False
            return have > num if op == ">" else have < num

        return compare
    raise ValueError(text)


def label_matcher(selector: str) -> Matcher:
    """A matcher for a kube label selector (`k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (..)`, `k notin (..)`, `k>n`)."""
    try:
        reqs = [_requirement(part) for part in _split_top_level(selector)]
    except ValueError as exc:
        raise StatusError(400, "BadRequest", f"unable to parse requirement: {exc}") from None
    return lambda obj: all(req(obj["metadata"].get("labels") or {}) for req in reqs)


def field_matcher(selector: str, info: KindInfo) -> Matcher:
    """A matcher for a field selector over metadata.name, metadata.namespace and the kind's own fields."""
    reqs: list[Callable[[Obj], bool]] = []
    for part in _split_top_level(selector):
        m = re.match(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if m is None:
            raise StatusError(400, "BadRequest", f"invalid selector: '{selector}'; can't understand '{part}'")
        path, op, value = m.groups()
        if path not in ("metadata.name", "metadata.namespace", *info.fields):
            raise StatusError(400, "BadRequest", f"field label not supported: {path}")

        def requirement(obj: Obj, path: str = path, value: str = value, negate: bool = op == "!=") -> bool:
            node: Any = obj
            for step in path.split("."):
                node = node.get(step, "") if isinstance(node, dict) else ""
            return (str(node) == value) != negate

        reqs.append(requirement)
    return lambda obj: all(req(obj) for req in reqs)


def selector(label_selector: str, field_selector: str, info: KindInfo) -> Matcher:
    """The matcher for a request's `labelSelector` and `fieldSelector` (either may be empty)."""
    labels = label_matcher(label_selector)
    fields = field_matcher(field_selector, info)
    return lambda obj: labels(obj) and fields(obj)


# --- reviews (TokenReview, SubjectAccessReview) ------------------------------------------------


def _user_status(user: Obj) -> Obj:
    out: Obj = {"username": user.get("username", "")}
    for key in ("uid", "groups", "extra"):
        if user.get(key):
            out[key] = copy.deepcopy(user[key])
    return out


def token_review_status(users: dict[str, Obj], token: str, audiences: list[str], api_audiences: list[str]) -> Obj:
    """The `status` of a TokenReview, as the kube-apiserver computes it from its users table.

    A user entry may list its token's `audiences` (default: the server's own). With
    `spec.audiences`, the token must be valid for one of them, and status.audiences is the
    intersection; without, status.audiences is the server's own (the implicit audiences).
    A rejected token leaves `authenticated` out (omitempty false), with `user: {}` and an error.
    """
    user = users.get(token)
    if user is None:
        return {"user": {}, "error": "[invalid bearer token, token lookup failed]"}
    token_audiences = list(user.get("audiences") or api_audiences)
    if not audiences:
        return {"authenticated": True, "user": _user_status(user), "audiences": token_audiences}
    matched = [a for a in audiences if a in token_audiences]
    if not matched:
        return {
            "user": {},
            "error": f"[invalid bearer token, token audiences {json.dumps(token_audiences)} is invalid for the "
            f"target audiences {json.dumps(audiences)}]",
        }
    return {"authenticated": True, "user": _user_status(user), "audiences": matched}


def _wild(patterns: tuple[str, ...], value: str) -> bool:
    return "*" in patterns or value in patterns


@dataclass(frozen=True)
class PolicyRule:
    """One row of the fake authorizer's policy table; the first matching rule decides.

    Subject: `users` or `groups` ("*" = anyone). Resource rules match `verbs`, `api_groups`,
    `resources` (as RBAC: "res", "res/sub", "*", "*/sub", "res/*"), `names` and `namespaces`
    (empty = any; "*" = any). A rule with `non_resource_urls` ("/path", "/prefix/*", "*")
    matches non-resource requests only. `deny` answers denied=true (as a webhook authorizer may).
    """

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("*",)
    api_groups: tuple[str, ...] = ("*",)
    resources: tuple[str, ...] = ("*",)
    names: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    deny: bool = False
    reason: str = ""

    def _subject(self, user: str, groups: list[str]) -> bool:
        return _wild(self.users, user) or "*" in self.groups or any(g in self.groups for g in groups)

    def _resource(self, attrs: Obj) -> bool:
        resource, sub = str(attrs.get("resource", "")), str(attrs.get("subresource", ""))
        full = f"{resource}/{sub}" if sub else resource
        resource_ok = any(r in ("*", full) or (sub and r in (f"*/{sub}", f"{resource}/*")) for r in self.resources)
        return (
            resource_ok
            and _wild(self.verbs, str(attrs.get("verb", "")))
            and _wild(self.api_groups, str(attrs.get("group", "")))
            and (not self.names or _wild(self.names, str(attrs.get("name", ""))))
            and (not self.namespaces or _wild(self.namespaces, str(attrs.get("namespace", ""))))
        )

    def _non_resource(self, attrs: Obj) -> bool:
        path = str(attrs.get("path", ""))
        url_ok = any(u in ("*", path) or (u.endswith("*") and path.startswith(u[:-1])) for u in self.non_resource_urls)
        return url_ok and _wild(self.verbs, str(attrs.get("verb", "")))

    def matches(self, spec: Obj) -> bool:
        """Whether this rule covers the SubjectAccessReview `spec`."""
        if not self._subject(str(spec.get("user") or ""), list(spec.get("groups") or [])):
            return False
        if self.non_resource_urls:
            return "nonResourceAttributes" in spec and self._non_resource(spec["nonResourceAttributes"] or {})
        return "resourceAttributes" in spec and self._resource(spec["resourceAttributes"] or {})


def access_review_status(rules: list[PolicyRule], spec: Obj) -> Obj:
    """The `status` of a SubjectAccessReview: the first matching rule's verdict, else no opinion (not allowed)."""
    for index, rule in enumerate(rules):
        if rule.matches(spec):
            if rule.deny:
                return {"allowed": False, "denied": True, "reason": rule.reason or f"denied by fake policy rule {index}"}
            return {"allowed": True, "reason": rule.reason or f"allowed by fake policy rule {index}"}
    return {"allowed": False}


def validate_access_review(spec: Obj) -> None:
    """422 Invalid for the spec errors the kube-apiserver rejects."""
    prefix = 'SubjectAccessReview.authorization.k8s.io "" is invalid: '
    if ("resourceAttributes" in spec) == ("nonResourceAttributes" in spec):
        raise StatusError(
            422,
            "Invalid",
            prefix + "spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or "
            "resourceAttributes must be specified",
        )
    if not spec.get("user") and not spec.get("groups"):
        message = 'spec.user: Invalid value: "": at least one of user or group must be specified'
        raise StatusError(422, "Invalid", prefix + message)
