"""What a client is told when a ClusterProxy cluster cannot be reached through the proxy-server.

Every failure names the hop that failed (the proxy-server, its agent for the cluster, the dial) in
words, never gRPC's or OpenSSL's internals. Codes follow upstream_errors.py: 503 when the member
cannot be reached.
"""

from __future__ import annotations

import grpc

# What gRPC's error details say when the TLS handshake with the proxy-server failed, and why.
_UNTRUSTED_SERVER = ("CERTIFICATE_VERIFY_FAILED", "unable to get local issuer certificate", "self-signed certificate")
_NAME_MISMATCH = ("Peer name", "is not in peer certificate", "hostname mismatch")
# A server that requires client certificates closes the TLS 1.3 connection right after the handshake
# when it refuses ours, or sends one of these alerts.
_CLIENT_CERT_REFUSED = ("Socket closed", "CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN")
_REFUSED = ("Connection refused",)
_DNS = ("DNS resolution failed", "Domain name not found", "name resolution")


class TunnelError(OSError):
    """A tunnel to a cluster could not be opened; `message` is what the client is told, `code` its HTTP status."""

    def __init__(self, message: str, code: int = 503) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def unreachable(cluster: str, cause: str) -> TunnelError:
    """The error for `cluster`, whose tunnel failed because of `cause`."""
    return TunnelError(f'cluster "{cluster}" unreachable: {cause}')


def channel_failure(server: str, error: grpc.RpcError) -> str:
    """Why a Proxy stream failed before its dial was answered, from gRPC's status."""
    code = error.code() if isinstance(error, grpc.aio.AioRpcError | grpc.Call) else None
    details = (error.details() if isinstance(error, grpc.aio.AioRpcError | grpc.Call) else None) or ""
    proxy = f"the Konnectivity proxy-server {server}"
    if code == grpc.StatusCode.UNAVAILABLE:
        if any(marker in details for marker in _UNTRUSTED_SERVER):
            return f"{proxy} presented a certificate that --proxy-ca-cert does not trust"
        if any(marker in details for marker in _NAME_MISMATCH):
            return f"{proxy} presented a certificate that is not valid for its host name (--proxy-host)"
        if any(marker in details for marker in _CLIENT_CERT_REFUSED):
            return f"{proxy} refused the gateway's client certificate (--proxy-cert) during the TLS handshake"
        if any(marker in details for marker in _REFUSED):
            return f"{proxy} cannot be reached: connection refused"
        if any(marker in details for marker in _DNS):
            return f"{proxy} cannot be reached: its host name does not resolve"
        return f"{proxy} cannot be reached"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return f"{proxy} does not serve ProxyService/Proxy (is --proxy-port its gRPC port for clients?)"
    name = code.name if code is not None else "UNKNOWN"
    return f"{proxy} ended the tunnel before answering the dial (gRPC status {name})"


def dial_refused(server: str, error: str) -> str:
    """Why a dial was answered with an error: no agent for the cluster, or the agent could not connect."""
    if error == "No agent available":
        return (
            f"the Konnectivity proxy-server {server} has no agent for it (No agent available): "
            "is the cluster-proxy agent running and connected in that cluster?"
        )
    return f"dialing it through the Konnectivity proxy-server {server} failed: {error}"
