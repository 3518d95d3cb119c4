"""`ManagedClusterSource`: OCM ManagedClusters from the hosting cluster into a `ManagedClusterCache`.

A hub serves `managedclusters.cluster.open-cluster-management.io/v1` only once OCM's CRD is
installed, and the gateway reads it only if RBAC lets it. So the source asks discovery first:
while the API is absent (or discovery fails) the cache is marked unavailable and discovery is
asked again every `discovery_interval`, so a CRD installed later is noticed. When served, it
lists and watches (the `OCMClusterCache` gate, default) or lists every `refresh_interval`
without a watch (gate off). A 404 on the collection (the CRD deleted) goes back to discovery;
a 403 (RBAC lacks get/list/watch managedclusters) is warned about once and retried with backoff.
Either way the cache is unavailable meanwhile, which reads as "no ManagedClusters".
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration, CustomObjectsApi

from .informer import ListCall, ListWatch, Unavailable
from .managed_clusters import GROUP, RESOURCE, VERSION, ManagedClusterCache
from .watching import RETRYABLE, describe

log = logging.getLogger(__name__)

DISCOVERY_PATH = f"/apis/{GROUP}/{VERSION}"
QUALIFIED = f"{RESOURCE}.{GROUP}"


class ManagedClusterInformer(ListWatch):
    """List+watch of every ManagedCluster (cluster-scoped); gives up on 403 and 404."""

    what = QUALIFIED
    name = "managedcluster informer"

    def __init__(self, client: Configuration | Callable[[], Any], **timing: Any) -> None:
        super().__init__(client, give_up_on=frozenset({403, 404}), **timing)

    def list_call(self, api_client: Any) -> ListCall:
        """`list_cluster_custom_object` of managedclusters."""
        custom = CustomObjectsApi(api_client)

        async def call(**params: Any) -> Any:
            return await custom.list_cluster_custom_object(GROUP, VERSION, RESOURCE, **params)

        return call


class ManagedClusterSource:
    """Feeds a `ManagedClusterCache` whenever the hosting cluster serves ManagedClusters to us.

    `client`: a kubernetes-asyncio `Configuration` or a factory returning an `ApiClient`.
    `watch`: list+watch (True) or a LIST every `refresh_interval` seconds (False).
    `timing`: passed to the list+watch loop (watch_timeout, backoff_base, ...).
    """

    def __init__(
        self,
        client: Configuration | Callable[[], Any],
        *,
        watch: bool = True,
        discovery_interval: float = 30.0,
        refresh_interval: float = 5.0,
        request_timeout: float = 10.0,
        **timing: Any,
    ) -> None:
        self._client = client
        self.watch = watch
        self.discovery_interval = discovery_interval
        self.refresh_interval = refresh_interval
        self.request_timeout = request_timeout
        self.informer = ManagedClusterInformer(client, request_timeout=request_timeout, **timing)
        self.discoveries = 0  # discovery requests made
        self._forbidden_streak = 0  # consecutive 403s: drives the backoff, and the warning is logged on the first
        self._error_streak = 0  # consecutive failed discoveries
        self._absent_logged = False

    async def run(self, cache: ManagedClusterCache) -> None:
        """Feed `cache` until cancelled."""
        api_client = ApiClient(self._client) if isinstance(self._client, Configuration) else self._client()
        try:
            while True:
                await self._once(api_client, cache)
        finally:
            await api_client.close()

    async def _once(self, api_client: Any, cache: ManagedClusterCache) -> None:
        served = await self._served(api_client)
        if not served:
            cache.mark_unavailable()
            await asyncio.sleep(self._discovery_delay())
            return
        self._absent_logged = False
        lists_before = self.informer.lists
        try:
            if self.watch:
                await self.informer.run_with(api_client, cache)
            else:
                await self._poll(api_client, cache)
        except Unavailable as exc:
            cache.mark_unavailable()
            if self.informer.lists > lists_before:
                self._forbidden_streak = 0  # it worked in between: a new refusal is news again
            if exc.status == 403:
                await self._forbidden(exc)
                return
            self._forbidden_streak = 0
            log.info("%s is no longer served (%s); asking discovery every %gs", QUALIFIED, exc, self.discovery_interval)
            await asyncio.sleep(self.discovery_interval)

    async def _served(self, api_client: Any) -> bool:
        """Whether discovery lists managedclusters in cluster.open-cluster-management.io/v1; False on errors too."""
        self.discoveries += 1
        try:
            resp = await api_client.call_api(
                DISCOVERY_PATH,
                "GET",
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            )
            try:
                status, body = resp.status, await resp.read()
            finally:
                resp.release()
        except RETRYABLE as exc:
            self._error_streak += 1
            log.warning("cannot discover %s: %s; ManagedClusters are ignored until it answers", DISCOVERY_PATH, describe(exc))
            return False
        if status == 404:
            self._error_streak = 0
            if not self._absent_logged:
                log.info(
                    "the hosting cluster does not serve %s (no OCM ManagedCluster CRD); asking again every %gs",
                    QUALIFIED,
                    self.discovery_interval,
                )
                self._absent_logged = True
            return False
        if status != 200:
            self._error_streak += 1
            log.warning("cannot discover %s: HTTP %d; ManagedClusters are ignored until it answers", DISCOVERY_PATH, status)
            return False
        self._error_streak = 0
        try:
            resources = json.loads(body).get("resources") or []
            return any(isinstance(r, dict) and r.get("name") == RESOURCE for r in resources)
        except (ValueError, AttributeError):
            log.warning("undecodable discovery answer from %s; ManagedClusters are ignored until it answers", DISCOVERY_PATH)
            return False

    def _discovery_delay(self) -> float:
        # After a failed discovery, retry sooner than the interval (1 s, doubling) so a blip costs little.
        if self._error_streak:
            return min(self.discovery_interval, 2.0 ** (self._error_streak - 1))
        return self.discovery_interval

    async def _forbidden(self, exc: Unavailable) -> None:
        if self._forbidden_streak == 0:
            log.warning(
                "the hosting cluster refuses %s to this gateway (%s): OCM ManagedClusters are ignored until "
                "its RBAC grants get/list/watch on managedclusters (apply the OCM component, deploy/components/ocm)",
                QUALIFIED,
                exc,
            )
        else:
            log.debug("still refused %s: %s", QUALIFIED, exc)
        delay = min(self.discovery_interval * 10, self.discovery_interval * 2.0**self._forbidden_streak)
        self._forbidden_streak += 1
        await asyncio.sleep(delay)

    async def _poll(self, api_client: Any, cache: ManagedClusterCache) -> None:
        """The gate off: a fresh LIST every `refresh_interval`, no watch; a failed LIST keeps the last one."""
        while True:
            try:
                await self.informer.list_once(api_client, cache)
            except Unavailable:
                raise
            except RETRYABLE as exc:
                log.warning("cannot list %s: %s; keeping the last listing", QUALIFIED, describe(exc))
            await asyncio.sleep(self.refresh_interval)


def ready_check(cache: ManagedClusterCache, timeout: float) -> Callable[[], str | None]:
    """Ready once the first ManagedCluster answer is in (a listing, or "not served"), or after `timeout` seconds anyway."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def check() -> str | None:
        if cache.synced.is_set() or loop.time() >= deadline:
            return None
        return "the first list of ManagedClusters has not completed"

    return check
