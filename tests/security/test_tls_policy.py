"""--tls-min-version and --tls-cipher-suites: Go's names, served with OpenSSL's suites, over real TLS connections."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import pytest

from gateway_apiserver.security.tls_policy import GO_CIPHER_SUITES, TLSPolicy, TLSPolicyError, tls_policy
from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway


def client(gw: RunningGateway, *, maximum: ssl.TLSVersion | None = None, ciphers: str | None = None) -> ssl.SSLContext:
    ctx = gw.ssl_context()
    if maximum is not None:
        ctx.maximum_version = maximum
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


async def negotiated(gw: RunningGateway, ctx: ssl.SSLContext) -> tuple[str | None, str]:
    """(TLS version, cipher) of a handshake with the gateway; raises ssl.SSLError if it is refused."""
    _, writer = await asyncio.open_connection("127.0.0.1", gw.server.port, ssl=ctx, server_hostname="127.0.0.1")
    try:
        obj = writer.get_extra_info("ssl_object")
        return obj.version(), obj.cipher()[0]
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


async def test_tls_min_version_13_refuses_a_tls12_client(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, ManualSecretSource(), tls_min_version="VersionTLS13") as gw:
        assert (await negotiated(gw, client(gw)))[0] == "TLSv1.3"
        with pytest.raises((ssl.SSLError, ConnectionError)):  # the handshake is refused
            await negotiated(gw, client(gw, maximum=ssl.TLSVersion.TLSv1_2))


async def test_by_default_tls12_is_served(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, ManualSecretSource()) as gw:
        assert (await negotiated(gw, client(gw, maximum=ssl.TLSVersion.TLSv1_2)))[0] == "TLSv1.2"
        # Control for the test below: without --tls-cipher-suites this suite is served.
        aes256 = client(gw, maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")
        assert await negotiated(gw, aes256) == ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")


async def test_tls_cipher_suites_restrict_tls12_to_the_named_suites(tmp_path: Path) -> None:
    # The serving certificate has an EC key: ECDSA suites apply.
    only = ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384")  # a TLS 1.3 name changes nothing
    async with running_gateway(tmp_path, ManualSecretSource(), tls_cipher_suites=only) as gw:
        tls12 = ssl.TLSVersion.TLSv1_2
        assert await negotiated(gw, client(gw, maximum=tls12)) == ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")
        with pytest.raises((ssl.SSLError, ConnectionError)):  # no suite in common
            await negotiated(gw, client(gw, maximum=tls12, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384"))
        # TLS 1.3 suites are not configurable, as in Go: all of them stay on.
        assert (await negotiated(gw, client(gw)))[0] == "TLSv1.3"


def test_go_names_map_to_openssl_names() -> None:
    policy = tls_policy("VersionTLS12", ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"))
    assert policy == TLSPolicy(ssl.TLSVersion.TLSv1_2, ("ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"))
    assert policy.warnings == ()
    assert len(GO_CIPHER_SUITES) == 27  # crypto/tls's secure and insecure suites, and component-base's two legacy names


def test_a_go_suite_this_openssl_lacks_is_left_out_with_a_warning() -> None:
    policy = tls_policy("", ("TLS_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"))
    assert policy.ciphers == ("ECDHE-ECDSA-AES128-GCM-SHA256",)
    assert policy.warnings == (
        "--tls-cipher-suites: TLS_RSA_WITH_RC4_128_SHA is not available in this build's OpenSSL; it is left out",
    )


def test_with_no_tls12_suite_left_only_tls13_is_served() -> None:
    """Go would fail every TLS 1.2 handshake; the same clients are refused, at the version instead."""
    policy = tls_policy("VersionTLS12", ("TLS_AES_128_GCM_SHA256",))
    assert (policy.min_version, policy.ciphers) == (ssl.TLSVersion.TLSv1_3, None)
    assert policy.warnings == ("--tls-cipher-suites: no TLS 1.2 cipher suite is left, so only TLS 1.3 is served",)


def test_unknown_names_are_refused() -> None:
    with pytest.raises(TLSPolicyError, match=r"^--tls-cipher-suites: cipher suite ECDHE-RSA-AES128-SHA not supported"):
        tls_policy("", ("ECDHE-RSA-AES128-SHA",))  # OpenSSL's name, not Go's
    with pytest.raises(TLSPolicyError, match=r'^--tls-min-version: unknown tls version "1.3"'):
        tls_policy("1.3", ())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # ssl.TLSVersion.TLSv1_1 itself
async def test_tls_min_version_10_is_accepted_but_openssl_still_refuses_tls11_clients(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, ManualSecretSource(), tls_min_version="VersionTLS10") as gw:
        tls11 = client(gw, ciphers="DEFAULT:@SECLEVEL=0")  # a client willing to speak TLS 1.1 (see test_tls.py's control)
        tls11.minimum_version = tls11.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await negotiated(gw, tls11)
        assert (await negotiated(gw, client(gw, maximum=ssl.TLSVersion.TLSv1_2)))[0] == "TLSv1.2"
