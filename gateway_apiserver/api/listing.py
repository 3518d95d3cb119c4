"""List and watch query parameters, validated the way the kube-apiserver validates them."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..base.query import query_bool
from ..base.status import StatusError, bad_request
from .selectors import FieldSelector, LabelSelector, SelectorError, parse_field_selector, parse_label_selector

SUPPORTED_FIELDS = frozenset({"metadata.name"})
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: int() would also take "+5", "1_0" and other scripts' digits
_INTEGER = re.compile(r"[-+]?[0-9]+")  # Go's strconv.ParseInt, which parses limit and timeoutSeconds
MAX_INT64 = 2**63 - 1
MAX_RESOURCE_VERSION = MAX_INT64  # etcd revisions, and the kube-apiserver's continue tokens, are int64


@dataclass(frozen=True, slots=True)
class ListOptions:
    """The parsed query of a list or watch request."""

    label_selector: LabelSelector
    field_selector: FieldSelector
    limit: int
    continue_token: ContinueToken | None
    resource_version: str | None
    resource_version_match: str | None
    watch: bool
    allow_bookmarks: bool
    timeout_seconds: int | None
    send_initial_events: bool | None
    include_object: str | None

    def matches_name(self, name: str, labels: Mapping[str, str]) -> bool:
        """Whether an object with this name and labels passes both selectors."""
        return self.label_selector.matches(labels) and self.field_selector.matches({"metadata.name": name})


@dataclass(frozen=True, slots=True)
class ContinueToken:
    """Where the next page starts: after `start`, in the listing at `resource_version`."""

    resource_version: int
    start: str

    def encode(self) -> str:
        """The opaque token, in the kube-apiserver's format (base64url of a small JSON)."""
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": self.resource_version, "start": self.start + "\x00"})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def decode(token: str) -> ContinueToken:
        """Parse a token; 400 BadRequest, in the kube-apiserver's words, when it is not one of ours."""
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        except ValueError:  # binascii.Error, or characters outside ASCII
            raise _invalid_token("the token is not base64url-encoded") from None
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # not UTF-8, not JSON, integers too long, nesting too deep
            raise _invalid_token("the token does not hold JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("v"), str):
            raise _invalid_token('the token is not an object with the fields "v", "rv" and "start"')
        if data["v"] != "meta.k8s.io/v1":
            raise _invalid_token("server does not recognize this encoded version")
        rv = data.get("rv")
        if isinstance(rv, bool) or not isinstance(rv, int) or not 0 < rv <= MAX_RESOURCE_VERSION:
            raise _invalid_token("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        start = data.get("start")
        if not isinstance(start, str):
            raise _invalid_token('the token is not an object with the fields "v", "rv" and "start"')
        if not start.removesuffix("\x00"):
            raise _invalid_token("encoded start key empty (version meta.k8s.io/v1)")
        return ContinueToken(rv, start.removesuffix("\x00"))


def _invalid_token(problem: str) -> StatusError:
    return bad_request(f"invalid continue token: continue key is not valid: {problem}")


def parse_resource_version(query: Mapping[str, str]) -> int | None:
    """The `resourceVersion` asked for: None for none or "0" (any), else a positive int64; 400 otherwise."""
    text = query.get("resourceVersion") or None
    if text is None or text == "0":
        return None
    if not _DIGITS.fullmatch(text):
        raise bad_request(f"resourceVersion: Invalid value: {_quote(text)}: must be a non-negative integer")
    if not _fits_int64(text):
        raise bad_request(f"resourceVersion: Invalid value: {_quote(text)}: out of range: must be at most {MAX_RESOURCE_VERSION}")
    return int(text)


def _fits_int64(digits: str) -> bool:
    """Whether an unsigned run of digits is at most MAX_INT64 (checked by length first: int() refuses
    strings over 4300 digits, and a query string can be longer)."""
    significant = digits.lstrip("0")
    return len(significant) <= 19 and int(significant or "0") <= MAX_INT64


def _quote(text: str) -> str:
    """A query value in a message: quoted and escaped like Go's %q, and cut short."""
    return json.dumps(text if len(text) <= 64 else text[:64] + "...")


def _bool(query: Mapping[str, str], key: str) -> bool | None:
    # Absent stays None (sendInitialEvents is a *bool in kube); present values read as kube reads them.
    value = query.get(key)
    return None if value is None else query_bool(value)


def _int(query: Mapping[str, str], key: str) -> int | None:
    value = query.get(key)
    if value is None or value == "":
        return None
    if not _INTEGER.fullmatch(value):
        raise bad_request(f"{key}: Invalid value: {_quote(value)}: must be an integer")
    if not _fits_int64(value.lstrip("+-")):
        raise bad_request(f"{key}: Invalid value: {_quote(value)}: out of range: must be at most {MAX_INT64}")
    number = int(value)
    if number < 0:
        raise bad_request(f"{key}: Invalid value: {number}: must be greater than or equal to 0")
    return number


def parse_list_options(query: Mapping[str, str], *, force_watch: bool = False) -> ListOptions:
    """Parse and validate list/watch query parameters; 400 BadRequest on anything invalid."""
    try:
        labels = parse_label_selector(query.get("labelSelector", ""))
    except SelectorError as exc:
        raise bad_request(f"unable to parse labelSelector: {exc}") from None
    try:
        fields = parse_field_selector(query.get("fieldSelector", ""), SUPPORTED_FIELDS)
    except SelectorError as exc:
        raise bad_request(str(exc)) from None
    watch = force_watch or bool(_bool(query, "watch"))
    rv = query.get("resourceVersion") or None
    rv_match = query.get("resourceVersionMatch") or None
    token_text = query.get("continue") or None
    send_initial = _bool(query, "sendInitialEvents")
    allow_bookmarks = bool(_bool(query, "allowWatchBookmarks"))

    parse_resource_version(query)
    if rv_match is not None and rv_match not in ("Exact", "NotOlderThan"):
        raise bad_request(
            f'resourceVersionMatch: Unsupported value: {_quote(rv_match)}: supported values: "Exact", "NotOlderThan"'
        )
    if watch:
        if token_text:
            raise bad_request("continue: Forbidden: continue is not supported for watch")
        if send_initial is not None:
            if rv_match != "NotOlderThan":
                raise bad_request(
                    "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
                )
            if send_initial and not allow_bookmarks:
                raise bad_request("allowWatchBookmarks: Forbidden: sendInitialEvents requires allowWatchBookmarks=true")
        elif rv_match is not None:
            raise bad_request(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch "
                "unless sendInitialEvents is provided"
            )
    else:
        if send_initial is not None:
            raise bad_request("sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list")
        if rv_match is not None and rv is None:
            raise bad_request(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
            )
        if token_text and rv is not None and rv != "0":
            raise bad_request("resourceVersion: Forbidden: specifying resource version is not allowed when using continue")
        if rv_match == "Exact" and rv == "0":
            raise bad_request(
                'resourceVersionMatch: Forbidden: resourceVersionMatch "Exact" is forbidden for resourceVersion "0"'
            )

    return ListOptions(
        label_selector=labels,
        field_selector=fields,
        limit=_int(query, "limit") or 0,
        continue_token=ContinueToken.decode(token_text) if token_text else None,
        resource_version=rv,
        resource_version_match=rv_match,
        watch=watch,
        allow_bookmarks=allow_bookmarks,
        timeout_seconds=_int(query, "timeoutSeconds"),
        send_initial_events=send_initial,
        include_object=query.get("includeObject"),
    )
