"""`FakeUpgradeMember`: a member kube-apiserver's upgrade endpoints, over real TLS, in raw asyncio.

Raw asyncio on purpose: an aiohttp server cannot hand out raw upgraded connections without
the very internals the gateway's takeover module isolates, and a fake must not share code
with what it tests. It also lets tests see exactly which bytes reached the member and when
its connection closed.

Every accepted connection is counted in `connections` (after the TLS handshake, before any
byte of a request), so a test can prove that nothing dialled the member at all.

Endpoints (all require `Authorization: Bearer <token>`; every request is recorded):
- `GET /api`, `/apis`, `/api/v1`, `/api/v1/namespaces/{ns}/pods/{name}`: just enough
  discovery and a Running pod for `kubectl exec` to get to the upgrade.
- `.../pods/{name}/exec` and `/attach` with `Upgrade: websocket`: the `v5.channel.k8s.io`
  / `v4.channel.k8s.io` channel protocol (see `_ws_exec`).
- `.../pods/{name}/exec`, `/attach`, `/portforward` with `Upgrade: SPDY/3.1`: `101` then a
  raw byte echo (no SPDY framing).
- pod `forbidden`: any upgrade is refused with a 403 Status; the member then keeps reading
  and records any byte that still arrives (there must be none).
- pod `no-switch`: any upgrade gets `200 OK` with a JSON body and no switch of protocol (a
  member or a proxy in front of it that ignores `Upgrade`); the member then keeps reading, as
  for `forbidden`.
- pod `hang`: any upgrade gets no answer at all (the member just reads until EOF).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import shlex
import ssl
import struct
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yarl
from multidict import CIMultiDict

from .pki import CertKey, client_ssl_context, issue_server_cert, make_ca, server_ssl_context

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")  # server preference
STDIN, STDOUT, STDERR, ERROR, CLOSE = 0, 1, 2, 3, 255
_POD = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)(?:/(exec|attach|portforward))?$")
_REASONS = {101: "Switching Protocols", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


@dataclass
class RecordedRequest:
    """One request head as the member received it."""

    method: str
    target: str
    headers: CIMultiDict[str]


@dataclass
class UpgradeConn:
    """An upgrade request's connection: what arrived after its head, and when it closed."""

    request: RecordedRequest
    status: int = 0  # what the member answered
    received: bytearray = field(default_factory=bytearray)  # bytes after the head (echo input, or junk after a refusal)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.StreamWriter | None = None


def status(code: int, message: str, reason: str, **extra: Any) -> dict[str, Any]:
    """A metav1.Status failure object."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason,
            "code": code, **extra}  # fmt: skip


class FakeUpgradeMember:
    """A TLS server on 127.0.0.1 speaking the member side of exec/attach/port-forward upgrades."""

    def __init__(self, *, token: str = "member-token") -> None:
        self.ca: CertKey = make_ca("fake-member-ca")
        self.serving: CertKey = issue_server_cert(self.ca)
        self.token = token
        self.connections = 0  # connections accepted, whether or not a request followed
        self.requests: list[RecordedRequest] = []
        self.upgrades: list[UpgradeConn] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a random loopback port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=server_ssl_context(self.serving))

    async def stop(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def close_upgraded(self) -> None:
        """Close every open upgraded connection from the member side (a member disconnect)."""
        for conn in self.upgrades:
            if conn.writer is not None and not conn.closed.is_set():
                conn.writer.close()

    @property
    def url(self) -> yarl.URL:
        """The server URL, e.g. https://127.0.0.1:43117."""
        assert self._server is not None, "not started"
        return yarl.URL(f"https://127.0.0.1:{self._server.sockets[0].getsockname()[1]}")

    @property
    def ca_pem(self) -> bytes:
        """The CA that signed the serving certificate."""
        return self.ca.cert_pem

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSLContext trusting this member."""
        return client_ssl_context(self.ca_pem)

    # --- connection handling -------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.connections += 1
        conn: UpgradeConn | None = None
        try:
            while conn is None:  # keep-alive for plain requests; an upgrade ends the loop
                request = await _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                if request.headers.get("Authorization") != f"Bearer {self.token}":
                    await _send_json(writer, 401, status(401, "Unauthorized", "Unauthorized"))
                    continue
                if "upgrade" not in request.headers.get("Connection", "").lower():
                    await _send_json(writer, *self._plain(request))
                    continue
                conn = UpgradeConn(request, writer=writer)
                self.upgrades.append(conn)
                await self._upgrade(conn, reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the peer went away mid-request: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await writer.wait_closed()
            if conn is not None:
                conn.closed.set()

    def _plain(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        path = urlsplit(request.target).path
        if request.method != "GET":
            return 405, status(405, "method not allowed", "MethodNotAllowed")
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if path == "/api/v1":
            return 200, _RESOURCES
        match = _POD.match(path)
        if match and match.group(3) is None:
            ns, name = match.group(1), match.group(2)
            return 200, {
                "kind": "Pod",
                "apiVersion": "v1",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "uid": "00000000-0000-0000-0000-000000000001",
                    "resourceVersion": "1",
                },
                "spec": {"containers": [{"name": "main", "image": "busybox"}]},
                "status": {"phase": "Running"},
            }
        return 404, status(404, "the server could not find the requested resource", "NotFound")

    async def _upgrade(self, conn: UpgradeConn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = conn.request
        parts = urlsplit(request.target)
        match = _POD.match(parts.path)
        protocol = request.headers.get("Upgrade", "").lower()
        if match is None or match.group(3) is None:
            conn.status = 404
            await _send_json(writer, 404, status(404, "the server could not find the requested resource", "NotFound"))
        elif match.group(2) == "hang":
            conn.status = 0  # never answers; records whatever arrives until the peer closes
            while data := await reader.read(65536):
                conn.received += data
        elif match.group(2) == "forbidden":
            conn.status = 403
            verb = match.group(3)
            message = f'pods "forbidden" is forbidden: User "member" cannot create resource "pods/{verb}"'
            await _send_json(
                writer, 403, status(403, message, "Forbidden", details={"name": "forbidden", "kind": f"pods/{verb}"})
            )
            # Keep reading: any byte arriving now would be a tunnel opened despite the refusal.
            while data := await reader.read(65536):
                conn.received += data
        elif match.group(2) == "no-switch":
            conn.status = 200
            await _send_json(writer, 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
            while data := await reader.read(65536):  # as for a refusal: nothing may follow
                conn.received += data
        elif protocol == "websocket" and match.group(3) in ("exec", "attach"):
            await self._ws_exec(conn, reader, writer, parse_qs(parts.query))
        elif protocol.startswith("spdy/"):
            await self._spdy_echo(conn, reader, writer)
        else:
            conn.status = 400
            await _send_json(writer, 400, status(400, f"unsupported upgrade {protocol!r}", "BadRequest"))

    async def _spdy_echo(self, conn: UpgradeConn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
        offered = conn.request.headers.getall("X-Stream-Protocol-Version", [])
        if offered:
            headers.append(("X-Stream-Protocol-Version", offered[0]))  # the member picks; the client must see its pick
        conn.status = 101
        await _send_head(writer, 101, headers)
        while data := await reader.read(65536):
            conn.received += data
            writer.write(data)
            await writer.drain()

    # --- WebSocket exec (channel protocol v4/v5) -----------------------------------------

    async def _ws_exec(
        self, conn: UpgradeConn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, query: dict[str, list[str]]
    ) -> None:
        """Run a canned command over the channel protocol: each binary message is one channel byte
        (0 stdin, 1 stdout, 2 stderr, 3 error/status) plus data; v5 adds 255 = close channel."""
        headers = conn.request.headers
        key = headers.get("Sec-WebSocket-Key", "")
        offered = {p.strip() for v in headers.getall("Sec-WebSocket-Protocol", []) for p in v.split(",")}
        chosen = next((p for p in WS_PROTOCOLS if p in offered), None)
        if not key or chosen is None:
            conn.status = 400
            await _send_json(writer, 400, status(400, f"no supported channel protocol in {sorted(offered)}", "BadRequest"))
            return
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        conn.status = 101
        await _send_head(
            writer,
            101,
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept),
                ("Sec-WebSocket-Protocol", chosen),
            ],
        )
        # A real process takes a moment to start: client-go registers its channel streams only
        # after the handshake and drops frames that arrive before (kubectl: "Unknown stream id").
        await asyncio.sleep(0.05)
        argv = query.get("command", [])
        if len(argv) >= 3 and argv[:2] == ["sh", "-c"]:
            argv = shlex.split(argv[2])
        want_stdin = query.get("stdin", ["false"])[0] in ("true", "1")
        code = 0
        if argv[:1] == ["cat"] and want_stdin:
            await _ws_cat(reader, writer, conn, v5=chosen.startswith("v5"))
        elif argv[:1] == ["echo"]:
            await _ws_send(writer, bytes([STDOUT]) + (" ".join(argv[1:]) + "\n").encode())
        elif argv[:1] == ["stderr"]:
            await _ws_send(writer, bytes([STDERR]) + (" ".join(argv[1:]) + "\n").encode())
        elif argv[:1] == ["exit"] and len(argv) == 2 and argv[1].isdigit():
            code = int(argv[1])
        else:
            await _ws_send(writer, bytes([STDERR]) + f"{argv[:1]}: command not found\n".encode())
            code = 127
        await _ws_send(writer, bytes([ERROR]) + json.dumps(_exit_status(argv, code)).encode())
        # Normal closure: client-go then ends every stream with EOF (anything else is an error).
        await _ws_send(writer, struct.pack("!H", 1000), opcode=0x8)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while (frame := await _ws_read_frame(reader)) is not None and frame[0] != 0x8:
                    pass


def _exit_status(argv: list[str], code: int) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command {argv}, exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


async def _ws_cat(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: UpgradeConn, *, v5: bool) -> None:
    """stdin -> stdout until stdin is closed (v5 CLOSE signal), the client closes, or EOF."""
    while (message := await _ws_read_message(reader, writer)) is not None:
        conn.received += message
        if not message:
            continue
        if message[0] == STDIN and len(message) > 1:
            await _ws_send(writer, bytes([STDOUT]) + message[1:])
        elif v5 and message[0] == CLOSE and message[1:2] == bytes([STDIN]):
            return


async def _ws_read_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes] | None:
    """One frame as (opcode, fin, unmasked payload), or None at EOF."""
    try:
        b0, b1 = await reader.readexactly(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        mask = await reader.readexactly(4) if b1 & 0x80 else b""
        payload = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, OSError):
        return None
    if mask and payload:
        full = (mask * (length // 4 + 1))[:length]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(full, "big")).to_bytes(length, "big")
    return b0 & 0x0F, bool(b0 & 0x80), payload


async def _ws_read_message(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
    """The next data message (fragments joined), answering pings; None on close or EOF."""
    parts: list[bytes] = []
    while (frame := await _ws_read_frame(reader)) is not None:
        opcode, fin, payload = frame
        if opcode == 0x8:
            return None
        if opcode == 0x9:
            await _ws_send(writer, payload, opcode=0xA)
        elif opcode in (0x0, 0x1, 0x2):
            parts.append(payload)
            if fin:
                return b"".join(parts)
    return None


async def _ws_send(writer: asyncio.StreamWriter, payload: bytes, *, opcode: int = 0x2) -> None:
    """One unmasked (server-to-client) frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    writer.write(head + payload)
    await writer.drain()


# --- plain HTTP/1.1 ------------------------------------------------------------------------


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    """The next request head (its body, if any, is read and dropped); None at a clean EOF."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    length = int(headers.get("Content-Length", "0") or 0)
    if length:
        await reader.readexactly(length)
    return RecordedRequest(method, target, headers)


async def _send_head(writer: asyncio.StreamWriter, code: int, headers: list[tuple[str, str]]) -> None:
    lines = [f"HTTP/1.1 {code} {_REASONS.get(code, 'Unknown')}", *(f"{k}: {v}" for k, v in headers)]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()


async def _send_json(writer: asyncio.StreamWriter, code: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await _send_head(writer, code, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    writer.write(data)
    await writer.drain()


def _resource(name: str, kind: str, verbs: list[str]) -> dict[str, Any]:
    return {"name": name, "singularName": "", "namespaced": True, "kind": kind, "verbs": verbs}


_RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        _resource("pods", "Pod", ["get", "list"]) | {"shortNames": ["po"], "singularName": "pod"},
        _resource("pods/attach", "PodAttachOptions", ["create", "get"]),
        _resource("pods/exec", "PodExecOptions", ["create", "get"]),
        _resource("pods/portforward", "PodPortForwardOptions", ["create", "get"]),
    ],
}
