"""Authorization: request attributes as the kube-apiserver derives them, and SubjectAccessReview with a cache.

`request_attributes` is a pure function of method, path and query (see request_info.py). `SubjectAccessReviewer`
asks the hosting cluster and caches allow and deny decisions (10 s each by default, as the
kube-apiserver's webhook authorizer does).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from multidict import MultiMapping

from ..base.status import StatusError, bad_request
from ..observability.cache_counts import CacheCounts
from .identity import UserInfo
from .request_info import RequestInfo, RequestInfoError, request_info

log = logging.getLogger(__name__)

# Paths every caller may use, as the kube-apiserver's default --authorization-always-allow-paths
# plus what its system:discovery and system:public-info-viewer roles grant to everyone.
ALWAYS_ALLOWED_PREFIXES = ("/openapi/",)
ALWAYS_ALLOWED_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version", "/api", "/apis", "/openapi/v2", "/openapi/v3"})
_PROBE_PREFIXES = ("/healthz/", "/livez/", "/readyz/")


class RequestAttributes(NamedTuple):
    """What authorization decides on (kube's `authorizer.Attributes`)."""

    user: UserInfo
    verb: str
    resource_request: bool
    path: str
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""


def always_allowed(path: str) -> bool:
    """Probes, version, OpenAPI and discovery need no authorization."""
    stripped = path.rstrip("/")
    if stripped in ALWAYS_ALLOWED_PATHS or path.startswith(ALWAYS_ALLOWED_PREFIXES + _PROBE_PREFIXES):
        return True
    parts = [p for p in stripped.split("/") if p]
    # /apis/<group> and /apis/<group>/<version> are discovery documents.
    return len(parts) in (2, 3) and parts[0] == "apis"


class PathAllowList:
    """--authorization-always-allow-paths, as k8s.io/apiserver's path authorizer reads it.

    Each entry is an exact path or, ending in `*`, a prefix; a leading `/` is optional on both sides, and
    an empty entry allows `/`. It allows non-resource requests only: a resource request (`/apis/<group>/...
    /<resource>`) is still authorized whatever the list says.
    """

    def __init__(self, paths: Iterable[str]) -> None:
        exact: set[str] = set()
        prefixes: list[str] = []
        for written in paths:
            entry = written.removeprefix("/")
            if "*" in entry[:-1]:
                raise ValueError(f'only trailing * allowed in "{written}"')
            if entry.endswith("*"):
                prefixes.append(entry[:-1])
            else:
                exact.add(entry)
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def allows(self, attrs: RequestAttributes) -> bool:
        """True when `attrs` is a non-resource request to a listed path."""
        if attrs.resource_request:
            return False
        path = attrs.path.removeprefix("/")
        return path in self._exact or path.startswith(self._prefixes)


def request_attributes(method: str, path: str, query: MultiMapping[str], user: UserInfo) -> RequestAttributes:
    """The attributes of `user`'s request, as kube's RequestInfoFactory derives them.

    A path that names a verb but no resource (`/apis/<group>/<version>/watch`) is a 400.
    """
    try:
        info = request_info(method, path, query)
    except RequestInfoError as exc:
        raise bad_request(f"{exc}: the path names no resource after the verb") from None
    return attributes_of(info, path, user)


def attributes_of(info: RequestInfo, path: str, user: UserInfo) -> RequestAttributes:
    """The attributes of `user`'s request to `path`, as read into `info`."""
    return RequestAttributes(
        user,
        info.verb,
        info.resource_request,
        path,
        info.api_group,
        info.api_version,
        info.resource,
        info.subresource,
        info.name,
        info.namespace,
    )


def forbidden(attrs: RequestAttributes, reason: str = "") -> StatusError:
    """403 Forbidden with the kube-apiserver's exact wording."""
    user = attrs.user.name
    if not attrs.resource_request:
        message = f'forbidden: User "{user}" cannot {attrs.verb} path "{attrs.path}"'
        details: dict[str, str] = {}  # kube's NewForbidden with an empty group-resource: empty details, still sent
    else:
        resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
        group_resource = attrs.resource + (f".{attrs.api_group}" if attrs.api_group else "")
        subject = f'{group_resource} "{attrs.name}"' if attrs.name else group_resource
        scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
        message = (
            f'{subject} is forbidden: User "{user}" cannot {attrs.verb} resource "{resource}" '
            f'in API group "{attrs.api_group}" {scope}'
        )
        details = {"group": attrs.api_group, "kind": attrs.resource, **({"name": attrs.name} if attrs.name else {})}
    if reason:
        message += f": {reason}"
    return StatusError(403, message, details=details)


@dataclass(frozen=True, slots=True)
class Decision:
    """An authorization answer."""

    allowed: bool
    reason: str = ""


class Authorizer(Protocol):
    """Decides whether a request may proceed."""

    async def authorize(self, attrs: RequestAttributes) -> Decision:
        """Allow or deny; raise StatusError only when no decision could be made."""


class AlwaysAllow:
    """Standalone mode: no delegated authorization (the server binds loopback only)."""

    async def authorize(self, attrs: RequestAttributes) -> Decision:
        """Allow everything."""
        return Decision(True, "standalone mode")


class PrivilegedGroups:
    """kube's default in front of a delegated authorizer: a member of `system:masters` is allowed without
    a SubjectAccessReview, since the kube-apiserver it would ask grants that group everything anyway."""

    def __init__(self, inner: Authorizer, groups: Iterable[str] = ("system:masters",)) -> None:
        self.inner = inner
        self._groups = frozenset(groups)

    async def authorize(self, attrs: RequestAttributes) -> Decision:
        """Allow a privileged group at once; ask `inner` for everyone else."""
        if self._groups.intersection(attrs.user.groups):
            return Decision(True, "a privileged group")
        return await self.inner.authorize(attrs)


def review_spec(attrs: RequestAttributes) -> dict[str, Any]:
    """The SubjectAccessReview spec for these attributes."""
    spec: dict[str, Any] = {"user": attrs.user.name, "groups": list(attrs.user.groups)}
    if attrs.user.uid:
        spec["uid"] = attrs.user.uid
    if attrs.user.extra:
        spec["extra"] = {k: list(v) for k, v in attrs.user.extra.items()}
    if attrs.resource_request:
        resource: dict[str, str] = {
            "verb": attrs.verb,
            "group": attrs.api_group,
            "version": attrs.api_version,
            "resource": attrs.resource,
        }
        for key, value in (("subresource", attrs.subresource), ("name", attrs.name), ("namespace", attrs.namespace)):
            if value:
                resource[key] = value
        spec["resourceAttributes"] = resource
    else:
        spec["nonResourceAttributes"] = {"path": attrs.path, "verb": attrs.verb}
    return spec


Poster = Callable[[dict[str, Any]], Any]  # async: SubjectAccessReview body -> response body (dict)


class SubjectAccessReviewer:
    """Authorize through SubjectAccessReview against the hosting cluster, with a TTL cache."""

    def __init__(
        self,
        post_review: Poster,
        *,
        allow_ttl: float = 10.0,
        deny_ttl: float = 10.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._post = post_review
        self._allow_ttl = allow_ttl
        self._deny_ttl = deny_ttl
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Decision]] = OrderedDict()
        self.reviews = 0  # SubjectAccessReviews sent (for tests and metrics)
        self.cache_counts = CacheCounts()  # decision cache hits and misses, for /metrics

    async def authorize(self, attrs: RequestAttributes) -> Decision:
        """A cached decision, or a new SubjectAccessReview."""
        spec = review_spec(attrs)
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            self.cache_counts.hits += 1
            return hit[1]
        self.cache_counts.misses += 1
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        self.reviews += 1
        try:
            answer = await self._post(body)
        except StatusError:
            raise
        except Exception as exc:
            log.warning("SubjectAccessReview failed: %s", type(exc).__name__)
            raise StatusError(
                500, f"authorization failed: the SubjectAccessReview could not be made: {type(exc).__name__}"
            ) from None
        status = answer.get("status") or {} if isinstance(answer, dict) else {}
        if status.get("evaluationError") and not status.get("allowed"):
            log.warning("SubjectAccessReview evaluation error: %s", status["evaluationError"])
        decision = Decision(bool(status.get("allowed")) and not status.get("denied"), str(status.get("reason") or ""))
        self._cache[key] = (now + (self._allow_ttl if decision.allowed else self._deny_ttl), decision)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return decision
