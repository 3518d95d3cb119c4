"""`FakeKubeAPIServer`: an in-process kube-apiserver over real TLS, faithful for core/v1 Secrets.

It speaks the real protocol (Status errors, list pagination with continue tokens, label and
field selectors, watch with bookmarks, timeoutSeconds, 410 Expired as an ERROR event after a
compaction, selector transitions turned into ADDED/DELETED as the watch cache does), so code
tested against it can be trusted against real clusters. Storage and selectors are in
`kube_store.py`, the watch stream in `kube_watch.py`, authorization in `kube_rbac.py`. Routes
are a plain table (`add_route`) so later tests can add endpoints (TokenReview,
SubjectAccessReview) and kinds (`store.register_kind`) to the same server. Cluster-scoped
resources of other groups are served as CRDs are, once installed (`install_crd`; OCM's
ManagedClusters with `install_managed_cluster_crd`, see `ocm.py`): absent from discovery before.

Delegated authentication and authorization: TokenReview answers from the `users` table,
SubjectAccessReview from the `policy` table (`PolicyRule`, first match wins), and ConfigMaps
(with `set_authentication_configmap` writing kube-system/extension-apiserver-authentication
exactly as the kube-apiserver does) are served too.

Its own authorization is RBAC, as on a real cluster (`kube_rbac.py`): every request TO the fake is
checked against the roles deploy/rbac.yaml applies plus the bootstrap roles, and answered 403 as
kube does when they do not allow it. Two tokens exist: `token`, the hosting cluster's admin
(system:masters, allowed everything), and `gateway_token`, the gateway's ServiceAccount, which
`write_kubeconfig` uses by default. So the gateway runs with exactly the rights deploy/ gives it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets as token_gen
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from .kube_rbac import (
    AUTHENTICATED,
    Rbac,
    User,
    deploy_rbac,
    forbidden_status,
    gateway_service_account,
    query_bool,
    request_attributes,
)
from .kube_store import (
    CONFIGMAPS,
    SECRETS,
    Event,
    KindInfo,
    KubeStore,
    Obj,
    PolicyRule,
    StatusError,
    access_review_status,
    selector,
    status_object,
    token_review_status,
    validate_access_review,
)
from .kube_watch import WatchConn, initial_events, stream, to_watch_event, typed
from .managed_fields import request_manager
from .ocm import MANAGED_CLUSTERS, managed_cluster
from .pki import CertKey, issue_server_cert, make_ca, server_ssl_context

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
USER = web.RequestKey("user", dict[str, Any])  # request[USER]: the authenticated user of a request
AUTH_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")

KUBE_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-fake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status, content_type="application/json")


def _encode_data(data: Mapping[str, str | bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode() if isinstance(v, str) else v).decode() for k, v in data.items()}


async def kubectl_json(kubeconfig: Path, *args: str, timeout: float = 15) -> Any:
    """Run the kubectl binary with `kubeconfig` and `-o json`; its parsed output (the test fails on an error)."""
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        str(kubeconfig),
        *args,
        "-o",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"HOME": str(kubeconfig.parent), "PATH": os.environ.get("PATH", "")},
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


class FakeKubeAPIServer:
    """A kube-apiserver for tests, on https://127.0.0.1:<random port> with its own CA and a bearer token."""

    def __init__(self, *, token: str | None = None, bookmark_interval: float | None = 1.0, rbac: Rbac | None = None) -> None:
        self.ca: CertKey = make_ca("fake-kube-apiserver-ca")
        self.serving: CertKey = issue_server_cert(
            self.ca, dns_names=("localhost", "kubernetes.default.svc"), ip_addresses=("127.0.0.1",)
        )
        self.token = token or token_gen.token_urlsafe(24)  # the hosting cluster's admin
        self.gateway_token = token_gen.token_urlsafe(24)  # the gateway's ServiceAccount
        self.gateway_user = gateway_service_account()
        # token -> user info (TokenReview-shaped), so later tests can add users and review tokens.
        self.users: dict[str, dict[str, Any]] = {
            self.token: {"username": "kubernetes-admin", "uid": "", "groups": ["system:masters", "system:authenticated"]},
            self.gateway_token: {
                "username": self.gateway_user.name,
                "uid": "00000000-0000-0000-0000-000000000001",
                "groups": list(self.gateway_user.groups),
            },
        }
        self.rbac = rbac if rbac is not None else deploy_rbac()  # how the fake authorizes requests made to it
        self.forbidden: list[str] = []  # the messages of the 403s it answered, in order
        self.refusals_expected = False  # the kube_apiserver fixture fails a test in which it refused the gateway
        self.anonymous_paths: set[str] = {"/version", "/healthz", "/livez", "/readyz"}
        self.store = KubeStore()
        self.store.register_kind(SECRETS)
        self.store.register_kind(CONFIGMAPS)
        self.api_audiences: list[str] = ["https://kubernetes.default.svc.cluster.local"]
        self.policy: list[PolicyRule] = []  # SubjectAccessReview verdicts; no match = not allowed
        self.token_reviews = 0  # TokenReviews received
        self.access_reviews = 0  # SubjectAccessReviews received
        self.access_review_log: list[Obj] = []  # the SubjectAccessReview bodies received, in order
        self.api_groups: list[Obj] = []  # entries of GET /apis
        self.bookmark_interval = bookmark_interval  # seconds between BOOKMARKs; None disables them
        self.default_watch_timeout: float | None = None  # when the client sends no timeoutSeconds
        # Seconds each change waits before a watch sends it (a lagging watch cache, as on a busy cluster).
        # Watches opened while it is set send no BOOKMARK: one would announce a version not yet sent.
        self.watch_lag = 0.0
        self.hang_watches = False  # accept watches, then never answer (not even headers)
        self.list_requests = 0
        self.watch_requests = 0
        self.requests: list[str] = []  # "METHOD /path?query", in arrival order
        self.patches: list[tuple[str, str, Obj]] = []  # (path, Content-Type, body or {} if refused unread) of each PATCH
        self._faults: list[tuple[int, Callable[[web.Request], bool]]] = []
        self._watch_errors: list[StatusError] = []
        self.routes: list[tuple[str, str, Handler]] = []
        self._port = 0
        self._runner: web.AppRunner | None = None
        self._watches: set[WatchConn] = set()
        self.register_routes()

    # --- routing ---------------------------------------------------------------------------

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Add an endpoint; takes effect at the next start()."""
        self.routes.append((method, path, handler))

    def register_routes(self) -> None:
        """The built-in endpoints: discovery, version, and namespaced/cluster-wide resource CRUD + watch."""
        self.add_route("GET", "/version", self._version)
        self.add_route("GET", "/healthz", self._ok)
        self.add_route("GET", "/livez", self._ok)
        self.add_route("GET", "/readyz", self._ok)
        self.add_route("GET", "/api", self._api_versions)
        self.add_route("GET", "/api/v1", self._api_resources)
        self.add_route("GET", "/apis", self._api_groups)
        self.add_route("GET", "/api/v1/{resource}", self._collection_get)
        self.add_route("GET", "/api/v1/namespaces/{namespace}/{resource}", self._collection_get)
        self.add_route("POST", "/api/v1/namespaces/{namespace}/{resource}", self._create)
        self.add_route("GET", "/api/v1/namespaces/{namespace}/{resource}/{name}", self._get)
        self.add_route("PUT", "/api/v1/namespaces/{namespace}/{resource}/{name}", self._update)
        self.add_route("PATCH", "/api/v1/namespaces/{namespace}/{resource}/{name}", self._patch)
        self.add_route("DELETE", "/api/v1/namespaces/{namespace}/{resource}/{name}", self._delete)
        self.add_route("POST", "/apis/authentication.k8s.io/v1/tokenreviews", self._token_review)
        self.add_route("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", self._access_review)
        # Cluster-scoped resources of other groups (installed CRDs); 404 until one is installed.
        self.add_route("GET", "/apis/{group}/{version}", self._group_resources)
        self.add_route("GET", "/apis/{group}/{version}/{resource}", self._collection_get)
        self.add_route("POST", "/apis/{group}/{version}/{resource}", self._create)
        self.add_route("GET", "/apis/{group}/{version}/{resource}/{name}", self._get)
        self.add_route("PUT", "/apis/{group}/{version}/{resource}/{name}", self._update)
        self.add_route("PATCH", "/apis/{group}/{version}/{resource}/{name}", self._patch)
        self.add_route("DELETE", "/apis/{group}/{version}/{resource}/{name}", self._delete)
        # Namespaced resources of other groups (Deployments, RBAC Roles, OCM add-ons), and cluster-scoped core ones.
        self.add_route("POST", "/api/v1/{resource}", self._create)
        self.add_route("GET", "/api/v1/{resource}/{name}", self._get)
        self.add_route("PUT", "/api/v1/{resource}/{name}", self._update)
        self.add_route("DELETE", "/api/v1/{resource}/{name}", self._delete)
        self.add_route("GET", "/apis/{group}/{version}/namespaces/{namespace}/{resource}", self._collection_get)
        self.add_route("POST", "/apis/{group}/{version}/namespaces/{namespace}/{resource}", self._create)
        self.add_route("GET", "/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}", self._get)
        self.add_route("PUT", "/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}", self._update)
        self.add_route("PATCH", "/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}", self._patch)
        self.add_route("DELETE", "/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}", self._delete)
        # The status subresource of kinds that have one (KindInfo.status_subresource).
        for prefix in ("/apis/{group}/{version}", "/apis/{group}/{version}/namespaces/{namespace}"):
            self.add_route("GET", prefix + "/{resource}/{name}/status", self._get_status)
            self.add_route("PUT", prefix + "/{resource}/{name}/status", self._update_status)
            self.add_route("PATCH", prefix + "/{resource}/{name}/status", self._patch_status)

    def authenticate(self, request: web.Request) -> dict[str, Any] | None:
        """The user behind a request's bearer token, or None."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return self.users.get(token.strip()) if scheme.lower() == "bearer" else None

    def authorization_failure(self, request: web.Request, user: dict[str, Any]) -> Obj | None:
        """The 403 Status for a request RBAC does not allow this user, or None if it is allowed."""
        # Every authenticated user is in system:authenticated, whatever its token's entry lists.
        subject = User(str(user.get("username", "")), (*(user.get("groups") or []), AUTHENTICATED))
        attrs = request_attributes(request.method, request.path, request.query)
        allowed, reason = self.rbac.authorize(subject, attrs)
        return None if allowed else forbidden_status(subject, attrs, reason)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        if request.path not in self.anonymous_paths:
            user = self.authenticate(request)
            if user is None:
                return _json(status_object(401, "Unauthorized", "Unauthorized"), 401)
            request[USER] = user
            if (denied := self.authorization_failure(request, user)) is not None:
                self.forbidden.append(denied["message"])
                return _json(denied, 403)
        for i, (code, when) in enumerate(self._faults):
            if when(request):
                del self._faults[i]
                return _json(status_object(code, "InternalError", f"injected failure {code}"), code)
        try:
            return await handler(request)
        except StatusError as exc:
            return _json(exc.status, exc.code)
        except web.HTTPNotFound:
            return _json(status_object(404, "NotFound", "the server could not find the requested resource"), 404)
        except web.HTTPMethodNotAllowed as exc:
            return _json(status_object(405, "MethodNotAllowed", str(exc)), 405)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1: a random port the first time, the same port after a stop()."""
        app = web.Application(middlewares=[self._middleware])
        for method, path, handler in self.routes:
            app.router.add_route(method, path, handler)
        # handler_cancellation: a watch handler must notice its client leaving.
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port, ssl_context=server_ssl_context(self.serving))
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening; open watches are cut. The stored objects survive (they live "in etcd")."""
        self.drop_watches()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def restart(self, *, compact: bool = False) -> None:
        """Stop and start on the same port. With `compact`, history is lost as on a real restart
        whose watch cache starts fresh: watches from older RVs then get 410."""
        await self.stop()
        if compact:
            self.compact()
        await self.start()

    async def __aenter__(self) -> FakeKubeAPIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The listening port (0 before the first start)."""
        return self._port

    @property
    def url(self) -> str:
        """The server URL, e.g. https://127.0.0.1:43117."""
        return f"https://127.0.0.1:{self._port}"

    @property
    def ca_pem(self) -> bytes:
        """The CA that signed the serving certificate."""
        return self.ca.cert_pem

    def write_kubeconfig(self, path: Path | str, *, token: str | None = None) -> Path:
        """Write a kubeconfig (server, CA data, bearer token) loadable by client libraries and kubectl.

        The token defaults to the gateway's ServiceAccount token; pass `token=server.token` to act as the admin."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "fake",
                    "cluster": {"server": self.url, "certificate-authority-data": base64.b64encode(self.ca_pem).decode()},
                }
            ],
            "users": [{"name": "fake-user", "user": {"token": token or self.gateway_token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake-user"}}],
            "current-context": "fake",
        }
        target = Path(path)
        target.write_text(yaml.safe_dump(config))
        return target

    # --- control API for tests ----------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion."""
        return self.store.rv

    def create_secret(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        data: Mapping[str, str | bytes] | None = None,
        annotations: Mapping[str, str] | None = None,
        type: str = "Opaque",
    ) -> Obj:
        """Create a Secret; `data` values are raw (the fake base64-encodes them). Returns the stored object."""
        meta: Obj = {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {})}
        body: Obj = {"metadata": meta, "data": _encode_data(data or {}), "type": type}
        return self.store.create("secrets", namespace, body)

    def update_secret(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        data: Mapping[str, str | bytes] | None = None,
        annotations: Mapping[str, str] | None = None,
        type: str | None = None,
    ) -> Obj:
        """Replace the given fields of a Secret (None keeps a field). Returns the stored object."""
        old = self.store.get("secrets", namespace, name)
        body: Obj = {**old, "metadata": dict(old["metadata"])}
        body["metadata"].pop("resourceVersion")
        if labels is not None:
            body["metadata"]["labels"] = dict(labels)
        if annotations is not None:
            body["metadata"]["annotations"] = dict(annotations)
        if data is not None:
            body["data"] = _encode_data(data)
        if type is not None:
            body["type"] = type
        return self.store.update("secrets", namespace, name, body)

    def delete_secret(self, namespace: str, name: str) -> Obj:
        """Delete a Secret; returns it as of its deletion."""
        return self.store.delete("secrets", namespace, name)

    def put_configmap(self, namespace: str, name: str, data: Mapping[str, str]) -> Obj:
        """Create the ConfigMap, or replace its data. Returns the stored object."""
        body: Obj = {"metadata": {"name": name}, "data": dict(data)}
        if (namespace, name) in self.store.objects["configmaps"]:
            return self.store.update("configmaps", namespace, name, body)
        return self.store.create("configmaps", namespace, body)

    def delete_configmap(self, namespace: str, name: str) -> Obj:
        """Delete a ConfigMap; returns it as of its deletion."""
        return self.store.delete("configmaps", namespace, name)

    def set_authentication_configmap(
        self,
        *,
        client_ca_pem: bytes | str | None = None,
        requestheader_ca_pem: bytes | str | None = None,
        allowed_names: Sequence[str] = ("front-proxy-client",),
        username_headers: Sequence[str] = ("X-Remote-User",),
        group_headers: Sequence[str] = ("X-Remote-Group",),
        extra_headers_prefix: Sequence[str] = ("X-Remote-Extra-",),
        uid_headers: Sequence[str] | None = None,
    ) -> Obj:
        """Write kube-system/extension-apiserver-authentication as the kube-apiserver does: `client-ca-file`
        only with a client CA, the requestheader keys only with a requestheader CA, list values as JSON arrays."""

        def text(pem: bytes | str) -> str:
            return pem.decode() if isinstance(pem, bytes) else pem

        data: dict[str, str] = {}
        if client_ca_pem is not None:
            data["client-ca-file"] = text(client_ca_pem)
        if requestheader_ca_pem is not None:
            data["requestheader-client-ca-file"] = text(requestheader_ca_pem)
            lists = {
                "requestheader-allowed-names": allowed_names,
                "requestheader-username-headers": username_headers,
                "requestheader-group-headers": group_headers,
                "requestheader-extra-headers-prefix": extra_headers_prefix,
            }
            if uid_headers is not None:
                lists["requestheader-uid-headers"] = uid_headers
            data.update({key: json.dumps(list(value)) for key, value in lists.items()})
        return self.put_configmap(*AUTH_CONFIGMAP, data)

    def delete_authentication_configmap(self) -> Obj:
        """Delete kube-system/extension-apiserver-authentication."""
        return self.delete_configmap(*AUTH_CONFIGMAP)

    def install_crd(self, info: KindInfo) -> None:
        """Serve a CRD's resource from now on: discovery lists its group, its paths answer."""
        self.store.register_kind(info)

    def uninstall_crd(self, resource: str) -> None:
        """Delete a CRD as kube does: its objects first (watchers see DELETED), then its open watches end
        cleanly and discovery and its paths answer 404."""
        info = self.store.kind(resource)
        for namespace, name in sorted(self.store.objects[info.resource]):
            self.store.delete(info.resource, namespace, name)
        self.store.unregister_kind(info.resource)
        for conn in list(self._watches):
            if conn.resource == info.resource:
                conn.end()

    def install_managed_cluster_crd(self) -> None:
        """Serve `managedclusters.cluster.open-cluster-management.io/v1`, as an OCM hub does."""
        self.install_crd(MANAGED_CLUSTERS)

    def uninstall_managed_cluster_crd(self) -> None:
        """Delete the ManagedCluster CRD (and with it every ManagedCluster)."""
        self.uninstall_crd(MANAGED_CLUSTERS.resource)

    def create_managed_cluster(self, name: str, **fields: Any) -> Obj:
        """Create a ManagedCluster; `fields` as `tests.fakes.ocm.managed_cluster` takes them (url, ca_pem, ...)."""
        return self.store.create(MANAGED_CLUSTERS.resource, "", managed_cluster(name, **fields))

    def update_managed_cluster(self, name: str, **fields: Any) -> Obj:
        """Replace a ManagedCluster's labels, spec and status with those `fields` describe."""
        old = self.store.get(MANAGED_CLUSTERS.resource, "", name)
        body = managed_cluster(name, **fields)
        body["metadata"] = {**old["metadata"], "labels": body["metadata"]["labels"]}
        return self.store.update(MANAGED_CLUSTERS.resource, "", name, body)

    def delete_managed_cluster(self, name: str) -> Obj:
        """Delete a ManagedCluster; returns it as of its deletion."""
        return self.store.delete(MANAGED_CLUSTERS.resource, "", name)

    def compact(self) -> None:
        """Forget all history up to now: watches and continue tokens from older RVs get 410."""
        self.store.compact()

    def inject_failure(self, code: int = 500, *, count: int = 1, when: Callable[[web.Request], bool] | None = None) -> None:
        """Answer the next `count` authenticated requests matching `when` (default: any) with a `code` Status."""
        self._faults.extend([(code, when or (lambda request: True))] * count)

    def inject_watch_error(self, code: int = 500, reason: str = "InternalError", message: str = "injected") -> None:
        """The next watch answers 200, then one ERROR event with this Status, then ends (as on an etcd error)."""
        self._watch_errors.append(StatusError(code, reason, message))

    @staticmethod
    def is_watch(request: web.Request) -> bool:
        """A `when` predicate for inject_failure: watch requests only."""
        return query_bool(request.query, "watch")

    def drop_watches(self) -> None:
        """Abruptly cut every open watch connection."""
        for conn in list(self._watches):
            conn.cut()

    @property
    def open_watches(self) -> int:
        """How many watch requests are being served right now."""
        return len(self._watches)

    # --- handlers -------------------------------------------------------------------------------

    async def _ok(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return _json(KUBE_VERSION)

    async def _api_versions(self, request: web.Request) -> web.StreamResponse:
        address = {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self._port}"}
        return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [address]})

    def _resource_list(self, group: str, version: str) -> Obj | None:
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        resources = [
            {"name": k.resource, "singularName": k.kind.lower(), "namespaced": k.namespaced, "kind": k.kind, "verbs": verbs}
            for k in self.store.kinds.values()
            if (k.group, k.version) == (group, version)
        ]
        if not resources and group:
            return None
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}

    async def _api_resources(self, request: web.Request) -> web.StreamResponse:
        return _json(self._resource_list("", "v1"))

    async def _group_resources(self, request: web.Request) -> web.StreamResponse:
        found = self._resource_list(request.match_info["group"], request.match_info["version"])
        if found is None:
            raise web.HTTPNotFound()
        return _json(found)

    async def _api_groups(self, request: web.Request) -> web.StreamResponse:
        groups = list(self.api_groups)
        for info in self.store.kinds.values():
            if info.group and all(g.get("name") != info.group for g in groups):
                version = {"groupVersion": info.api_version, "version": info.version}
                groups.append({"name": info.group, "versions": [version], "preferredVersion": version})
        return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    def _kind(self, request: web.Request) -> KindInfo:
        """The kind a resource path names, or the 404 kube answers: group, version and scope must match."""
        m = request.match_info
        info = self.store.kinds.get(m["resource"])
        if info is None or (info.group, info.version) != (m.get("group", ""), m.get("version", "v1")):
            raise web.HTTPNotFound()
        if "namespace" in m and not info.namespaced:
            raise web.HTTPNotFound()
        if "namespace" not in m and info.namespaced and ("name" in m or request.method != "GET"):
            raise web.HTTPNotFound()  # a namespaced object lives in a namespace; only a list may span them
        return info

    async def _body(self, request: web.Request) -> Obj:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            raise StatusError(400, "BadRequest", f"error decoding request body: {exc}") from None
        if not isinstance(body, dict):
            raise StatusError(400, "BadRequest", "the request body is not an object")
        return body

    async def _get(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        info = self._kind(request)
        return _json(typed(info, self.store.get(info.resource, m.get("namespace", ""), m["name"])))

    def _status_kind(self, request: web.Request) -> KindInfo:
        """The kind of a `/status` path; 404 unless it has a status subresource."""
        info = self._kind(request)
        if not info.status_subresource:
            raise web.HTTPNotFound()
        return info

    async def _get_status(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        info = self._status_kind(request)
        return _json(typed(info, self.store.get(info.resource, m.get("namespace", ""), m["name"])))

    async def _update_status(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        info = self._status_kind(request)
        body = await self._body(request)
        updated = self.store.update(
            info.resource, m.get("namespace", ""), m["name"], body, manager=request_manager(request), subresource="status"
        )
        return _json(typed(info, updated))

    async def _patch_status(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        info = self._status_kind(request)
        if request.content_type != "application/merge-patch+json":
            raise StatusError(415, "UnsupportedMediaType", "the body of the request was in an unknown format")
        body = await self._body(request)
        patched = self.store.merge_patch(
            info.resource, m.get("namespace", ""), m["name"], body, manager=request_manager(request), subresource="status"
        )
        return _json(typed(info, patched))

    async def _create(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        info = self._kind(request)
        body = await self._body(request)
        created = self.store.create(info.resource, m.get("namespace", ""), body, manager=request_manager(request))
        return _json(typed(info, created), 201)

    async def _update(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        info = self._kind(request)
        body = await self._body(request)
        updated = self.store.update(info.resource, m.get("namespace", ""), m["name"], body, manager=request_manager(request))
        return _json(typed(info, updated))

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        info = self._kind(request)
        if request.content_type != "application/merge-patch+json":  # the only patch type the fake applies
            self.patches.append((request.path, request.content_type, {}))
            raise StatusError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json",
            )
        body = await self._body(request)
        self.patches.append((request.path, request.content_type, body))
        patched = self.store.merge_patch(info.resource, m.get("namespace", ""), m["name"], body, manager=request_manager(request))
        return _json(typed(info, patched))

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        info = self._kind(request)
        deleted = self.store.delete(info.resource, m.get("namespace", ""), m["name"])
        if deleted["metadata"].get("deletionTimestamp") and deleted["metadata"].get("finalizers"):
            return _json(typed(info, deleted))  # kept until its finalizers are removed: kube answers the object
        details = {"name": m["name"], "kind": info.resource, "uid": deleted["metadata"]["uid"]}
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})

    async def _token_review(self, request: web.Request) -> web.StreamResponse:
        self.token_reviews += 1
        body = await self._body(request)
        spec = body.get("spec") or {}
        token = str(spec.get("token") or "")
        if not token:
            raise StatusError(400, "BadRequest", "token is required for TokenReview in authentication")
        status = token_review_status(self.users, token, list(spec.get("audiences") or []), self.api_audiences)
        review = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": None}}
        return _json({**review, "spec": spec, "status": status}, 201)

    async def _access_review(self, request: web.Request) -> web.StreamResponse:
        self.access_reviews += 1
        body = await self._body(request)
        self.access_review_log.append(body)
        spec = body.get("spec") or {}
        validate_access_review(spec)
        status = access_review_status(self.policy, spec)
        review = {"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "metadata": {"creationTimestamp": None}}
        return _json({**review, "spec": spec, "status": status}, 201)

    async def _collection_get(self, request: web.Request) -> web.StreamResponse:
        info = self._kind(request)
        namespace = request.match_info.get("namespace")
        q = request.query
        matcher = selector(q.get("labelSelector", ""), q.get("fieldSelector", ""), info)
        if query_bool(q, "watch"):
            return await self._watch(request, info, namespace, matcher)
        self.list_requests += 1
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise StatusError(400, "BadRequest", f"invalid limit: {q.get('limit')}") from None
        items, rv, cont, remaining = self.store.list_page(
            info.resource,
            namespace,
            matcher,
            limit=limit,
            continue_token=q.get("continue", ""),
            resource_version=q.get("resourceVersion", ""),
            resource_version_match=q.get("resourceVersionMatch", ""),
        )
        meta: Obj = {"resourceVersion": str(rv)}
        if cont:
            meta["continue"] = cont
            meta["remainingItemCount"] = remaining
        return _json({"kind": f"{info.kind}List", "apiVersion": info.api_version, "metadata": meta, "items": items})

    # --- watch ----------------------------------------------------------------------------------

    async def _watch(
        self, request: web.Request, info: KindInfo, namespace: str | None, matcher: Callable[[Obj], bool]
    ) -> web.StreamResponse:
        self.watch_requests += 1
        q = request.query
        conn = WatchConn(request, info.resource)
        self._watches.add(conn)
        loop = asyncio.get_running_loop()

        def listener(event: Event) -> None:
            if self.watch_lag:
                loop.call_later(self.watch_lag, conn.queue.put_nowait, event)
            else:
                conn.queue.put_nowait(event)

        try:
            if self.hang_watches:
                await conn.queue.get()  # until drop_watches()/stop()
                return web.Response(status=503)
            error: StatusError | None = None
            initial: list[Event] = []
            try:
                initial = initial_events(self.store, info, namespace, q.get("resourceVersion", ""))
            except StatusError as exc:
                if exc.code != 410:
                    raise
                error = exc
            if self._watch_errors and error is None:
                error = self._watch_errors.pop(0)
            if error is None:
                # Subscribe in the same synchronous step as the snapshot: nothing missed, nothing twice.
                self.store.listeners.append(listener)
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)

            async def send(event: Obj) -> None:
                await resp.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")

            if error is not None:
                # The watch cache answers 200, then a single ERROR event with the Status.
                await send({"type": "ERROR", "object": error.status})
                await resp.write_eof()
                return resp
            for event in initial:
                if (out := to_watch_event(info, namespace, matcher, event)) is not None:
                    await send(out)
            bookmarks = None if self.watch_lag else self.bookmark_interval
            timing = {"bookmark_interval": bookmarks, "default_timeout": self.default_watch_timeout}
            if not await stream(conn, send, info, namespace, matcher, store=self.store, **timing):
                await resp.write_eof()
            return resp
        finally:
            self._watches.discard(conn)
            if listener in self.store.listeners:
                self.store.listeners.remove(listener)
