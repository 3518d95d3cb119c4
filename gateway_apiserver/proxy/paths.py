"""Proxy target URLs: the member endpoint's path prefix joined with the request's remainder.

Pure functions over *raw* (still percent-encoded) text, so the member receives exactly the
bytes the client sent, and nothing decoded on the way can climb out of the endpoint's own
prefix (`https://rancher/k8s/clusters/c-abc` must never become `https://rancher/k8s/...`).
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote, unquote_plus

from yarl import URL

from ..base.query import query_bool
from ..base.status import StatusError

_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Go's strconv.ParseBool, as the reference reads `impersonate`.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
# Subresources the kube-apiserver treats as long-running (no request timeout).
_LONG_RUNNING_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy"})


class ProxyTarget(NamedTuple):
    """Where one proxied request goes, and what the query string asked of the gateway itself."""

    url: URL
    impersonate_requested: bool = False


def _reject(message: str) -> StatusError:
    return StatusError(400, f"invalid proxy path: {message}")


def _is_dot_segment(segment: str) -> bool:
    # Tomcat-style "..;x" path parameters are dot segments to some servers: treat them so.
    return segment.partition(";")[0] in (".", "..")


def check_remainder(remainder: str) -> None:
    """Raise a 400 StatusError unless `remainder` (raw path after `/proxy`) is safe to append.

    Rejected: dot segments (also percent-encoded, double-encoded or with `;` parameters),
    encoded `/` or `\\`, any backslash, control characters, empty inner segments (`//`) and
    malformed percent escapes. A trailing slash is kept.
    """
    if not remainder:
        return
    if not remainder.startswith("/"):
        raise _reject("the path after /proxy must start with '/'")
    if _PERCENT.search(remainder):
        raise _reject("malformed percent-encoding")
    if "\\" in remainder:
        raise _reject("backslashes (also encoded as %5C) are not allowed")
    if _CONTROL.search(remainder):
        raise _reject("control characters are not allowed")
    encoded = "%" in remainder
    segments = remainder[1:].split("/")
    for index, raw in enumerate(segments):
        if not encoded:  # the common case: nothing to decode, so raw is every form
            if raw in (".", "..") or (";" in raw and _is_dot_segment(raw)):
                raise _reject("'.' and '..' segments (also percent-encoded) are not allowed")
            if not raw and index != len(segments) - 1:
                raise _reject("empty path segments ('//') are not allowed")
            continue
        once = unquote(raw)
        twice = unquote(once)  # a member behind another decoding hop would see this
        for form in (raw, once, twice):
            if _CONTROL.search(form):
                raise _reject("control characters are not allowed")
            if "\\" in form:
                raise _reject("backslashes (also encoded as %5C) are not allowed")
            if _is_dot_segment(form):
                raise _reject("'.' and '..' segments (also percent-encoded) are not allowed")
        if "/" in once or "/" in twice:
            raise _reject("encoded slashes (%2F) are not allowed")
        if not raw and index != len(segments) - 1:
            raise _reject("empty path segments ('//') are not allowed")


def join_path(endpoint_path: str, remainder: str) -> str:
    """The endpoint URL's raw path followed by the checked remainder ('/' at least)."""
    base = endpoint_path.rstrip("/")
    return (base + remainder) or "/"


def rewrite_query(raw_query: str) -> tuple[str, bool]:
    """The query string to forward, and whether `impersonate` was true.

    Unchanged byte for byte, except that the reference's `__dryRun` is renamed `dryRun`
    and `impersonate` (meant for the gateway, never the member) is dropped.
    """
    if not raw_query:
        return "", False
    out: list[str] = []
    changed = impersonate = False
    for part in raw_query.split("&"):
        name, eq, value = part.partition("=")
        decoded = unquote_plus(name)
        if decoded == "__dryRun":
            out.append("dryRun" + eq + value)
            changed = True
        elif decoded == "impersonate":
            impersonate = impersonate or unquote_plus(value) in _TRUE
            changed = True
        else:
            out.append(part)
    return ("&".join(out) if changed else raw_query), impersonate


def proxy_target(endpoint: str | URL, remainder: str, raw_query: str) -> ProxyTarget:
    """Build the member URL for a request; 400 StatusError for a path that could escape the prefix."""
    check_remainder(remainder)
    base = endpoint if isinstance(endpoint, URL) else URL(endpoint)
    query, impersonate = rewrite_query(raw_query)
    url = URL.build(
        scheme=base.scheme,
        authority=base.raw_authority,
        path=join_path(base.raw_path, remainder),
        query_string=query,
        encoded=True,  # already encoded: yarl must not re-quote (it would turn %2F into /)
    )
    return ProxyTarget(url, impersonate)


def remainder_of(raw_path: str, prefix_segments: int) -> str:
    """The raw path after the first `prefix_segments` segments (`/a/b/proxy/x/` → `/x/` for 3).

    Works on raw text so what follows `/proxy` is never decoded by us before it is checked.
    """
    segments = raw_path.split("/")  # segments[0] is "" before the leading slash
    rest = segments[prefix_segments + 1 :]
    return "/" + "/".join(rest) if rest else ""


def is_long_running(remainder: str, query: dict[str, str] | None = None) -> bool:
    """Whether a proxied call may stream for long: watch, follow=true logs, exec/attach/port-forward/proxy.

    Mirrors the kube-apiserver's long-running check, decided from the path and query only.
    """
    q = query or {}
    if query_bool(q.get("watch")) or query_bool(q.get("follow")):  # read as the member reads them
        return True
    segments = [unquote(s) if "%" in s else s for s in remainder.split("/") if s]
    if segments[:1] == ["api"]:
        rest = segments[2:]
    elif segments[:1] == ["apis"]:
        rest = segments[3:]
    else:
        return False
    if rest[:1] == ["watch"]:
        return True  # legacy /api/v1/watch/... and /apis/<g>/<v>/watch/...
    if rest[:1] == ["namespaces"] and len(rest) >= 4:
        rest = rest[2:]  # namespaced: <resource>/<name>/<subresource>
    return len(rest) >= 3 and rest[2] in _LONG_RUNNING_SUBRESOURCES


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def request_timeout(query: dict[str, str], default: float) -> float:
    """The timeout of a non-streaming call: the client's `timeout` (a Go duration, as kubectl's
    --request-timeout sends it) when longer than `default`, plus a little so the member's own
    timeout answers first; else `default`."""
    raw = query.get("timeout", "")
    parts = _DURATION.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        return default
    asked = sum(float(n) * _UNITS[u] for n, u in parts)
    return max(default, asked + 5.0)
