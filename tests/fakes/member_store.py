"""The list and watch semantics of the fake member, restating a kube-apiserver 1.32 with its watch cache.

Lists (`limit`, `continue`, `resourceVersion`, `resourceVersionMatch`):
* `resourceVersion` unset: the most recent state; `limit` pages it.
* `resourceVersion=0`: any state, served from the watch cache, which ignores `limit` (the whole list).
* `resourceVersion=N`: not older than N; with `limit` and no `resourceVersionMatch`, exactly N
  (the legacy rule). `resourceVersionMatch=Exact` is exactly N, `NotOlderThan` the latest.
  Exactly a compacted N is 410 `The resourceVersion for the provided list is too old.`; a
  future N is 504 `Too large resource version: N, current: C` (kube waits up to 3 s first).
* A page with more behind it carries `metadata.continue` (base64url of `{"v","rv","start"}`, as
  kube encodes it) and, when no selector filters, `metadata.remainingItemCount`. Every page of one
  list is served at the first page's resourceVersion. A token whose snapshot was compacted is 410
  with kube's inconsistent-continue message and a fresh token (`rv: -1`) that continues at the latest.
* Bad combinations are refused in kube's words: `resourceVersionMatch` without `resourceVersion`,
  with `continue`, unknown, or Exact at 0 (422 Invalid ListOptions); `continue` with a
  `resourceVersion` other than 0 (400); a malformed token (400).

Watches: unset or `0` starts with a synthetic ADDED per object; `N` replays the events after N.
An N older than the compaction floor is HTTP 200 and one ERROR event carrying a 410 Expired
Status `too old resource version: N (floor)`, then the end of the stream, as the watch cache does.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import json
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .kube_store import Event, KubeStore, Matcher, Obj, StatusError, status_object

LIST_TOO_OLD = "The resourceVersion for the provided list is too old."
INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter, or use the continue token in this response to retrieve the remainder of the "
    "results. Continuing with the provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may show up in the list."
)


FORBIDDEN = "FieldValueForbidden"


@dataclass(frozen=True)
class ListOptions:
    """The paging and consistency parameters of one list request."""

    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass(frozen=True)
class Page:
    """One answer to a list: items, the list's resourceVersion, and where to go on."""

    items: list[Obj]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


def _invalid(reason: str, detail: str, field: str = "resourceVersionMatch") -> StatusError:
    message = f'ListOptions.meta.k8s.io "" is invalid: {field}: {detail}'
    cause = {"reason": reason, "message": detail.split(": ", 1)[-1], "field": field}
    return StatusError(422, "Invalid", message, {"group": "meta.k8s.io", "kind": "ListOptions", "causes": [cause]})


def list_options(query: Mapping[str, str]) -> ListOptions:
    """The list options of `query`, validated as the kube-apiserver does before reading."""
    raw_limit = query.get("limit", "") or "0"
    try:
        limit = int(raw_limit)
    except ValueError:
        raise StatusError(400, "BadRequest", f'limit: Invalid value: "{raw_limit}": must be an integer') from None
    opts = ListOptions(limit, query.get("continue", ""), query.get("resourceVersion", ""), query.get("resourceVersionMatch", ""))
    match = opts.resource_version_match
    if match:
        if not opts.resource_version:
            raise _invalid(FORBIDDEN, "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided")
        if opts.continue_token:
            raise _invalid(FORBIDDEN, "Forbidden: resourceVersionMatch is forbidden when continue is provided")
        if match not in ("Exact", "NotOlderThan"):
            raise _invalid(
                "FieldValueNotSupported",
                f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan", ""',
            )
        if match == "Exact" and opts.resource_version == "0":
            raise _invalid(FORBIDDEN, 'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
    return opts


def encode_continue(rv: int, start_key: str) -> str:
    """A continue token in kube's shape: unpadded base64url of `{"v","rv","start"}`."""
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start_key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    """(snapshot resourceVersion, key to start from) of a token; 400 in kube's words if it is not one."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        version, rv, start = raw["v"], int(raw["rv"]), str(raw["start"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise StatusError(400, "BadRequest", "invalid continue token: continue key is not valid") from None
    if version != "meta.k8s.io/v1":
        problem = f"server does not recognize this encoded version {version}"
    elif rv == 0:
        problem = "incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
    elif not start:
        problem = "encoded start key empty (version meta.k8s.io/v1)"
    elif posixpath.normpath("/" + start.rstrip("\x00")) != "/" + start.rstrip("\x00"):
        problem = start  # a path-traversal attempt
    else:
        return rv, start
    raise StatusError(400, "BadRequest", f"invalid continue token: continue key is not valid: {problem}")


def _too_large(wanted: int, current: int) -> StatusError:
    causes = [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]
    return StatusError(
        504, "Timeout", f"Too large resource version: {wanted}, current: {current}", {"causes": causes, "retryAfterSeconds": 1}
    )


def _parse_rv(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise StatusError(400, "BadRequest", f"invalid resource version: {value}") from None


def _snapshot(store: KubeStore, opts: ListOptions) -> tuple[int | None, str]:
    """(resourceVersion to read at, None for the latest; key to start from)."""
    if opts.continue_token:
        if opts.resource_version not in ("", "0"):
            raise StatusError(400, "BadRequest", "specifying resource version is not allowed when using continue")
        rv, start = decode_continue(opts.continue_token)
        if 0 < rv < store.floor:
            error = StatusError(410, "Expired", INCONSISTENT_CONTINUE)
            error.status["metadata"] = {"continue": encode_continue(-1, start)}
            raise error
        return (rv if rv > 0 else None), start
    if opts.resource_version in ("", "0"):
        return None, ""
    wanted = _parse_rv(opts.resource_version)
    exact = opts.resource_version_match == "Exact" or (not opts.resource_version_match and opts.limit > 0)
    if wanted > store.rv:
        raise _too_large(wanted, store.rv)
    if exact:
        if wanted < store.floor:
            raise StatusError(410, "Expired", LIST_TOO_OLD)
        return wanted, ""
    return None, ""


def list_page(
    store: KubeStore, resource: str, namespace: str | None, matcher: Matcher, opts: ListOptions, *, filtered: bool
) -> Page:
    """One page of `resource` (in `namespace`, or all) as the kube-apiserver answers `opts`.

    `filtered`: a label or field selector is in force, so no remainingItemCount is given.
    """
    at, start = _snapshot(store, opts)
    rv = store.rv if at is None else at
    state = store.objects[resource] if at is None else store.state_at(resource, at)
    keyed = sorted(
        ((name if namespace else f"{ns}/{name}", obj) for (ns, name), obj in state.items() if namespace in (None, ns)),
        key=lambda pair: pair[0],
    )
    matched = [(key, obj) for key, obj in keyed if key >= start and matcher(obj)]
    limit = 0 if opts.resource_version == "0" and not opts.continue_token else opts.limit  # the watch cache ignores limit
    if limit <= 0 or len(matched) <= limit:
        return Page([copy.deepcopy(o) for _, o in matched], rv)
    page = matched[:limit]
    token = encode_continue(rv, page[-1][0] + "\x00")
    return Page([copy.deepcopy(o) for _, o in page], rv, token, None if filtered else len(matched) - limit)


def list_body(kind: str, page: Page) -> Obj:
    """The `<Kind>List` object for a page."""
    meta: Obj = {"resourceVersion": str(page.resource_version)}
    if page.continue_token:
        meta["continue"] = page.continue_token
    if page.remaining is not None:
        meta["remainingItemCount"] = page.remaining
    items = [{"kind": kind, "apiVersion": "v1", **item} for item in page.items]
    return {"kind": f"{kind}List", "apiVersion": "v1", "metadata": meta, "items": items}


def watch_backlog(store: KubeStore, resource: str, namespace: str | None, resource_version: str) -> list[Event] | Obj:
    """The events a new watch starts with, or the Status of its single ERROR event when too old."""
    if resource_version in ("", "0"):
        current = [o for (ns, _), o in sorted(store.objects[resource].items()) if namespace in (None, ns)]
        return [Event(int(o["metadata"]["resourceVersion"]), resource, "ADDED", o, None) for o in current]
    wanted = _parse_rv(resource_version)
    if wanted < store.floor:
        return status_object(410, "Expired", f"too old resource version: {wanted} ({store.floor})")
    return [e for e in store.events_after(wanted) if e.resource == resource]


@contextlib.contextmanager
def maybe_dry_run(query: Mapping[str, str], store: KubeStore, *side_tables: dict[Any, Any]) -> Iterator[None]:
    """With `dryRun=All`, run the write and then restore the store and `side_tables` (field managers)
    as they were: no event, nothing kept. Without it, just run the write."""
    if query.get("dryRun") != "All":
        yield
        return
    saved = (copy.deepcopy(store.objects), store.rv, list(store.log), dict(store.kinds))
    tables = [copy.deepcopy(table) for table in side_tables]
    listeners, store.listeners = store.listeners, []
    try:
        yield
    finally:
        store.objects, store.rv, store.log, store.kinds = saved
        for table, before in zip(side_tables, tables, strict=True):
            table.clear()
            table.update(before)
        store.listeners = listeners
