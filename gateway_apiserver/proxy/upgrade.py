"""Upgrade tunnels to a member cluster: exec, attach and port-forward over SPDY/3.1 and WebSocket.

How the kube-apiserver proxies upgrades (apimachinery `util/proxy/upgradeaware.go`), and so
do we: dial the member, write the upgrade request ourselves, read the member's response head,
and only if it is `101 Switching Protocols` answer the client with that 101 (its headers, so
the sub-protocol / X-Stream-Protocol-Version the member chose is what the client gets) and
pump bytes both ways until either side closes. Anything else is relayed as an ordinary
response and both connections are closed: never tunnel on a refusal (CVE-2018-1002105, where
a proxy kept the connection open after a failed upgrade and let the client talk to the
backend with the proxy's credentials).

The member side is plain asyncio; the client side needs aiohttp internals, all of which live
in `aiohttp_takeover.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import yarl
from aiohttp import web
from multidict import CIMultiDict

from ..base.status import StatusError, status_response
from .aiohttp_takeover import RawConnection, TakeoverUnsupported, accept_upgrade, check_supported
from .upstream_errors import Hop, describe_failure, tls_reason

log = logging.getLogger(__name__)

Dialer = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

MAX_HEAD_BYTES = 64 * 1024  # the member's response head; kube's are well under 1 KiB
MAX_REFUSAL_BODY = 1024 * 1024  # a refusal is a Status object; refuse to buffer more
_CHUNK = 64 * 1024
_CLOSE_TIMEOUT = 5.0  # bound on a graceful TLS close of the member connection
# A tunnel's pumps count bytes locally and report them at this many, and when they end: no per-chunk metric
# update, yet a long-lived port-forward shows its progress.
METER_EVERY_BYTES = 1024 * 1024

# Never sent upstream as given: we frame the request ourselves (RFC 9110 §7.6.1 hop-by-hop,
# plus the framing and Host headers we set from the target).
_REQUEST_SKIP = frozenset(
    {"host", "content-length", "transfer-encoding", "te", "trailer", "keep-alive", "proxy-connection", "expect"}
    | {"connection", "upgrade"}
)
# Not relayed to the client from a refusal: aiohttp frames the relayed body itself.
_RESPONSE_SKIP = frozenset(
    {"content-length", "transfer-encoding", "te", "trailer", "keep-alive", "proxy-connection", "connection", "upgrade"}
)
_FORBIDDEN = frozenset("\r\n\x00")


class TunnelMeter(Protocol):
    """Told the bytes a tunnel carried: every METER_EVERY_BYTES in each direction, and the rest when it ends."""

    def add(self, to_member: int, to_client: int) -> None:
        """`to_member` more bytes went from the client to the member, `to_client` more the other way."""


def is_upgrade_request(request: web.BaseRequest) -> bool:
    """Whether `request` asks for a protocol upgrade (`Connection: upgrade` plus `Upgrade`)."""
    tokens = {t.strip().lower() for v in request.headers.getall("Connection", ()) for t in v.split(",")}
    return "upgrade" in tokens and bool(request.headers.get("Upgrade", "").strip())


@dataclass(frozen=True)
class ResponseHead:
    """A parsed HTTP/1.1 response head from the member."""

    status: int
    reason: str
    headers: CIMultiDict[str]


class _BadUpstream(Exception):
    """The member's response is not valid HTTP/1.1 we can relay."""


async def handle_upgrade(
    request: web.Request,
    target_url: yarl.URL,
    ssl_context: ssl.SSLContext | bool,
    headers: Mapping[str, str],
    *,
    connect_timeout: float = 10.0,
    response_timeout: float = 30.0,
    dial: Dialer | None = None,
    hop: Hop | None = None,
    meter: TunnelMeter | None = None,
) -> web.StreamResponse:
    """Proxy the upgrade `request` to `target_url` and, on a 101, tunnel bytes until either side closes.

    `headers` are the request headers to send upstream, already filtered and carrying the
    member credential (repeated keys are kept if it is a multidict). Host and message framing
    are set here; `Connection: Upgrade` and `Upgrade` are always sent (taken from `headers`,
    else from the client's request). `ssl_context`: an SSLContext, True for the default
    verification, False for none; ignored for `http` targets. `dial` replaces the direct TLS
    dial (e.g. through a proxy-url) and must return connected streams. `hop` names the cluster
    and its proxy in failure messages (default: "the member" at the target's host and port).
    `meter`, if given, is told the bytes the tunnel carries each way (the 101 head is not among them).

    Returns the response for aiohttp: a relayed refusal (non-101, connection closed), a
    `Status` error (400 for a request body, 502 for TLS or protocol errors, 503 for connect
    failures, 504 for a member that does not answer, 501 when aiohttp cannot be taken over),
    or, after the tunnel has ended, the 101 response that opened it.
    """
    if request.body_exists:
        return _error(400, "upgrade requests must not carry a body")
    try:
        check_supported()
        head_bytes = _request_head(request, target_url, headers)
    except TakeoverUnsupported as exc:
        return _error(501, f"connection upgrades are not supported by this server: {exc}")
    except ValueError as exc:
        return _error(400, str(exc))

    target = f"{target_url.scheme}://{target_url.host_port_subcomponent}"  # never log the query or credentials
    hop = hop or Hop("", target_url, None, connect_timeout)
    try:
        async with asyncio.timeout(connect_timeout):
            reader, writer = await (dial() if dial is not None else _dial(target_url, ssl_context))
    except OSError as exc:  # TimeoutError, ssl and socket errors, and the dialer's ProxyFailure included
        return _refuse(describe_failure(hop, exc, connecting=True))

    handed_over = False
    body = b""
    try:
        try:
            async with asyncio.timeout(response_timeout):
                writer.write(head_bytes)
                await writer.drain()
                head = await _read_head(reader)
                if head.status != 101:
                    body = await _read_body(reader, head, request.method)
        except TimeoutError:
            return _error(504, f"{hop.subject} at {hop.member} did not answer the upgrade within {response_timeout:g}s")
        except ssl.SSLError as exc:  # e.g. the member rejecting our client certificate after the handshake
            return _error(502, f"TLS error from {hop.subject} at {hop.member} during the upgrade: {tls_reason(exc)}")
        except (OSError, asyncio.IncompleteReadError):
            return _error(502, f"{hop.subject} at {hop.member} closed the connection without answering")
        except (_BadUpstream, asyncio.LimitOverrunError) as exc:
            return _error(502, f"{hop.subject} at {hop.member} sent an invalid upgrade response: {exc}")
        if head.status != 101:
            log.debug("member %s refused the upgrade with %d; relaying, no tunnel", target, head.status)
            return _relay(head, body)
        handed_over = True
        return await _tunnel(request, reader, writer, head, meter or _UNMETERED)
    finally:
        if not handed_over:
            await _close_member(writer)


async def _dial(url: yarl.URL, ssl_context: ssl.SSLContext | bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host = url.raw_host or ""
    if url.scheme == "http":
        return await asyncio.open_connection(host, url.port, limit=MAX_HEAD_BYTES)
    if ssl_context is True:
        ctx = ssl.create_default_context()
    elif ssl_context is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl_context
    # The context must not offer h2 by ALPN (we speak HTTP/1.1); a shared context is not ours to change.
    server_hostname = host.strip("[]")
    return await asyncio.open_connection(host, url.port, ssl=ctx, server_hostname=server_hostname, limit=MAX_HEAD_BYTES)


def _check(text: str, what: str) -> str:
    if _FORBIDDEN.intersection(text):
        raise ValueError(f"invalid character in {what}")
    return text


def _request_head(request: web.BaseRequest, url: yarl.URL, headers: Mapping[str, str]) -> bytes:
    """The upstream request line and headers, as bytes. Raises ValueError on injection attempts."""
    upgrade = ""
    request_line = f"{_check(request.method, 'method')} {_check(url.raw_path_qs, 'path')} HTTP/1.1"
    lines = [request_line, f"Host: {url.host_port_subcomponent}"]
    for name, value in headers.items():
        lname = name.lower()
        if lname == "upgrade":
            upgrade = value
        if lname in _REQUEST_SKIP:
            continue
        lines.append(f"{_check(name, 'header name')}: {_check(value, 'header ' + name)}")
    upgrade = upgrade or request.headers.get("Upgrade", "")
    if not upgrade.strip():
        raise ValueError("not an upgrade request: no Upgrade header")
    lines += ["Connection: Upgrade", f"Upgrade: {_check(upgrade, 'header Upgrade')}"]
    if request.method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 0")  # SPDY exec is a bodiless POST; say so, as Go's client does
    # latin-1: what HTTP/1.1 headers are on the wire; a non-latin-1 value is refused.
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError("header value is not latin-1") from exc


async def _read_head(reader: asyncio.StreamReader) -> ResponseHead:
    """Read and parse one response head, skipping interim 1xx answers other than 101."""
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise _BadUpstream(f"response head larger than {MAX_HEAD_BYTES} bytes") from exc
        if len(raw) > MAX_HEAD_BYTES:
            raise _BadUpstream(f"response head larger than {MAX_HEAD_BYTES} bytes")
        head = _parse_head(raw)
        if head.status == 101 or not 100 <= head.status < 200:
            return head


def _parse_head(raw: bytes) -> ResponseHead:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise _BadUpstream(f"bad status line {lines[0][:100]!r}")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise _BadUpstream("malformed header line")
        headers.add(name, value.strip(" \t"))
    return ResponseHead(int(parts[1]), parts[2] if len(parts) > 2 else "", headers)


async def _read_body(reader: asyncio.StreamReader, head: ResponseHead, method: str) -> bytes:
    """The refusal's body, bounded by MAX_REFUSAL_BODY (it is relayed whole, then we close)."""
    if method == "HEAD" or head.status in (204, 304):
        return b""
    if "chunked" in head.headers.get("Transfer-Encoding", "").lower():
        return await _read_chunked(reader)
    length = head.headers.get("Content-Length")
    if length is not None:
        if not length.isdigit():
            raise _BadUpstream("bad Content-Length")
        if int(length) > MAX_REFUSAL_BODY:
            raise _BadUpstream(f"refusal body larger than {MAX_REFUSAL_BODY} bytes")
        return await reader.readexactly(int(length))
    body = b""  # delimited by the member closing the connection
    while chunk := await reader.read(_CHUNK):
        body += chunk
        if len(body) > MAX_REFUSAL_BODY:
            raise _BadUpstream(f"refusal body larger than {MAX_REFUSAL_BODY} bytes")
    return body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size_line = (await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError as exc:
            raise _BadUpstream("bad chunk size") from exc
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, discarded
                pass
            return body
        if len(body) + size > MAX_REFUSAL_BODY:
            raise _BadUpstream(f"refusal body larger than {MAX_REFUSAL_BODY} bytes")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise _BadUpstream("bad chunk terminator")


def _without_hop_by_hop(headers: CIMultiDict[str], skip: frozenset[str]) -> CIMultiDict[str]:
    named = {t.strip().lower() for v in headers.getall("Connection", ()) for t in v.split(",")}
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in skip and k.lower() not in named)


def _relay(head: ResponseHead, body: bytes) -> web.Response:
    """The member's refusal as an ordinary response that closes the client connection."""
    headers = _without_hop_by_hop(head.headers, _RESPONSE_SKIP)
    response = web.Response(status=head.status, reason=head.reason or None, body=body, headers=headers)
    response.force_close()  # the client may have queued tunnel bytes behind its request: drop them
    return response


class _Unmetered:
    def add(self, to_member: int, to_client: int) -> None:
        pass


_UNMETERED = _Unmetered()


async def _tunnel(
    request: web.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: ResponseHead, meter: TunnelMeter
) -> web.StreamResponse:
    """Answer 101 with the member's headers, then copy bytes both ways until one side ends."""
    try:
        headers = CIMultiDict((k, v) for k, v in head.headers.items() if k.lower() not in ("content-length", "transfer-encoding"))
        if "upgrade" not in headers.get("Connection", "").lower():
            headers["Connection"] = "Upgrade"
        try:
            client = await accept_upgrade(request, head.reason or "Switching Protocols", headers)
        except ConnectionError:
            # The client left before the 101: nobody will read this answer.
            return _error(499, "client closed the connection before the upgrade completed")
        tasks = [
            asyncio.create_task(_member_to_client(reader, client, meter)),
            asyncio.create_task(_client_to_member(client, writer, meter)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            client.close()
            writer.close()
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, Exception):
                    log.warning("upgrade tunnel pump failed: %r", result)
        return client.response
    finally:
        await _close_member(writer)


async def _member_to_client(reader: asyncio.StreamReader, client: RawConnection, meter: TunnelMeter) -> None:
    unreported = 0
    try:
        with contextlib.suppress(OSError):  # ConnectionError and ssl.SSLError included: either side gone
            while data := await reader.read(_CHUNK):
                await client.write(data)
                unreported += len(data)
                if unreported >= METER_EVERY_BYTES:
                    meter.add(0, unreported)
                    unreported = 0
    finally:  # cancelled too: the other side ended the tunnel
        meter.add(0, unreported)


async def _client_to_member(client: RawConnection, writer: asyncio.StreamWriter, meter: TunnelMeter) -> None:
    unreported = 0
    try:
        with contextlib.suppress(OSError):
            while data := await client.read():
                writer.write(data)
                unreported += len(data)  # handed to the member's socket, even if the tunnel ends during the drain
                if unreported >= METER_EVERY_BYTES:
                    meter.add(unreported, 0)
                    unreported = 0
                await writer.drain()
    finally:
        meter.add(unreported, 0)


async def _close_member(writer: asyncio.StreamWriter) -> None:
    """Close the member connection, gracefully if it answers in time, else by abort."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        writer.transport.abort()


def _error(code: int, message: str) -> web.Response:
    return _refuse(StatusError(code, message))


def _refuse(error: StatusError) -> web.Response:
    """A Status answer that closes the client connection (it may have queued tunnel bytes)."""
    response = status_response(error)
    response.force_close()
    return response
