"""The benchmark member: a deliberately fast Kubernetes-shaped API server, in its own process.

Fast so that the gateway's own overhead is what gets measured: aiohttp's low-level server (no
router, no middleware), uvloop when installed, bearer-token auth by one comparison,
pre-encoded answers. It speaks just what the benchmarks ask:

- GET  /api/v1/namespaces/{name}                      a Namespace
- GET  /api/v1/namespaces?limit=N                      a NamespaceList page (of 1,000 namespaces)
- POST/GET/PUT/DELETE /api/v1/namespaces/{ns}/configmaps[/{name}]   an in-memory store
- GET  /api/v1/namespaces/{ns}/configmaps?watch=1&events=N   N ADDED events, then the end
- GET  /api/v1/namespaces/{ns}/configmaps?watch=1       held open, no events, until the client leaves
- GET  /apis/bench.test/v1/items?mb=N                  a List of about N MiB, generated while sent
- GET  /readyz, /healthz and /version                  what the gateway's health prober asks (healthy)

With --latency-ms, every non-streaming answer waits that long first: a stand-in for a real
cluster's own processing time (etcd writes, admission), as the reference's benchmark measured it.

Run: python benchmarks/member.py --state DIR [--latency-ms 1.9] [--host 127.0.0.1]
     (writes DIR/member.json: url, token, CA; then serves)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakes.pki import issue_server_cert, make_ca

JSON = {"Content-Type": "application/json"}
NAMESPACES = 1000
VERSION = json.dumps({"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"}).encode()


def _namespace(name: str, rv: int) -> dict[str, Any]:
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": str(rv), "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason}
    return web.Response(status=code, body=json.dumps({**body, "code": code}).encode(), headers=JSON)


class BenchMember:
    """The request handler and its state."""

    def __init__(self, token: str, latency: float = 0.0) -> None:
        self.auth = f"Bearer {token}"
        self.latency = latency
        self.rv = 1
        self.configmaps: dict[tuple[str, str], bytes] = {}
        self.namespace_bytes = {f"ns-{i}": json.dumps(_namespace(f"ns-{i}", i + 1)).encode() for i in range(NAMESPACES)}
        self.namespace_bytes["default"] = json.dumps(_namespace("default", 1)).encode()
        names = sorted(self.namespace_bytes)
        self.pages: dict[tuple[int, int], bytes] = {}
        self._names = names

    def _page(self, start: int, limit: int) -> bytes:
        key = (start, limit)
        if key not in self.pages:
            chunk = self._names[start : start + limit]
            meta: dict[str, Any] = {"resourceVersion": "1"}
            if start + limit < len(self._names):
                meta["continue"] = str(start + limit)
                meta["remainingItemCount"] = len(self._names) - start - limit
            items = b",".join(self.namespace_bytes[n] for n in chunk)
            head = json.dumps({"kind": "NamespaceList", "apiVersion": "v1", "metadata": meta})[:-1].encode()
            self.pages[key] = head + b',"items":[' + items + b"]}"
        return self.pages[key]

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Dispatch on the path: a few string operations, no router."""
        if request.headers.get("Authorization") != self.auth:
            return _status(401, "Unauthorized", "Unauthorized")
        if self.latency and request.query.get("watch") is None and not request.path.startswith("/apis/bench.test/"):
            await asyncio.sleep(self.latency)
        parts = request.path.strip("/").split("/")
        if parts[:2] == ["api", "v1"] and len(parts) >= 3 and parts[2] == "namespaces":
            if len(parts) == 3:
                q = request.query
                start, limit = int(q.get("continue") or 0), int(q.get("limit") or NAMESPACES + 1)
                return web.Response(body=self._page(start, limit), headers=JSON)
            if len(parts) == 4:
                body = self.namespace_bytes.get(parts[3])
                return web.Response(body=body, headers=JSON) if body else _status(404, "NotFound", "namespace not found")
            if parts[4] == "configmaps":
                return await self._configmaps(request, parts[3], parts[5] if len(parts) > 5 else None)
        if request.path == "/apis/bench.test/v1/items":
            return await self._big(request, float(request.query.get("mb", "100")))
        if request.path in ("/readyz", "/healthz"):
            return web.Response(text="ok")
        if request.path == "/version":
            return web.Response(body=VERSION, headers=JSON)
        return _status(404, "NotFound", "the server could not find the requested resource")

    async def _configmaps(self, request: web.BaseRequest, ns: str, name: str | None) -> web.StreamResponse:
        method = request.method
        if name is None:
            if method == "GET" and request.query.get("watch") in ("1", "true"):
                return await self._watch(request, ns, request.query.get("events"))
            if method == "POST":
                obj = json.loads(await request.read())
                key = (ns, obj["metadata"]["name"])
                if key in self.configmaps:
                    return _status(409, "AlreadyExists", f'configmaps "{key[1]}" already exists')
                return self._store(key, obj, 201)
            if method == "GET":
                items = b",".join(v for (n, _), v in self.configmaps.items() if n == ns)
                return web.Response(body=b'{"kind":"ConfigMapList","apiVersion":"v1","items":[' + items + b"]}", headers=JSON)
        else:
            key = (ns, name)
            if method == "GET":
                body = self.configmaps.get(key)
                return web.Response(body=body, headers=JSON) if body else _status(404, "NotFound", "configmap not found")
            if method == "PUT":
                if key not in self.configmaps:
                    return _status(404, "NotFound", "configmap not found")
                return self._store(key, json.loads(await request.read()), 200)
            if method == "DELETE":
                if self.configmaps.pop(key, None) is None:
                    return _status(404, "NotFound", "configmap not found")
                return web.Response(body=b'{"kind":"Status","apiVersion":"v1","status":"Success"}', headers=JSON)
        return _status(405, "MethodNotAllowed", f"{method} is not allowed here")

    def _store(self, key: tuple[str, str], obj: dict[str, Any], code: int) -> web.Response:
        self.rv += 1
        obj.setdefault("metadata", {}).update(namespace=key[0], resourceVersion=str(self.rv))
        body = json.dumps(obj).encode()
        self.configmaps[key] = body
        return web.Response(status=code, body=body, headers=JSON)

    async def _watch(self, request: web.BaseRequest, ns: str, events: str | None) -> web.StreamResponse:
        resp = web.StreamResponse(headers=JSON)
        await resp.prepare(request)
        if events is None:  # held open: the 1,000-watches benchmark
            await asyncio.Event().wait()
        for i in range(int(events or 0)):
            obj = {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {"name": f"cm-{i}", "namespace": ns, "resourceVersion": str(i + 2)},
            }
            await resp.write(json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n")  # one write per event
        await resp.write_eof()
        return resp

    async def _big(self, request: web.BaseRequest, mb: float) -> web.StreamResponse:
        target = int(mb * 1024 * 1024)
        resp = web.StreamResponse(headers=JSON)
        await resp.prepare(request)
        await resp.write(b'{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[')
        sent, index, filler = 0, 0, "x" * 65000
        while sent < target:
            item = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": f"cm-{index}"}, "data": {"v": filler}}
            chunk = ("," if index else "") + json.dumps(item)
            await resp.write(chunk.encode())
            sent, index = sent + len(chunk), index + 1
        await resp.write(b"]}")
        await resp.write_eof()
        return resp


async def serve(state: Path, latency: float, host: str = "127.0.0.1") -> None:
    """Serve on a random port of `host` (loopback, or the WAN link's address); write state/member.json once listening."""
    ca = make_ca("bench-member-ca")
    serving = issue_server_cert(ca, dns_names=("localhost",), ip_addresses=(host,))
    (state / "member.crt").write_bytes(serving.cert_pem)
    (state / "member.key").write_bytes(serving.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(state / "member.crt", state / "member.key")
    (state / "member.key").unlink()
    token = secrets.token_urlsafe(16)
    member = BenchMember(token, latency)
    server = web.Server(member.handle, access_log=None, handler_cancellation=True)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server, host, 0, ssl=ctx, backlog=2048)
    port = listener.sockets[0].getsockname()[1]
    info = {"url": f"https://{host}:{port}", "token": token, "ca": ca.cert_pem.decode()}
    (state / "member.json.tmp").write_text(json.dumps(info))
    (state / "member.json.tmp").replace(state / "member.json")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()
    await server.shutdown(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--host", default="127.0.0.1", help="the address to serve on (the WAN section's link address)")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.state, args.latency_ms / 1000, args.host))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(args.state, args.latency_ms / 1000, args.host))


if __name__ == "__main__":
    main()
