"""Which serving certificate the gateway presents: the manager's check before it drops an old CA."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from cryptography import x509

from .certificates import signed_by
from .install import ServingProbe
from .spec import ADDON_NAME, GatewaySpec

Address = Callable[[GatewaySpec], tuple[str, int]]


def service_address(spec: GatewaySpec) -> tuple[str, int]:
    """The gateway's Service, as the aggregator dials it."""
    return f"{ADDON_NAME}.{spec.install_namespace}.svc", 443


def serving_probe(address: Address = service_address, timeout: float = 5.0) -> ServingProbe:
    """A probe: does the gateway at `address(spec)` present a certificate signed by the CA (PEM) it is given?
    None when it cannot be reached (the rotation then relies on its overlap period alone)."""

    async def probe(spec: GatewaySpec, ca_pem: bytes) -> bool | None:
        host, port = address(spec)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # only looking at the certificate presented; nothing is sent
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
        except (OSError, TimeoutError):
            return None
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        finally:
            writer.close()
        if not der:
            return None
        return signed_by(x509.load_der_x509_certificate(der), x509.load_pem_x509_certificate(ca_pem))

    return probe
