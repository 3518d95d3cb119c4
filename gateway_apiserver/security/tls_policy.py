"""--tls-min-version and --tls-cipher-suites: Go's names (as k8s.io/component-base accepts them) mapped to OpenSSL's.

As in Go, the cipher suites apply to TLS 1.2 and below; TLS 1.3 suites are not configurable, so the
TLS 1.3 names are accepted and change nothing. An unknown name is refused. A name Go knows but this
OpenSSL no longer provides (RC4, 3DES) is left out with a warning. When no TLS 1.2 suite is left, TLS 1.2
clients could not connect under Go either: the minimum version becomes TLS 1.3.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "VersionTLS10": ssl.TLSVersion.TLSv1,
    "VersionTLS11": ssl.TLSVersion.TLSv1_1,
    "VersionTLS12": ssl.TLSVersion.TLSv1_2,
    "VersionTLS13": ssl.TLSVersion.TLSv1_3,
}
DEFAULT_MIN_VERSION = ssl.TLSVersion.TLSv1_2  # Go's and the kube-apiserver's default

_TLS13_ONLY = None  # a TLS 1.3 suite: always enabled, as in Go
# Every name Go's crypto/tls lists (secure and insecure), plus the two legacy ChaCha20 names
# component-base keeps; the value is OpenSSL's name for the suite.
GO_CIPHER_SUITES: dict[str, str | None] = {
    "TLS_AES_128_GCM_SHA256": _TLS13_ONLY,
    "TLS_AES_256_GCM_SHA384": _TLS13_ONLY,
    "TLS_CHACHA20_POLY1305_SHA256": _TLS13_ONLY,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
}


class TLSPolicyError(ValueError):
    """A --tls-min-version or --tls-cipher-suites value Go would refuse; the message is one line."""


@dataclass(frozen=True, slots=True)
class TLSPolicy:
    """What the serving context allows: the lowest version, and the TLS 1.2 suites (None: the defaults)."""

    min_version: ssl.TLSVersion = DEFAULT_MIN_VERSION
    ciphers: tuple[str, ...] | None = None  # OpenSSL names
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def apply(self, ctx: ssl.SSLContext) -> None:
        """Set the minimum version and, if given, the TLS 1.2 cipher suites on a server context."""
        ctx.minimum_version = self.min_version
        if self.ciphers:
            ctx.set_ciphers(":".join(self.ciphers))


def _available(openssl_name: str) -> bool:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.set_ciphers(openssl_name)
    except ssl.SSLError:
        return False
    return True


def tls_policy(min_version: str, cipher_suites: tuple[str, ...]) -> TLSPolicy:
    """The policy for the flags' values (Go names); TLSPolicyError for a name Go does not know."""
    if not min_version:
        version = DEFAULT_MIN_VERSION
    elif min_version in TLS_VERSIONS:
        version = TLS_VERSIONS[min_version]
    else:
        raise TLSPolicyError(
            f'--tls-min-version: unknown tls version "{min_version}" (possible values: {", ".join(TLS_VERSIONS)})'
        )
    if not cipher_suites:
        return TLSPolicy(version)
    ciphers: list[str] = []
    warnings: list[str] = []
    for name in cipher_suites:
        if name not in GO_CIPHER_SUITES:
            raise TLSPolicyError(f"--tls-cipher-suites: cipher suite {name} not supported or doesn't exist")
        openssl_name = GO_CIPHER_SUITES[name]
        if openssl_name is None or openssl_name in ciphers:
            continue
        if _available(openssl_name):
            ciphers.append(openssl_name)
        else:
            warnings.append(f"--tls-cipher-suites: {name} is not available in this build's OpenSSL; it is left out")
    if not ciphers and version < ssl.TLSVersion.TLSv1_3:
        warnings.append("--tls-cipher-suites: no TLS 1.2 cipher suite is left, so only TLS 1.3 is served")
        version = ssl.TLSVersion.TLSv1_3
    return TLSPolicy(version, tuple(ciphers) or None, tuple(warnings))
