"""`metadata.managedFields` as the kube-apiserver writes them on create, update and patch (not server-side apply).

Each write is made by a field manager: the `fieldManager` query parameter, else the User-Agent up to its
first "/" (kubernetes-asyncio sends `OpenAPI-Generator/...`). The manager's entry (operation `Update`)
gets the fields the write set or changed, added to those it had, taken from every other manager, with
`time` set to now at second precision, as metav1.Time is serialised. A write that changes nothing keeps
every entry and time. Simplifications: a list is one field (no `k:`/`v:` keys), and a removed field
leaves every manager's set.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from typing import Any

from aiohttp import web

Obj = dict[str, Any]
FieldPath = tuple[str, ...]

TEST_MANAGER = "tests"  # the manager of writes the tests make through the fake's control API
OPERATION = "Update"
FIELDS_TYPE = "FieldsV1"
# Metadata the server owns: never in a field set.
_UNTRACKED_METADATA = frozenset(
    {"name", "namespace", "uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink"}
)
_UNTRACKED = frozenset({"apiVersion", "kind"})


def request_manager(request: web.Request) -> str:
    """The field manager of a write: `?fieldManager=`, else the User-Agent's product name (at most 128 characters)."""
    return request.query.get("fieldManager") or request.headers.get("User-Agent", "").split("/")[0][:128]


def now() -> str:
    """The current time as metav1.Time serialises it (RFC 3339, UTC, whole seconds)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _leaves(value: Mapping[str, Any], prefix: FieldPath = (), *, top: bool = True) -> Iterator[tuple[FieldPath, Any]]:
    """Every field of an object with its value; a map field also as itself (".")."""
    for key, child in value.items():
        if top and key in _UNTRACKED:
            continue
        if prefix == ("f:metadata",) and key in _UNTRACKED_METADATA:
            continue
        path = (*prefix, f"f:{key}")
        if isinstance(child, Mapping) and child:
            if path != ("f:metadata",):  # metadata is a struct; maps (labels, data) are fields themselves
                yield (*path, "."), None
            yield from _leaves(child, path, top=False)
        else:
            yield path, child


def _paths(fields_v1: Mapping[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    paths: set[FieldPath] = set()
    for key, child in fields_v1.items():
        if child:
            paths |= _paths(child, (*prefix, key))
        else:
            paths.add((*prefix, key))
    return paths


def _fields_v1(paths: set[FieldPath]) -> Obj:
    tree: Obj = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(key, {})
    return tree


def managed_fields(old: Obj | None, new: Obj, manager: str, api_version: str) -> list[Obj]:
    """The managedFields of `new`, written by `manager` over `old` (None on a create), which changed something."""
    before = dict(_leaves(old)) if old is not None else {}
    after = dict(_leaves(new))
    taken = {path for path, value in after.items() if path not in before or before[path] != value}
    gone = before.keys() - after.keys()
    entries: list[Obj] = []
    mine: Obj | None = None
    for entry in (old or {}).get("metadata", {}).get("managedFields") or []:
        owned = _paths(entry.get("fieldsV1") or {}) - gone
        if entry.get("manager") == manager and entry.get("operation") == OPERATION:
            mine = {**entry, "fieldsV1": _fields_v1(owned | taken), "time": now(), "apiVersion": api_version}
            entries.append(mine)
        elif owned - taken:
            entries.append({**entry, "fieldsV1": _fields_v1(owned - taken)})
    if mine is None:
        entry = {"manager": manager, "operation": OPERATION, "apiVersion": api_version, "time": now()}
        entries.append({**entry, "fieldsType": FIELDS_TYPE, "fieldsV1": _fields_v1(taken)})
    return entries
