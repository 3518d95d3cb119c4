"""What a client is told when the gateway cannot get an answer from a member cluster.

One pure function, `describe_failure`, turns whatever the connection attempt raised (aiohttp,
ssl, socket, python-socks errors) into a Status with a message that says which hop failed
(the member or its `proxy-url` proxy), where, and why, in words rather than Python internals.
It never includes credentials: the proxy is named by scheme, host and port only.

Codes follow the kube-apiserver's aggregator, which answers 503 when it cannot dial a backend:
503 for every failure to reach the member (DNS, refused, reset, timeout, any proxy failure),
502 when the member was reached but is not what it should be (TLS verification, a handshake
failure, an answer that is not HTTP).
"""

from __future__ import annotations

import asyncio
import errno
import http
import os
import socket
import ssl
from dataclasses import dataclass

import aiohttp
import aiohttp_socks
import python_socks
from yarl import URL

from ..base.status import StatusError
from .konnectivity.errors import TunnelError

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) a client meets when verifying a server.
_UNTRUSTED = frozenset({2, 4, 7, 18, 19, 20, 21, 24, 27, 28})  # unknown issuer, self-signed, bad signature, not a CA
_NOT_YET_VALID, _EXPIRED = 9, 10
_NAME_MISMATCH = frozenset({62, 63, 64})  # host name, e-mail, IP address
# SOCKS5 reply codes (RFC 1928 §6).
_SOCKS_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by its ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused by the destination",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
# python-socks' words for a SOCKS5 proxy refusing our login (RFC 1929), or wanting one we do not have.
_SOCKS_LOGIN_REFUSED = ("authentication failure", "no acceptable authentication methods")
# OpenSSL reasons seen when the peer does not speak TLS at all (e.g. a plain-HTTP port).
_NOT_TLS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL")
# OpenSSL alerts meaning the peer refused our (missing or unknown) client certificate.
_CLIENT_CERT_REFUSED = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN")


class ProxyFailure(ConnectionError):
    """The cluster's `proxy-url` proxy failed (raised by the upgrade dialer); `cause` is the proxy library's error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("the proxy failed")
        self.cause = cause


class DialFailed(Exception):
    """No connection to the member could be made (raised by the fast path's pool); `cause` is the raw error:
    an OSError, socket.gaierror, ssl.SSLCertVerificationError, ssl.SSLError or TimeoutError."""

    def __init__(self, cause: OSError) -> None:
        super().__init__("could not connect to the member")
        self.cause = cause


class InvalidAnswer(Exception):
    """The member's answer is not valid HTTP/1.1 (or a protocol switch nobody asked for); the message says how,
    for logs only."""


@dataclass(frozen=True, slots=True)
class Hop:
    """Where a request was going: the member, and the proxy in between if any."""

    cluster: str  # empty when unknown (then the message says "the member")
    url: URL  # the member URL (only host and port are shown)
    proxy_url: str | None = None  # the Secret's proxy-url (its userinfo is never shown)
    connect_timeout: float = 10.0
    server_name: str | None = None  # the name the member's certificate is checked against, when not the URL's host

    @property
    def subject(self) -> str:
        """Who failed: 'cluster "c1"', or 'the member' when the cluster is not known."""
        return f'cluster "{self.cluster}"' if self.cluster else "the member"

    @property
    def member(self) -> str:
        """host:port of the member."""
        host = self.url.host or ""
        return f"[{host}]:{self.url.port}" if ":" in host else f"{host}:{self.url.port}"

    @property
    def proxy(self) -> str:
        """The proxy as scheme://host:port, without user or password."""
        url = URL(self.proxy_url or "")
        default = 1080 if url.scheme.startswith("socks") else 80 if url.scheme == "http" else 443
        return f"{url.scheme}://{url.host}:{url.port or default}"

    @property
    def via(self) -> str:
        """' through its proxy X' when the cluster has a proxy-url."""
        return f" through its proxy {self.proxy}" if self.proxy_url else ""


def os_reason(err: BaseException | None) -> str:
    """The errno's text, lower-cased ('connection refused'), without the call or address Python adds."""
    code = getattr(err, "errno", None)
    if isinstance(code, int) and code > 0:
        text = os.strerror(code)
        return text[:1].lower() + text[1:]
    if isinstance(err, TimeoutError):
        return "timed out"
    return "the connection failed"


def dns_reason(err: BaseException | None) -> str:
    """A resolver failure in the words Go uses ('no such host')."""
    code = getattr(err, "errno", None)
    if code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)):
        return "no such host"
    if code == socket.EAI_AGAIN:
        return "temporary failure in name resolution"
    return "name resolution failed"


def tls_verification_reason(err: ssl.SSLCertVerificationError | None, host: str, name_source: str = "the endpoint's host") -> str:
    """Why the member's certificate was refused, in terms of the cluster Secret."""
    code = getattr(err, "verify_code", None)
    if code == _EXPIRED:
        return "the member's certificate (or one in its chain) has expired"
    if code == _NOT_YET_VALID:
        return "the member's certificate is not valid yet (check the clocks)"
    if code in _NAME_MISMATCH:
        return f'the member\'s certificate is not valid for "{host}" ({name_source} is not in its names)'
    if code in _UNTRUSTED:
        return "the member's certificate is not trusted by the cluster's CA bundle (ca.crt in its Secret)"
    detail = getattr(err, "verify_message", None) or "unknown reason"
    return f"certificate verify failed: {detail}"


def tls_reason(err: BaseException | None) -> str:
    """Why a TLS handshake (not the verification) failed."""
    reason = str(getattr(err, "reason", None) or "").upper()
    if any(marker in reason for marker in _NOT_TLS):
        return "the member did not answer with TLS (is the endpoint an http:// address?)"
    if any(marker in reason for marker in _CLIENT_CERT_REFUSED):
        return "the member refused the gateway's client certificate"
    return reason.lower().replace("_", " ") if reason else "the handshake failed"


def _ssl_error_in(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error behind `exc`, preferring one that carries OpenSSL's reason (aiohttp's wrappers are
    SSLErrors too, without it)."""
    found: ssl.SSLError | None = None
    seen: BaseException | None = exc
    for _ in range(4):  # the chain is short: aiohttp wraps once, asyncio once
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError):
            found = seen
            if getattr(seen, "reason", None):
                return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    return found


def _http_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "unknown status"


def describe_proxy_failure(hop: Hop, exc: BaseException) -> StatusError:
    """The proxy between the gateway and the member failed: say so, naming the proxy."""
    unreachable = f"{hop.subject} unreachable:"
    cause: BaseException | None = exc.cause if isinstance(exc, ProxyFailure) else exc
    while isinstance(cause, aiohttp_socks.ProxyConnectionError | python_socks.ProxyConnectionError) and cause.__cause__:
        cause = cause.__cause__  # aiohttp-socks wraps python-socks, which wraps the socket error
    http_status = getattr(cause, "error_code", None) if isinstance(cause, python_socks.ProxyError) else None
    if isinstance(exc, aiohttp.ClientHttpProxyError) or (isinstance(http_status, int) and http_status >= 100):
        # aiohttp's CONNECT, or python-socks' (upgrade tunnels): the proxy answered the CONNECT with an error.
        status = exc.status if isinstance(exc, aiohttp.ClientHttpProxyError) else int(http_status or 0)
        phrase = _http_phrase(status)
        hint = " (check the user and password in proxy-url)" if status == 407 else ""
        return StatusError(
            503, f"{unreachable} its proxy {hop.proxy} refused the tunnel to {hop.member}: {status} {phrase}{hint}"
        )
    if isinstance(cause, aiohttp_socks.ProxyTimeoutError | python_socks.ProxyTimeoutError | TimeoutError):
        return StatusError(
            503, f"{unreachable} connecting through its proxy {hop.proxy} timed out after {hop.connect_timeout:g}s"
        )
    if isinstance(cause, aiohttp_socks.ProxyError | python_socks.ProxyError):
        code = cause.error_code
        if code in _SOCKS_REPLIES:
            return StatusError(
                503, f"{unreachable} its proxy {hop.proxy} refused the tunnel to {hop.member}: {_SOCKS_REPLIES[code]}"
            )
        if any(marker in str(cause).lower() for marker in _SOCKS_LOGIN_REFUSED):
            return StatusError(
                503, f"{unreachable} its proxy {hop.proxy} refused the gateway's login (check the user and password in proxy-url)"
            )
        return StatusError(503, f"{unreachable} its proxy {hop.proxy} answered with an invalid SOCKS5 reply")
    os_error = getattr(exc, "os_error", None) or cause
    if isinstance(os_error, socket.gaierror):
        host, reason = URL(hop.proxy_url or "").host, dns_reason(os_error)
        return StatusError(503, f'cannot resolve host "{host}" of the proxy of {hop.subject}: {reason}')
    return StatusError(503, f"{unreachable} cannot connect to its proxy {hop.proxy}: {os_reason(os_error)}")


# What a request to a member can raise before its answer starts (TimeoutError is an OSError).
UPSTREAM_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    OSError,
    asyncio.IncompleteReadError,
    aiohttp_socks.ProxyError,
    aiohttp_socks.ProxyConnectionError,
    aiohttp_socks.ProxyTimeoutError,
    python_socks.ProxyError,
    python_socks.ProxyTimeoutError,
    DialFailed,
    InvalidAnswer,
)


def _is_proxy_failure(hop: Hop, exc: BaseException) -> bool:
    if hop.proxy_url and isinstance(exc, aiohttp.ClientConnectorError):
        # aiohttp reports a failure to reach an HTTP proxy (its DNS included) as a connect error to the proxy's address.
        proxy = URL(hop.proxy)
        if (exc.host, exc.port) == (proxy.host, proxy.port):
            return True
    return isinstance(
        exc,
        ProxyFailure
        | aiohttp.ClientProxyConnectionError
        | aiohttp.ClientHttpProxyError
        | aiohttp_socks.ProxyError
        | aiohttp_socks.ProxyConnectionError
        | aiohttp_socks.ProxyTimeoutError,
    )


def describe_failure(hop: Hop, exc: BaseException, *, connecting: bool = False) -> StatusError:
    """The Status for a failure to get an answer from the member (before any byte was sent back).

    `connecting`: `exc` was raised while dialing (aiohttp says so itself with ClientConnectorError).
    """
    if isinstance(exc, DialFailed):
        return describe_failure(hop, exc.cause, connecting=True)
    cluster, where = hop.subject, hop.member
    tunnel = exc if isinstance(exc, TunnelError) else getattr(exc, "os_error", None)
    if isinstance(tunnel, TunnelError):  # a ClusterProxy cluster's tunnel: its message names the cause
        return StatusError(tunnel.code, tunnel.message)
    if _is_proxy_failure(hop, exc):
        return describe_proxy_failure(hop, exc)
    if isinstance(exc, aiohttp.ClientConnectorDNSError | socket.gaierror):
        err = exc.os_error if isinstance(exc, aiohttp.ClientConnectorDNSError) else exc
        return StatusError(503, f'cannot resolve host "{hop.url.host}" of {cluster}: {dns_reason(err)}')
    verification: ssl.SSLCertVerificationError | None = None
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        verification = cert_error if isinstance(cert_error, ssl.SSLCertVerificationError) else None
    elif isinstance(exc, ssl.SSLCertVerificationError):
        verification = exc
    if verification is not None or isinstance(exc, aiohttp.ClientConnectorCertificateError):
        if hop.server_name:
            reason = tls_verification_reason(verification, hop.server_name, "the server name")
        else:
            reason = tls_verification_reason(verification, hop.url.host or "")
        return StatusError(502, f"TLS verification of {cluster} at {where} failed: {reason}")
    if (ssl_error := _ssl_error_in(exc)) is not None:
        return StatusError(502, f"TLS handshake with {cluster} at {where} failed: {tls_reason(ssl_error)}")
    if isinstance(exc, TimeoutError):  # aiohttp's ConnectionTimeoutError included
        return StatusError(503, f"{cluster} unreachable: connecting to {where}{hop.via} timed out after {hop.connect_timeout:g}s")
    if isinstance(exc, aiohttp.ClientConnectorError) or (connecting and isinstance(exc, OSError)):
        err = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        return StatusError(503, f"{cluster} unreachable: connecting to {where} failed: {os_reason(err)}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | asyncio.IncompleteReadError):
        return StatusError(502, f"{cluster} at {where} closed the connection without answering")
    if isinstance(exc, aiohttp.ClientResponseError | InvalidAnswer):
        return StatusError(502, f"{cluster} at {where} sent an answer that is not valid HTTP/1.1")
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return StatusError(502, f"{cluster} at {where} reset the connection without answering")
    if isinstance(exc, ConnectionResetError | aiohttp.ClientConnectionResetError):
        return StatusError(502, f"{cluster} at {where} reset the connection without answering")
    if isinstance(exc, OSError):
        return StatusError(503, f"{cluster} unreachable: connecting to {where} failed: {os_reason(exc)}")
    return StatusError(502, f"the connection to {cluster} at {where} failed before it answered")
