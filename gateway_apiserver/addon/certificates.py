"""Serving-certificate rotation as a pure plan: what the signer and serving Secrets and the APIService
`caBundle` should hold at a given time, from what they hold now.

A signer CA (Secret `cluster-gateway-signer`) signs the gateway's serving certificate (Secret
`cluster-gateway-tls-cert`, mounted by the gateway, which reloads it without a restart). Each is
replaced once two thirds of its lifetime have passed (`Lifetimes`; the reference issues 180-day
serving certificates). A CA change never breaks a request:

1. the new CA is added to the trust bundle next to the old one (the APIService `caBundle`
   then names both), while the gateway keeps serving its old certificate;
2. once the bundle has had `propagation` to reach the aggregator, the serving certificate is
   reissued by the new CA;
3. the old CA leaves the bundle only after `overlap` has passed since then and the gateway is
   seen serving the new certificate (when the manager can look).

The clock is a parameter, so tests run a rotation in seconds.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from ..security.pki import KeyPair, covers, issue_serving_cert, new_ca
from .spec import GROUP

CA_SINCE = f"{GROUP}/ca-since"  # on the signer Secret: when its current CA was made
ISSUED_AT = f"{GROUP}/issued-at"  # on the serving Secret: when its certificate was made
Data = dict[str, str]  # a Secret's data, base64 values as the API holds them


@dataclass(frozen=True)
class Lifetimes:
    """How long certificates live and when the steps of a rotation happen."""

    ca: dt.timedelta = dt.timedelta(days=365)
    serving: dt.timedelta = dt.timedelta(days=180)
    propagation: dt.timedelta = dt.timedelta(seconds=30)  # a new caBundle reaching the aggregator
    overlap: dt.timedelta = dt.timedelta(minutes=10)  # the mounted Secret reaching every gateway pod

    def due(self, cert: x509.Certificate, lifetime: dt.timedelta, now: dt.datetime) -> bool:
        """Whether `cert` has less than a third of `lifetime` left (two thirds used)."""
        return now >= cert.not_valid_after_utc - lifetime / 3


@dataclass
class Plan:
    """The wanted content of the two Secrets and the trust bundle, and when to look again."""

    signer: Data
    signer_annotations: dict[str, str]
    serving: Data
    serving_annotations: dict[str, str]
    bundle: bytes  # the CA PEMs the APIService trusts, the current CA first
    next_check: dt.datetime
    events: list[str] = field(default_factory=list)  # what changed, for logs and status


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _raw(data: Data | None, key: str) -> bytes:
    try:
        return base64.b64decode((data or {}).get(key, ""), validate=True)
    except ValueError:
        return b""


def split_pems(bundle: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, each as its own PEM."""
    marker = b"-----END CERTIFICATE-----"
    return [part.strip() + b"\n" + marker + b"\n" for part in bundle.split(marker) if b"-----BEGIN" in part]


def _parse(pem: bytes) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key signed `cert`."""
    key = issuer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))  # type: ignore[arg-type]
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)  # type: ignore[arg-type]
        else:
            return False
    except Exception:
        return False
    return cert.issuer == issuer.subject


def _time(annotations: dict[str, str], key: str, default: dt.datetime) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(annotations[key])
    except (KeyError, ValueError):
        return default


def plan(
    signer: Data | None,
    signer_annotations: dict[str, str],
    serving: Data | None,
    serving_annotations: dict[str, str],
    hosts: Sequence[str],
    now: dt.datetime,
    lifetimes: Lifetimes | None = None,
    *,
    gateway_serves_current: bool | None = None,
) -> Plan:
    """The next state of the signer, the serving certificate and the bundle at `now`.

    `gateway_serves_current`: whether the gateway was seen serving a certificate of the current CA
    (None: not known; the overlap alone then decides when the old CA leaves the bundle)."""
    lifetimes = lifetimes or Lifetimes()
    events: list[str] = []
    ca_pair = KeyPair(_raw(signer, "ca.crt"), _raw(signer, "ca.key"))
    ca = _parse(ca_pair.cert_pem) if ca_pair.key_pem else None
    live = [c for pem in split_pems(_raw(signer, "ca-bundle.crt")) if (c := _parse(pem)) and c.not_valid_after_utc > now]
    ca_since = _time(signer_annotations, CA_SINCE, now - lifetimes.propagation)
    if ca is None or lifetimes.due(ca, lifetimes.ca, now):
        previous = [ca] if ca is not None and ca.not_valid_after_utc > now else []
        ca_pair = new_ca("cluster-gateway-signer", now=now, validity=lifetimes.ca)
        ca, ca_since = ca_pair.certificate, now
        live = [ca, *previous]
        events.append("minted a new signer CA" + (" (the previous one stays trusted)" if previous else ""))
    trusted = [ca, *[c for c in live if c != ca]]

    cert_pair = KeyPair(_raw(serving, "tls.crt"), _raw(serving, "tls.key"))
    cert = _parse(cert_pair.cert_pem) if cert_pair.key_pem else None
    issued_at = _time(serving_annotations, ISSUED_AT, now)
    usable = cert is not None and cert.not_valid_after_utc > now and any(signed_by(cert, c) for c in trusted)
    current = (
        usable
        and cert is not None
        and signed_by(cert, ca)
        and covers(cert, hosts, 0)
        and not lifetimes.due(cert, lifetimes.serving, now)
    )
    next_check = ca.not_valid_after_utc - lifetimes.ca / 3
    if not current:
        ready = now >= ca_since + lifetimes.propagation
        if ready or not usable:  # nothing usable to keep: waiting would not save a request
            cert_pair = issue_serving_cert(ca_pair, hosts, now=now, validity=lifetimes.serving)
            cert, issued_at = cert_pair.certificate, now
            events.append("issued a new serving certificate")
            next_check = min(next_check, cert.not_valid_after_utc - lifetimes.serving / 3)
        else:  # the kept certificate is due already: the next step is the reissue
            next_check = min(next_check, ca_since + lifetimes.propagation)
    else:
        assert cert is not None
        next_check = min(next_check, cert.not_valid_after_utc - lifetimes.serving / 3)
    assert cert is not None
    if len(trusted) > 1 and signed_by(cert, ca):
        settled = now >= issued_at + lifetimes.overlap and gateway_serves_current is not False
        if settled:
            trusted = [ca]
            events.append("dropped the previous signer CA from the trust bundle")
        else:
            next_check = min(next_check, max(issued_at + lifetimes.overlap, now + dt.timedelta(seconds=1)))
    bundle = b"".join(c.public_bytes(Encoding.PEM) for c in trusted)
    issuer = next((c for c in [ca, *live] if signed_by(cert, c)), ca)  # the serving Secret's ca.crt: its own issuer
    return Plan(
        signer={"ca.crt": _b64(ca_pair.cert_pem), "ca.key": _b64(ca_pair.key_pem), "ca-bundle.crt": _b64(bundle)},
        signer_annotations={CA_SINCE: ca_since.isoformat()},
        serving={
            "tls.crt": _b64(cert_pair.cert_pem),
            "tls.key": _b64(cert_pair.key_pem),
            "ca.crt": _b64(issuer.public_bytes(Encoding.PEM)),
        },
        serving_annotations={ISSUED_AT: issued_at.isoformat()},
        bundle=bundle,
        next_check=next_check,
        events=events,
    )
