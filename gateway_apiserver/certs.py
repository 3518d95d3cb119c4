"""`python -m gateway_apiserver.certs`: a CA and a serving certificate for the in-cluster Service.

Writes three PEM files into `--out` (default `certs/out/`, which git ignores):
- `ca.crt`: the CA, then the one it replaces; it becomes the APIService `caBundle` (public);
- `tls.crt`: the serving certificate for the Service's DNS names, signed by that CA (public);
- `tls.key`: its private key (secret: mode 0600, never commit it).
`certs/kustomization.yaml` turns them into the `gateway-apiserver-tls` Secret and the `caBundle`.
The CA's private key is not written anywhere: nothing needs it once the certificate is signed
(run the command again to rotate).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from .security.pki import covers, issue_serving_cert, new_ca

CA_FILE = "ca.crt"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
DEFAULT_OUT = Path("certs/out")


@dataclass(frozen=True, slots=True)
class ServingMaterial:
    """What the Secret and the APIService need: the CA and the serving pair, all PEM."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def service_hosts(service: str, namespace: str) -> list[str]:
    """The names the aggregator and in-cluster clients use for the Service."""
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local", f"{service}.{namespace}", service]


def aggregator_host(service: str, namespace: str) -> str:
    """The TLS server name the kube-apiserver aggregator verifies: `<service>.<namespace>.svc`."""
    return f"{service}.{namespace}.svc"


def generate(namespace: str, service: str, days: int) -> ServingMaterial:
    """A new CA and a serving certificate it signed for the Service (pure: nothing is written)."""
    ca = new_ca(f"{service}.{namespace}-ca", days=max(days, 1) * 2)
    serving = issue_serving_cert(ca, service_hosts(service, namespace), days=days)
    return ServingMaterial(ca.cert_pem, serving.cert_pem, serving.key_pem)


def write(out: Path, material: ServingMaterial) -> None:
    """Write the three files; the key is readable by its owner only.

    `ca.crt` keeps the CA it replaces (when still valid) after the new one: the APIService then trusts
    both while the kubelet refreshes the pods' mounted Secret, so a rotation has no gap.
    """
    out.mkdir(parents=True, exist_ok=True)
    bundle = material.ca_pem + _previous_ca(out / CA_FILE, material.ca_pem)
    key_path = out / KEY_FILE
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
    with os.fdopen(fd, "wb") as f:
        f.write(material.key_pem)
    (out / CERT_FILE).write_bytes(material.cert_pem)
    (out / CA_FILE).write_bytes(bundle)


def _previous_ca(path: Path, new_ca_pem: bytes) -> bytes:
    """The newest CA of an existing bundle, PEM, if it is still valid and not the new one; else nothing."""
    try:
        previous = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError):
        return b""
    pem = previous.public_bytes(serialization.Encoding.PEM)
    if pem == new_ca_pem or previous.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        return b""
    return pem


def present(out: Path) -> list[str]:
    """Which of the three files exist in `out`."""
    return [name for name in (CA_FILE, CERT_FILE, KEY_FILE) if (out / name).is_file()]


def problems(out: Path, host: str, min_days_left: float = 1.0) -> list[str]:
    """Why the material in `out` cannot serve `host` behind the aggregator (empty when it can).

    Checks what the aggregator will: the certificate names `host`, is valid for `min_days_left`
    more days, matches the key, and was signed by a certificate in `ca.crt`.
    """
    missing = [name for name in (CA_FILE, CERT_FILE, KEY_FILE) if name not in present(out)]
    if missing:
        return [f"{out / name} is missing" for name in missing]
    try:
        chain = x509.load_pem_x509_certificates((out / CERT_FILE).read_bytes())
        cas = x509.load_pem_x509_certificates((out / CA_FILE).read_bytes())
        key = serialization.load_pem_private_key((out / KEY_FILE).read_bytes(), password=None)
    except ValueError as e:
        return [f"{out} holds a file that is not PEM ({e})"]
    leaf = chain[0]
    found: list[str] = []
    if leaf.public_key() != key.public_key():
        found.append(f"{out / KEY_FILE} is not the key of {out / CERT_FILE}")
    if not covers(leaf, [host], min_days_left=0):
        found.append(f"{out / CERT_FILE} does not name {host}")
    if leaf.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=min_days_left):
        found.append(f"{out / CERT_FILE} expires {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if not _chains_to(leaf, chain[1:], cas):
        found.append(f"{out / CERT_FILE} was not signed by a certificate in {out / CA_FILE}")
    return found


def _chains_to(cert: x509.Certificate, intermediates: list[x509.Certificate], cas: list[x509.Certificate]) -> bool:
    """Whether `cert` was signed by one of `cas`, directly or through the intermediates that follow it in tls.crt."""
    for _ in range(len(intermediates) + 1):
        if any(_signed_by(cert, ca) for ca in cas):
            return True
        issuer = next((i for i in intermediates if _signed_by(cert, i)), None)
        if issuer is None:
            return False
        cert = issuer
    return False


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    """The generator's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway_apiserver.certs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--namespace", default="vela-system", help="namespace of the Service (default: %(default)s)")
    parser.add_argument("--service", default="gateway-apiserver", help="name of the Service (default: %(default)s)")
    parser.add_argument("--days", type=int, default=365, help="validity of the serving certificate (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Write the certificate material; exit 2 on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    write(args.out, generate(args.namespace, args.service, args.days))
    print(
        f"wrote {args.out / CA_FILE}, {args.out / CERT_FILE} and {args.out / KEY_FILE} (secret) for "
        f"{aggregator_host(args.service, args.namespace)} (valid {args.days} days)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
