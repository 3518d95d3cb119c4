"""`FakeMemberAPIServer`: a member cluster's kube-apiserver, as the gateway's proxy reaches it.

TLS on 127.0.0.1 with its own serving CA and its own client CA; accepts bearer tokens and
client certificates; optionally served under a path prefix (as Rancher's
`/k8s/clusters/c-abc`). Enough real Kubernetes for kubectl: discovery, ConfigMap CRUD with
every PATCH type (server-side apply included), `dryRun=All`, Pods (get, list, watch),
`pods/log?follow=true` streaming, CustomResourceDefinitions and the custom resources they define
(`member_crds`; their watches are not among `open_streams`), plus test endpoints: a generated large list, an echo, an
upload meter, a slow answer, a gzip answer and a failure. It records every request (headers
included), every TCP connection and every streaming handler cancelled by a client leaving.

As strict as a real cluster where the proxy's correctness shows:
* it authorizes every request as the identity it acts as (`member_rbac`): the gateway's token
  (`token`, user `member-admin`, in system:masters) may do and impersonate anything, other users
  only what `rbac` grants; `Impersonate-*` headers are honoured and checked as kube does;
* lists honour `limit`, `continue`, `resourceVersion` and `resourceVersionMatch`, and a watch
  from a compacted resourceVersion gets 200 and one ERROR event (`member_store`; `compact()`).

Faults a real member shows, on demand: `serve_certificate` rotates the serving certificate (an
expired one, one for other names) for the next handshakes, as a kube-apiserver reloading its
cert files does; `abort_streams` cuts every streaming answer mid-body (a crash, a network cut);
`stop` takes it down; removing a token from `tokens` revokes it (401).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import json
import secrets as token_gen
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from multidict import CIMultiDict

from . import member_endpoints as endpoints
from .kube_store import CONFIGMAPS, Event, KindInfo, KubeStore, Obj, StatusError, selector, status_object
from .member_codecs import decode_protobuf_configmap, json_patch, merge_patch
from .member_crds import CustomResources
from .member_endpoints import json_response
from .member_rbac import MASTERS, RBAC, Identity, impersonated, request_attributes
from .member_store import list_body, list_options, list_page, maybe_dry_run, watch_backlog
from .pki import CertKey, issue_client_cert, issue_server_cert, make_ca, server_ssl_context, write_pair

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PODS = KindInfo("pods", "Pod", fields=("spec.nodeName", "status.phase"))
KINDS = {"configmaps": "ConfigMap", "pods": "Pod"}


@dataclass
class Recorded:
    """One request as the member received it."""

    method: str
    raw_path: str  # as sent, still percent-encoded (prefix included)
    query_string: str
    headers: CIMultiDict[str]
    peer: tuple[str, int]
    user: str | None = None  # who authenticated (the gateway's credential)
    acting_as: Identity | None = None  # whom the request acted as, after impersonation


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "t", "true")


class FakeMemberAPIServer:
    """A member cluster for proxy tests, on https://127.0.0.1:<port><prefix>."""

    def __init__(self, *, token: str | None = None, prefix: str = "", log_interval: float = 0.05, log_lines: int = 20) -> None:
        self.ca: CertKey = make_ca("fake-member-ca")
        self.serving: CertKey = issue_server_cert(self.ca, dns_names=("localhost",), ip_addresses=("127.0.0.1",))
        self.client_ca: CertKey = make_ca("fake-member-client-ca")
        self.token = token or token_gen.token_urlsafe(16)
        self.tokens: dict[str, str] = {self.token: "member-admin"}  # bearer token -> user name
        self.groups: dict[str, tuple[str, ...]] = {"member-admin": (MASTERS,)}  # user name -> groups
        self.rbac = RBAC()
        self.prefix = prefix.rstrip("/")
        self.log_interval, self.log_lines = log_interval, log_lines
        self.store = KubeStore()
        self.store.register_kind(CONFIGMAPS)
        self.store.register_kind(PODS)
        self.custom = CustomResources(self.store)  # CRDs and the objects they define
        self.managers: dict[tuple[str, str], list[str]] = {}  # server-side apply field managers
        self.requests: list[Recorded] = []
        self.connections: set[tuple[str, int]] = set()  # distinct client (host, port): one per TCP+TLS handshake
        self.cancelled: list[str] = []  # streaming handlers ended by the client leaving
        self.open_streams = 0
        self.upload_progress = 0  # bytes of the current /upload body received so far
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._ssl_context: ssl.SSLContext | None = None
        self._stream_transports: set[asyncio.Transport] = set()  # connections of open streaming answers
        self._answering = asyncio.Event()  # cleared by hang(): every request waits, as on a stuck member
        self._answering.set()
        self.readyz_status = 200  # what /readyz and /healthz answer (when answering at all)
        self.without_readyz = False  # /readyz answers 404, as on a kube-apiserver older than 1.16
        self.readyz_delay = 0.0  # seconds /readyz and /healthz take
        self.readyz_in_flight = 0
        self.readyz_max_in_flight = 0  # the most /readyz and /healthz requests ever open at once

    # --- lifecycle ---------------------------------------------------------------------------

    def _routes(self) -> list[tuple[str, str, Handler]]:
        cm, one = "/api/v1/namespaces/{namespace}/configmaps", "/api/v1/namespaces/{namespace}/configmaps/{name}"
        return [
            ("GET", "/version", endpoints.version),
            ("GET", "/readyz", self._readiness),
            ("GET", "/healthz", self._readiness),
            ("GET", "/api", self._api),
            ("GET", "/api/v1", endpoints.api_v1),
            ("GET", "/openapi/v3", endpoints.openapi_v3_index),
            ("GET", "/openapi/v3/{gv:.+}", endpoints.openapi_v3_group),
            ("GET", "/api/v1/configmaps", self._list_configmaps),
            ("GET", cm, self._list_configmaps),
            ("POST", cm, self._create),
            ("GET", one, self._get),
            ("PUT", one, self._update),
            ("PATCH", one, self._patch),
            ("DELETE", one, self._delete),
            ("GET", "/api/v1/pods", self._list_pods),
            ("GET", "/api/v1/namespaces/{namespace}/pods", self._list_pods),
            ("GET", "/api/v1/namespaces/{namespace}/pods/{name}", self._pod),
            ("GET", "/api/v1/namespaces/{namespace}/pods/{name}/log", self._log),
            ("GET", "/apis/bulk.test/v1/items", self._big),
            ("*", "/echo{tail:.*}", endpoints.echo),
            ("POST", "/upload", self._upload),
            ("GET", "/slow", self._slow),
            ("GET", "/gzip", endpoints.gzipped),
            ("*", "/fail/{code}", endpoints.fail),
            *self.custom.routes(),  # after the fixed paths: /apis/{group}/... would shadow /apis/bulk.test/v1/items
        ]

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a random port the first time, the same one after stop())."""
        app = web.Application(middlewares=[self._middleware])
        for method, path, handler in self._routes():
            if method == "GET":
                app.router.add_get(self.prefix + path, handler)  # HEAD too, as kube answers it
            else:
                app.router.add_route(method, self.prefix + path, handler)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        ctx = self._ssl_context = server_ssl_context(self.serving, client_ca_pem=self.client_ca.cert_pem)
        site = web.TCPSite(runner, "127.0.0.1", self._port, ssl_context=ctx)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._port = runner, runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening (open streams are cut)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeMemberAPIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The listening port."""
        return self._port

    @property
    def url(self) -> str:
        """The endpoint URL, prefix included (what a cluster Secret's `endpoint` holds)."""
        return f"https://127.0.0.1:{self._port}{self.prefix}"

    @property
    def ca_pem(self) -> bytes:
        """The CA of the serving certificate."""
        return self.ca.cert_pem

    def serve_certificate(self, pair: CertKey) -> None:
        """Serve `pair` from the next TLS handshake on, as a kube-apiserver does when its serving
        certificate file is rotated (connections already open keep the old one)."""
        self.serving = pair
        if self._ssl_context is not None:
            with tempfile.TemporaryDirectory(prefix="member-serving-") as tmp:
                cert_path, key_path = write_pair(Path(tmp), "serving", pair)
                self._ssl_context.load_cert_chain(cert_path, key_path)

    def abort_streams(self) -> int:
        """Cut the TCP connection of every streaming answer in flight (a watch, a log, a large list)
        without ending its body, as a member crash or a network cut does. Returns how many."""
        transports = list(self._stream_transports)
        for transport in transports:
            transport.abort()
        return len(transports)

    def client_cert(self, cn: str = "gateway-client", *, expired: bool = False) -> CertKey:
        """A client certificate this member accepts (user = CN), or an expired one."""
        return issue_client_cert(self.client_ca, cn, expired=expired)

    def hang(self) -> None:
        """Stop answering: requests are accepted (TLS included) and then wait, as on a stuck member."""
        self._answering.clear()

    def recover(self) -> None:
        """Answer again, the waiting requests included."""
        self._answering.set()

    def requests_to(self, suffix: str) -> list[Recorded]:
        """Recorded requests whose path (after the prefix) starts with `suffix`."""
        return [r for r in self.requests if r.raw_path.startswith(self.prefix + suffix)]

    # --- plumbing ------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else ("?", 0)
        self.connections.add(peer)
        record = Recorded(
            request.method, request.rel_url.raw_path, request.rel_url.raw_query_string, CIMultiDict(request.headers), peer
        )
        self.requests.append(record)
        await self._answering.wait()
        record.user = self._authenticate(request)
        if record.user is None:
            return json_response(status_object(401, "Unauthorized", "Unauthorized"), 401)
        try:
            requestor = Identity(record.user, (*self.groups.get(record.user, ()), "system:authenticated"))
            record.acting_as = impersonated(requestor, request.headers, self.rbac)
            path = request.rel_url.path[len(self.prefix) :]
            self.rbac.authorize(request_attributes(request.method, path, request.query, record.acting_as))
            return await handler(request)
        except StatusError as exc:
            return json_response(exc.status, exc.code)
        except web.HTTPNotFound:
            return json_response(status_object(404, "NotFound", "the server could not find the requested resource"), 404)
        except web.HTTPMethodNotAllowed as exc:
            return json_response(status_object(405, "MethodNotAllowed", str(exc)), 405)

    def _authenticate(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() in self.tokens:
            return self.tokens[token.strip()]
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        for rdn in (cert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return f"cert:{value}"
        return None

    def add_user(self, token: str, name: str, groups: tuple[str, ...] = ()) -> None:
        """A bearer `token` for user `name` in `groups`, who may do only what `rbac` grants."""
        self.tokens[token] = name
        self.groups[name] = groups

    def add_pod(self, namespace: str, name: str, **labels: str) -> Obj:
        """Store a running Pod (one `main` busybox container)."""
        meta: Obj = {"name": name, **({"labels": labels} if labels else {})}
        spec = {"containers": [{"name": "main", "image": "busybox"}], "nodeName": "node-1"}
        return self.store.create("pods", namespace, {"metadata": meta, "spec": spec, "status": {"phase": "Running"}})

    def compact(self) -> None:
        """Compact history up to now: older resourceVersions are gone for lists, continues and watches."""
        self.store.compact()

    @contextlib.contextmanager
    def _streaming(self, name: str, request: web.Request) -> Iterator[None]:
        self.open_streams += 1
        transport = request.transport
        if transport is not None:
            self._stream_transports.add(transport)
        try:
            yield
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        finally:
            self.open_streams -= 1
            self._stream_transports.discard(transport)

    def _maybe_dry_run(self, request: web.Request) -> contextlib.AbstractContextManager[None]:
        """dryRun=All: run the write, then restore the store as it was (no event, no persistence)."""
        return maybe_dry_run(request.query, self.store, self.managers, self.custom.managed)

    def _out(self, obj: Obj) -> Obj:
        out: Obj = {"kind": "ConfigMap", "apiVersion": "v1", **copy.deepcopy(obj)}
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if managers := self.managers.get(key):
            out["metadata"]["managedFields"] = [
                {"manager": m, "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {}}
                for m in managers
            ]
        return out

    async def _body(self, request: web.Request, *, yaml_ok: bool = False) -> Any:
        raw = await request.read()
        if request.content_type == "application/vnd.kubernetes.protobuf":
            return decode_protobuf_configmap(raw)  # kubectl create sends built-in kinds as protobuf
        try:
            return yaml.safe_load(raw) if yaml_ok else json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise StatusError(400, "BadRequest", f"error decoding request body: {exc}") from None

    # --- discovery -----------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        address = {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self._port}"}
        return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [address]})

    # --- ConfigMaps ----------------------------------------------------------------------------

    async def _get(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        return json_response(self._out(self.store.get("configmaps", m["namespace"], m["name"])))

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        with self._maybe_dry_run(request):
            created = self._out(self.store.create("configmaps", request.match_info["namespace"], body))
        return json_response(created, 201)

    async def _update(self, request: web.Request) -> web.StreamResponse:
        m, body = request.match_info, await self._body(request)
        with self._maybe_dry_run(request):
            updated = self._out(self.store.update("configmaps", m["namespace"], m["name"], body))
        return json_response(updated)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        with self._maybe_dry_run(request):
            gone = self.store.delete("configmaps", m["namespace"], m["name"])
            self.managers.pop((m["namespace"], m["name"]), None)
        return json_response(self._out(gone))

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        kind = request.content_type
        with self._maybe_dry_run(request):
            if kind == "application/apply-patch+yaml":
                return await self._apply(request, ns, name)
            old = self.store.get("configmaps", ns, name)
            patch = await self._body(request)
            if kind == "application/json-patch+json":
                new = json_patch(old, patch)
            elif kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                new = merge_patch(old, patch)
            else:
                raise StatusError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {kind}")
            return json_response(self._out(self.store.update("configmaps", ns, name, new)))

    async def _apply(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        manager = request.query.get("fieldManager")
        if not manager:
            raise StatusError(400, "BadRequest", "PATCH requests with apply-patch content type require fieldManager")
        body = await self._body(request, yaml_ok=True)
        if not isinstance(body, dict):
            raise StatusError(400, "BadRequest", "the apply configuration is not an object")
        body.setdefault("metadata", {})["name"] = name
        key, status = (ns, name), 200
        if key in self.store.objects["configmaps"]:
            result = self.store.update("configmaps", ns, name, merge_patch(self.store.get("configmaps", ns, name), body))
        else:
            result, status = self.store.create("configmaps", ns, body), 201
        if manager not in self.managers.setdefault(key, []):
            self.managers[key].append(manager)
        return json_response(self._out(result), status)

    async def _list_configmaps(self, request: web.Request) -> web.StreamResponse:
        return await self._list(request, "configmaps")

    async def _list_pods(self, request: web.Request) -> web.StreamResponse:
        return await self._list(request, "pods")

    async def _list(self, request: web.Request, resource: str) -> web.StreamResponse:
        namespace, q = request.match_info.get("namespace"), request.query
        matcher = selector(q.get("labelSelector", ""), q.get("fieldSelector", ""), self.store.kind(resource))
        if _truthy(q.get("watch")):
            return await self._watch(request, resource, namespace, matcher)
        filtered = bool(q.get("labelSelector") or q.get("fieldSelector"))
        page = list_page(self.store, resource, namespace, matcher, list_options(q), filtered=filtered)
        body = list_body(KINDS[resource], page)
        if resource == "configmaps":
            body["items"] = [self._out(item) for item in page.items]
        return json_response(body)

    async def _watch(
        self, request: web.Request, resource: str, namespace: str | None, matcher: Callable[[Obj], bool]
    ) -> web.StreamResponse:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        backlog = watch_backlog(self.store, resource, namespace, request.query.get("resourceVersion", ""))
        self.store.listeners.append(queue.put_nowait)  # same synchronous step as the snapshot
        timeout = float(request.query.get("timeoutSeconds") or 3600)
        with self._streaming("watch", request):
            try:
                resp = web.StreamResponse(headers={"Content-Type": "application/json"})
                await resp.prepare(request)
                if isinstance(backlog, dict):  # too old: one ERROR event, then the end, as kube's watch cache
                    await resp.write(json.dumps({"type": "ERROR", "object": backlog}).encode() + b"\n")
                    await resp.write_eof()
                    return resp
                for event in backlog:
                    await self._send_event(resp, event, resource, namespace, matcher)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        while True:
                            await self._send_event(resp, await queue.get(), resource, namespace, matcher)
                await resp.write_eof()
                return resp
            finally:
                self.store.listeners.remove(queue.put_nowait)

    async def _send_event(
        self, resp: web.StreamResponse, event: Event, resource: str, namespace: str | None, matcher: Callable[[Obj], bool]
    ) -> None:
        if event.resource != resource or namespace not in (None, event.namespace):
            return
        if not matcher(event.object if event.type != "DELETED" else (event.previous or event.object)):
            return
        line = json.dumps({"type": event.type, "object": {"kind": KINDS[resource], "apiVersion": "v1", **event.object}})
        await resp.write(line.encode() + b"\n")  # one write per event: flushed at once

    # --- pods and logs -------------------------------------------------------------------------

    async def _pod(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        return json_response({"kind": "Pod", "apiVersion": "v1", **self.store.get("pods", m["namespace"], m["name"])})

    async def _log(self, request: web.Request) -> web.StreamResponse:
        follow = _truthy(request.query.get("follow"))
        with self._streaming("log", request):
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await resp.prepare(request)
            for i in range(self.log_lines):
                stamp = datetime.datetime.now(datetime.UTC).isoformat()
                await resp.write(f"line {i} at {stamp}\n".encode())
                if follow:
                    await asyncio.sleep(self.log_interval)
            await resp.write_eof()
            return resp

    # --- test endpoints ------------------------------------------------------------------------

    async def _big(self, request: web.Request) -> web.StreamResponse:
        """A `List` of about `mb` MiB, generated and streamed on the fly (never held whole)."""
        target = int(float(request.query.get("mb", "50")) * 1024 * 1024)
        with self._streaming("big", request):
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await resp.write(b'{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[')
            sent, index, filler = 0, 0, "x" * 65000
            while sent < target:
                item = json.dumps(
                    {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": f"cm-{index}"}, "data": {"v": filler}}
                )
                chunk = ("," if index else "") + item
                await resp.write(chunk.encode())
                sent, index = sent + len(chunk), index + 1
            await resp.write(b"]}")
            await resp.write_eof()
            return resp

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        """Counts a streamed body as it arrives (`upload_progress`), so tests can see it is not buffered."""
        self.upload_progress = 0
        chunks = 0
        async for chunk in request.content.iter_any():
            self.upload_progress += len(chunk)
            chunks += 1
        return json_response({"bytes": self.upload_progress, "chunks": chunks})

    async def _readiness(self, request: web.Request) -> web.StreamResponse:
        """/readyz and /healthz: "ok", or `readyz_status` with a Status, after `readyz_delay`."""
        if self.without_readyz and request.path.endswith("/readyz"):
            raise web.HTTPNotFound()
        self.readyz_in_flight += 1
        self.readyz_max_in_flight = max(self.readyz_max_in_flight, self.readyz_in_flight)
        try:
            await asyncio.sleep(self.readyz_delay)
        finally:
            self.readyz_in_flight -= 1
        if self.readyz_status == 200:
            return web.Response(text="ok")
        return json_response(status_object(self.readyz_status, "InternalError", "readyz check failed"), self.readyz_status)

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        with self._streaming("slow", request):
            await asyncio.sleep(float(request.query.get("seconds", "5")))
            return json_response({"slept": True})
