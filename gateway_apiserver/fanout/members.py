"""One member of a fan-out: authorized, opened and read exactly as its own proxied request would be.

Authorization asks the same question the security middleware asks of
`clustergateways/{name}/proxy/{path}` (a SubjectAccessReview on the proxy subresource of that
cluster); the request itself goes through the proxy's `prepare_call` and `open_upstream`
(transport, path checks, credential and its 401 refresh, impersonation rules), and through
fail-fast when the HealthinessCheck gate is on. Every failure becomes that cluster's Status.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from ..base.api_group import API_PREFIX
from ..base.status import StatusError
from ..proxy.handler import FAIL_FAST, open_upstream, prepare_call
from ..registry.model import ClusterGateway
from ..security.authorization import Authorizer, forbidden, request_attributes
from ..security.identity import UserInfo
from . import shape
from .request import FanoutRequest, page_query

log = logging.getLogger(__name__)

_ERROR_BODY_LIMIT = 64 * 1024  # how much of a member's failed answer is read to describe it
EmitItems = Callable[[bytes], Awaitable[None]]  # a page's encoded items, comma-separated
EmitLine = Callable[[bytes], Awaitable[None]]


@dataclass(slots=True)
class FanoutSettings:
    """Bounds of a fan-out: members read at once, items per member page, the largest page and watch event.

    One instance per application (app[FANOUT_SETTINGS]); tests and benchmarks tune it in place.
    """

    concurrency: int = 16
    page_size: int = 500
    max_page_bytes: int = 64 * 1024 * 1024
    max_event_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Members:
    """What every member call of one fan-out request shares."""

    request: web.Request
    fanout: FanoutRequest
    authorizer: Authorizer
    user: UserInfo
    timeout: float  # each member request: until its answer starts (watch) or its page is read (list)
    settings: FanoutSettings

    async def authorize(self, cluster: ClusterGateway) -> None:
        """Raise the 403 the proxy would raise for this cluster's own proxied request."""
        path = f"{API_PREFIX}/clustergateways/{cluster.name}/proxy{self.fanout.inner_path}"
        attrs = request_attributes("GET", path, self.request.query, self.user)
        decision = await self.authorizer.authorize(attrs)
        if not decision.allowed:
            raise forbidden(attrs, decision.reason)

    async def open(self, cluster: ClusterGateway, raw_query: str) -> aiohttp.ClientResponse:
        """The member's answer to one GET (its headers; the body is the caller's to read and close)."""
        fail_fast = self.request.app.get(FAIL_FAST)
        trial = fail_fast.admit(cluster.name) if fail_fast is not None else None  # 503 while refused
        call = await prepare_call(self.request, cluster, self.fanout.remainder, raw_query)
        # The fan-out reads JSON itself: never a Table, protobuf or a compressed body.
        call.headers["Accept"] = "application/json"
        call.headers["Accept-Encoding"] = "identity"
        answered = False
        try:
            with call.transport.track():
                upstream = await open_upstream("GET", call)
            answered = upstream.status < 500
            return upstream
        finally:
            if fail_fast is not None:
                fail_fast.settle(trial, answered)

    def _timed_out(self, cluster: ClusterGateway) -> StatusError:
        # The proxy's own wording for a member that does not answer in time.
        return StatusError(504, f'cluster "{cluster.name}" did not answer within {self.timeout:g}s', reason="Timeout")

    async def _read_page(self, cluster: ClusterGateway, query: str) -> tuple[int, bytes]:
        """One page: its status and body, read within the per-member timeout and size bound."""
        try:
            async with asyncio.timeout(self.timeout):
                upstream = await self.open(cluster, query)
                try:
                    body = bytearray()
                    async for chunk in upstream.content.iter_any():
                        body += chunk
                        if len(body) > self.settings.max_page_bytes:
                            raise StatusError(
                                502,
                                f"the member's answer is larger than {self.settings.max_page_bytes} bytes "
                                f"(a page of at most {self.settings.page_size} items)",
                            )
                    return upstream.status, bytes(body)
                finally:
                    upstream.close()
        except TimeoutError:
            raise self._timed_out(cluster) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise StatusError(502, f"the connection to the member broke off: {type(exc).__name__}") from None

    async def list(self, cluster: ClusterGateway, emit: EmitItems) -> dict[str, Any]:
        """Read the cluster's whole list page by page, emitting each page's items; its Status."""
        sent = 0
        token = ""
        paged = self.fanout.verb == "list"
        try:
            await self.authorize(cluster)
        except StatusError as exc:
            return shape.from_error(cluster.name, exc)
        while True:
            query = page_query(self.fanout.member_query, self.settings.page_size, token) if paged else self.fanout.member_query
            incomplete = f"; {sent} of its items were sent before, so its list is incomplete" if sent else ""
            try:
                status, body = await self._read_page(cluster, query)
            except StatusError as exc:
                return shape.from_error(cluster.name, exc, incomplete)
            if status != 200:
                failure = shape.from_answer(cluster.name, status, body)
                failure["message"] += incomplete
                return failure
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                return shape.failed(cluster.name, 502, "the member's answer is not a JSON object" + incomplete)
            items, kind, api_version = _items_of(doc)
            await emit(shape.encode_items(items, cluster.name, kind, api_version))
            sent += len(items)
            metadata = doc.get("metadata")
            token = str(metadata.get("continue") or "") if paged and isinstance(metadata, dict) else ""
            if not token:
                return shape.succeeded(cluster.name, f"{sent} item{'' if sent == 1 else 's'}" if paged else "1 item")

    async def watch(self, cluster: ClusterGateway, emit: EmitLine, started: Callable[[], None]) -> dict[str, Any]:
        """Stream the cluster's watch events (annotated) until it ends; the Status that says why it ended.

        `started` is called once the member's answer has started (or failed), so the caller can let the
        next member open its watch.
        """
        try:
            await self.authorize(cluster)
            async with asyncio.timeout(self.timeout):
                upstream = await self.open(cluster, self.fanout.member_query)
        except TimeoutError:
            return shape.from_error(cluster.name, self._timed_out(cluster))
        except StatusError as exc:
            return shape.from_error(cluster.name, exc)
        finally:
            started()
        try:
            if upstream.status != 200:
                return shape.from_answer(cluster.name, upstream.status, await upstream.content.read(_ERROR_BODY_LIMIT))
            await emit(shape.status_event(shape.succeeded(cluster.name, "watching")))
            return await self._events(cluster, upstream, emit)
        except (aiohttp.ClientError, ConnectionError) as exc:
            return shape.failed(cluster.name, 502, f"the member's watch broke off: {type(exc).__name__}")
        finally:
            upstream.close()

    async def _events(self, cluster: ClusterGateway, upstream: aiohttp.ClientResponse, emit: EmitLine) -> dict[str, Any]:
        pending = bytearray()
        async for chunk in upstream.content.iter_any():
            pending += chunk
            while (end := pending.find(b"\n")) >= 0:
                line = bytes(pending[:end])
                del pending[: end + 1]
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    return shape.failed(cluster.name, 502, "the member sent a watch event that is not JSON")
                if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                    return shape.failed(cluster.name, 502, "the member sent a watch event without a type")
                if event["type"] == "ERROR":  # the member ends its watch: its Status, as a BOOKMARK
                    return shape.watch_error(cluster.name, event.get("object"))
                await emit(shape.watch_line(event["type"], shape.annotate(event.get("object"), cluster.name)))
            if len(pending) > self.settings.max_event_bytes:
                too_large = f"the member sent a watch event larger than {self.settings.max_event_bytes} bytes"
                return shape.failed(cluster.name, 502, too_large)
        return shape.failed(cluster.name, 410, "the member ended its watch; list and watch again to resume it", "Expired")


def _items_of(doc: dict[str, Any]) -> tuple[list[Any], str, str]:
    """A member answer's items and their kind and apiVersion: a list's items, or the one object it is."""
    kind = doc.get("kind")
    items = doc.get("items")
    api_version = str(doc.get("apiVersion") or "")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
        return items, shape.item_kind(kind), api_version
    return [doc], "", ""
