"""Request bodies the fake member understands: JSON merge and JSON patches, and protobuf ConfigMaps.

kubectl sends built-in kinds as protobuf on create, and patches with every PATCH type; these
restate just enough of both (strategic merge is treated as a JSON merge patch for ConfigMaps).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from .kube_store import Obj, StatusError


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge is treated the same for ConfigMaps)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(target: Obj, ops: list[dict[str, Any]]) -> Obj:
    """RFC 6902 add/replace/remove/test on object paths (enough for `kubectl patch --type json`)."""
    doc = copy.deepcopy(target)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in str(op["path"]).split("/")[1:]]
        node: Any = doc
        for part in parents:
            node = node.setdefault(part, {})
        if op["op"] in ("add", "replace"):
            node[last] = op["value"]
        elif op["op"] == "remove":
            if last not in node:
                raise StatusError(422, "Invalid", f"the server rejected our request: remove of missing path {op['path']}")
            del node[last]
        elif op["op"] == "test" and node.get(last) != op.get("value"):
            raise StatusError(422, "Invalid", f"the server rejected our request: test failed at {op['path']}")
    return doc


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints and length-delimited fields only."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while pos < len(buf):
        key = varint()
        if key & 7 == 0:
            yield key >> 3, varint()
        elif key & 7 == 2:
            size = varint()
            yield key >> 3, buf[pos : pos + size]
            pos += size
        else:
            raise StatusError(400, "BadRequest", f"unsupported protobuf wire type {key & 7}")


def _pb_map(entries: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries:
        kv = {n: v for n, v in _fields(entry) if isinstance(v, bytes)}
        out[kv.get(1, b"").decode()] = kv.get(2, b"").decode()
    return out


def decode_protobuf_configmap(raw: bytes) -> Obj:
    """A ConfigMap from the kube protobuf envelope (magic, runtime.Unknown, v1.ConfigMap): name, labels, data."""
    if not raw.startswith(b"k8s\x00"):
        raise StatusError(400, "BadRequest", "protobuf body without the k8s magic prefix")
    unknown = dict(_fields(raw[4:]))
    body = unknown.get(2, b"")
    meta: Obj = {}
    data: list[bytes] = []
    for number, value in _fields(body if isinstance(body, bytes) else b""):
        if number == 1 and isinstance(value, bytes):
            fields = list(_fields(value))
            texts = {n: v.decode() for n, v in fields if isinstance(v, bytes) and n in (1, 2, 3)}
            meta = {key: texts[n] for n, key in ((1, "name"), (2, "generateName"), (3, "namespace")) if texts.get(n)}
            for n, key in ((11, "labels"), (12, "annotations")):
                if entries := [v for f, v in fields if f == n and isinstance(v, bytes)]:
                    meta[key] = _pb_map(entries)
        elif number == 2 and isinstance(value, bytes):
            data.append(value)
    return {"metadata": meta, "data": _pb_map(data)}


# --- server-side apply ------------------------------------------------------------------------------

# Identity fields a field set never lists, as kube's managedFields leave them out.
_UNTRACKED = {
    (): ("apiVersion", "kind"),
    ("metadata",): (
        "name",
        "namespace",
        "generateName",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "managedFields",
    ),
}


def fields_v1(config: Any, at: tuple[str, ...] = ()) -> Obj:
    """The `fieldsV1` set of an applied configuration: `f:<key>` per map member; lists, scalars and empty
    maps are leaves (every list is treated as atomic, owned whole). Identity fields are not counted."""
    if not isinstance(config, dict):
        return {}
    skipped = _UNTRACKED.get(at, ())
    fields: Obj = {}
    for key, value in config.items():
        sub = fields_v1(value, (*at, key))
        if key not in skipped and not (isinstance(value, dict) and value and not sub):  # a map of identity fields only
            fields[f"f:{key}"] = sub
    return fields


def field_paths(fields: Obj, at: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The leaf paths of a `fieldsV1` set, e.g. {("spec", "listeners")}."""
    paths: set[tuple[str, ...]] = set()
    for key, sub in fields.items():
        path = (*at, key.removeprefix("f:"))
        paths |= field_paths(sub, path) if sub else {path}
    return paths


def remove_paths(obj: Obj, paths: set[tuple[str, ...]]) -> Obj:
    """`obj` without the fields at `paths` (maps left empty by a removal go too)."""
    out = copy.deepcopy(obj)
    for path in sorted(paths, key=len, reverse=True):
        parents: list[tuple[dict[str, Any], str]] = []
        node: Any = out
        for key in path[:-1]:
            if not isinstance(node, dict) or not isinstance(node.get(key), dict):
                break
            parents.append((node, key))
            node = node[key]
        else:
            if isinstance(node, dict):
                node.pop(path[-1], None)
                for parent, key in reversed(parents):
                    if parent[key] == {}:
                        del parent[key]
    return out


def apply_merge(target: Any, config: Any) -> Any:
    """The applied configuration laid over `target`: maps merge member by member, lists and scalars replace."""
    if not isinstance(config, dict) or not isinstance(target, dict):
        return copy.deepcopy(config)
    out = dict(target)
    for key, value in config.items():
        out[key] = apply_merge(out.get(key), value)
    return out


Path = tuple[str, ...]
_ABSENT = object()


def value_at(obj: Any, path: Path) -> Any:
    """The value at `path` in `obj`, or a marker no real value equals when it is not there."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _ABSENT
        obj = obj[key]
    return obj


def changed_paths(old: Obj, new: Obj) -> set[Path]:
    """The leaf fields (as `fields_v1` counts them) whose value differs between `old` and `new`."""
    leaves = field_paths(fields_v1(old)) | field_paths(fields_v1(new))
    return {path for path in leaves if value_at(old, path) != value_at(new, path)}


def paths_to_fields(paths: set[Path]) -> Obj:
    """The `fieldsV1` set holding exactly `paths` (the inverse of `field_paths`)."""
    fields: Obj = {}
    for path in sorted(paths):
        node = fields
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return fields


def apply_conflicts(entries: list[Obj], applier: str, applied: set[Path], config: Obj, current: Obj) -> list[tuple[Obj, Path]]:
    """(entry, path) for each field the applier sets to another value than the object holds while another
    manager owns it. Setting the value it already has is no conflict: both managers then own it."""
    others = [e for e in entries if (e["manager"], e["operation"]) != (applier, "Apply")]
    return [
        (entry, path)
        for entry in sorted(others, key=lambda e: str(e["manager"]))
        for path in sorted(field_paths(entry["fieldsV1"]) & applied)
        if value_at(config, path) != value_at(current, path)
    ]


def _manager_name(entry: Obj) -> str:
    """How kube names a manager in a conflict: an applier by name, an updater with its apiVersion."""
    name = json.dumps(entry["manager"])
    return name if entry["operation"] == "Apply" else f"{name} using {entry['apiVersion']}"


def conflict_error(conflicts: list[tuple[Obj, Path]]) -> StatusError:
    """Kube's 409 for an apply that would change fields other managers own (without force)."""
    dotted = [(_manager_name(entry), "." + ".".join(path)) for entry, path in conflicts]
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {m}", "field": p} for m, p in dotted]
    if len(dotted) == 1:
        message = f"Apply failed with 1 conflict: conflict with {dotted[0][0]}: {dotted[0][1]}"
    else:
        lines = []
        for manager in sorted({m for m, _ in dotted}):
            lines += [f"conflicts with {manager}:", *(f"- {p}" for m, p in dotted if m == manager)]
        message = f"Apply failed with {len(dotted)} conflicts: " + "\n".join(lines)
    return StatusError(409, "Conflict", message, {"causes": causes})


def record_manager(
    entries: list[Obj], who: tuple[str, str, str], owned: set[Path], taken: set[Path], now: str, changed: bool
) -> list[Obj]:
    """managedFields after a write by `who` (manager, operation, apiVersion): it owns `owned`, every other
    manager loses `taken`, and other managers left owning nothing are dropped. A time moves only on a change."""
    manager, operation, api_version = who
    out: list[Obj] = []
    mine: Obj | None = None
    for entry in entries:
        if (entry["manager"], entry["operation"]) == (manager, operation):
            mine = {**entry, "apiVersion": api_version, "time": now if changed else entry["time"]}
            mine["fieldsV1"] = paths_to_fields(owned)
            out.append(mine)
        elif kept := field_paths(entry["fieldsV1"]) - taken:
            out.append({**entry, "fieldsV1": paths_to_fields(kept)})
    if mine is None and (owned or operation == "Apply"):  # an applier is recorded even with identity fields only
        fields = paths_to_fields(owned)
        out.append(
            {
                "manager": manager,
                "operation": operation,
                "apiVersion": api_version,
                "time": now,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields,
            }
        )
    return out
