"""The fan-out request: which clusters, which path on each, and the query each member receives.

`GET /apis/cluster.core.oam.dev/v1alpha1/clustergateways/-/proxy/{path}?clusterSelector={labels}&...`
reads `{path}` on every ClusterGateway whose labels match `clusterSelector` (every cluster when it
is absent or empty). The name `-` can never be a cluster's (a Secret name starts and ends with an
alphanumeric), so the URL is the proxy URL with "every selected cluster" in the name's place.
Pure functions: nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, unquote_plus

from multidict import MultiDict

from ..api.selectors import LabelSelector, SelectorError, parse_label_selector
from ..base.api_group import API_PREFIX, GROUP
from ..base.status import bad_request
from ..proxy.paths import check_remainder
from ..security.request_info import RequestInfoError, request_info

FANOUT_NAME = "-"
FANOUT_PATH = f"{API_PREFIX}/clustergateways/{FANOUT_NAME}/proxy"
CLUSTER_SELECTOR = "clusterSelector"
# On every item and watched object: the ClusterGateway it was read from.
CLUSTER_ANNOTATION = f"{GROUP}/cluster-name"
FANOUT_VERBS = ("list", "watch", "get")
# Per-cluster paging and resourceVersions mean nothing across clusters: the fan-out pages each member itself.
_PER_CLUSTER_PARAMETERS = {
    "limit": "limit and continue page one cluster's list; the fan-out answers whole lists, paging each member itself",
    "continue": "limit and continue page one cluster's list; the fan-out answers whole lists, paging each member itself",
    "resourceVersionMatch": "resourceVersions differ from cluster to cluster",
}
_ANY_VERSION = ("", "0")  # the only resourceVersions that mean the same on every member


@dataclass(frozen=True, slots=True)
class FanoutRequest:
    """A checked fan-out request."""

    remainder: str  # the raw path after /proxy, as the proxy would forward it
    member_query: str  # the raw query string each member receives (clusterSelector and timeoutSeconds removed)
    selector: LabelSelector
    verb: str  # list, watch or get
    timeout_seconds: int | None  # a watch's timeoutSeconds: the fan-out ends it, not the members

    @property
    def watch(self) -> bool:
        """Whether this is a watch."""
        return self.verb == "watch"

    @property
    def inner_path(self) -> str:
        """The decoded path on each member, as authorization reads a proxied request's path."""
        return unquote(self.remainder) or "/"


def _split_query(raw_query: str) -> list[tuple[str, str, str]]:
    """(decoded name, decoded value, raw part) for each `&`-separated part of the query."""
    parts: list[tuple[str, str, str]] = []
    for raw in raw_query.split("&") if raw_query else ():
        name, _, value = raw.partition("=")
        parts.append((unquote_plus(name), unquote_plus(value), raw))
    return parts


def parse_fanout(remainder: str, raw_query: str) -> FanoutRequest:
    """Check a fan-out request (raw path after `/proxy`, raw query); a 400 StatusError names what is wrong."""
    check_remainder(remainder)  # the proxy's own path rules, before anything reads the path
    if remainder in ("", "/"):
        raise bad_request("a fan-out needs a resource path after /proxy, e.g. /api/v1/namespaces/default/pods")
    parts = _split_query(raw_query)
    selectors = [value for name, value, _ in parts if name == CLUSTER_SELECTOR]
    if len(selectors) > 1:
        raise bad_request(f"{CLUSTER_SELECTOR} may be given once")
    try:
        selector = parse_label_selector(selectors[0] if selectors else "")
    except SelectorError as exc:
        raise bad_request(f"invalid {CLUSTER_SELECTOR}: {exc}") from None
    for name, value, _ in parts:
        if name in _PER_CLUSTER_PARAMETERS:
            raise bad_request(f"{name} is not supported on a fan-out: {_PER_CLUSTER_PARAMETERS[name]}")
        if name == "resourceVersion" and value not in _ANY_VERSION:
            raise bad_request(
                f'resourceVersion "{value}" is not supported on a fan-out: resourceVersions differ from cluster '
                'to cluster (only "" and "0" are)'
            )
    decoded = MultiDict(parse_qsl(raw_query, keep_blank_values=True))
    try:
        info = request_info("GET", unquote(remainder), decoded)
    except RequestInfoError:
        info = None
    if info is None or not info.resource_request or info.verb not in FANOUT_VERBS or info.subresource:
        raise bad_request(
            f"a fan-out reads resources only (list, watch, or get of one object without a subresource); "
            f"{unquote(remainder)} is not one"
        )
    timeout_seconds = None
    if info.verb == "watch":
        raw_timeouts = [value for name, value, _ in parts if name == "timeoutSeconds"]
        if raw_timeouts:
            try:
                timeout_seconds = int(raw_timeouts[0])
            except ValueError:
                raise bad_request(f'invalid timeoutSeconds "{raw_timeouts[0]}": not an integer') from None
            timeout_seconds = max(timeout_seconds, 0)
    dropped = {CLUSTER_SELECTOR, "timeoutSeconds"} if info.verb == "watch" else {CLUSTER_SELECTOR}
    member_query = "&".join(raw for name, _, raw in parts if name not in dropped)
    return FanoutRequest(remainder, member_query, selector, info.verb, timeout_seconds)


def page_query(member_query: str, page_size: int, continue_token: str) -> str:
    """The query of one page of a member's list: the client's query, `limit`, and the member's `continue`."""
    extra = f"limit={page_size}" + (f"&continue={quote(continue_token, safe='')}" if continue_token else "")
    return f"{member_query}&{extra}" if member_query else extra
