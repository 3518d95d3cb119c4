"""Client Configurations that reach a member cluster through the hub's proxy subresource, with the hub's credentials.

A member Configuration is a copy of the hub's whose host is the cluster's proxy URL. It never carries the
hub's `refresh_api_key_hook`: the hook `kubernetes.config.load_kube_config` installs for token users (static,
exec and OIDC) resets `host` to the hub's server before every request, so a member request became the hub's
own `/api/v1/...` (answered by the hub: its own objects, a 404 or a 403; never the member). Instead the
member's hook runs the hub's own hook against the hub's Configuration and then takes the hub's current
token, so a refreshed hub credential (the official package's hook, or kubernetes_asyncio's `refresh_token`
loop) is used by every member Configuration made from it.
"""

from __future__ import annotations

import copy
import inspect
from typing import TYPE_CHECKING, Any, TypeVar

from .paths import member_proxy_url

if TYPE_CHECKING:
    import kubernetes.client
    import kubernetes_asyncio.client

AnyConfiguration = TypeVar("AnyConfiguration", "kubernetes.client.Configuration", "kubernetes_asyncio.client.Configuration")


def member_configuration(hub: kubernetes.client.Configuration, cluster: str) -> kubernetes.client.Configuration:
    """A `kubernetes` (official package) Configuration for member `cluster`, through `hub`'s proxy subresource.

    `hub` is a configured hub Configuration (e.g. filled by `kubernetes.config.load_kube_config`); it is not
    changed, and must stay alive: the member follows its credential. Raises InvalidClusterName."""
    member = _member_copy(hub, cluster)

    def follow_hub_credential(configuration: Any) -> None:
        hub_hook = hub.refresh_api_key_hook  # read per call: the official hook re-installs itself on each run
        if hub_hook is not None:
            hub_hook(hub)
        _take_credential(hub, configuration)

    member.refresh_api_key_hook = follow_hub_credential  # type: ignore[assignment]  # the package declares the field as None
    return member


def member_configuration_asyncio(
    hub: kubernetes_asyncio.client.Configuration, cluster: str
) -> kubernetes_asyncio.client.Configuration:
    """A `kubernetes_asyncio` Configuration for member `cluster`, through `hub`'s proxy subresource.

    As `member_configuration`; a hub hook that returns an awaitable is awaited (kubernetes_asyncio allows
    both). To refresh an exec credential, keep `kubernetes_asyncio.config.refresh_token(loader, hub)` running."""
    member = _member_copy(hub, cluster)

    async def follow_hub_credential(configuration: Any) -> None:
        hub_hook: Any = hub.refresh_api_key_hook  # typed there as a coroutine; it may be a plain function
        if hub_hook is not None:
            result = hub_hook(hub)
            if inspect.isawaitable(result):
                await result
        _take_credential(hub, configuration)

    member.refresh_api_key_hook = follow_hub_credential
    return member


def _member_copy(hub: AnyConfiguration, cluster: str) -> AnyConfiguration:
    if not hub.host:
        raise ValueError("the hub Configuration has no host: load the hub's kubeconfig into it first")
    url = member_proxy_url(hub.host, cluster)  # checks the name before anything is copied
    member = copy.deepcopy(hub)
    member.host = url
    return member


def _take_credential(hub: Any, member: Any) -> None:
    # Whole new dicts, assigned at once: a request on another thread never sees a half-copied credential.
    member.api_key = dict(hub.api_key)
    member.api_key_prefix = dict(hub.api_key_prefix)
