"""Test PKI: CAs, server and client certificates, and TLS contexts, built with `cryptography`.

Generic on purpose: tests mint hosting-cluster CAs, front-proxy CAs, wrong CAs and
member-cluster certificates with the same few functions. Keys are EC P-256, which is fast
to generate and accepted by every client we drive (aiohttp, kubernetes clients, kubectl).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ONE_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class CertKey:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate, PEM-encoded."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key, PEM-encoded (unencrypted PKCS#8)."""
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _validity(expired: bool, days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    if expired:
        # Valid in the past only, so both notBefore and notAfter checks are realistic.
        return now - 10 * _ONE_DAY, now - _ONE_DAY
    # Back-date a little: clock skew between "issuer" and "verifier" must not matter.
    return now - datetime.timedelta(hours=1), now + days * _ONE_DAY


def _name(cn: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def make_ca(cn: str = "test-ca", *, expired: bool = False, days: int = 30) -> CertKey:
    """A self-signed CA certificate and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = _validity(expired, days)
    name = _name(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertKey(cert, key)


def _issue(
    ca: CertKey,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
    expired: bool,
    days: int,
) -> CertKey:
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = _validity(expired, days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return CertKey(builder.sign(ca.key, hashes.SHA256()), key)


def issue_server_cert(
    ca: CertKey,
    *,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    cn: str | None = None,
    expired: bool = False,
    days: int = 30,
) -> CertKey:
    """A TLS server certificate signed by `ca`, with DNS and IP subject alternative names."""
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    common_name = cn or (dns_names[0] if dns_names else ip_addresses[0] if ip_addresses else "server")
    return _issue(ca, _name(common_name), ExtendedKeyUsageOID.SERVER_AUTH, sans, expired, days)


def issue_client_cert(ca: CertKey, cn: str, groups: Sequence[str] = (), *, expired: bool = False, days: int = 30) -> CertKey:
    """A TLS client certificate signed by `ca`: CN is the user, O entries are the groups (as kube reads them)."""
    return _issue(ca, _name(cn, groups), ExtendedKeyUsageOID.CLIENT_AUTH, [], expired, days)


def write_pair(directory: Path, stem: str, pair: CertKey) -> tuple[Path, Path]:
    """Write `<stem>.crt` and `<stem>.key` into `directory`; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(pair.cert_pem)
    key_path.write_bytes(pair.key_pem)
    key_path.chmod(0o600)
    return cert_path, key_path


def server_ssl_context(pair: CertKey, *, client_ca_pem: bytes | None = None, require_client_cert: bool = False) -> ssl.SSLContext:
    """An SSLContext serving `pair`. With `client_ca_pem`, client certificates are verified against it
    (optional unless `require_client_cert`), as the kube-apiserver does with --client-ca-file."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # SSLContext only loads cert chains from files: use a private tmp dir, gone once loaded.
    with tempfile.TemporaryDirectory(prefix="pki-") as tmp:
        cert_path, key_path = write_pair(Path(tmp), "server", pair)
        ctx.load_cert_chain(cert_path, key_path)
    if client_ca_pem is not None:
        ctx.load_verify_locations(cadata=client_ca_pem.decode())
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_ssl_context(ca_pem: bytes | None = None, client: CertKey | None = None) -> ssl.SSLContext:
    """An SSLContext trusting `ca_pem` (or the system store), presenting `client` if given."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode() if ca_pem is not None else None)
    if client is not None:
        with tempfile.TemporaryDirectory(prefix="pki-") as tmp:
            cert_path, key_path = write_pair(Path(tmp), "client", client)
            ctx.load_cert_chain(cert_path, key_path)
    return ctx
