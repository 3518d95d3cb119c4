"""The rotation plan: certificates replaced at two thirds of their lifetime, a CA change with no moment of distrust."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from gateway_apiserver.addon.certificates import Lifetimes, Plan, plan, signed_by, split_pems
from gateway_apiserver.security.pki import covers

HOSTS = ["cluster-gateway.ns.svc", "cluster-gateway.ns", "cluster-gateway"]
T0 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
LIFETIMES = Lifetimes()  # 365-day CA, 180-day serving certificates, 30 s propagation, 10 min overlap


def step(previous: Plan | None, now: dt.datetime, **kwargs: bool | None) -> Plan:
    if previous is None:
        return plan(None, {}, None, {}, HOSTS, now, LIFETIMES)
    return plan(
        previous.signer,
        previous.signer_annotations,
        previous.serving,
        previous.serving_annotations,
        HOSTS,
        now,
        LIFETIMES,
        **kwargs,
    )


def cert(pem_b64: str) -> x509.Certificate:
    import base64

    return x509.load_pem_x509_certificate(base64.b64decode(pem_b64))


def bundle(p: Plan) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(pem) for pem in split_pems(p.bundle)]


def test_from_nothing_a_ca_and_a_180_day_serving_certificate_for_the_service() -> None:
    first = step(None, T0)
    ca, serving = cert(first.signer["ca.crt"]), cert(first.serving["tls.crt"])
    assert signed_by(serving, ca)
    assert serving.not_valid_after_utc == T0 + 180 * DAY
    assert ca.not_valid_after_utc == T0 + 365 * DAY
    assert covers(serving, HOSTS, 0)
    assert bundle(first) == [ca]
    assert first.next_check == T0 + 120 * DAY  # the serving certificate's two-thirds mark comes first


def test_nothing_changes_before_two_thirds_of_the_lifetime() -> None:
    first = step(None, T0)
    later = step(first, T0 + 119 * DAY)
    assert (later.signer, later.serving, later.bundle, later.events) == (first.signer, first.serving, first.bundle, [])


def test_the_serving_certificate_is_reissued_by_the_same_ca_at_two_thirds() -> None:
    first = step(None, T0)
    renewed = step(first, T0 + 121 * DAY)
    assert renewed.events == ["issued a new serving certificate"]
    assert renewed.signer == first.signer and renewed.bundle == first.bundle
    assert cert(renewed.serving["tls.crt"]).not_valid_after_utc == T0 + 301 * DAY


def test_a_ca_change_keeps_both_cas_trusted_until_the_gateway_serves_the_new_certificate() -> None:
    p = step(None, T0)
    p = step(p, T0 + 121 * DAY)  # a serving certificate of the old CA, valid until day 301
    old_ca = cert(p.signer["ca.crt"])
    at = T0 + 244 * DAY  # past two thirds of the CA's 365 days
    p = step(p, at)
    new_ca = cert(p.signer["ca.crt"])
    assert p.events == ["minted a new signer CA (the previous one stays trusted)"]
    assert bundle(p) == [new_ca, old_ca]
    assert signed_by(cert(p.serving["tls.crt"]), old_ca)  # not yet: the new bundle must reach the aggregator first
    assert p.next_check == at + LIFETIMES.propagation

    p = step(p, at + LIFETIMES.propagation)
    assert p.events == ["issued a new serving certificate"]
    assert signed_by(cert(p.serving["tls.crt"]), new_ca)
    assert bundle(p) == [new_ca, old_ca]  # the pods may still serve the old certificate

    p = step(p, at + LIFETIMES.propagation + LIFETIMES.overlap, gateway_serves_current=False)
    assert bundle(p) == [new_ca, old_ca]  # the gateway still serves the old one: keep trusting it
    p = step(p, at + LIFETIMES.propagation + LIFETIMES.overlap, gateway_serves_current=True)
    assert p.events == ["dropped the previous signer CA from the trust bundle"]
    assert bundle(p) == [new_ca]


def test_an_expired_serving_certificate_is_replaced_at_once() -> None:
    p = step(None, T0)
    p = step(p, T0 + 250 * DAY)  # the serving certificate expired on day 180; the CA is due too
    assert p.events == ["minted a new signer CA (the previous one stays trusted)", "issued a new serving certificate"]
    assert signed_by(cert(p.serving["tls.crt"]), cert(p.signer["ca.crt"]))
