"""TLS serving: certificate files (given, or self-signed into --cert-dir) and the SSL context.

`TLSServing` serves the certificate pair from files and reloads it when cert-manager (or a
Secret volume's symlink swap) replaces them, and verifies optional client certificates against
a CA set that can change at run time. Each change builds a fresh `ssl.SSLContext` (a context
cannot forget a loaded CA); new connections get the newest one, open connections keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .pki import covers, issue_serving_cert, new_ca
from .tls_policy import TLSPolicy

log = logging.getLogger(__name__)

DEFAULT_POLICY = TLSPolicy()


@dataclass(frozen=True, slots=True)
class ServingCert:
    """Paths of the serving certificate (chain) and key."""

    cert_file: Path
    key_file: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_self_signed(cert_dir: Path, hosts: list[str]) -> ServingCert:
    """Reuse `cert_dir/apiserver.{crt,key}` when they still cover `hosts`, else mint new ones.

    The .crt holds the serving certificate followed by its CA, as the Go generic apiserver
    writes it, so a client may pin either.
    """
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = cert_dir / "apiserver.crt", cert_dir / "apiserver.key"
    if cert_file.exists() and key_file.exists():
        try:
            if covers(x509.load_pem_x509_certificate(cert_file.read_bytes()), hosts):
                return ServingCert(cert_file, key_file)
        except ValueError:
            log.warning("replacing unreadable certificate %s", cert_file)
    ca = new_ca(f"gateway-apiserver-ca@{int(os.path.getmtime(cert_dir))}")
    serving = issue_serving_cert(ca, hosts)
    _write_private(key_file, serving.key_pem)
    cert_file.write_bytes(serving.cert_pem + ca.cert_pem)
    log.info("generated a self-signed serving certificate for %s in %s", ", ".join(hosts), cert_dir)
    return ServingCert(cert_file, key_file)


class ServingPairError(ValueError):
    """A serving certificate or key that cannot be served; `part` says which: certificate, key or pair."""

    def __init__(self, part: str, problem: str) -> None:
        super().__init__(problem)
        self.part = part
        self.problem = problem


def check_serving_pair(cert_pem: bytes, key_pem: bytes) -> None:
    """Raise ServingPairError unless `cert_pem` holds a PEM certificate and `key_pem` its unencrypted PEM key."""
    try:
        leaf = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        raise ServingPairError("certificate", 'not a PEM certificate (no valid "BEGIN CERTIFICATE" block)') from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ServingPairError("key", "the private key is encrypted; give an unencrypted PEM key") from None
    except ValueError:
        raise ServingPairError("key", 'not a PEM private key (no valid "BEGIN ... PRIVATE KEY" block)') from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise ServingPairError("pair", "the private key does not match the certificate (the first one in the file)")


def _build_context(
    cert_pem: bytes, key_pem: bytes, client_cas: Sequence[bytes], policy: TLSPolicy = DEFAULT_POLICY
) -> ssl.SSLContext:
    """One generation: a server context for this pair, verifying client certificates against `client_cas`.

    Raises ValueError or ssl.SSLError when the pair or a CA is unusable (half-written, mismatched key).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    policy.apply(ctx)  # --tls-min-version, --tls-cipher-suites
    # aiohttp speaks HTTP/1.1 only; say so in ALPN so HTTP/2-capable clients do not try h2.
    ctx.set_alpn_protocols(["http/1.1"])
    # Go servers refuse renegotiation too; it would re-run client verification mid-connection.
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    # load_cert_chain reads files only. Load from a private copy of the bytes we validated, not
    # from the watched paths, so a CA change never picks up a half-rotated pair.
    with tempfile.TemporaryDirectory(prefix="gateway-tls-") as tmp:
        cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        _write_private(key_file, key_pem)
        cert_file.write_bytes(cert_pem)
        ctx.load_cert_chain(cert_file, key_file)
    if client_cas:
        ctx.load_verify_locations(cadata="\n".join(pem.decode("ascii") for pem in client_cas))
        # Request a certificate, do not require one: token and anonymous callers send none.
        # Python's ssl cannot "request without verifying", so a certificate that does not verify
        # against these CAs fails the handshake. The kube-apiserver instead completes the
        # handshake and ignores such a certificate (the caller is then anonymous or uses a
        # token). Both are safe: an unverified certificate never authenticates anyone.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class _CurrentContext(ssl.SSLContext):
    """The context handed to aiohttp: it wraps each new connection with the current generation.

    Why not `sni_callback` + `ssl_object.context = current`: it does run without SNI (OpenSSL
    3 calls it with server_name None), but OpenSSL keeps two things from the context the
    connection was created with: the verify mode (so a server started without client CAs would
    never request a certificate after CAs arrive), and the session cache and ticket keys, so a
    client could resume a session whose certificate was verified by a CA removed since (tested).
    Building each connection's SSLObject from the current context gives it that context's
    verify mode, CAs and session cache; old sessions cannot be resumed across a change.
    asyncio and uvloop both create server connections through `SSLContext.wrap_bio`.
    """

    _pick: Callable[[], ssl.SSLContext]

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        """Wrap with the current generation's context."""
        return self._pick().wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        """Wrap with the current generation's context (blocking sockets)."""
        ctx = self._pick()
        return ctx.wrap_socket(sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, server_hostname, session)


def _facade(pick: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    ctx = _CurrentContext(ssl.PROTOCOL_TLS_SERVER)
    # No certificate on purpose: were an event loop to bypass wrap_bio, handshakes would fail
    # loudly instead of silently serving a stale configuration.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx._pick = pick
    return ctx


_Signature = tuple[tuple[int, int, int, int], tuple[int, int, int, int]]


def _signature(cert: ServingCert) -> _Signature | None:
    """What identifies this version of the files; None while one is missing."""
    try:
        a, b = os.stat(cert.cert_file), os.stat(cert.key_file)  # follows the Secret volume symlinks
    except OSError:
        return None
    return (a.st_dev, a.st_ino, a.st_mtime_ns, a.st_size), (b.st_dev, b.st_ino, b.st_mtime_ns, b.st_size)


class TLSServing:
    """The server side of TLS: serving certificate with reload, and dynamic client-certificate CAs.

    Hand `context` to aiohttp (`web.SockSite(..., ssl_context=tls.context)`), and `await start()`
    to poll the certificate files every `poll_interval` seconds.
    """

    def __init__(
        self,
        cert: ServingCert,
        *,
        client_ca_pems: Sequence[bytes] = (),
        poll_interval: float = 2.0,
        policy: TLSPolicy = DEFAULT_POLICY,
    ) -> None:
        """Load the pair now; raises ServingPairError or OSError if it is unusable at startup."""
        self.cert = cert
        self.policy = policy
        self.poll_interval = poll_interval
        self._seen = _signature(cert)
        cert_pem, key_pem = cert.cert_file.read_bytes(), cert.key_file.read_bytes()
        check_serving_pair(cert_pem, key_pem)
        self._client_cas = _clean(client_ca_pems)
        self._current = _build_context(cert_pem, key_pem, self._client_cas, policy)
        self._pair = cert_pem, key_pem
        self._certificate = x509.load_pem_x509_certificate(cert_pem)
        self._context = _facade(lambda: self._current)
        self._task: asyncio.Task[None] | None = None

    @property
    def context(self) -> ssl.SSLContext:
        """The SSLContext to give aiohttp; it stays the same object across reloads."""
        return self._context

    @property
    def certificate(self) -> x509.Certificate:
        """The serving certificate new connections get."""
        return self._certificate

    def set_client_cas(self, ca_pems: Sequence[bytes]) -> None:
        """Verify client certificates of new connections against these CAs (PEM bundles).

        Pass the union of the front-proxy (requestheader) CA and the client CA. Empty: no
        certificate is requested. Raises ValueError on an unusable PEM, keeping the current CAs.
        """
        cas = _clean(ca_pems)
        if cas == self._client_cas:
            return
        try:
            ctx = _build_context(*self._pair, cas, self.policy)
        except (ValueError, ssl.SSLError) as e:
            raise ValueError(f"unusable client CA bundle: {e}") from e
        self._client_cas, self._current = cas, ctx
        log.info("client certificate CAs updated (%d bundle(s))", len(cas))

    def check_files(self) -> bool:
        """Reload the pair if its files changed; True when new connections now get a new certificate.

        A broken new version (half-written, key not matching) keeps the current one and logs one
        warning; it is retried when the files change again.
        """
        sig = _signature(self.cert)
        if sig == self._seen:
            return False
        self._seen = sig
        try:
            if sig is None:
                raise FileNotFoundError("certificate or key file missing")
            cert_pem, key_pem = self.cert.cert_file.read_bytes(), self.cert.key_file.read_bytes()
            check_serving_pair(cert_pem, key_pem)
            ctx = _build_context(cert_pem, key_pem, self._client_cas, self.policy)
            certificate = x509.load_pem_x509_certificate(cert_pem)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            log.warning(
                "keeping the current serving certificate: %s / %s unusable (%s); retrying when they change",
                self.cert.cert_file,
                self.cert.key_file,
                e,
            )
            return False
        self._pair, self._current, self._certificate = (cert_pem, key_pem), ctx, certificate
        log.info(
            "serving certificate reloaded: %s serial %x, valid until %s",
            certificate.subject.rfc4514_string(),
            certificate.serial_number,
            certificate.not_valid_after_utc.isoformat(),
        )
        return True

    async def start(self) -> None:
        """Start polling the certificate files (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._poll(), name="tls-cert-reload")

    async def stop(self) -> None:
        """Stop polling."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                self.check_files()
            except Exception:  # never let the poller die: rotation would silently stop
                log.exception("serving certificate reload check failed")


def _clean(ca_pems: Sequence[bytes]) -> tuple[bytes, ...]:
    return tuple(pem.strip() for pem in ca_pems if pem.strip())


# Per connection: the aggregator keeps connections alive, and parsing a certificate per request
# is not free. Weak keys: the entry goes with the connection's SSLObject.
_peer_certs: weakref.WeakKeyDictionary[ssl.SSLObject | ssl.SSLSocket, x509.Certificate | None] = weakref.WeakKeyDictionary()


def peer_certificate(request: web.BaseRequest) -> x509.Certificate | None:
    """The client certificate of this request's TLS connection, or None (see transport_peer_certificate)."""
    return transport_peer_certificate(request.transport)


def transport_peer_certificate(transport: asyncio.BaseTransport | None) -> x509.Certificate | None:
    """The client certificate of this TLS connection, or None.

    It verified, at handshake time, against the client CAs then in force, which are the union of
    the front-proxy and client CAs: callers must still check which of them issued it.
    """
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    try:
        return _peer_certs[ssl_object]
    except KeyError:
        pass
    der = ssl_object.getpeercert(binary_form=True)
    certificate = x509.load_der_x509_certificate(der) if der else None
    _peer_certs[ssl_object] = certificate
    return certificate
