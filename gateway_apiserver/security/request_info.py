"""What a request asks for, read from its method, path and query as kube's RequestInfoFactory reads them.

A pure port of the behaviour of k8s.io/apiserver's `NewRequestInfo` (prefixes `api` and
`apis`, `api` without a group): the same verb, group, version, namespace, resource,
subresource and name, so a SubjectAccessReview asks the hosting cluster exactly what the
kube-apiserver would ask for the same request. The facts are pinned in
tests/security/test_request_info.py.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from multidict import MultiMapping

from ..base.field_selectors import FieldSelectorSyntaxError, field_terms
from ..base.query import query_bool

# Path words that carry the verb themselves (the deprecated `/watch/...` and `/proxy/...` forms).
_SPECIAL_VERBS = frozenset({"proxy", "watch"})
# After `proxy` every further segment is the proxied path, never a subresource.
_SPECIAL_VERBS_WITHOUT_SUBRESOURCES = frozenset({"proxy"})
# Subresources of a namespace: `namespaces/foo/status` is namespace foo's status, not a resource "status".
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_VERBS_WITH_SELECTORS = frozenset({"list", "watch", "deletecollection"})
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_GO_INT = re.compile(r"[-+]?[0-9]+")  # strconv.ParseInt(s, 10, 64), which decodes limit and timeoutSeconds
_INT64 = range(-(2**63), 2**63)


class RequestInfoError(ValueError):
    """The path names a verb but nothing it applies to (kube: "unable to determine kind and namespace")."""


class _Undecodable(Exception):
    """The list options do not decode as kube decodes them (never shown to anyone)."""


class RequestInfo(NamedTuple):
    """kube's `request.RequestInfo`: what a request asks for, as authorization sees it (a NamedTuple: built per request)."""

    resource_request: bool
    path: str
    verb: str
    api_prefix: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    parts: tuple[str, ...] = ()
    field_selector: str = ""
    label_selector: str = ""


def request_info(method: str, path: str, query: MultiMapping[str]) -> RequestInfo:
    """Read a request as the kube-apiserver does; raise RequestInfoError where kube fails to.

    `path` is the decoded path the router matches; `query` holds every value of every
    parameter (kube, like `MultiMapping.get`, reads the first value of a repeated one).
    """
    method = method.upper()
    parts = path.strip("/").split("/")  # "" for the root: one part, so a non-resource request
    non_resource = RequestInfo(False, path, method.lower())
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]

    verb_in_path = parts[0] in _SPECIAL_VERBS
    if verb_in_path:
        if len(parts) < 2:
            raise RequestInfoError(f"unable to determine kind and namespace from url {path}")
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method, "")

    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]

    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    has_subresource = len(parts) >= 3 and verb not in _SPECIAL_VERBS_WITHOUT_SUBRESOURCES
    subresource = parts[2] if has_subresource else ""

    if not name and verb == "get":
        verb, name = _collection_verb_and_name(query)
    if not name and verb == "delete":
        verb = "deletecollection"

    field_selector = label_selector = ""
    if not verb_in_path and verb in _VERBS_WITH_SELECTORS:
        field_selector = query.get("fieldSelector", "")
        label_selector = query.get("labelSelector", "")
    return RequestInfo(
        True,
        path,
        verb,
        prefix,
        group,
        version,
        namespace,
        resource,
        subresource,
        name,
        tuple(parts),
        field_selector,
        label_selector,
    )


def _collection_verb_and_name(query: MultiMapping[str]) -> tuple[str, str]:
    """A GET without a name is a list or a watch; `fieldSelector=metadata.name=x` names the object."""
    verb = "watch" if query_bool(query.get("watch")) else "list"
    try:
        _check_list_options(query)
        name = _name_required_by(query.get("fieldSelector", ""))
    except _Undecodable:  # kube: list options that fail to decode leave the name unset
        return verb, ""
    return verb, name if name is not None and _is_path_segment_name(name) else ""


def _check_list_options(query: MultiMapping[str]) -> None:
    """Raise _Undecodable where kube's list-option decoding fails on a number (limit, timeoutSeconds).

    An unparsable labelSelector also fails kube's decoding; that check is not ported here (the
    list handler refuses such a request with 400 after authorization).
    """
    for key in ("limit", "timeoutSeconds"):
        value = query.get(key)
        if value is None:
            continue
        # int64 has 19 digits at most; longer numbers are not converted (Python limits int() on huge strings).
        if not _GO_INT.fullmatch(value) or len(value.lstrip("+-").lstrip("0")) > 19 or int(value) not in _INT64:
            raise _Undecodable


def _name_required_by(selector: str) -> str | None:
    """The value `metadata.name` must equal for `selector` to match, as fields.ParseSelector + RequiresExactMatch.

    Raise _Undecodable for a selector kube cannot parse.
    """
    try:
        terms = field_terms(selector)
    except FieldSelectorSyntaxError:
        raise _Undecodable from None
    return next((value for field, op, value in terms if field == "metadata.name" and op != "!="), None)


def _is_path_segment_name(name: str) -> bool:
    # kube names its object from the selector only when the name could be a path segment.
    return name not in (".", "..") and "/" not in name and "%" not in name
