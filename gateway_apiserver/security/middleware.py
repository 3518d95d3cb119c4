"""The one gate every request passes: authenticate, then authorize (unless always allowed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography import x509
from multidict import MultiMapping

from ..observability.access_log import ATTRIBUTES_KEY
from .authorization import Authorizer, PathAllowList, RequestAttributes, always_allowed, forbidden, request_attributes
from .identity import USER_KEY, UserInfo


class RequestAuthenticator(Protocol):
    """What the middleware needs from authentication."""

    async def authenticate(self, *, headers: Mapping[str, str], peer_certificate: x509.Certificate | None) -> UserInfo:
        """The caller; raises a 401 StatusError for bad credentials."""

    def strip_identity_headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """`headers` without identity headers (X-Remote-*, Impersonate-*, the configured names)."""


PeerCertificate = Callable[[web.BaseRequest], x509.Certificate | None]
NO_PATHS = PathAllowList(())


def proxied_path(path: str) -> str | None:
    """The inner path of a `clustergateways/{name}/proxy/...` request, or None for other requests."""
    parts = path.split("/", 7)  # "", "apis", group, version, "clustergateways", name, "proxy", rest
    if len(parts) >= 7 and parts[1] == "apis" and parts[4] == "clustergateways" and parts[6] == "proxy":
        return "/" + (parts[7] if len(parts) > 7 else "")
    return None


def security_middleware(
    authenticator: RequestAuthenticator,
    authorizer: Authorizer,
    peer_certificate: PeerCertificate,
    *,
    authorize_proxy_subpath: bool = False,
    always_allow_paths: PathAllowList = NO_PATHS,
) -> Middleware:
    """Build the middleware. It must sit inside the Status-error middleware.

    With `authorize_proxy_subpath`, a proxied request must also be allowed as if it were made
    to the hosting cluster itself (cluster-gateway's --authorize-proxy-subpath). A non-resource
    request to one of `always_allow_paths` (--authorization-always-allow-paths) is authenticated
    but not authorized, as in the kube-apiserver.
    """

    @web.middleware
    async def secure(request: web.Request, handler: Handler) -> web.StreamResponse:
        user = await authenticator.authenticate(headers=request.headers, peer_certificate=peer_certificate(request))
        attrs = request_attributes(request.method, request.path, request.query, user)
        # Stored before any clone: the access logger sees the original request object.
        request[USER_KEY] = user
        request[ATTRIBUTES_KEY] = attrs
        stripped = authenticator.strip_identity_headers(request.headers)
        if stripped is not request.headers:
            # As the kube-apiserver: identity headers never reach a handler (nor a member cluster).
            request = request.clone(headers=stripped)
            request[USER_KEY] = user
            request[ATTRIBUTES_KEY] = attrs
        if not always_allowed(request.path) and not always_allow_paths.allows(attrs):
            await authorize(authorizer, attrs, request.method, request.query, authorize_proxy_subpath=authorize_proxy_subpath)
        return await handler(request)

    return secure


async def authorize(
    authorizer: Authorizer, attrs: RequestAttributes, method: str, query: MultiMapping[str], *, authorize_proxy_subpath: bool
) -> None:
    """Raise a 403 StatusError unless `attrs` are allowed (and, with `authorize_proxy_subpath`, a proxied
    request's inner path as if it were made to the hosting cluster itself)."""
    decision = await authorizer.authorize(attrs)
    if not decision.allowed:
        raise forbidden(attrs, decision.reason)
    inner = proxied_path(attrs.path) if authorize_proxy_subpath and attrs.subresource == "proxy" else None
    if inner is not None:
        inner_attrs = request_attributes(method, inner, query, attrs.user)
        inner_decision = await authorizer.authorize(inner_attrs)
        if not inner_decision.allowed:
            raise forbidden(inner_attrs, inner_decision.reason)
