"""Fixtures for serving a small aiohttp app over real TLS and driving it with real clients.

`serve_tls(app)` starts the app on 127.0.0.1 with a certificate from a throwaway CA;
`kubectl(server, *args)` runs the real kubectl against it with a kubeconfig in tmp_path.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import shutil
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ServingCert:
    """A CA file and a serving certificate and key for 127.0.0.1 / localhost, all as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """The TLS context the test server listens with."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only the test CA (and checks the host name)."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_serving_cert(directory: Path) -> ServingCert:
    """Mint a CA and a server certificate it signs, valid for 127.0.0.1 and localhost.

    A separate CA (rather than one self-signed leaf) because Go's verifier, used by kubectl,
    wants a real CA in `certificate-authority`. EC P-256 keys are quick to generate.
    """
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("discovery-test-ca"))
        .issuer_name(_name("discovery-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("gateway-apiserver"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    directory.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ServingCert(ca_file, cert_file, key_file)


@pytest.fixture(scope="session")
def serving_cert(tmp_path_factory: pytest.TempPathFactory) -> ServingCert:
    """One CA and serving certificate for the whole session."""
    return make_serving_cert(tmp_path_factory.mktemp("serving-cert"))


@dataclass(frozen=True)
class TLSServer:
    """A running test server: its https URL and the CA that verifies it."""

    url: str
    cert: ServingCert

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for this server. It has no authentication, so any token will do."""
        path.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: gateway
  cluster:
    server: {self.url}
    certificate-authority: {self.cert.ca_file}
users:
- name: anyone
  user:
    token: any-token
contexts:
- name: gateway
  context:
    cluster: gateway
    user: anyone
current-context: gateway
"""
        )
        return path


ServeTLS = Callable[[web.Application], Awaitable[TLSServer]]


@pytest.fixture
def serve_tls(aiohttp_server: Callable[..., Awaitable[TestServer]], serving_cert: ServingCert) -> ServeTLS:
    """Start an app on https://127.0.0.1:<random port>; stopped when the test ends."""

    async def serve(app: web.Application) -> TLSServer:
        server = await aiohttp_server(app, ssl=serving_cert.server_context())
        return TLSServer(f"https://127.0.0.1:{server.port}", serving_cert)

    return serve


@dataclass(frozen=True)
class KubectlResult:
    """What a kubectl run printed."""

    returncode: int
    stdout: str
    stderr: str


Kubectl = Callable[..., Awaitable[KubectlResult]]


@pytest.fixture
def kubectl(tmp_path: Path) -> Kubectl:
    """Run the real kubectl against a TLSServer, without blocking the loop that serves it.

    kubectl is a required test tool (tests/conftest.py stops the run without it). The discovery cache and HOME are kept in
    tmp_path so that runs never see each other's (or the developer's) cached documents.
    """
    binary = shutil.which("kubectl")
    assert binary is not None  # checked once for the whole run in tests/conftest.py

    async def run(server: TLSServer, *args: str, timeout: float = 60) -> KubectlResult:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}
        proc = await asyncio.create_subprocess_exec(
            binary,
            f"--kubeconfig={kubeconfig}",
            f"--cache-dir={tmp_path / 'kube-cache'}",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return KubectlResult(proc.returncode, stdout.decode(), stderr.decode())

    return run
