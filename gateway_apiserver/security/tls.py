"""TLS serving: certificate files (given, or self-signed into --cert-dir) and the SSL context."""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from .pki import covers, issue_serving_cert, new_ca

log = logging.getLogger(__name__)


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


def server_context(cert: ServingCert) -> ssl.SSLContext:
    """A TLS 1.2+ server context serving HTTP/1.1."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert.cert_file, cert.key_file)
    # aiohttp speaks HTTP/1.1 only; say so in ALPN so HTTP/2-capable clients do not try h2.
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
