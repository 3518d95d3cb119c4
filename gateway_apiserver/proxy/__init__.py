"""The proxy subresource: a streaming, pooled reverse proxy from the gateway to member clusters.

Wiring: `add_proxy_routes(app)` (called by `add_resource_routes`) registers the routes and
`app[TRANSPORT_POOL]`, closed on cleanup. Set `app[PROXY_SETTINGS]` before startup to tune
timeouts, and `app[IMPERSONATION]` to add impersonation headers.
"""

from .handler import (
    IMPERSONATION,
    PROXY_SETTINGS,
    TRANSPORT_POOL,
    ImpersonationHook,
    add_proxy_routes,
    no_impersonation,
)
from .transport import ProxySettings, TransportPool

__all__ = [
    "IMPERSONATION",
    "PROXY_SETTINGS",
    "TRANSPORT_POOL",
    "ImpersonationHook",
    "ProxySettings",
    "TransportPool",
    "add_proxy_routes",
    "no_impersonation",
]
