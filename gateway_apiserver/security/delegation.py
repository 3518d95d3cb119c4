"""Wiring of the security pieces per mode: delegated to the hosting cluster, or standalone.

Hosting-cluster mode: the trust ConfigMap (or flags) configures both the authenticator and
the TLS layer's client CAs; tokens go to TokenReview and requests to SubjectAccessReview.
Standalone mode: one local user, everything allowed, loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from kubernetes_asyncio.client import Configuration

from ..config import Config, ConfigError
from ..observability.cache_counts import CacheCounts
from .access_review import HostingAccessReview
from .authentication import Authenticator, StandaloneAuthenticator
from .authorization import AlwaysAllow, Authorizer, PrivilegedGroups, SubjectAccessReviewer
from .requestheader import AuthenticationConfigWatcher, RequestHeaderConfig, RequestHeaderConfigError, RequestHeaderFlags
from .tls import TLSServing

Check = Callable[[], str | None]  # a readiness check, as /readyz runs it: None when ready, else why not

log = logging.getLogger(__name__)


def flags_from(config: Config) -> RequestHeaderFlags:
    """The trust flags of the command line (None: take the ConfigMap's value)."""
    return RequestHeaderFlags(
        requestheader_client_ca_file=config.requestheader_client_ca_file,
        requestheader_allowed_names=config.requestheader_allowed_names,
        requestheader_username_headers=config.requestheader_username_headers,
        requestheader_group_headers=config.requestheader_group_headers,
        requestheader_extra_headers_prefix=config.requestheader_extra_headers_prefix,
        client_ca_file=config.client_ca_file,
    )


class Security:
    """Authenticator, authorizer, their background work, and a readiness check."""

    def __init__(self, authenticator: Authenticator | StandaloneAuthenticator, authorizer: Authorizer) -> None:
        self.authenticator = authenticator
        self.authorizer = authorizer

    async def start(self) -> None:
        """Start background work (nothing for standalone)."""

    async def stop(self) -> None:
        """Stop background work and close clients."""
        await self.authenticator.close()

    def ready_checks(self) -> dict[str, Check]:
        """Extra /readyz checks."""
        return {}

    def cache_counts(self) -> dict[str, CacheCounts]:
        """The hit and miss counts of each authentication or authorization cache, by name (for /metrics)."""
        counts: dict[str, CacheCounts] = {}
        if isinstance(self.authenticator, Authenticator):
            counts["token_review"] = self.authenticator.cache_counts
        authorizer = self.authorizer.inner if isinstance(self.authorizer, PrivilegedGroups) else self.authorizer
        if isinstance(authorizer, SubjectAccessReviewer):
            counts["subject_access_review"] = authorizer.cache_counts
        return counts


def standalone_security() -> Security:
    """No delegated authentication or authorization: the loopback user is trusted."""
    return Security(StandaloneAuthenticator(), AlwaysAllow())


class DelegatedSecurity(Security):
    """Hosting-cluster mode: TokenReview, SubjectAccessReview and the trust ConfigMap."""

    def __init__(
        self,
        config: Config,
        hosting: Configuration,
        tls: TLSServing,
        *,
        authentication: Configuration | None = None,
        authorization: Configuration | None = None,
    ) -> None:
        """`authentication` (TokenReview, the trust ConfigMap) and `authorization` (SubjectAccessReview) default
        to `hosting`: --authentication-kubeconfig and --authorization-kubeconfig may name other clusters."""
        authentication = authentication or hosting
        self._flags = flags_from(config)
        self._tls = tls
        self._access_review = HostingAccessReview(authorization or hosting)
        super().__init__(
            Authenticator(client=authentication, anonymous_auth=config.anonymous_auth, token_cache_ttl=config.token_cache_ttl),
            PrivilegedGroups(
                SubjectAccessReviewer(
                    self._access_review, allow_ttl=config.authorized_cache_ttl, deny_ttl=config.unauthorized_cache_ttl
                )
            ),
        )
        self._watcher: AuthenticationConfigWatcher | None = None
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        if config.authentication_skip_lookup:
            try:
                self.apply(self._flags.apply(RequestHeaderConfig()))
            except RequestHeaderConfigError as exc:
                raise ConfigError(str(exc)) from None
        else:
            self._watcher = AuthenticationConfigWatcher(authentication, self.apply, flags=self._flags)

    def apply(self, trust: RequestHeaderConfig) -> None:
        """A new trust configuration: the authenticator and the TLS client CAs change together."""
        self.authenticator.update(trust)
        self._tls.set_client_cas([pem for pem in (trust.ca_pem, trust.client_ca_pem) if pem])
        self._loaded.set()
        log.info("authentication trust: %s", trust.describe())

    async def start(self) -> None:
        """Start watching the trust ConfigMap."""
        if self._watcher is not None:
            self._task = asyncio.create_task(self._watcher.run(), name="authentication-config-watcher")

    async def stop(self) -> None:
        """Stop the watcher and close the hosting clients."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._access_review.close()
        await super().stop()

    def ready_checks(self) -> dict[str, Check]:
        """Not ready until the trust configuration has been loaded once."""

        def loaded() -> str | None:
            return None if self._loaded.is_set() else "the extension-apiserver-authentication ConfigMap has not been read"

        return {"authentication-config-loaded": loaded}
