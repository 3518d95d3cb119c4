"""`ListWatch`: the list+watch loop for one collection of the hosting cluster; `SecretInformer` runs it on the cluster Secrets.

kubernetes-asyncio's `Watch` gives up on 410 and builds model objects, so this owns the loop
(after kopf's `watching.py` and client-go's reflector): list in pages, watch from the list's
resourceVersion with bookmarks and a server timeout, re-watch from the last seen RV when the
server ends the stream, re-list only on 410, back off with full jitter on other errors, and
drop a stream that has been silent too long. Responses are read raw (`_preload_content=False`)
and parsed into plain dicts: 10,000 Secrets sync in well under a second that way.
Secret data is never logged, and neither are error bodies (they may echo objects).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from .source import WatchEventType
from .watching import RETRYABLE, Expired, Inactive, StreamError, describe, failure_from_response

log = logging.getLogger(__name__)

CREDENTIAL_TYPE_LABEL = "cluster.core.oam.dev/cluster-credential-type"


class HostingConfigError(Exception):
    """The hosting cluster's client configuration could not be loaded (one-line message)."""


async def load_hosting_config(kubeconfig: str | None) -> Configuration:
    """The kubernetes-asyncio configuration for the hosting cluster: from `kubeconfig` if given
    (its current context), else the in-cluster service account. Raises `HostingConfigError`."""
    from kubernetes_asyncio.config import load_incluster_config, load_kube_config

    config = Configuration()
    try:
        if kubeconfig:
            await load_kube_config(config_file=kubeconfig, client_configuration=config, persist_config=False)
        else:
            load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
    except Exception as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        if kubeconfig:
            raise HostingConfigError(f"cannot load kubeconfig {kubeconfig}: {detail}") from exc
        raise HostingConfigError(
            f"not running in a Kubernetes pod ({detail}); pass --kubeconfig to reach the hosting cluster"
        ) from exc
    return config


ListCall = Callable[..., Awaitable[Any]]  # a kubernetes-asyncio list method bound to its collection


class Sink(Protocol):
    """Where a list+watch delivers: a full listing, single events, bookmarks (a `SecretSink` is one)."""

    def replace(self, objects: Sequence[dict[str, Any]], resource_version: str, /) -> None: ...

    def apply(self, event_type: WatchEventType, obj: dict[str, Any], /) -> None: ...

    def bookmark(self, resource_version: str, /) -> None: ...


class Unavailable(Exception):
    """The collection answered a status the loop was told to give up on (e.g. 404: the API is gone; 403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ListWatch:
    """List+watch of one collection, feeding a `Sink`; subclasses say which collection (`list_call`).

    `client` is a kubernetes-asyncio `Configuration` or a zero-argument factory returning an
    `ApiClient`; either way `run()` creates the client and closes it when it ends (`run_with`
    uses a caller's client). Timing: the server-side watch timeout is `watch_timeout`
    randomised up to +20 %; a stream silent for `inactivity_timeout` (default: the longest
    server timeout + 60 s) is dropped. A list or watch answered with a status in `give_up_on`
    ends the loop with `Unavailable`; every other failure is retried.
    """

    what = "objects"  # how logs name the collection
    name = "informer"  # how logs name the loop

    def __init__(
        self,
        client: Configuration | Callable[[], Any],
        *,
        label_selector: str = "",
        page_size: int = 500,
        watch_timeout: float = 300.0,
        inactivity_timeout: float | None = None,
        request_timeout: float = 60.0,
        backoff_base: float = 0.2,
        backoff_cap: float = 30.0,
        give_up_on: frozenset[int] = frozenset(),
    ) -> None:
        self._client = client
        self.label_selector = label_selector
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.inactivity_timeout = inactivity_timeout if inactivity_timeout is not None else watch_timeout * 1.2 + 60
        self.request_timeout = request_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.give_up_on = give_up_on
        self.resource_version: str | None = None  # last RV seen; None: a (re)list is needed
        self.lists = 0  # completed listings delivered through sink.replace
        self.watches = 0  # watch requests started
        self._failures = 0  # consecutive unhealthy attempts, drives the backoff
        self._expired_streak = 0  # 410s since the last healthy stream

    def list_call(self, api_client: Any) -> ListCall:
        """The list (and watch) method of the collection, bound to it."""
        raise NotImplementedError

    async def run(self, sink: Sink) -> None:
        """Feed `sink` until cancelled (or `Unavailable`)."""
        api_client = ApiClient(self._client) if isinstance(self._client, Configuration) else self._client()
        try:
            await self.run_with(api_client, sink)
        finally:
            await api_client.close()

    async def run_with(self, api_client: Any, sink: Sink) -> None:
        """Feed `sink` through `api_client` (left open) until cancelled (or `Unavailable`)."""
        await self._loop(self.list_call(api_client), sink)

    async def list_once(self, api_client: Any, sink: Sink) -> None:
        """One complete listing into `sink.replace`, without watching; failures raise."""
        await self._list(self.list_call(api_client), sink)

    async def _loop(self, collection: ListCall, sink: Sink) -> None:
        self.resource_version = None
        while True:
            try:
                if self.resource_version is None:
                    await self._list(collection, sink)
                await self._watch(collection, sink)
            except Expired as exc:
                log.info("%s: %s; relisting %s", self.name, exc, self.what)
                self.resource_version = None
                if self._expired_streak:  # 410 again before any healthy stream: do not hot-loop
                    await self._sleep_backoff("relist")
                self._expired_streak += 1
            except TimeoutError as exc:
                if not isinstance(exc, Inactive):
                    await self._retry(exc)
                    continue
                log.warning("%s: no watch events for %gs on %s; reconnecting", self.name, self.inactivity_timeout, self.what)
            except Unavailable:
                raise
            except RETRYABLE as exc:
                await self._retry(exc)
            except Exception:
                # A bug (e.g. in the sink): the cache may be inconsistent, so start over with a list.
                log.exception("%s: unexpected error; relisting %s", self.name, self.what)
                self.resource_version = None
                await self._sleep_backoff("relist")

    async def _retry(self, exc: BaseException) -> None:
        log.warning("%s: %s: %s", self.name, self.what, describe(exc))
        await self._sleep_backoff("retry")

    async def _sleep_backoff(self, what: str) -> None:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^failures)].
        delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**self._failures))
        self._failures += 1
        log.debug("%s: %s of %s in %.2fs", self.name, what, self.what, delay)
        await asyncio.sleep(delay)

    # --- list ---------------------------------------------------------------------------------

    async def _list(self, collection: ListCall, sink: Sink) -> None:
        """A consistent paginated list, then `sink.replace`. An expired continue token restarts it."""
        for _ in range(3):
            items: list[dict[str, Any]] = []
            token: str | None = None
            rv = ""
            try:
                while True:
                    page = await self._list_page(collection, token)
                    items.extend(page.get("items") or [])
                    meta = page.get("metadata") or {}
                    rv = rv or str(meta.get("resourceVersion") or "")
                    token = meta.get("continue") or None
                    if token is None:
                        break
            except Expired:
                if token is None:
                    raise
                log.info("%s: list continue token expired; restarting the list of %s", self.name, self.what)
                continue
            if not rv:
                raise StreamError("list response without metadata.resourceVersion")
            sink.replace(items, rv)
            self.resource_version = rv
            self.lists += 1
            log.info("%s: listed %d %s at resourceVersion %s", self.name, len(items), self.what, rv)
            return
        raise StreamError("list continue tokens kept expiring")

    async def _list_page(self, collection: ListCall, token: str | None) -> dict[str, Any]:
        try:
            resp = await collection(
                label_selector=self.label_selector or None,
                limit=self.page_size,
                _continue=token,
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            )
        except ApiException as exc:
            if exc.status == 410:
                raise Expired(exc.reason or "Gone") from None
            raise
        try:
            body: bytes = await resp.read()
        finally:
            resp.release()
        if resp.status != 200:
            raise self._failure(resp.status, body)
        try:
            page = json.loads(body)
        except ValueError:
            raise StreamError("undecodable list response") from None
        if not isinstance(page, dict):
            raise StreamError("list response is not an object")
        return page

    def _failure(self, status: int, body: bytes) -> Exception:
        exc = failure_from_response(status, body)
        return Unavailable(status, str(exc)) if status in self.give_up_on else exc

    # --- watch --------------------------------------------------------------------------------

    async def _watch(self, collection: ListCall, sink: Sink) -> None:
        """One watch request from `resource_version`, until the server ends it (returns) or it fails."""
        loop = asyncio.get_running_loop()
        server_timeout = max(1, round(self.watch_timeout * random.uniform(1.0, 1.2)))
        self.watches += 1
        started, healthy = loop.time(), False
        try:
            # One timer covers the request and every line: rescheduled whenever anything arrives.
            async with asyncio.timeout(self.inactivity_timeout) as timer:
                resp = await collection(
                    label_selector=self.label_selector or None,
                    watch=True,
                    resource_version=self.resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=server_timeout,
                    _preload_content=False,
                    _request_timeout=aiohttp.ClientTimeout(
                        total=None, connect=self.request_timeout, sock_connect=self.request_timeout
                    ),
                )
                try:
                    if resp.status != 200:
                        raise self._failure(resp.status, await resp.read())
                    while line := await resp.content.readline():
                        timer.reschedule(loop.time() + self.inactivity_timeout)
                        if line.strip() and self._handle_line(line, sink) and not healthy:
                            healthy = True
                            self._failures = self._expired_streak = 0  # a healthy stream resets the backoff
                finally:
                    resp.close()  # never hand a half-read stream back to the pool
        except TimeoutError as exc:
            if timer.expired():
                raise Inactive from exc
            raise
        except ApiException as exc:
            if exc.status == 410:
                raise Expired(exc.reason or "Gone") from None
            raise
        if not healthy and loop.time() - started < 1.0:
            raise StreamError("watch closed immediately")
        self._failures = self._expired_streak = 0
        log.debug("%s: watch of %s ended at resourceVersion %s; re-watching", self.name, self.what, self.resource_version)

    def _handle_line(self, line: bytes, sink: Sink) -> bool:
        """Deliver one watch event; True if it was a regular event or a bookmark."""
        try:
            event = json.loads(line)
            event_type, obj = event["type"], event["object"]
        except (ValueError, KeyError, TypeError):
            raise StreamError("undecodable watch event") from None
        if event_type == "ERROR":
            status = obj if isinstance(obj, dict) else {}
            if status.get("code") == 410:
                raise Expired(str(status.get("message") or "Expired"))
            raise StreamError(f"watch error {status.get('code')} {status.get('reason', '')}: {status.get('message', '')}")
        rv = str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
        if event_type == "BOOKMARK":
            if rv:
                self.resource_version = rv
                sink.bookmark(rv)
            return True
        if event_type not in ("ADDED", "MODIFIED", "DELETED"):
            raise StreamError(f"unknown watch event type {str(event_type)[:20]!r}")
        sink.apply(event_type, obj)
        if rv:
            self.resource_version = rv
        return True


class SecretInformer(ListWatch):
    """List+watch of the labelled Secrets of one namespace; a `SecretSource`."""

    def __init__(
        self,
        client: Configuration | Callable[[], Any],
        namespace: str,
        *,
        label_selector: str = CREDENTIAL_TYPE_LABEL,
        **timing: Any,
    ) -> None:
        super().__init__(client, label_selector=label_selector, **timing)
        self.namespace = namespace
        self.name = "secret informer"
        self.what = f"secrets in {namespace}"

    def list_call(self, api_client: Any) -> ListCall:
        """`list_namespaced_secret` of the Secret namespace."""
        core = CoreV1Api(api_client)

        async def call(**params: Any) -> Any:
            return await core.list_namespaced_secret(self.namespace, **params)

        return call
