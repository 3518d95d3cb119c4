"""Custom resources in the fake member, as a kube-apiserver serves them: CustomResourceDefinitions
(`apiextensions.k8s.io/v1`) and the objects they define.

Creating a CRD makes its group, versions and resource appear in discovery (`/apis`,
`/apis/<group>/<version>`; legacy discovery only, which kubectl falls back to) and serves its
objects, namespaced or cluster-scoped, from the member's one store and resourceVersion sequence:
create, get, list (paging and selectors as for ConfigMaps), watch, update, JSON merge and JSON
patches, server-side apply, and delete. Objects carry uid, resourceVersion, creationTimestamp,
generation (bumped by changes outside metadata, and outside status when the version has a status
subresource) and managedFields.

Validation, in kube's words, and a CRD's status are in `crd_rules`: a CRD's name must be
`<plural>.<group>`, and a group kube protects (`k8s.io`, `kubernetes.io` and their subdomains;
`x-k8s.io` is not one) needs the `api-approved.kubernetes.io` annotation, a URL or a reason
starting with `unapproved`.

Server-side apply keeps managedFields per manager: a field another manager owns may be applied
only with the value it has (then both own it), else kube's 409 Conflict in kube's words, unless
`force=true` takes it over; an update (create, replace, patch) owns the fields it changes and takes
them from their owners; fields an applier stops applying are removed unless someone else owns them.

Simplified, on purpose: every list is atomic (owned and replaced whole, no merge keys); no schema
validation or pruning (`fieldValidation` is accepted and ignored); no `/status` or `/scale`
subresources (not listed in discovery either); no conversion between versions (objects are stored
once and only `apiVersion` follows the URL); a CRD is Established at once, and deleting it deletes
its objects, then ends its open watches. Storage, paging and watch streams are the ones the hosting
fake uses (`kube_store`, `member_store`, `kube_watch`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from collections.abc import Awaitable, Callable

import yaml
from aiohttp import web

from .crd_rules import CRD_GROUP, CRD_SERVED, CRDS, Served, established, now, validate_crd, version_order
from .kube_rbac import query_bool
from .kube_store import Event, KindInfo, KubeStore, Obj, StatusError, selector
from .kube_watch import WatchConn, initial_events, stream, to_watch_event, typed
from .member_codecs import (
    Path,
    apply_conflicts,
    apply_merge,
    changed_paths,
    conflict_error,
    field_paths,
    fields_v1,
    json_patch,
    merge_patch,
    record_manager,
    remove_paths,
)
from .member_endpoints import json_response
from .member_store import list_options, list_page, maybe_dry_run

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CustomResources:
    """The CRD machinery of one fake member, over its store; `routes()` are added to the member's."""

    def __init__(self, store: KubeStore) -> None:
        self.store = store
        store.register_kind(CRDS)
        # (store key, namespace, name) -> managedFields entries, kept beside the objects as kube's are in them.
        self.managed: dict[tuple[str, str, str], list[Obj]] = {}
        self.watches: set[WatchConn] = set()

    def routes(self) -> list[tuple[str, str, Handler]]:
        """Discovery of groups, and every resource path of a group."""
        group, ns = "/apis/{group}/{version}/{plural}", "/apis/{group}/{version}/namespaces/{namespace}/{plural}"
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/apis", self._groups),
            ("GET", "/apis/{group}/{version}", self._resources),
        ]
        one: list[tuple[str, Handler]] = [
            ("GET", self._get),
            ("PUT", self._update),
            ("PATCH", self._patch),
            ("DELETE", self._delete),
        ]
        for base in (group, ns):
            table += [("GET", base, self._collection), ("POST", base, self._create)]
            table += [(method, base + "/{name}", handler) for method, handler in one]
        return table

    # --- what is served ----------------------------------------------------------------------------

    def served(self) -> list[Served]:
        """Every resource the stored CRDs serve."""
        return [Served.of(crd) for crd in self.store.objects[CRDS.resource].values()]

    def _resolve(self, request: web.Request) -> tuple[Served, KindInfo, str]:
        """(what the path names, its kind at the URL's version, namespace) or kube's 404 for unserved paths."""
        m = request.match_info
        found = CRD_SERVED if (m["group"], m["plural"]) == (CRD_GROUP, CRD_SERVED.plural) else None
        for served in self.served() if found is None else ():
            if (served.info.group, served.plural) == (m["group"], m["plural"]):
                found = served
        if found is None or m["version"] not in found.versions or ("namespace" in m and not found.info.namespaced):
            raise web.HTTPNotFound()
        if "namespace" not in m and found.info.namespaced and ("name" in m or request.method != "GET"):
            raise web.HTTPNotFound()  # a namespaced object lives in a namespace; only a list may span them
        self.store.register_kind(found.info)  # idempotent: serves the resource (again after a dry run)
        return found, dataclasses.replace(found.info, version=m["version"]), m.get("namespace", "")

    def _out(self, info: KindInfo, obj: Obj) -> Obj:
        out = typed(info, obj)
        meta = obj["metadata"]
        if entries := self.managed.get((info.resource, meta.get("namespace", ""), meta["name"])):
            out["metadata"] = {**meta, "managedFields": entries}
        return out

    def _record(self, info: KindInfo, obj: Obj, who: tuple[str, str], owned: set[Path], taken: set[Path], changed: bool) -> None:
        """Record a write's field ownership: `who` (manager, operation) owns `owned`, others lose `taken`."""
        key = (info.resource, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        entries = record_manager(self.managed.get(key, []), (*who, info.api_version), owned, taken, now(), changed)
        self.managed[key] = entries

    def _updated(self, request: web.Request, info: KindInfo, old: Obj | None, new: Obj) -> None:
        """An update (create, replace, patch) owns the fields it changed, taking them from other managers."""
        manager = self._manager(request, "unknown")
        changed = {p for p in changed_paths(old or {}, new) if p[0] != "status"}  # status is the status writers'
        key = (info.resource, new["metadata"].get("namespace", ""), new["metadata"]["name"])
        mine = next((e for e in self.managed.get(key, []) if (e["manager"], e["operation"]) == (manager, "Update")), None)
        owned = (field_paths(mine["fieldsV1"]) if mine else set()) | changed
        self._record(info, new, (manager, "Update"), owned, changed, bool(changed) or old is None)

    # --- discovery ---------------------------------------------------------------------------------

    async def _groups(self, request: web.Request) -> web.StreamResponse:
        versions: dict[str, list[str]] = {CRD_GROUP: ["v1"]}
        for served in self.served():
            known = versions.setdefault(served.info.group, [])
            known += [v for v in served.versions if v not in known]
        groups = []
        for name, found in versions.items():
            entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in sorted(found, key=version_order)]
            groups.append({"name": name, "versions": entries, "preferredVersion": entries[0]})
        return json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def _resources(self, request: web.Request) -> web.StreamResponse:
        group, version = request.match_info["group"], request.match_info["version"]
        everything = [CRD_SERVED, *self.served()]
        resources = [s.resource() for s in everything if s.info.group == group and version in s.versions]
        if not resources:
            raise web.HTTPNotFound()
        return json_response(
            {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}", "resources": resources}
        )

    # --- reads -------------------------------------------------------------------------------------

    async def _get(self, request: web.Request) -> web.StreamResponse:
        _, info, namespace = self._resolve(request)
        return json_response(self._out(info, self.store.get(info.resource, namespace, request.match_info["name"])))

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        served, info, namespace = self._resolve(request)
        scope = namespace or None
        q = request.query
        matcher = selector(q.get("labelSelector", ""), q.get("fieldSelector", ""), info)
        if query_bool(q, "watch"):
            return await self._watch(request, info, scope, matcher)
        page = list_page(
            self.store,
            info.resource,
            scope,
            matcher,
            list_options(q),
            filtered=bool(q.get("labelSelector") or q.get("fieldSelector")),
        )
        meta: Obj = {"resourceVersion": str(page.resource_version)}
        if page.continue_token:
            meta["continue"] = page.continue_token
        if page.remaining is not None:
            meta["remainingItemCount"] = page.remaining
        items = [self._out(info, item) for item in page.items]
        return json_response({"kind": served.names["listKind"], "apiVersion": info.api_version, "metadata": meta, "items": items})

    async def _watch(
        self, request: web.Request, info: KindInfo, namespace: str | None, matcher: Callable[[Obj], bool]
    ) -> web.StreamResponse:
        conn = WatchConn(request, info.resource)
        error: StatusError | None = None
        try:
            backlog = initial_events(self.store, info, namespace, request.query.get("resourceVersion", ""))
        except StatusError as exc:
            if exc.code != 410:
                raise
            backlog, error = [], exc
        listener: Callable[[Event], None] = conn.queue.put_nowait
        if error is None:
            self.store.listeners.append(listener)  # same synchronous step as the snapshot
        self.watches.add(conn)
        try:
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)

            async def send(event: Obj) -> None:
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    event = {**event, "object": self._out(info, event["object"])}
                await resp.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")

            if error is not None:  # 200 and one ERROR event, as the watch cache answers a compacted version
                await send({"type": "ERROR", "object": error.status})
            for event in backlog:
                if (out := to_watch_event(info, namespace, matcher, event)) is not None:
                    await send(out)
            if error is None and await stream(
                conn, send, info, namespace, matcher, store=self.store, bookmark_interval=1.0, default_timeout=None
            ):
                return resp  # cut: the transport is gone
            await resp.write_eof()
            return resp
        finally:
            self.watches.discard(conn)
            with contextlib.suppress(ValueError):
                self.store.listeners.remove(listener)

    # --- writes ------------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> Obj:
        raw = await request.read()
        try:
            body = yaml.safe_load(raw) if request.content_type == "application/apply-patch+yaml" else json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise StatusError(400, "BadRequest", f"error decoding request body: {exc}") from None
        if not isinstance(body, (dict, list)):
            raise StatusError(400, "BadRequest", "the request body is not an object")
        return body  # type: ignore[return-value]  # a list only for JSON patches

    @staticmethod
    def _manager(request: web.Request, default: str) -> str:
        """The field manager: `fieldManager`, else the client's name from its User-Agent, as kube does."""
        agent = request.headers.get("User-Agent", "").split("/", 1)[0]
        return request.query.get("fieldManager") or agent or default

    def _prepare(self, served: Served, body: Obj, old: Obj | None) -> Obj:
        """What a write stores: CRDs validated and Established; with a status subresource, the status
        is not written through the main resource (dropped on create, kept on update)."""
        if served is CRD_SERVED:
            validate_crd(body, old)
            return established(body) if old is None else {**body, "status": old.get("status", {})}
        if served.status_subresource:
            body = {k: v for k, v in body.items() if k != "status"}
            if old is not None and "status" in old:
                body["status"] = old["status"]
        return body

    def _write(self, served: Served, info: KindInfo, namespace: str, name: str | None, body: Obj) -> tuple[Obj, Obj | None]:
        """Create (name None) or replace: (stored object, the object before or None)."""
        if name is None:
            return self.store.create(info.resource, namespace, self._prepare(served, body, None)), None
        old = copy.deepcopy(self.store.get(info.resource, namespace, name))
        return self.store.update(info.resource, namespace, name, self._prepare(served, body, old)), old

    async def _create(self, request: web.Request) -> web.StreamResponse:
        served, info, namespace = self._resolve(request)
        body = await self._body(request)
        with maybe_dry_run(request.query, self.store, self.managed):
            created, _ = self._write(served, info, namespace, None, body)
            self._updated(request, info, None, created)
            return json_response(self._out(info, created), 201)

    async def _update(self, request: web.Request) -> web.StreamResponse:
        served, info, namespace = self._resolve(request)
        name, body = request.match_info["name"], await self._body(request)
        with maybe_dry_run(request.query, self.store, self.managed):
            updated, old = self._write(served, info, namespace, name, body)
            self._updated(request, info, old, updated)
            return json_response(self._out(info, updated))

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        served, info, namespace = self._resolve(request)
        name, kind = request.match_info["name"], request.content_type
        accepted = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
        if served is CRD_SERVED:
            accepted.insert(2, "application/strategic-merge-patch+json")  # built-in kinds take it; custom ones do not
        if kind not in accepted:
            message = f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}"
            raise StatusError(415, "UnsupportedMediaType", message)
        patch = await self._body(request)
        with maybe_dry_run(request.query, self.store, self.managed):
            if kind == "application/apply-patch+yaml":
                return await self._apply(request, served, info, namespace, name, patch)
            current = self.store.get(info.resource, namespace, name)
            new = json_patch(current, patch) if kind == "application/json-patch+json" else merge_patch(current, patch)  # type: ignore[arg-type]
            updated, old = self._write(served, info, namespace, name, new)
            self._updated(request, info, old, updated)
            return json_response(self._out(info, updated))

    async def _apply(
        self, request: web.Request, served: Served, info: KindInfo, namespace: str, name: str, config: Obj
    ) -> web.StreamResponse:
        """Server-side apply. Fields other managers own may only be set to the value they have, unless
        `force` takes them over (kube's 409 Conflict otherwise); fields this manager applied before and
        no longer does are removed (unless another manager owns them); then the configuration is laid
        over the object."""
        manager = request.query.get("fieldManager")
        if not manager:
            raise StatusError(400, "BadRequest", "PATCH requests with apply-patch content type require fieldManager")
        if not isinstance(config, dict):
            raise StatusError(400, "BadRequest", "the apply configuration is not an object")
        meta = config.setdefault("metadata", {})
        if meta.setdefault("name", name) != name:
            raise StatusError(
                400, "BadRequest", f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        key = (info.resource, namespace, name)
        exists = (namespace, name) in self.store.objects[info.resource]
        entries = self.managed.get(key, []) if exists else []
        applied = field_paths(fields_v1(config))
        conflicts = apply_conflicts(entries, manager, applied, config, self.store.get(*key) if exists else {})
        if conflicts and not query_bool(request.query, "force"):
            raise conflict_error(conflicts)
        mine = [e["fieldsV1"] for e in entries if (e["manager"], e["operation"]) == (manager, "Apply")]
        others = {p for e in entries if (e["manager"], e["operation"]) != (manager, "Apply") for p in field_paths(e["fieldsV1"])}
        dropped = (field_paths(mine[0]) if mine else set()) - applied - others
        if exists:
            old = self.store.get(*key)
            result, _ = self._write(served, info, namespace, name, apply_merge(remove_paths(old, dropped), config))
            changed = result["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]
        else:
            result, _ = self._write(served, info, namespace, None, config)
            changed = True
        self.managed[key] = entries
        self._record(info, result, (manager, "Apply"), applied, {path for _, path in conflicts}, changed)
        return json_response(self._out(info, result), 200 if exists else 201)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        served, info, namespace = self._resolve(request)
        name = request.match_info["name"]
        with maybe_dry_run(request.query, self.store, self.managed):
            if served is CRD_SERVED:
                self._delete_objects(Served.of(self.store.get(info.resource, "", name)))
            gone = self.store.delete(info.resource, namespace, name)
            self.managed.pop((info.resource, namespace, name), None)
            return json_response(typed(info, gone))

    def _delete_objects(self, served: Served) -> None:
        """A CRD going away: its objects are deleted (watchers see DELETED), then its watches end."""
        self.store.register_kind(served.info)
        for namespace, name in sorted(self.store.objects[served.info.resource]):
            self.store.delete(served.info.resource, namespace, name)
            self.managed.pop((served.info.resource, namespace, name), None)
        for conn in list(self.watches):
            if conn.resource == served.info.resource:
                conn.end()
