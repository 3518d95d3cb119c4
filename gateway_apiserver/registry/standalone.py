"""`FileSecretSource`: cluster Secrets from local files, for standalone mode (no hosting cluster).

Two inputs, both optional and both re-read when they change:

* a directory of Secret manifests (`.yaml`, `.yml`, `.json`; multi-document files and
  `kind: List`/`SecretList` allowed), in the cluster-gateway Secret format;
* a kubeconfig, each context of which becomes one Secret named after the context (mapped to
  a valid object name when it is not one: see `context_object_name`).

A name defined by both wins in the directory (files in sorted order first), with a warning.
A file that cannot be parsed (or is empty), as an editor may leave it mid-save, keeps serving
what it last defined: no DELETED event, and no takeover by a context of the same name.

Change detection polls stat() results (mtime, size, inode) every `poll_interval` seconds
rather than using inotify: it needs no dependency, works on every filesystem, and catches the
symlink swap by which Kubernetes updates a mounted ConfigMap. Only changed files are parsed
again. The files carry no resourceVersion we could trust, so the source numbers versions
itself: a new, changed or deleted Secret takes the next value of a counter. The first load is
one `sink.replace`; every later change is one `sink.apply` event at its own resourceVersion,
so open watches see file edits and clients can resume from any version they saw.

Secret data is never logged: messages name files, Secrets, contexts and keys only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import stat
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from ..base.validation import dns1123_subdomain_errors
from .file_parsing import Stamp, Unreadable, Unusable, YamlLoader, b64, file_stamp, yaml_error
from .kubeconfig_contexts import KubeconfigReader
from .model import LABEL_CREDENTIAL_TYPE
from .source import Secret, SecretSink, WatchEventType

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
_LIST_KINDS = frozenset({"List", "SecretList"})
# uuid5 namespace for the uid of Secrets that come without one.
_UID_NAMESPACE = uuid.UUID("3f9d0c52-6b1e-5a47-8c2d-9e4f1a7b5c60")


@dataclasses.dataclass(frozen=True, slots=True)
class _Item:
    """A normalised Secret with what the versioning needs."""

    name: str
    secret: Secret
    digest: str
    mtime: float
    origin: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Version:
    digest: str
    resource_version: int
    created: str


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(secret: Secret) -> str:
    canonical = json.dumps(secret, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise Unusable(f"{what} must map strings to strings")
    return {str(k): v for k, v in value.items()}


def _normalize_secret(obj: Mapping[str, Any], namespace: str) -> Secret | None:
    """A manifest object as the kube-apiserver would store it, or None when it is not served.

    None for objects that are not Secrets, Secrets of another namespace, and Secrets without
    the credential-type label (the hosting-cluster informer's label selector skips those).
    `stringData` is merged into `data` base64-encoded, winning over `data` as on a real write.
    Raises `Unusable` for a Secret the kube-apiserver would reject.
    """
    if obj.get("kind") != "Secret":
        return None
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise Unusable("a Secret without metadata.name")
    name = meta["name"]
    if (meta.get("namespace") or namespace) != namespace:
        return None
    labels = _string_map(meta.get("labels"), f"Secret {name!r}: metadata.labels")
    if LABEL_CREDENTIAL_TYPE not in labels:
        return None
    if errs := dns1123_subdomain_errors(name):
        raise Unusable(f"Secret {name!r}: the name is invalid: {errs[0]}")
    annotations = _string_map(meta.get("annotations"), f"Secret {name!r}: metadata.annotations")
    data = obj.get("data") or {}
    if not isinstance(data, Mapping) or not all(isinstance(v, str) for v in data.values()):
        raise Unusable(f"Secret {name!r}: data must map keys to base64 strings")
    data = {str(k): v for k, v in data.items()}
    string_data = obj.get("stringData") or {}
    if not isinstance(string_data, Mapping):
        raise Unusable(f"Secret {name!r}: stringData must be a mapping")
    for key, value in string_data.items():
        if not isinstance(value, str):
            raise Unusable(f"Secret {name!r}: stringData[{str(key)!r}] must be a string")  # not its value
        data[str(key)] = b64(value.encode())
    secret: Secret = {k: v for k, v in obj.items() if k not in ("stringData", "data", "metadata")}
    secret["apiVersion"] = "v1"
    metadata: dict[str, Any] = {**meta, "namespace": namespace, "labels": labels}
    if annotations:
        metadata["annotations"] = annotations
    secret["metadata"] = metadata
    secret["data"] = data
    return secret


def _objects(docs: list[Any], origin: str) -> Iterator[Mapping[str, Any]]:
    for doc in docs:
        if doc is None:
            continue  # an empty document, e.g. after a trailing "---"
        if not isinstance(doc, Mapping):
            log.warning("%s: skipping a document that is not a Kubernetes object", origin)
        elif doc.get("kind") in _LIST_KINDS:
            items = doc.get("items") or []
            yield from _objects(items if isinstance(items, list) else [items], origin)
        else:
            yield doc


def _parse_manifest(path: Path, namespace: str) -> list[Secret]:
    """The served Secrets of one manifest file. Logs one warning per unusable part.

    Raises `Unreadable` when the file as a whole cannot be read or parsed (or is empty, as a
    file being rewritten in place briefly is): the caller keeps serving its last good content.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Unreadable(f"cannot read it: {exc.strerror if isinstance(exc, OSError) else 'not UTF-8'}") from None
    if not text.strip():
        raise Unreadable("it is empty", quiet=True)
    try:
        docs = [json.loads(text)] if path.suffix.lower() == ".json" else list(yaml.load_all(text, Loader=YamlLoader))
    except json.JSONDecodeError as exc:
        raise Unreadable(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except yaml.YAMLError as exc:
        raise Unreadable(f"not valid YAML: {yaml_error(exc)}") from None
    secrets = []
    for obj in _objects(docs, str(path)):
        try:
            secret = _normalize_secret(obj, namespace)
        except Unusable as exc:
            log.warning("%s: skipping %s", path, exc)
            continue
        if secret is not None:
            secrets.append(secret)
    return secrets


def _keep_or_skip(what: object, problem: Unreadable, last_good: int) -> None:
    """Log, once per unreadable version of a file, what happens to the Secrets it defined."""
    if last_good:
        log.warning(
            "%s: %s; still serving the %d Secret(s) it last defined until it is fixed or removed",
            what,
            problem,
            last_good,
        )
    elif not problem.quiet:
        log.warning("%s: skipped, %s", what, problem)


# --- the source -------------------------------------------------------------------------------


class FileSecretSource:
    """A `SecretSource` reading Secret manifests from a directory and contexts from a kubeconfig."""

    def __init__(
        self,
        secrets_dir: Path | None,
        kubeconfig_clusters: Path | None,
        namespace: str,
        poll_interval: float = 1.0,
    ) -> None:
        self._dir = secrets_dir
        self._namespace = namespace
        self._poll_interval = poll_interval
        self._kubeconfig = KubeconfigReader(kubeconfig_clusters, namespace) if kubeconfig_clusters else None
        # Scan state: touched only by the scan, in a worker thread, one scan at a time.
        self._files: dict[str, tuple[Stamp, list[_Item]]] = {}  # by file name
        self._dir_unlisted = False
        self._kubeconfig_stamp: Stamp | None = None
        self._kubeconfig_items: list[_Item] | None = None  # None: never read
        # Versioning state: touched only on the event loop.
        self._counter = 0
        self._versions: dict[str, _Version] = {}
        self._warned_clashes: frozenset[tuple[str, str]] = frozenset()
        self._published: dict[str, Secret] = {}

    async def run(self, sink: SecretSink) -> None:
        """Load, call `sink.replace` once (even when empty), then poll and apply each change as an event."""
        first = True
        while True:
            try:
                # File I/O and YAML parsing stay off the event loop (10,000 files take a while).
                items = await asyncio.to_thread(self._scan, first)
                if items is not None:
                    self._publish(items, sink, first)
                    first = False
            except Exception:  # a bug must not end standalone mode: try again at the next poll
                log.exception("standalone Secret source: reload failed")
            await asyncio.sleep(self._poll_interval)

    # --- scanning (worker thread) -----------------------------------------------------------

    def _scan(self, force: bool) -> list[_Item] | None:
        """Re-parse what changed on disk; None when nothing did (and `force` is False)."""
        changed = self._scan_dir()
        if self._kubeconfig is not None:
            changed = self._scan_kubeconfig(self._kubeconfig) or changed
        if not (changed or force):
            return None
        items = [item for _, (_, file_items) in sorted(self._files.items()) for item in file_items]
        return items + (self._kubeconfig_items or [])

    def _scan_dir(self) -> bool:
        if self._dir is None:
            return False
        try:
            names = [e.name for e in os.scandir(self._dir) if _is_manifest(e.name)]
        except OSError as exc:
            if not self._dir_unlisted:
                log.warning("secrets dir %s: cannot list it (%s); serving no Secrets from it", self._dir, exc.strerror)
                self._dir_unlisted = True
            changed = bool(self._files)
            self._files = {}
            return changed
        self._dir_unlisted = False
        changed = False
        seen: dict[str, tuple[Stamp, list[_Item]]] = {}
        prefix = os.path.join(self._dir, "")
        for name in names:
            # Plain str paths: a Path per file per poll would triple the cost with 10,000 files.
            try:
                st = os.stat(prefix + name)
            except OSError:
                continue  # vanished since the listing, or a dangling symlink
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            cached = self._files.get(name)
            if cached is not None and cached[0] == stamp:
                seen[name] = cached
            elif stat.S_ISREG(st.st_mode):
                path = self._dir / name
                try:
                    seen[name] = (stamp, [_item(s, stamp, str(path)) for s in _parse_manifest(path, self._namespace)])
                except Unreadable as problem:
                    # Mid-save or mistyped: keep what it defined (no DELETED, no takeover by a
                    # kubeconfig context of the same name); the new stamp means one log per version.
                    last_good = cached[1] if cached is not None else []
                    _keep_or_skip(path, problem, len(last_good))
                    seen[name] = (stamp, last_good)
                    continue
                changed = True
        changed = changed or seen.keys() != self._files.keys()
        self._files = seen
        return changed

    def _scan_kubeconfig(self, reader: KubeconfigReader) -> bool:
        stamp = file_stamp(reader.path)
        unchanged = self._kubeconfig_items is not None and stamp == self._kubeconfig_stamp
        if unchanged and all(file_stamp(path) == old for path, old in reader.referenced.items()):
            return False  # neither the kubeconfig nor a file it names (CA, cert, key, token) changed
        self._kubeconfig_stamp = stamp
        if stamp is None:
            log.warning("kubeconfig %s: cannot read it; serving no contexts from it", reader.path)
            self._kubeconfig_items = []
        else:
            origin = f"kubeconfig {reader.path}"
            try:
                self._kubeconfig_items = [_item(s, stamp, origin) for s in reader.read()]
            except Unreadable as problem:
                # Mid-save or mistyped: keep serving its contexts as they were.
                last_good = self._kubeconfig_items or []
                _keep_or_skip(origin, problem, len(last_good))
                self._kubeconfig_items = last_good
        return True

    # --- versioning (event loop) ------------------------------------------------------------

    def _publish(self, items: list[_Item], sink: SecretSink, first: bool) -> None:
        chosen: dict[str, _Item] = {}
        clashes: set[tuple[str, str]] = set()
        for item in items:  # directory files (sorted) first, so the directory wins
            if item.name in chosen:
                clashes.add((item.name, item.origin))
                if (item.name, item.origin) not in self._warned_clashes:
                    log.warning(
                        "Secret %r from %s is ignored: %s defines it first",
                        item.name,
                        item.origin,
                        chosen[item.name].origin,
                    )
            else:
                chosen[item.name] = item
        self._warned_clashes = frozenset(clashes)

        versions: dict[str, _Version] = {}
        secrets: list[Secret] = []
        events: list[tuple[WatchEventType, Secret]] = []
        for name in sorted(chosen):
            item, old = chosen[name], self._versions.get(name)
            if old is not None and old.digest == item.digest:
                version = old
            else:
                self._counter += 1
                created = old.created if old is not None else _rfc3339(item.mtime)
                version = _Version(item.digest, self._counter, created)
            versions[name] = version
            secret = _with_metadata(item.secret, self._namespace, version)
            secrets.append(secret)
            if version is not old:
                events.append(("ADDED" if old is None else "MODIFIED", secret))
        for name in sorted(self._published.keys() - versions.keys()):
            self._counter += 1  # each deletion gets its own resourceVersion, as in etcd
            gone = self._published[name]
            events.append(("DELETED", {**gone, "metadata": {**gone["metadata"], "resourceVersion": str(self._counter)}}))
        if first and self._counter == 0:
            self._counter = 1  # "0" means "any version" to clients; start the first listing at 1
        self._versions = versions
        self._published = {s["metadata"]["name"]: s for s in secrets}
        if first:
            sink.replace(secrets, str(self._counter))
            return
        # After the first listing, one event per change, each at its own resourceVersion, so
        # open watches see every edit and clients can resume from any version they saw.
        for event_type, secret in events:
            sink.apply(event_type, secret)


def _item(secret: Secret, stamp: Stamp, origin: str) -> _Item:
    return _Item(secret["metadata"]["name"], secret, _digest(secret), stamp[0] / 1e9, origin)


def _is_manifest(filename: str) -> bool:
    # Hidden files are editor swap files or a ConfigMap mount's ..data internals.
    _, dot, suffix = filename.rpartition(".")
    return bool(dot) and not filename.startswith(".") and "." + suffix.lower() in MANIFEST_SUFFIXES


def _with_metadata(secret: Secret, namespace: str, version: _Version) -> Secret:
    """A copy with uid, creationTimestamp (when absent) and our resourceVersion (always)."""
    meta = dict(secret["metadata"])
    meta.setdefault("uid", str(uuid.uuid5(_UID_NAMESPACE, f"{namespace}/{meta['name']}")))
    meta.setdefault("creationTimestamp", version.created)
    # Always ours: a resourceVersion left in a manifest (e.g. from `kubectl get -o yaml`)
    # belongs to another server and would not order our changes.
    meta["resourceVersion"] = str(version.resource_version)
    return {**secret, "metadata": meta}
